# The README's commands. Every target sets up what it needs (a virtual environment in .venv) first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# Linters of the deployment files, each in its own environment: their pins clash with the application's.
INFRA_STAMP := .venv-infra/.installed-stamp
CHECKOV_STAMP := .venv-checkov/.installed-stamp
# The runtime set alone (requirements.lock, the closure of requirements.txt): what the Lambda image installs, for its
# test and for make bench.
RUNTIME_STAMP := .venv-runtime/.installed-stamp
# The browser of the page's tests (tests/integration/test_page_in_browser.py): Debian's chromium, driven by Playwright.
CHROMIUM := /usr/bin/chromium
# The image tests' engine and tools (tests/integration/test_container_images.py): Debian's docker.io, and debootstrap
# for the stand-in of AWS's base image (tests/support/lambda_base/).
DOCKERD := /usr/sbin/dockerd
DEBOOTSTRAP := /usr/sbin/debootstrap
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
PHOTOS := ../shared/photos
# Committed with their credits (demo/photos/ATTRIBUTION.md), so that `make demo` needs nothing beside the checkout.
DEMO_PHOTOS := $(sort $(wildcard demo/photos/*.jpg))
# The default model (docs/model.md): trained by `make breed-model` from the two shared cat photo sets, the Oxford
# photos of 12 breeds (with the "No cat" photos) and the web photos of 34 breeds (no licence stated: research use).
OXFORD_DATA := ../shared/datasets/cat-breeds-12
WEB_DATA := ../shared/datasets/cat-breeds-web
BREED_BUILD := build/breed-model
BREED_MODEL := models/cat-breeds-34
# The breed rule (docs/model.md, "breed_identified"): the calibrated P(breed | cat) a breed needs to be named.
MIN_BREED_PROBABILITY := 0.65

.PHONY: setup demo test test-unit docker-engine serve loadtest fuzz openapi breed-model starter-model verify-lite0 bench bench-modes bench-int8 \
	check-arm64 lock clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements/dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements/dev.txt
	touch $(STAMP)

# Classifies the committed demo photos with the committed default model (models/cat-breeds-34.tflite).
demo: $(STAMP)
	@for photo in $(DEMO_PHOTOS); do $(PY) -m lambda_function predict $$photo --top-k 3 || exit 1; done

# A tool's environment: .venv-NAME from requirements/NAME.txt (the deployment linters and the benchmark's other
# engines pin versions that clash with the application's; .venv-lock holds uv for `make lock`).
.venv-%/.installed-stamp: requirements/%.txt
	$(PYTHON) -m venv .venv-$*
	.venv-$*/bin/python -m pip install --quiet --disable-pip-version-check -r $<
	touch $@

# The runtime set exactly as the Dockerfile installs it: the lock, every file checked against its hash, nothing else.
.venv-runtime/.installed-stamp: requirements.lock
	$(PYTHON) -m venv --clear .venv-runtime
	.venv-runtime/bin/python -m pip install --quiet --disable-pip-version-check --no-cache-dir --require-hashes \
		--no-deps -r requirements.lock
	touch $@

# Regenerates requirements.lock from requirements.txt after a pin changes (a unit test fails until they agree): the
# whole closure, with the hash of every file PyPI has for each release, resolved once for CPython 3.11 and newer on
# every platform (--universal): the tests' 3.11 and the base image's 3.12, x86_64 and aarch64.
lock: .venv-lock/.installed-stamp
	.venv-lock/bin/uv pip compile --universal --generate-hashes --python-version 3.11 --quiet \
		--constraint requirements/lock-constraints.txt --custom-compile-command "make lock" \
		requirements.txt --output-file requirements.lock

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium

$(DOCKERD) $(DEBOOTSTRAP):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io debootstrap

# Starts dockerd in the background when no engine answers (its log: build/dockerd.log) and waits for it.
docker-engine: $(DOCKERD) $(DEBOOTSTRAP)
	@docker info > /dev/null 2>&1 || { \
	  if pgrep -x dockerd > /dev/null; then echo "dockerd runs but does not answer $$(id -un): join the docker group"; \
	    exit 1; fi; \
	  mkdir -p build; $(SUDO) sh -c 'nohup $(DOCKERD) > build/dockerd.log 2>&1 &'; \
	  for second in $$(seq 60); do docker info > /dev/null 2>&1 && exit 0; sleep 1; done; \
	  echo "dockerd did not start:"; tail -20 build/dockerd.log; exit 1; }

# The whole suite: tests/unit (in-process, fast, in 4 processes) and tests/integration (servers, moto, subprocesses,
# the browser, training, the deployment linters, the images built and run in Docker), each file in one of 2
# processes: training computes while the server's deadline tests wait, and a file's tests stay together.
test: $(STAMP) $(INFRA_STAMP) $(CHECKOV_STAMP) $(RUNTIME_STAMP) $(CHROMIUM) docker-engine
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m pytest tests/unit -n 4
	$(PY) -m pytest tests/integration -n 2 --dist loadfile

# The edit-test loop: the in-process tests only (no TensorFlow), in 4 processes: about half a minute.
test-unit: $(STAMP)
	$(PY) -m pytest tests/unit -n 4

serve: $(STAMP)
	$(PY) -m lambda_function serve

# Coverage-guided fuzzing of the decoder, the upload decoder, URL checks and the request parser (fuzz/run.py):
# a minute per target; inputs that crash a target are saved under build/fuzz/crashes/.
fuzz: $(STAMP)
	$(PY) -m fuzz.run --seconds 60

# Whether every requirement of the runtime lock (requirements.lock: requirements.txt's whole closure) has a wheel for
# the arm64 functions the template offers (Linux aarch64, CPython 3.12, the Lambda base image's glibc), from the
# package registries this machine reaches; no build from source is accepted. Prints one line per requirement and
# fails if any is missing (docs/deploy.md says what it found). pip matches platform tags exactly, so every glibc
# from manylinux2014's 2.17 to the base image's 2.34 (Amazon Linux 2023) is listed: LiteRT's wheels are 2_27.
ARM64_GLIBC_MINORS := $(shell seq 17 34)
ARM64_PLATFORMS := --platform manylinux2014_aarch64 \
	$(foreach minor,$(ARM64_GLIBC_MINORS),--platform manylinux_2_$(minor)_aarch64) --platform any
check-arm64: $(STAMP)
	@rm -rf build/arm64-wheels && mkdir -p build/arm64-wheels
	@grep -E '^[A-Za-z0-9]' requirements.lock | sed 's/[ ;].*//' | while read -r requirement; do \
	  if $(PY) -m pip download --quiet --no-deps --only-binary=:all: $(ARM64_PLATFORMS) --python-version 3.12 \
	      --implementation cp -d build/arm64-wheels "$$requirement" > /dev/null 2>&1; \
	  then echo "wheel    $$requirement"; else echo "MISSING  $$requirement"; touch build/arm64-wheels/.missing; fi; \
	done; test ! -e build/arm64-wheels/.missing

# A bounded load test of the HTTP server on loopback (benchmarks/loadtest.py; results in benchmarks/results/).
loadtest: $(STAMP)
	$(PY) -m benchmarks.loadtest

# Trains the default model from both shared cat photo sets on CPU (about 15 minutes on 2 cores), converts it and
# measures it through the serving runtime (docs/model.md): prepare at Lite2's 260 px, train the head on cached
# features with the cat gate (the Oxford photos, whose labels are clean, weighted 5 times the web photos) and a
# temperature fitted on the validation split, write the breed rule, convert to
# float16, evaluate the held-back test split (all of it, then the Oxford and the web photos apart) and the shared
# test photos (figures into the sidecar and docs/model/).
breed-model: $(STAMP)
	$(PY) -m training.prepare_dataset --cats $(OXFORD_DATA)/images --cats $(WEB_DATA)/images \
		--no-cat $(OXFORD_DATA)/no-cat --size 260 --max-per-class 2000 --out $(BREED_BUILD)/data --overwrite
	$(PY) -m training.train --data $(BREED_BUILD)/data --run $(BREED_BUILD)/run --backbone efficientnet-lite2 \
		--head-only --cat-gate --hidden-units 0 --dropout 0.2 --label-smoothing 0 --head-epochs 200 --patience 10 \
		--origin-weights cat-breeds-12=5 --min-breed-probability $(MIN_BREED_PROBABILITY) \
		--name cat-breeds-34-efficientnet-lite2 --version 3.0.0
	$(PY) -m conversion.convert $(BREED_BUILD)/run/model.keras --out $(BREED_MODEL).tflite --mode float16 \
		--validation-dir $(BREED_BUILD)/data/val --validation-images 400
	$(PY) -m training.coat_rule $(BREED_MODEL).tflite --data $(BREED_BUILD)/data
	$(PY) -m training.evaluate $(BREED_MODEL).tflite --data $(BREED_BUILD)/data --split test \
		--record held_back_test --out docs/model/held-back-test
	$(PY) -m training.evaluate $(BREED_MODEL).tflite --data $(BREED_BUILD)/data --split test \
		--origin cat-breeds-12 --record held_back_test_oxford --out docs/model/held-back-test-oxford
	$(PY) -m training.evaluate $(BREED_MODEL).tflite --data $(BREED_BUILD)/data --split test \
		--origin cat-breeds-web --record held_back_test_web --out docs/model/held-back-test-web
	$(PY) -m training.evaluate $(BREED_MODEL).tflite --photos $(PHOTOS) --unknown-as "No cat" \
		--record shared_photos --out docs/model/shared-photos

# Rebuilds models/starter.tflite, the previous default kept as the speed reference of make bench (byte for byte).
starter-model: $(STAMP)
	$(PY) -m conversion.starter_model --out models/starter.tflite

# Optional: compares the Keras Lite0 port with the PyTorch original on shared photos (installs torch, CPU build).
verify-lite0: $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements/verify.txt
	$(PY) -m pytest -s -q tests/integration/test_efficientnet_lite.py -k pytorch

# Benchmarks (docs/benchmarks.md): each engine and the runtime-only set in an environment of its own; then the Lambda
# image's size and cold start under its emulator, in Docker (benchmarks/image.py).
bench: $(STAMP) $(RUNTIME_STAMP) $(INFRA_STAMP) .venv-bench-tflite/.installed-stamp .venv-bench-onnx/.installed-stamp \
		docker-engine
	$(PY) -m benchmarks.run
	$(PY) -m benchmarks.tagging_scale
	$(PY) -m benchmarks.image

# Size, latency and parity of the four conversion modes (docs/conversion.md); a few minutes each.
bench-modes: $(STAMP)
	$(PY) -m benchmarks.quantization_modes --model efficientnetb4
	$(PY) -m benchmarks.quantization_modes --model starter --validation-images 185 --calibration-images 100

# The int8 decision (docs/model.md, "Quantization"): the default model's Keras file (after make breed-model) as
# float16 and as full int8 calibrated on the training split, each with its coat rule, measured side by side. The
# conversion's parity gate refuses this int8 file (91.5% top-1 agreement, 97% required): it is lowered here
# knowingly, to measure what int8 would cost, never to ship it.
bench-int8: $(STAMP)
	$(PY) -m conversion.convert $(BREED_BUILD)/run/model.keras --out build/int8/float16.tflite --mode float16 \
		--validation-dir $(BREED_BUILD)/data/val --validation-images 400
	$(PY) -m conversion.convert $(BREED_BUILD)/run/model.keras --out build/int8/int8.tflite --mode full-int8 \
		--validation-dir $(BREED_BUILD)/data/val --validation-images 400 \
		--calibration-dir $(BREED_BUILD)/data/train --calibration-images 400 --min-top1-agreement 0.5
	$(PY) -m training.coat_rule build/int8/float16.tflite --data $(BREED_BUILD)/data
	$(PY) -m training.coat_rule build/int8/int8.tflite --data $(BREED_BUILD)/data
	$(PY) -m benchmarks.int8_decision build/int8/float16.tflite build/int8/int8.tflite

openapi: $(STAMP)
	$(PY) -m lambda_function openapi > docs/openapi.json

clean:
	rm -rf build .pytest_cache .ruff_cache .venv-runtime
