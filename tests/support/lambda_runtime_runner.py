"""Invoke a handler as Lambda does: `python -E -s runner.py MODULE.FUNCTION EVENT.json` from the task root.

Copied next to the code under test, so that the task root is the only place `lambda_function` can come from.
"""

import importlib
import json
import sys
from pathlib import Path

from lambda_function.local_context import LocalLambdaContext  # from the task root, like the handler

module_name, function_name = sys.argv[1].rsplit(".", 1)
event = json.loads(Path(sys.argv[2]).read_text(encoding="utf-8"))
handler = getattr(importlib.import_module(module_name), function_name)

response = handler(event, LocalLambdaContext())
loaded = sorted({name.split(".")[0] for name in sys.modules} & {"tensorflow", "keras", "torch", "moto"})
print(json.dumps({"response": response, "forbidden_modules_loaded": loaded}))
