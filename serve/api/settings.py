"""The HTTP side's settings: :class:`ApiSettings` (routes' limits, admin token) and :class:`WebSettings` (the server).

Checked on construction, and light to import: ``ltgcast``'s flags take their defaults from them.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from foundation.errors import ConfigError
from foundation.settings import check_numbers


@dataclass(frozen=True)
class ApiSettings:
    """Limits and the admin token of the API."""

    admin_token: str = ""  # empty: the admin endpoints answer 403
    max_hours: float = 48.0  # longest history a list or point request may ask for
    cache_entries: int = 32  # rendered contours/PNGs kept in memory
    renderers: int = 2  # PNG/contour renderings at once; more wait up to render_wait_s, then get 503
    summary_entries: int = 20_000  # grid attributes kept in memory (a few hundred bytes each)
    max_vertices: int = 1_000_000  # a contour answer larger than this is refused (413): a noise field is not a forecast
    render_wait_s: float = 30.0

    def __post_init__(self) -> None:
        check_numbers(self, positive=("max_hours", "render_wait_s"),
                      counts=("cache_entries", "renderers", "summary_entries", "max_vertices"))  # fmt: skip


@dataclass(frozen=True)
class WebSettings:
    """Limits of the HTTP server (the defaults are what ``ltgcast run`` serves with)."""

    max_connections: int = 512  # open sockets; more are answered 503 and closed
    max_in_flight: int = 64  # requests being answered (probes aside); more are answered 503 with Retry-After
    threads: int = 16  # worker threads reading and rendering grid files
    header_timeout_s: float = 10.0  # a request line and headers must arrive within this
    body_timeout_s: float = 10.0  # and then its body within this (answered 408 otherwise)
    write_timeout_s: float = 30.0  # a client that reads nothing of its answer for this long is cut off
    keep_alive_s: int = 5  # an idle kept-alive connection is closed after this
    backlog: int = 1024  # connections the kernel queues before the server accepts them
    max_header_bytes: int = 16 * 1024  # request line + headers
    cors_origins: tuple[str, ...] = ()  # origins a browser may read the API from; empty: CORS off

    def __post_init__(self) -> None:
        check_numbers(self, positive=("header_timeout_s", "body_timeout_s", "write_timeout_s"),
                      counts=("max_connections", "max_in_flight", "threads", "backlog", "max_header_bytes",
                              "keep_alive_s"))  # fmt: skip
        for origin in self.cors_origins:
            check_origin(origin)


def check_origin(origin: str) -> None:
    """An origin as a browser sends it (``scheme://host[:port]``, no path, no trailing slash), or ``*`` for any.

    An origin written with a path or a slash is never matched (browsers send none), so CORS would be silently off.

    >>> check_origin("https://viewer.example.org:8443")
    >>> check_origin("https://viewer.example.org/")
    Traceback (most recent call last):
    ...
    foundation.errors.ConfigError: CORS origin: expected scheme://host[:port] (no path, no trailing slash) or *, found 'https://viewer.example.org/'
    >>> check_origin("http://[::1")
    Traceback (most recent call last):
    ...
    foundation.errors.ConfigError: CORS origin: expected scheme://host[:port] (no path, no trailing slash) or *, found 'http://[::1'
    """
    if origin != "*" and not _is_origin(origin):
        msg = f"CORS origin: expected scheme://host[:port] (no path, no trailing slash) or *, found {origin!r}"
        raise ConfigError(msg)


def _is_origin(text: str) -> bool:
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError:  # an unclosed [IPv6 bracket, a port that is no number or out of range
        return False
    bare = parts.netloc == text.partition("://")[2] and "@" not in parts.netloc  # no path, query or userinfo
    return bare and parts.scheme in ("http", "https") and bool(parts.hostname) and port != 0
