"""``HOST:PORT`` addresses of the services ltgcast talks to or listens on (metrics, HTTP, Redis, Kafka)."""

from __future__ import annotations

from ingest.errors import ConfigError


def parse_address(text: str, flag: str, *, listen: bool = False) -> tuple[str, int]:
    """``HOST:PORT`` → ``(host, port)``; :class:`~ingest.errors.ConfigError` naming ``flag`` otherwise.

    The port is 1..65535, or 0..65535 for an address to ``listen`` on (0: any free port).

    >>> parse_address("0.0.0.0:9100", "--metrics")
    ('0.0.0.0', 9100)
    >>> parse_address("9100", "--metrics")
    Traceback (most recent call last):
    ...
    ingest.errors.ConfigError: --metrics: expected HOST:PORT, found '9100'
    >>> parse_address("localhost:70000", "--http", listen=True)
    Traceback (most recent call last):
    ...
    ingest.errors.ConfigError: --http: expected HOST:PORT with a port in 0..65535, found 'localhost:70000'
    >>> parse_address("127.0.0.1:0", "--http", listen=True), parse_address("127.0.0.1:0", "Redis address")
    Traceback (most recent call last):
    ...
    ingest.errors.ConfigError: Redis address: expected HOST:PORT with a port in 1..65535, found '127.0.0.1:0'
    """
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        msg = f"{flag}: expected HOST:PORT, found {text!r}"
        raise ConfigError(msg)
    lowest = 0 if listen else 1
    if not lowest <= int(port) < 65536:
        msg = f"{flag}: expected HOST:PORT with a port in {lowest}..65535, found {text!r}"
        raise ConfigError(msg)
    return host, int(port)
