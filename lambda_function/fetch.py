"""Fetch an image from a client-supplied URL without becoming an SSRF proxy.

The rules (README, "Security"): http and https only; no credentials in the URL; only the configured ports;
the host is resolved once and refused if any of its addresses is not globally routable; the connection goes
to the address that was checked (a second DNS answer never gets a say, which defeats DNS rebinding); each
redirect is checked the same way, up to a limit; a connect deadline and a total deadline bound the time;
the body is streamed and cut off at a byte cap whatever Content-Length claims.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import urllib3
from urllib3.exceptions import HTTPError, NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from lambda_function.address_policy import IPAddress, refusal_reason
from lambda_function.errors import (
    ImageTooLarge,
    InvalidUrl,
    UpstreamError,
    UpstreamTimeout,
    UrlNotAllowed,
)
from lambda_function.settings import FetchSettings

Resolver = Callable[[str, int], list[IPAddress]]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_REDIRECT_STATUSES = {301, 302, 303, 307, 308}
_CHUNK_BYTES = 64 * 1024
_MAX_URL_CHARS = 2048


def system_resolver(host: str, port: int) -> list[IPAddress]:
    """All addresses the system resolver gives for `host`, in its order (literal IPs in any spelling too)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canonname, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


@dataclass(frozen=True)
class Target:
    """A URL that passed the checks that need no network."""

    scheme: str
    host: str
    port: int
    path: str

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == _DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


