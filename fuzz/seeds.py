"""Real inputs each fuzz target starts from: the shared photos in every format and mode the decoder reads, base64
uploads, the URLs of the SSRF tests and the committed events' request bodies."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent.parent
PHOTOS_DIR = REPO_DIR.parent / "shared" / "photos"


def images() -> list[bytes]:
    """A shared photo, shrunk, in each format and mode the decoder reads."""
    from PIL import Image

    photos = sorted((PHOTOS_DIR / "cats").glob("*.jpg"))[:3]
    small = Image.open(photos[0]).convert("RGB").resize((48, 36)) if photos else Image.new("RGB", (48, 36))
    encoded = []
    for image_format, mode in (
        ("PNG", "RGBA"),
        ("PNG", "P"),
        ("WEBP", "RGB"),
        ("GIF", "P"),
        ("BMP", "RGB"),
        ("TIFF", "I;16"),
        ("JPEG", "RGB"),
        ("JPEG", "CMYK"),
        ("PNG", "LA"),
    ):
        buffer = io.BytesIO()
        small.convert(mode if mode != "I;16" else "I").convert(mode).save(buffer, format=image_format)
        encoded.append(buffer.getvalue())
    return encoded


def uploads() -> list[bytes]:
    """Base64 and data: URI uploads of those images."""
    pictures = images()
    return [base64.b64encode(pictures[0]), b"data:image/png;base64," + base64.b64encode(pictures[1]), b"data:,x"]


def urls() -> list[bytes]:
    """URLs of the SSRF tests: IPv6, IDNA, numeric and octal hosts, credentials."""
    return [
        b"http://example.com/cat.jpg",
        b"https://[::1]:8443/a?b=c",
        b"http://\xe4\xbe\x8b\xe3\x81\x88.jp/",
        b"http://0x7f.0.0.1/",
        b"http://user@host/",
        b"http://2130706433/",
    ]


def request_bodies() -> list[bytes]:
    """The committed events' request bodies, and a URL request with `top_k`."""
    events = [json.loads(p.read_text())["body"] for p in sorted((REPO_DIR / "events").glob("predict*.json"))]
    return [body.encode() for body in events if body] + [b'{"url": "http://a/", "top_k": 3}']
