"""``HOST:PORT`` addresses of the services ltgcast talks to or listens on (metrics, HTTP, Redis, Kafka).

An IPv6 host is written in brackets (``[::1]:6379``, RFC 3986); it is parsed by the standard library's
:func:`urllib.parse.urlsplit`, so ``(host, port)`` holds the bare host, and :func:`format_address` puts the
brackets back.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from foundation.errors import ConfigError


def parse_address(text: str, flag: str, *, listen: bool = False) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPV6]:PORT`` → ``(host, port)``; :class:`~foundation.errors.ConfigError` naming ``flag``.

    The port is 1..65535, or 0..65535 for an address to ``listen`` on (0: any free port).

    >>> parse_address("0.0.0.0:9100", "--metrics")
    ('0.0.0.0', 9100)
    >>> parse_address("[::1]:6379", "Redis address")
    ('::1', 6379)
    >>> parse_address("9100", "--metrics")
    Traceback (most recent call last):
    ...
    foundation.errors.ConfigError: --metrics: expected HOST:PORT, found '9100'
    >>> parse_address("::1:6379", "Redis")
    Traceback (most recent call last):
    ...
    foundation.errors.ConfigError: Redis: expected HOST:PORT (an IPv6 host in brackets, [::1]:6379), found '::1:6379'
    >>> parse_address("localhost:70000", "--http", listen=True)
    Traceback (most recent call last):
    ...
    foundation.errors.ConfigError: --http: expected HOST:PORT with a port in 0..65535, found 'localhost:70000'
    >>> parse_address("127.0.0.1:0", "--http", listen=True), parse_address("127.0.0.1:0", "Redis address")
    Traceback (most recent call last):
    ...
    foundation.errors.ConfigError: Redis address: expected HOST:PORT with a port in 1..65535, found '127.0.0.1:0'
    """
    if text.count(":") > 1 and not text.startswith("["):
        msg = f"{flag}: expected HOST:PORT (an IPv6 host in brackets, [::1]:6379), found {text!r}"
        raise ConfigError(msg)
    digits = text.rpartition(":")[2]
    try:
        host = urlsplit(f"//{text}").hostname  # the port is checked below, with its range in the message
    except ValueError:  # an unclosed bracket or an invalid IPv6 literal
        host = None
    if ":" not in text or not host or not digits.isdigit() or any(c in text for c in "/?#@ "):
        msg = f"{flag}: expected HOST:PORT, found {text!r}"
        raise ConfigError(msg)
    port = int(digits)
    lowest = 0 if listen else 1
    if not lowest <= port < 65536:
        msg = f"{flag}: expected HOST:PORT with a port in {lowest}..65535, found {text!r}"
        raise ConfigError(msg)
    return host, port


def format_address(host: str, port: int) -> str:
    """``(host, port)`` → the text :func:`parse_address` reads back (IPv6 hosts in brackets).

    >>> format_address("127.0.0.1", 8080), format_address("::1", 8080)
    ('127.0.0.1:8080', '[::1]:8080')
    """
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now at ``host`` (for benchmarks and tests that start servers).

    >>> 0 < free_port() < 65536
    True
    """
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
