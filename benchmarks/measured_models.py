"""The models `make bench` measures side by side, and the names its results and its report know them by."""

from __future__ import annotations

from lambda_function.settings import DEFAULT_MODEL_PATH, REPO_DIR

DEFAULT_MODEL = DEFAULT_MODEL_PATH
PREVIOUS_MODEL = REPO_DIR / "models" / "cat-breeds-12.tflite"  # the previous default: the latency budget
STARTER = REPO_DIR / "models" / "starter.tflite"
DEFAULT_NAME = "cat-breeds-34 (Lite2, float16, 260 px)"
PREVIOUS_NAME = "cat-breeds-12 (Lite2, float16, 260 px)"
STARTER_NAME = "starter (float16, 224 px)"
