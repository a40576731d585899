"""A Lambda context object for running the handlers outside Lambda (the CLI's `invoke`, the tests, the benchmarks).

It has the attributes the handlers and powertools read, and nothing more.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass
class LocalLambdaContext:
    """The attributes of a Lambda context object that the handler and powertools read."""

    function_name: str = "cat-breed-classifier-local"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 2048
    invoked_function_arn: str = "arn:aws:lambda:local:000000000000:function:cat-breed-classifier-local"
    aws_request_id: str = ""
    log_group_name: str = "/aws/lambda/cat-breed-classifier-local"
    log_stream_name: str = "local"
    remaining_ms: int = 30_000  # the time the invocation has left, as Lambda counts it down from the timeout

    def __post_init__(self) -> None:
        self.aws_request_id = self.aws_request_id or str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms
