"""The alert webhook: site-alert transitions POSTed as JSON to one URL, on a thread of its own.

Network code kept apart from the alert logic (:mod:`serve.alerts.states`), behind one
seam (:data:`Post`, a test double can replace it). What it promises:

* :meth:`WebhookSender.enqueue` never blocks and never raises: the caller (the
  alert runner) goes on at once. The queue is bounded (``queue`` messages); when
  full the *oldest* message is dropped (newer states matter more) and counted.
* One daemon thread delivers, in order. Each attempt has a timeout
  (``timeout_s``); a transport error, a timeout, a 5xx, 408 or 429 is retried
  with exponential back-off (``backoff_s`` doubling up to ``max_backoff_s``) for
  at most ``attempts`` attempts; any other answer outside 2xx (a 4xx, a
  redirect: never followed) is final. Outcomes are counted in
  ``ltgcast_alert_webhook_total{outcome=sent|failed|dropped}`` and each failure
  is logged once.
* No proxy from the environment (library code never reads ``os.environ``).
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from foundation.errors import ConfigError
from serve import metrics

log = logging.getLogger(__name__)

#: Statuses worth trying again (besides 5xx and transport errors).
RETRIED_STATUSES = frozenset({408, 429})
#: ``post(url, body, timeout_s) -> HTTP status``; raises ``OSError`` when no answer came (timeouts too).
Post = Callable[[str, bytes, float], int]


@dataclass(frozen=True)
class WebhookSettings:
    """Where and how hard to deliver."""

    url: str
    timeout_s: float = 5.0
    attempts: int = 5
    backoff_s: float = 1.0
    max_backoff_s: float = 16.0
    queue: int = 1000

    def __post_init__(self) -> None:
        check_webhook_url(self.url)
        if self.attempts < 1 or self.queue < 1 or not self.timeout_s > 0 or self.backoff_s < 0:
            msg = (f"webhook: expected attempts >= 1, queue >= 1, timeout_s > 0 and backoff_s >= 0; found "
                   f"{self.attempts}, {self.queue}, {self.timeout_s}, {self.backoff_s}")  # fmt: skip
            raise ConfigError(msg)


def check_webhook_url(url: str) -> str:
    """``url`` when it is an absolute http(s) URL; :class:`ConfigError` saying what was found otherwise.

    >>> check_webhook_url("https://ops.example.org/hooks/lightning")
    'https://ops.example.org/hooks/lightning'
    >>> check_webhook_url("ftp://example.org/x")
    Traceback (most recent call last):
    ...
    foundation.errors.ConfigError: --alert-webhook: expected an http:// or https:// URL with a host; found 'ftp://example.org/x'
    """
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
        parts = urlsplit("")
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok or any(c.isspace() for c in url):
        msg = f"--alert-webhook: expected an http:// or https:// URL with a host; found {url!r}"
        raise ConfigError(msg)
    if parts.username is not None or parts.password is not None:  # urllib cannot send them: every POST would fail
        msg = f"--alert-webhook: expected a URL without user:password@ (put a token in the path); found {shown(url)!r}"
        raise ConfigError(msg)
    return url


def shown(url: str) -> str:
    """What the logs may say of a webhook URL: scheme and host only (chat and paging URLs carry a secret path).

    >>> shown("https://hooks.example.com/services/T000/B000/XXXX")
    'https://hooks.example.com/…'
    """
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}{'' if parts.port is None else f':{parts.port}'}/…"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not a detour: a POST is never replayed elsewhere (or turned into a GET)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def http_post(url: str, body: bytes, timeout_s: float) -> int:
    """POST JSON ``body`` to ``url``; the answer's status (``OSError`` when none came within ``timeout_s``)."""
    headers = {"Content-Type": "application/json", "User-Agent": "ltgcast-alerts"}
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with _OPENER.open(request, timeout=timeout_s) as reply:
            reply.read(64 * 1024)
            return int(reply.status)
    except urllib.error.HTTPError as exc:  # an answer outside 2xx is still an answer
        exc.close()
        return int(exc.code)


class WebhookSender:
    """Delivers queued JSON messages to one URL from a daemon thread (see the module docstring).

    Parameters
    ----------
    settings
        The URL and the delivery limits.
    post
        The transport (:func:`http_post`; a test double can stand in).
    """

    def __init__(self, settings: WebhookSettings, post: Post | None = None) -> None:
        self.settings = settings
        self.post = post or http_post
        self._queue: deque[bytes] = deque()
        self._ready = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ltgcast-webhook", daemon=True)
        self.outcomes: dict[str, int] = {"sent": 0, "failed": 0, "dropped": 0}
        self._counting = threading.Lock()

    def enqueue(self, message: Mapping[str, Any]) -> None:
        """Queue one message (JSON-able); returns at once. The oldest message is dropped when the queue is full."""
        body = json.dumps(message, allow_nan=False, default=str).encode()
        with self._ready:
            if len(self._queue) >= self.settings.queue:
                self._queue.popleft()
                self._count("dropped")
                log.warning("webhook: the queue is full (%d); dropped the oldest message", self.settings.queue)
            self._queue.append(body)
            self._ready.notify()

    def pending(self) -> int:
        """Messages waiting (the one being delivered aside)."""
        with self._ready:
            return len(self._queue)

    def start(self) -> WebhookSender:
        """Start the delivery thread; return self."""
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop delivering (a back-off wait ends at once; an attempt in flight ends within its timeout)."""
        self._stop.set()
        with self._ready:
            self._ready.notify_all()
        if self._thread.ident is not None:
            self._thread.join(timeout=timeout_s)
        left = self.pending()
        if left:
            log.info("webhook: stopped with %d message(s) undelivered", left)

    def _next(self) -> bytes | None:
        with self._ready:
            while not self._queue and not self._stop.is_set():
                self._ready.wait()
            return None if self._stop.is_set() else self._queue.popleft()

    def _run(self) -> None:
        while (body := self._next()) is not None:
            try:
                self._count(self.deliver(body))
            except Exception:  # the thread must live on whatever one message does
                log.exception("webhook: delivering a message failed unexpectedly")
                self._count("failed")

    def deliver(self, body: bytes) -> str:
        """Try one message up to ``attempts`` times; ``"sent"`` or ``"failed"``."""
        s = self.settings
        wait, why = s.backoff_s, ""
        for attempt in range(1, s.attempts + 1):
            try:
                status = self.post(s.url, body, s.timeout_s)
            except OSError as exc:  # refused, reset, timed out: worth another try
                why = f"{type(exc).__name__}: {exc}"
            else:
                if 200 <= status < 300:
                    return "sent"
                why = f"HTTP {status}"
                if not (status >= 500 or status in RETRIED_STATUSES):
                    break
            if attempt == s.attempts or self._stop.wait(wait):
                break
            wait = min(wait * 2, s.max_backoff_s)
        log.warning("webhook: gave up on a message to %s after %d attempt(s) (%s)", shown(s.url), attempt, why)
        return "failed"

    def _count(self, outcome: str) -> None:
        with self._counting:
            self.outcomes[outcome] += 1
        metrics.ALERT_WEBHOOK.labels(outcome).inc()
