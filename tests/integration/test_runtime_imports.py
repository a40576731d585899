"""The Lambda runtime works without TensorFlow or Keras: the image does not ship them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import EVENTS_DIR, REPO_DIR

BLOCK_AND_INVOKE = """
import importlib.abc, json, sys

class Forbidden(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"tensorflow", "keras", "tf_keras"}:
            raise ImportError(f"{name} is not available in the Lambda image")
        return None

sys.meta_path.insert(0, Forbidden())
try:
    import tensorflow  # noqa: F401
    raise SystemExit("the import blocker does not work")
except ImportError:
    pass

from lambda_function.local_context import LocalLambdaContext
from lambda_function.handler import lambda_handler

event = json.load(open(sys.argv[1]))
response = lambda_handler(event, LocalLambdaContext())
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {"tensorflow", "keras"})
print(json.dumps({"status": response["statusCode"], "loaded": loaded}))
"""


def test_handler_imports_and_predicts_with_tensorflow_and_keras_unimportable(model_path: Path):
    env = {**os.environ, "MODEL_PATH": str(model_path), "PYTHONPATH": str(REPO_DIR)}

    completed = subprocess.run(
        [sys.executable, "-c", BLOCK_AND_INVOKE, str(EVENTS_DIR / "predict-base64.json")],
        env=env,
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr[-2000:]
    assert json.loads(completed.stdout.strip().splitlines()[-1]) == {"status": 200, "loaded": []}


def test_serving_package_has_no_tensorflow_or_keras_import_statement():
    offenders = [
        f"{path.name}:{number}"
        for path in (REPO_DIR / "lambda_function").rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if line.strip().startswith(("import tensorflow", "from tensorflow", "import keras", "from keras"))
    ]
    assert offenders == []
