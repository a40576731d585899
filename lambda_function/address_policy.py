"""Which IP addresses the URL fetcher may connect to.

Only globally routable unicast addresses pass. `ipaddress`'s `is_global` is the base test (`is_private`
misses the carrier-grade NAT range 100.64.0.0/10); on top of it, IPv6 addresses that carry an IPv4 address
inside them (IPv4-mapped, IPv4-compatible, 6to4, NAT64, Teredo) are unwrapped and the IPv4 address checked
too, since a gateway on the path would deliver the packet to that IPv4 address.
"""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# RFC 6052 well-known prefix and RFC 8215 local-use prefix: the IPv4 address is in the last 32 bits.
_NAT64_PREFIXES = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries, in every encoding a router might honour."""
    found: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    if any(address in prefix for prefix in _NAT64_PREFIXES) or address in _IPV4_COMPATIBLE:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def refusal_reason(address: IPAddress, *, allow_loopback: bool = False) -> str | None:
    """Why the fetcher must not connect to `address`, or None when it may.

    Args:
        address: a resolved address.
        allow_loopback: let 127.0.0.0/8 and ::1 through (the tests' own servers; never in production).
    """
    if allow_loopback and address.is_loopback:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return "a scoped (link-local) IPv6 address"
        for inner in embedded_ipv4(address):
            reason = refusal_reason(inner, allow_loopback=allow_loopback)
            if reason is not None:
                return f"an IPv6 address wrapping {inner}, {reason}"
    if address.is_multicast:
        return "a multicast address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address (this includes the cloud metadata service)"
    if address.is_reserved:
        return "a reserved address"
    if not address.is_global:
        return "not a globally routable address"
    return None
