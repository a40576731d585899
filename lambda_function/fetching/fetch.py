"""Fetch an image from a client-supplied URL without becoming an SSRF proxy.

The rules (docs/security.md): http and https only; no credentials in the URL; only the configured ports;
the host is resolved once and refused if any of its addresses is not globally routable; the connection goes
to the address that was checked (a second DNS answer never gets a say, which defeats DNS rebinding); each
redirect is checked the same way, up to a limit; one total deadline covers DNS, connecting, TLS, the status
line, headers, 1xx answers, redirects and the body (`fetch_deadline.Watchdog`), and a connect deadline bounds each
attempt; the body is streamed and cut off at a byte cap whatever Content-Length claims. Internationalised host
names are converted with IDNA (UTS 46) and checked like any other, so the Host header and SNI are always ASCII.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import idna
import urllib3
from urllib3.exceptions import HTTPError, NewConnectionError

from lambda_function.errors import (
    DeadlineExceeded,
    ImageTooLarge,
    InvalidUrl,
    UpstreamError,
    UpstreamTimeout,
    UrlNotAllowed,
)
from lambda_function.fetching.address_policy import IPAddress, refusal_reason
from lambda_function.fetching.fetch_deadline import DeadlineHTTPConnection, DeadlineHTTPSConnection, Watchdog
from lambda_function.request_deadline import Deadline
from lambda_function.settings import FetchSettings

Resolver = Callable[[str, int], list[IPAddress]]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_REDIRECT_STATUSES = {301, 302, 303, 307, 308}
_CHUNK_BYTES = 64 * 1024
_MAX_URL_CHARS = 2048
# The system resolver has no deadline of its own: lookups run here and are waited for until the fetch's deadline.
# A lookup that never returns keeps its thread; with every thread stuck, later lookups queue and time out too.
_DNS_LOOKUPS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="dns")


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

    def fetch(self, url: str, deadline: Deadline | None = None) -> bytes:
        """Download `url`, following at most `max_redirects` redirects, each re-checked, within the fetch's own
        time (`total_timeout_s`) and the request's `deadline`, whichever ends first.

        Raises:
            InvalidUrl: the URL cannot be parsed.
            UrlNotAllowed: scheme, credentials, port or a resolved address is not allowed.
            ImageTooLarge: the body exceeds the byte cap.
            UpstreamTimeout: the fetch's own time ran out.
            DeadlineExceeded: the request's deadline passed first.
            UpstreamError: the host could not be resolved or reached, or answered with an error.
        """
        request = deadline or Deadline.never()
        ends_first = request.within(self.settings.total_timeout_s)
        try:
            return self._fetch_until(url, ends_first)
        except UpstreamTimeout:
            if request.at == ends_first.at and request.expired:
                raise DeadlineExceeded("the request's deadline passed while its image was being fetched") from None
            raise

    def _fetch_until(self, url: str, deadline: Deadline) -> bytes:
        with Watchdog(deadline) as watchdog:
            current_url = url
            for hop in range(self.settings.max_redirects + 1):
                target = self._check_hop(current_url, hop)
                addresses = self.resolve_checked(target, watchdog.deadline)
                response = self._request(target, addresses, watchdog)
                try:
                    if response.status in _REDIRECT_STATUSES:
                        location = response.headers.get("Location")
                        if not location:
                            raise UpstreamError(f"the image URL answered HTTP {response.status} without a Location")
                        current_url = _redirect_target(current_url, location)
                        continue
                    if not 200 <= response.status < 300:
                        raise UpstreamError(f"the image URL answered HTTP {response.status}")
                    return self._read_body(response, watchdog)
                finally:
                    response.release_conn()
                    response.close()
            raise UpstreamError(f"the image URL redirected more than {self.settings.max_redirects} times")

    def _check_hop(self, url: str, hop: int) -> Target:
        """`check_url`, except that a malformed redirect is the upstream's fault (502), not the client's (400)."""
        if hop == 0:
            return self.check_url(url)
        try:
            return self.check_url(url)
        except InvalidUrl as error:
            raise UpstreamError(f"the image URL redirected to an invalid URL ({error.message})") from None

    def _timed_out(self) -> UpstreamTimeout:
        return UpstreamTimeout(f"the image URL did not deliver within {self.settings.total_timeout_s:g} s")

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
        host = _ascii_host((parts.hostname or "").rstrip("."))
        port = port if port is not None else _DEFAULT_PORTS[scheme]
        allowed_ports = self.settings.allowed_ports
        if allowed_ports is not None and port not in allowed_ports:
            raise UrlNotAllowed(f"port {port} is not allowed (allowed: {', '.join(map(str, sorted(allowed_ports)))})")
        path = parts.path or "/"
        if parts.query:
            path = f"{path}?{parts.query}"
        return Target(scheme=scheme, host=host, port=port, path=path)

    def resolve_checked(self, target: Target, deadline: Deadline | None = None) -> list[IPAddress]:
        """Resolve the host once, by `deadline` if given; refuse it if any address is not allowed."""
        lookup = _DNS_LOOKUPS.submit(self._resolver, target.host, target.port)
        try:
            addresses = lookup.result(timeout=(deadline or Deadline.never()).wait_s())
        except FutureTimeout:
            raise UpstreamTimeout(
                f"the host {target.host!r} did not resolve within {self.settings.total_timeout_s:g} s"
            ) from None
        except (OSError, UnicodeError, ValueError):
            raise UpstreamError(f"the host {target.host!r} could not be resolved") from None
        if not addresses:
            raise UpstreamError(f"the host {target.host!r} has no address")
        for address in addresses:
            reason = refusal_reason(address, allow_loopback=self.settings.allow_loopback)
            if reason is not None:
                raise UrlNotAllowed(f"the host {target.host!r} resolves to {reason}; such URLs are not allowed")
        return addresses

    def _request(self, target: Target, addresses: list[IPAddress], watchdog: Watchdog) -> urllib3.BaseHTTPResponse:
        """GET the target from the first of the checked addresses that accepts a connection."""
        last_error: Exception | None = None
        for address in addresses:
            remaining_s = watchdog.deadline.remaining_s()
            if remaining_s <= 0:
                break
            timeout = urllib3.Timeout(connect=min(self.settings.connect_timeout_s, remaining_s), read=remaining_s)
            pool = self._pool(target, address, timeout, watchdog)
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
            except (HTTPError, OSError) as exc:
                last_error = exc
        if last_error is None or watchdog.expired:
            raise self._timed_out()
        # urllib3 makes NewConnectionError (refused, unreachable) a subclass of its timeout errors: test it first.
        if isinstance(last_error, NewConnectionError):
            raise UpstreamError(f"the image URL could not be reached ({type(last_error).__name__})")
        if isinstance(last_error, urllib3.exceptions.TimeoutError):
            # Reads wait for the rest of the deadline, which has not passed: this was the connect timeout, which
            # urllib3 also applies to the TLS handshake.
            raise UpstreamTimeout(
                f"the image URL's server did not complete the connection (TCP and TLS) within "
                f"{self.settings.connect_timeout_s:g} s"
            )
        raise UpstreamError(f"the image URL could not be reached ({type(last_error).__name__})")

    def _pool(
        self, target: Target, address: IPAddress, timeout: urllib3.Timeout, watchdog: Watchdog
    ) -> urllib3.HTTPConnectionPool:
        if target.scheme == "https":
            # Connect to the checked address, but send SNI for and verify the certificate against the host name.
            pool: urllib3.HTTPConnectionPool = urllib3.HTTPSConnectionPool(
                str(address),
                target.port,
                timeout=timeout,
                maxsize=1,
                server_hostname=target.host,
                assert_hostname=target.host,
                cert_reqs="CERT_REQUIRED",
                ca_certs=self.settings.ca_bundle_path,
                watchdog=watchdog,
            )
            pool.ConnectionCls = DeadlineHTTPSConnection
            return pool
        pool = urllib3.HTTPConnectionPool(str(address), target.port, timeout=timeout, maxsize=1, watchdog=watchdog)
        pool.ConnectionCls = DeadlineHTTPConnection
        return pool

    def _read_body(self, response: urllib3.BaseHTTPResponse, watchdog: Watchdog) -> bytes:
        max_bytes = self.settings.max_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise ImageTooLarge(f"the image is larger than the limit of {max_bytes:,} bytes")
        body = bytearray()
        try:
            while True:
                # read1 returns after one socket read (or one chunk), so a chunked body without Content-Length is
                # counted as it arrives; the watchdog ends a read that the deadline overtakes.
                chunk = response.read1(_CHUNK_BYTES)
                if watchdog.expired:
                    raise self._timed_out()
                if not chunk:
                    break
                body += chunk
                if len(body) > max_bytes:
                    raise ImageTooLarge(f"the image is larger than the limit of {max_bytes:,} bytes")
        except (HTTPError, OSError):
            if watchdog.expired:
                raise self._timed_out() from None
            raise UpstreamError("the image download was cut off by the server") from None
        return bytes(body)


def _redirect_target(current_url: str, location: str) -> str:
    try:
        return urljoin(current_url, location.strip())
    except ValueError:
        raise UpstreamError("the image URL redirected to an invalid URL") from None


def _ascii_host(host: str) -> str:
    """The host as the network sees it: internationalised names in their IDNA (UTS 46) ASCII form, and
    ASCII names with IDNA labels (`xn--`) checked to be valid ones.

    Raises:
        InvalidUrl: no host, or a name IDNA refuses.
    """
    if not host:
        raise InvalidUrl("the URL has no host")
    if host.isascii() and "xn--" not in host.lower():  # plain ASCII names and IP literals pass unchanged
        return host
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        raise InvalidUrl("the URL's host name is not a valid internationalised domain name") from None
