"""Which IP addresses the URL fetcher may connect to.

Only globally routable unicast addresses pass. `ipaddress`'s `is_global` is the base test (`is_private`
misses the carrier-grade NAT range 100.64.0.0/10); on top of it, IPv6 addresses that carry an IPv4 address
inside them (IPv4-mapped, IPv4-compatible, 6to4, NAT64, Teredo) are unwrapped and the IPv4 address checked
too, since a gateway on the path would deliver the packet to that IPv4 address.
"""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# RFC 6052 well-known prefix: the IPv4 address is in the last 32 bits. The RFC 8215 local-use prefix
# 64:ff9b:1::/48 belongs to an operator's own network and is refused whole (see _SPECIAL_PURPOSE).
_NAT64_PREFIXES = (ipaddress.IPv6Network("64:ff9b::/96"),)
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
# IANA special-purpose blocks refused whatever this Python's `is_global` table says: older 3.11 patch releases
# (before the CVE-2024-4032 fix) call parts of 192.0.0.0/24 and 2001::/23 global.
_SPECIAL_PURPOSE = tuple(
    ipaddress.ip_network(block)
    for block in (
        "0.0.0.0/8",
        "100.64.0.0/10",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "64:ff9b:1::/48",
        "100::/64",
        "2001::/23",
        "2001:db8::/32",
        "5f00::/16",
    )
)


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
        if any(address in prefix for prefix in _NAT64_PREFIXES):
            return None  # a NAT64 gateway reaches the (allowed) IPv4 address inside; the prefix itself is "reserved"
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
    if not address.is_global or any(address in block for block in _SPECIAL_PURPOSE if block.version == address.version):
        return "not a globally routable address"
    return None
