# syntax=docker/dockerfile:1
# The serving image: the runtime dependencies, the lambda_function package and one model, nothing else.
#   Lambda (default target; sam build uses it):  docker build --build-arg MODEL=cat-breeds-34 -t cat-breeds .
#   Kubernetes HTTP server (kube-config/):       docker build --target server -t cat-breeds-server .
# MODEL names a file pair in models/ (models/MODEL.tflite and models/MODEL.json); cat-breeds-34 is the default.

# A dated tag of AWS's Lambda base image for Python 3.12 (multi-architecture: x86_64 and arm64).
FROM public.ecr.aws/lambda/python:3.12.2026.10.03.13 AS lambda

ARG MODEL=cat-breeds-34
ENV MODEL_PATH=${LAMBDA_TASK_ROOT}/models/${MODEL}.tflite \
    PYTHONDONTWRITEBYTECODE=1

# Dependencies before code: this layer is rebuilt only when requirements.txt changes.
COPY requirements.txt ${LAMBDA_TASK_ROOT}/
RUN pip install --no-cache-dir -r "${LAMBDA_TASK_ROOT}/requirements.txt"

COPY models/${MODEL}.tflite models/${MODEL}.json ${LAMBDA_TASK_ROOT}/models/
COPY lambda_function/ ${LAMBDA_TASK_ROOT}/lambda_function/

# Lambda runs the image as its own unprivileged user whatever USER says, and ignores HEALTHCHECK.
# checkov:skip=CKV_DOCKER_2: Lambda ignores HEALTHCHECK; Kubernetes probes the server target on /livez and /readyz
CMD ["lambda_function.handler.lambda_handler"]


# The same code and model served over HTTP, for the Kubernetes alternative (kube-config/).
FROM lambda AS server
# Any unprivileged uid works: the server writes nothing (the root filesystem is mounted read-only there).
USER 10001
EXPOSE 8080
ENTRYPOINT ["python", "-m", "lambda_function", "serve", "--host", "0.0.0.0", "--port", "8080"]
CMD []
