# syntax=docker/dockerfile:1
# The serving image: the runtime dependencies, the lambda_function package and one model, nothing else. Two
# targets on one stage of code and model (`runtime`):
#   Lambda (`lambda`, the last stage, so the default; template.yaml names it too, as DockerBuildTarget):
#       docker build --build-arg MODEL=cat-breeds-34 -t cat-breeds .
#   Kubernetes HTTP server (`server`, kube-config/):
#       docker build --platform linux/amd64 --target server -t cat-breeds-server .
# MODEL names a file pair in models/ (models/MODEL.tflite and models/MODEL.json); cat-breeds-34 is the default.

# AWS's Lambda base image for Python 3.12 (multi-architecture: x86_64 and arm64). `3.12` is the tag AWS keeps
# current; nobody here could check that a dated tag exists, and a missing one fails every `sam build`. To make
# builds repeatable, pin the digest you tested (docs/deploy.md, "Pinning the base image"):
#   docker buildx imagetools inspect public.ecr.aws/lambda/python:3.12   # prints the index digest
#   FROM public.ecr.aws/lambda/python:3.12@sha256:<that digest> AS runtime
FROM public.ecr.aws/lambda/python:3.12 AS runtime

# The served model's name: the image's MODEL_PATH follows it, and the template sets none of its own. It is the
# default of lambda_function/settings.py (DEFAULT_MODEL_PATH) and make breed-model's output; a test keeps the three
# equal. To serve another model: --build-arg MODEL=NAME, or this default.
ARG MODEL=cat-breeds-34
ENV MODEL_PATH=${LAMBDA_TASK_ROOT}/models/${MODEL}.tflite \
    PYTHONDONTWRITEBYTECODE=1

# Dependencies before code: this layer is rebuilt only when requirements.lock changes.
COPY requirements.lock ${LAMBDA_TASK_ROOT}/
RUN pip install --no-cache-dir --require-hashes --no-deps -r "${LAMBDA_TASK_ROOT}/requirements.lock"

COPY models/${MODEL}.tflite models/${MODEL}.json ${LAMBDA_TASK_ROOT}/models/
COPY lambda_function/ ${LAMBDA_TASK_ROOT}/lambda_function/
# Bytecode compiled once here: Lambda's root is read-only, so the code would be compiled again at every cold start
# (about 90 ms of 500 measured here). Never checked against the sources (unchecked-hash): an image's code never
# changes.
RUN python -m compileall -q --invalidation-mode unchecked-hash "${LAMBDA_TASK_ROOT}/lambda_function"

# The same code and model served over HTTP, for the Kubernetes alternative (kube-config/).
FROM runtime AS server
# Any unprivileged uid works: the server writes nothing (the root filesystem is mounted read-only there).
USER 10001
EXPOSE 8080
# checkov:skip=CKV_DOCKER_2: Kubernetes probes this target on /livez and /readyz (kube-config/deployment.yaml)
ENTRYPOINT ["python", "-m", "lambda_function", "serve", "--host", "0.0.0.0", "--port", "8080"]
CMD []


# Lambda: AWS's entry point (/lambda-entrypoint.sh) runs the handler named here or by the function's
# ImageConfig.Command. Last, so that a plain `docker build` and a `sam build` without a target both get it. It
# stays root, as AWS's image is: Lambda runs it as its own unprivileged user whatever USER says, the SAM CLI's
# emulator is installed into it as root, and Lambda ignores HEALTHCHECK.
FROM runtime AS lambda
# checkov:skip=CKV_DOCKER_3: Lambda runs every image as its own unprivileged user; USER is ignored there
CMD ["lambda_function.handler.lambda_handler"]
