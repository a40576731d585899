# The README's commands. Every target sets up what it needs (a virtual environment in .venv) first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PHOTOS := ../shared/photos
# Until the starter model lands, the demo runs an untrained smoke model: it proves the pipeline, not breeds.
DEMO_MODEL := build/untrained.tflite
DEMO_PHOTOS := $(PHOTOS)/cats/Siamese_109.jpg $(PHOTOS)/cats/Persian_14.jpg $(PHOTOS)/dogs/american_bulldog_106.jpg

.PHONY: setup demo test lint serve openapi clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

$(DEMO_MODEL): $(STAMP) conversion/untrained_model.py conversion/convert.py
	$(PY) -m conversion.untrained_model --out $(DEMO_MODEL)

demo: $(STAMP) $(DEMO_MODEL)
	@for photo in $(DEMO_PHOTOS); do $(PY) -m lambda_function predict $$photo --model $(DEMO_MODEL) --top-k 3 || exit 1; done
	$(PY) -m lambda_function invoke events/predict-base64.json --model $(DEMO_MODEL)

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest

serve: $(STAMP) $(DEMO_MODEL)
	$(PY) -m lambda_function serve --model $(DEMO_MODEL)

openapi: $(STAMP)
	$(PY) -m lambda_function openapi > docs/openapi.json

clean:
	rm -rf build .pytest_cache .ruff_cache
