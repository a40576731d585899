"""The predict handler with botocore patched for X-Ray at import, as powertools' default `patch_all()` patched it
before the handler stopped patching (it patched other libraries too, all cheap beside botocore): what
`benchmarks.image` compares the image's cold start with."""

from aws_xray_sdk.core import patch

patch(("botocore",))

from lambda_function.handler import lambda_handler  # noqa: E402  (after the patch, as powertools did it)

__all__ = ["lambda_handler"]
