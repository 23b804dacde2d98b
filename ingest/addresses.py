"""``HOST:PORT`` addresses of the services ltgcast talks to or listens on (metrics, HTTP, Redis, Kafka)."""

from __future__ import annotations

from ingest.errors import ConfigError


def parse_address(text: str, flag: str) -> tuple[str, int]:
    """``HOST:PORT`` → ``(host, port)``, port 1..65535; :class:`~ingest.errors.ConfigError` naming ``flag`` otherwise.

    >>> parse_address("0.0.0.0:9100", "--metrics")
    ('0.0.0.0', 9100)
    >>> parse_address("9100", "--metrics")
    Traceback (most recent call last):
    ...
    ingest.errors.ConfigError: --metrics: expected HOST:PORT, found '9100'
    >>> parse_address("localhost:70000", "--http")
    Traceback (most recent call last):
    ...
    ingest.errors.ConfigError: --http: expected HOST:PORT with a port in 1..65535, found 'localhost:70000'
    """
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        msg = f"{flag}: expected HOST:PORT, found {text!r}"
        raise ConfigError(msg)
    if not 0 < int(port) < 65536:
        msg = f"{flag}: expected HOST:PORT with a port in 1..65535, found {text!r}"
        raise ConfigError(msg)
    return host, int(port)
