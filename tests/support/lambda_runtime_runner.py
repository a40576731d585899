"""Invoke a handler as Lambda does: `python -E -s runner.py MODULE.FUNCTION EVENT.json` from the task root.

Copied next to the code under test, so that the task root is the only place `lambda_function` can come from.
"""

import importlib
import json
import sys
import uuid
from pathlib import Path


class Context:
    function_name = "runtime-image-test"
    function_version = "$LATEST"
    memory_limit_in_mb = 2048
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:runtime-image-test"
    aws_request_id = str(uuid.uuid4())
    log_group_name = "/aws/lambda/runtime-image-test"
    log_stream_name = "test"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


module_name, function_name = sys.argv[1].rsplit(".", 1)
event = json.loads(Path(sys.argv[2]).read_text(encoding="utf-8"))
handler = getattr(importlib.import_module(module_name), function_name)
response = handler(event, Context())
loaded = sorted({name.split(".")[0] for name in sys.modules} & {"tensorflow", "keras", "torch", "moto"})
print(json.dumps({"response": response, "forbidden_modules_loaded": loaded}))
