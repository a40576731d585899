"""The predict handler as it was before it stopped patching botocore for X-Ray (powertools' default patches every
library it knows): what `benchmarks.image` compares the image's cold start with."""

from aws_xray_sdk.core import patch

patch(("botocore",))

from lambda_function.handler import lambda_handler  # noqa: E402  (after the patch, as powertools did it)

__all__ = ["lambda_handler"]
