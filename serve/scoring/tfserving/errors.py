"""What failed, in the ``tfserving`` scorer's words: which failures are retried, how each is described and counted.

``grpc`` and urllib errors stay foreign here; :meth:`TFServingScorer._tile
<serve.scoring.tfserving.scorer.TFServingScorer._tile>` translates them into
``foundation.errors`` at the one boundary, with :func:`describe` and
:func:`error_reason`.
"""

from __future__ import annotations

import urllib.error
from http.client import HTTPException
from typing import Any

import grpc  # type: ignore[import-untyped]

from foundation.errors import BadInput, BadOutput, CircuitOpen, LtgcastError, RestError, ScoringError

TFSERVING = "tfserving"  # the ``backend`` label of this scorer's metrics
RETRYABLE_GRPC = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"})
RETRYABLE_HTTP = frozenset({429, 503, 504})
#: Failure reasons that say "not now" rather than "never" (:class:`~foundation.errors.ScoringUnavailable`).
TRANSIENT_REASONS = frozenset({"unavailable", "deadline_exceeded", "resource_exhausted", "circuit_open"})
#: gRPC status code / TF Serving REST status → the ``reason`` of ``ltgcast_scorer_errors_total`` (others: ``other``).
_GRPC_REASONS = {
    "UNAVAILABLE": "unavailable",
    "DEADLINE_EXCEEDED": "deadline_exceeded",
    "RESOURCE_EXHAUSTED": "resource_exhausted",
    "INVALID_ARGUMENT": "invalid_argument",
}
_HTTP_REASONS = {503: "unavailable", 504: "deadline_exceeded", 429: "resource_exhausted", 400: "invalid_argument"}


def grpc_code(exc: BaseException) -> Any:
    """The ``grpc.StatusCode`` of a gRPC error (``None`` for anything else)."""
    code = getattr(exc, "code", None)
    return code() if isinstance(exc, grpc.RpcError) and callable(code) else None


def grpc_retryable(exc: BaseException) -> bool:
    """Whether a gRPC error is worth another try: ``UNAVAILABLE``, ``DEADLINE_EXCEEDED``, ``RESOURCE_EXHAUSTED``."""
    code = grpc_code(exc)
    return code is not None and code.name in RETRYABLE_GRPC


def http_retryable(exc: BaseException) -> bool:
    """Whether a REST failure is worth another try: HTTP 429, 503, 504, or the transport itself failing."""
    if isinstance(exc, RestError):
        return exc.status in RETRYABLE_HTTP
    return True  # refused, reset, timed out, cut short: the transport, not the request


def describe(exc: BaseException) -> str:
    """One line on what failed, from a gRPC error, an HTTP error or anything else.

    >>> describe(RestError(503, "busy")), describe(TimeoutError("timed out"))
    ('HTTP 503: busy', 'TimeoutError: timed out')
    """
    code = grpc_code(exc)
    if code is not None:
        return f"gRPC {code.name}: {exc.details()}"  # type: ignore[attr-defined]
    if isinstance(exc, RestError):
        return str(exc)
    if isinstance(exc, urllib.error.URLError):
        return f"REST transport: {exc.reason}"
    return f"{type(exc).__name__}: {exc}"


def error_reason(exc: BaseException) -> str:
    """The ``reason`` of ``ltgcast_scorer_errors_total`` for a failed call: what failed last.

    A :class:`~foundation.errors.ScoringError` is judged by its cause. gRPC codes
    ``UNAVAILABLE``, ``DEADLINE_EXCEEDED``, ``RESOURCE_EXHAUSTED`` and
    ``INVALID_ARGUMENT`` (REST: 503, 504, 429, 400) give their names in lower
    case; an open breaker ``circuit_open``; refused input ``invalid_argument``;
    an answer that does not decode or has the wrong shape, version or values
    (:class:`~foundation.errors.BadOutput`, and any other ``ValueError`` that is
    not an :class:`~foundation.errors.LtgcastError`) ``bad_output``; a REST transport that timed out
    ``deadline_exceeded``, one that failed otherwise (refused, reset) ``unavailable``; anything else
    (another code or status, a label moved to an incompatible version) ``other``.

    >>> error_reason(RestError(503, "busy")), error_reason(ScoringError("x")), error_reason(CircuitOpen("x"))
    ('unavailable', 'other', 'circuit_open')
    """
    cause = exc.__cause__ if isinstance(exc, ScoringError) and exc.__cause__ is not None else exc
    code = grpc_code(cause)
    if code is not None:
        return _GRPC_REASONS.get(code.name, "other")
    if isinstance(cause, RestError):
        return _HTTP_REASONS.get(cause.status, "other")
    if isinstance(cause, CircuitOpen):
        return "circuit_open"
    if isinstance(cause, BadInput):
        return "invalid_argument"
    if isinstance(cause, BadOutput):
        return "bad_output"
    if isinstance(cause, ValueError) and not isinstance(cause, LtgcastError):  # a decode error; ConfigError: other
        return "bad_output"
    if isinstance(cause, TimeoutError) or isinstance(getattr(cause, "reason", None), TimeoutError):
        return "deadline_exceeded"  # urllib wraps a connect time-out in URLError(reason=TimeoutError)
    return "unavailable" if isinstance(cause, OSError | HTTPException) else "other"