class SafeFetcher:
    """Downloads image bytes from URLs under the rules above."""

    def __init__(self, settings: FetchSettings, resolver: Resolver = system_resolver) -> None:
        self.settings = settings
        self._resolver = resolver

    def fetch(self, url: str) -> bytes:
        """Download `url`, following at most `max_redirects` redirects, each re-checked.

        Raises:
            InvalidUrl: the URL cannot be parsed.
            UrlNotAllowed: scheme, credentials, port or a resolved address is not allowed.
            ImageTooLarge: the body exceeds the byte cap.
            UpstreamTimeout: a deadline passed.
            UpstreamError: the host could not be resolved or reached, or answered with an error.
        """
        deadline = time.monotonic() + self.settings.total_timeout_s
        current_url = url
        for _hop in range(self.settings.max_redirects + 1):
            target = self.check_url(current_url)
            addresses = self.resolve_checked(target)
            response = self._request(target, addresses, deadline)
            try:
                if response.status in _REDIRECT_STATUSES:
                    location = response.headers.get("Location")
                    if not location:
                        raise UpstreamError(f"the image URL answered HTTP {response.status} without a Location")
                    current_url = urljoin(current_url, location.strip())
                    continue
                if not 200 <= response.status < 300:
                    raise UpstreamError(f"the image URL answered HTTP {response.status}")
                return self._read_body(response, deadline)
            finally:
                response.release_conn()
                response.close()
        raise UpstreamError(f"the image URL redirected more than {self.settings.max_redirects} times")

    def check_url(self, url: str) -> Target:
        """The checks that need no network: form, scheme, credentials, port."""
        if len(url) > _MAX_URL_CHARS:
            raise InvalidUrl(f"the URL is longer than {_MAX_URL_CHARS} characters")
        if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in url):
            raise InvalidUrl("the URL contains whitespace or control characters")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise InvalidUrl("the URL cannot be parsed") from None
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise UrlNotAllowed(f"only http and https URLs are allowed, not {scheme or 'a URL without a scheme'}")
        if "@" in parts.netloc:
            raise UrlNotAllowed("URLs with credentials (user:password@) are not allowed")
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise InvalidUrl("the URL has no host")
        port = port if port is not None else _DEFAULT_PORTS[scheme]
        allowed_ports = self.settings.allowed_ports
        if allowed_ports is not None and port not in allowed_ports:
            raise UrlNotAllowed(f"port {port} is not allowed (allowed: {', '.join(map(str, sorted(allowed_ports)))})")
        path = parts.path or "/"
        if parts.query:
            path = f"{path}?{parts.query}"
        return Target(scheme=scheme, host=host, port=port, path=path)

    def resolve_checked(self, target: Target) -> list[IPAddress]:
        """Resolve the host once; refuse it if any address is not allowed."""
        try:
            addresses = self._resolver(target.host, target.port)
        except (OSError, UnicodeError, ValueError):
            raise UpstreamError(f"the host {target.host!r} could not be resolved") from None
        if not addresses:
            raise UpstreamError(f"the host {target.host!r} has no address")
        for address in addresses:
            reason = refusal_reason(address, allow_loopback=self.settings.allow_loopback)
            if reason is not None:
                raise UrlNotAllowed(f"the host {target.host!r} resolves to {reason}; such URLs are not allowed")
        return addresses

    def _request(self, target: Target, addresses: list[IPAddress], deadline: float) -> urllib3.BaseHTTPResponse:
        """GET the target from the first of the checked addresses that accepts a connection."""
        last_error: Exception | None = None
        for address in addresses:
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                break
            timeout = urllib3.Timeout(connect=min(self.settings.connect_timeout_s, remaining_s), read=remaining_s)
            pool = self._pool(target, address, timeout)
            try:
                return pool.urlopen(
                    "GET",
                    target.path,
                    headers={
                        "Host": target.host_header,
                        "User-Agent": self.settings.user_agent,
                        "Accept": "image/*",
                        "Accept-Encoding": "identity",
                    },
                    redirect=False,
                    retries=False,
                    preload_content=False,
                    decode_content=False,
                    assert_same_host=False,
                )
            except NewConnectionError as exc:  # urllib3 makes it a subclass of its timeout error: test it first
                last_error = exc
            except (HTTPError, OSError) as exc:
                last_error = exc
        if last_error is None or (
            isinstance(last_error, Urllib3Timeout) and not isinstance(last_error, NewConnectionError)
        ):
            raise UpstreamTimeout(f"the image URL did not answer within {self.settings.total_timeout_s:g} s")
        raise UpstreamError(f"the image URL could not be reached ({type(last_error).__name__})")

    def _pool(self, target: Target, address: IPAddress, timeout: urllib3.Timeout) -> urllib3.HTTPConnectionPool:
        if target.scheme == "https":
            # Connect to the checked address, but send SNI for and verify the certificate against the host name.
            return urllib3.HTTPSConnectionPool(
                str(address),
                target.port,
                timeout=timeout,
                maxsize=1,
                server_hostname=target.host,
                assert_hostname=target.host,
                cert_reqs="CERT_REQUIRED",
                ca_certs=self.settings.ca_bundle_path,
            )
        return urllib3.HTTPConnectionPool(str(address), target.port, timeout=timeout, maxsize=1)

    def _read_body(self, response: urllib3.BaseHTTPResponse, deadline: float) -> bytes:
        max_bytes = self.settings.max_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise ImageTooLarge(f"the image is larger than the limit of {max_bytes:,} bytes")
        body = bytearray()
        try:
            while True:
                if time.monotonic() > deadline:
                    raise UpstreamTimeout(f"the image did not download within {self.settings.total_timeout_s:g} s")
                # read1 returns after one socket read (or one chunk), so a slow drip cannot hold it past
                # the deadline check above, and a chunked body without Content-Length is still counted.
                chunk = response.read1(_CHUNK_BYTES)
                if not chunk:
                    break
                body += chunk
                if len(body) > max_bytes:
                    raise ImageTooLarge(f"the image is larger than the limit of {max_bytes:,} bytes")
        except Urllib3Timeout:
            raise UpstreamTimeout(f"the image did not download within {self.settings.total_timeout_s:g} s") from None
        except (HTTPError, OSError):
            raise UpstreamError("the image download was cut off by the server") from None
        return bytes(body)
