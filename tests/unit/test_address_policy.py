"""Which resolved addresses the fetcher may connect to."""

from __future__ import annotations

import ipaddress

import pytest

from lambda_function.fetching.address_policy import embedded_ipv4, refusal_reason


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.255.0.9",
        "10.0.0.1",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "100.127.255.254",
        "0.0.0.0",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "192.0.0.8",
        "198.18.0.1",
        "192.0.2.1",
        "::1",
        "::",
        "fd00::1",
        "fe80::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b::7f00:1",
        "64:ff9b:1::a00:1",
        "2002:a9fe:a9fe::",
        "2002:7f00:1::",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        "::127.0.0.1",
        "2001:db8::1",
    ],
)
def test_non_global_addresses_are_refused(address):
    assert refusal_reason(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize(
    "address",
    [
        "93.184.215.14",
        "8.8.8.8",
        "1.1.1.1",
        "2606:4700:4700::1111",
        "2a00:1450:4001:80b::200e",
        "64:ff9b::808:808",
        "2002:808:808::1",
    ],
)
def test_global_unicast_addresses_are_allowed(address):
    assert refusal_reason(ipaddress.ip_address(address)) is None


def test_loopback_is_allowed_only_when_asked_and_nothing_else_with_it():
    assert refusal_reason(ipaddress.ip_address("127.0.0.1"), allow_loopback=True) is None
    assert refusal_reason(ipaddress.ip_address("::1"), allow_loopback=True) is None
    assert refusal_reason(ipaddress.ip_address("10.0.0.1"), allow_loopback=True) is not None
    assert refusal_reason(ipaddress.ip_address("::ffff:169.254.169.254"), allow_loopback=True) is not None


def test_ipv4_is_unwrapped_from_every_ipv6_transition_encoding():
    def inner(address: str) -> list[str]:
        return [str(a) for a in embedded_ipv4(ipaddress.IPv6Address(address))]

    assert inner("::ffff:169.254.169.254") == ["169.254.169.254"]
    assert inner("2002:a9fe:a9fe::") == ["169.254.169.254"]
    assert inner("64:ff9b::a9fe:a9fe") == ["169.254.169.254"]
    assert "10.0.0.1" in inner("2001:0:4136:e378:8000:63bf:f5ff:fffe")  # Teredo: client address is obfuscated
