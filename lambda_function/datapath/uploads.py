"""Base64 image uploads: size-checked before decoding, `data:` URIs accepted, errors explained."""

from __future__ import annotations

import base64
import binascii
import re

from lambda_function.errors import ImageTooLarge, InvalidBase64

_DATA_URI = re.compile(
    r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[\w.+-]+)*)(?P<base64>;base64)?,", re.I
)


def decode_base64_image(encoded: str, max_bytes: int) -> bytes:
    """Decode a base64 image (optionally a `data:image/...;base64,` URI) of at most `max_bytes`.

    The length is checked on the encoded text first, so an oversized upload is refused without allocating
    its decoded copy. URL-safe base64 and line breaks (as `base64` the command writes them) are accepted.

    Raises:
        InvalidBase64: not base64, or a `data:` URI that is not base64-encoded.
        ImageTooLarge: the decoded image would exceed `max_bytes`.
    """
    match = _DATA_URI.match(encoded)
    if match:
        if not (match.group("mime") or "").lower().startswith("image/"):
            raise InvalidBase64("a data: URI must carry an image (data:image/jpeg;base64,...)")
        if not match.group("base64"):
            raise InvalidBase64("a data: URI must be base64-encoded (data:image/jpeg;base64,...)")
        encoded = encoded[match.end() :]
    elif encoded[:5].lower() == "data:":
        raise InvalidBase64("the data: URI is malformed (expected data:image/jpeg;base64,...)")
    # str.split(), not a regular expression: the upload may be megabytes long.
    compact = "".join(encoded.split())
    if not compact:
        raise InvalidBase64("the image field is empty")
    max_encoded_chars = 4 * ((max_bytes + 2) // 3)
    if len(compact) > max_encoded_chars:
        raise ImageTooLarge(f"the uploaded image is larger than the limit of {max_bytes:,} bytes")
    compact = compact.replace("-", "+").replace("_", "/")
    compact += "=" * (-len(compact) % 4)
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidBase64("the image field is not valid base64") from None
    if len(data) > max_bytes:
        raise ImageTooLarge(f"the uploaded image is larger than the limit of {max_bytes:,} bytes")
    return data
