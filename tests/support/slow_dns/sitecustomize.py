"""Fault injection for a server started as a process: the system resolver hangs on names under a suffix.

A test puts this folder first on the child's PYTHONPATH (Python imports `sitecustomize` at start-up) and names
the suffix in `SLOW_DNS_SUFFIX`; a lookup of such a name then sleeps `SLOW_DNS_SECONDS` before failing, as a
resolver that never answers does. Every other lookup goes to the real resolver.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

_SUFFIX = os.environ.get("SLOW_DNS_SUFFIX", "")
_SECONDS = float(os.environ.get("SLOW_DNS_SECONDS", "30"))
_real_getaddrinfo = socket.getaddrinfo


def _slow_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    name = host.decode() if isinstance(host, bytes) else str(host or "")
    if _SUFFIX and name.lower().rstrip(".").endswith(_SUFFIX):
        time.sleep(_SECONDS)
        raise socket.gaierror(socket.EAI_AGAIN, "the injected resolver never answered")
    return _real_getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _slow_getaddrinfo
