"""The page for people (`GET /`): one self-contained HTML document and the headers that keep it safe.

The page is written as three files under `static/` so each can be read and linted as what it is; they are put
together once, at first use. Its style and script are inline, so it needs no other route, no CDN and no build
step, and the Content-Security-Policy allows exactly those two blocks, by their SHA-256, and requests to the
page's own origin: no other script can run and nothing can leave for another site, even if a bug let text from
an answer in as markup (the script only ever writes text).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

STATIC_DIR = Path(__file__).with_name("static")
_STYLE_SLOT, _SCRIPT_SLOT = "{{style}}", "{{script}}"


@dataclass(frozen=True)
class WebPage:
    html: str
    headers: dict[str, str]


def assemble(template: str, style: str, script: str) -> WebPage:
    """The page with its style and script inlined, and the headers that allow exactly those two blocks."""
    if "</style" in style.lower() or "</script" in script.lower():
        raise ValueError("an inline block would end early: its text contains its own closing tag")
    for slot in (_STYLE_SLOT, _SCRIPT_SLOT):
        if template.count(slot) != 1:
            raise ValueError(f"the page template must hold {slot} exactly once")
    html = template.replace(_STYLE_SLOT, style).replace(_SCRIPT_SLOT, script)
    policy = "; ".join(
        (
            "default-src 'none'",
            f"script-src '{_sha256_source(script)}'",
            f"style-src '{_sha256_source(style)}'",
            "img-src 'self' blob: data:",
            "connect-src 'self'",
            "form-action 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        )
    )
    headers = {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cache-Control": "no-cache",
    }
    return WebPage(html=html, headers=headers)


@cache
def web_page(directory: Path = STATIC_DIR) -> WebPage:
    """The page as served, read from `directory` once per process."""
    return assemble(
        (directory / "page.html").read_text(encoding="utf-8"),
        (directory / "page.css").read_text(encoding="utf-8"),
        (directory / "page.js").read_text(encoding="utf-8"),
    )


def _sha256_source(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return f"sha256-{base64.b64encode(digest).decode('ascii')}"
