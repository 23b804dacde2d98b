"""The ``tfserving`` scorer: a frame's tiles scored by TensorFlow Serving over gRPC, with REST as the fallback.

What it sends
-------------
The frame is cut exactly as :class:`serve.scoring.EmbeddedScorer` cuts it
(:func:`serve.scoring.tile_windows` over the frame ringed with its 32-pixel
halo), so both give the same grid. Each tile is one ``PredictRequest``:

* ``model_spec.name`` — the model (the card's ``name``, or ``settings.model``);
* ``model_spec.version`` — the version folder's number, or
  ``model_spec.version_label`` (``stable``, ``canary``) when ``settings.label``
  is set;
* ``model_spec.signature_name`` — ``serving_default`` (input ``tile`` float32
  ``[1, h + 64, w + 64, C]``), or ``serving_float16`` (the same tile as float16,
  half the bytes) when ``settings.transport`` is ``float16`` and the model
  card's ``"transport"`` list allows it;
* output ``probability`` ``[1, h, w]``, read from ``tensor_content`` or from the
  typed value fields TF Serving fills by default.

Versions
--------
A labelled scorer sends the label with the first tile of each frame, reads the
version that answered from the response's ``model_spec``, and pins the frame's
other tiles to that version, so one grid never mixes two versions and
:attr:`TFServingScorer.version` is the version that produced it. The label is
resolved once when the scorer is built (an unknown label is bad configuration).
TF Serving's REST responses do not say which version answered, so over REST a
labelled scorer asks for the last version gRPC resolved
(``/versions/N``), never for the label.

Failures
--------
Every request has a deadline (``timeout_s``). ``UNAVAILABLE``,
``DEADLINE_EXCEEDED`` and ``RESOURCE_EXHAUSTED`` (REST: 503, 504, 429 and
connection failures) are retried with exponential backoff; other answers
(``NOT_FOUND``, ``INVALID_ARGUMENT``, ``FAILED_PRECONDITION``…) are not, since
the same request would get the same answer. Each transport has a
:class:`CircuitBreaker`: after ``breaker_failures`` consecutive retryable
failures it opens and calls fail at once; after ``breaker_cooldown_s`` one trial
call goes through (half-open) and its outcome closes or re-opens it. When gRPC
fails with a retryable code, or its breaker is open, and ``rest`` is set, the
tile goes over REST instead. Clock and sleep are injected.

Metrics
-------
``ltgcast_scorer_errors_total{backend="tfserving", reason}`` counts each
:meth:`TFServingScorer.score` call that raises, once, after the retries and the
REST fallback: per frame, as the worker sees it, not per tile (a frame of 40
tiles with the server down is one error, not 40). The reason is that of the
error the call raised (:func:`error_reason`: the gRPC code, or the HTTP status
when REST failed last, ``circuit_open``, ``bad_output`` for an answer that does
not decode, has the wrong shape or version, or holds NaN/inf). The reasons are
created at 0 when a scorer is built. ``ltgcast_scorer_circuit_state{backend=
"tfserving", transport="grpc"|"rest"}`` (0 closed, 1 half-open, 2 open) is set
when the scorer is built and whenever a breaker's state changes on a call
(``rest`` only when a REST URL is set). An open breaker turns half-open when
its cool-down ends, but the gauge shows it at the next call, the trial. The
gauge has no role label: it is the state of the one TF Serving scorer a
process builds (``ltgcast run --scorer tfserving`` refuses ``--shadow`` and
model watching, so there is no second one); a process that builds several
shows the last change of any of them.

Errors::

    ValueError     the input is not [H, W, C] finite float32 (nothing is sent)
    ConfigError    settings the model card does not allow (transport), or out of range
    ScoringError   the server or the transport failed (translated from grpc and
                   urllib errors in one place, TFServingScorer._tile, naming model,
                   target and what failed, chained with ``from``); or a label moved
                   to a version whose card (when in the local repository) names
                   another feature set; or the answer is not a finite
                   probability of the tile's shape (cause: ``foundation.errors.BadOutput``)
    ModelRejected  set_version_labels: the server refused the new labels, or a
                   version did not become AVAILABLE in time (its own boundary)

The gRPC message limit is raised to ``max_message_mb`` both ways (a 512 × 512
float32 tile of two channels with its halo is 2.7 MB; gRPC's default limit is
4 MB).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import Any, Protocol, TypeVar

import grpc  # type: ignore[import-untyped]
import numpy as np
from numpy.typing import NDArray
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2

from featurize.channels import FeatureSet, get_feature_set, with_halo
from foundation.errors import (
    BadInput,
    BadOutput,
    CircuitOpen,
    ConfigError,
    LabelUnresolved,
    LtgcastError,
    ModelRejected,
    RestError,
    ScoringError,
    ScoringUnavailable,
)
from monitor.metrics import SCORER_CIRCUIT
from serve.scoring import (
    DEFAULT_TFSERVING,
    HALO,
    ScorerSettings,
    check_input,
    check_output,
    counting_failures,
    read_card,
    tile_windows,
    zero_error_counts,
)

log = logging.getLogger(__name__)

F32 = NDArray[np.float32]
T = TypeVar("T")

#: Transport dtype → the signature that takes it (models.export writes ``serving_float16`` on request).
SIGNATURES = {"float32": "serving_default", "float16": "serving_float16"}
#: The model card key listing the transports a version allows; absent means float32 only.
CARD_TRANSPORT_KEY = "transport"
RETRYABLE_GRPC = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"})
#: Failure reasons that say "not now" rather than "never" (:class:`~foundation.errors.ScoringUnavailable`).
TRANSIENT_REASONS = frozenset({"unavailable", "deadline_exceeded", "resource_exhausted", "circuit_open"})
RETRYABLE_HTTP = frozenset({429, 503, 504})
TFSERVING = "tfserving"  # the ``backend`` label of this scorer's metrics
#: Breaker state → the value of ``ltgcast_scorer_circuit_state``.
CIRCUIT_STATES = {"closed": 0, "half-open": 1, "open": 2}
#: gRPC status code / TF Serving REST status → the ``reason`` of ``ltgcast_scorer_errors_total`` (others: ``other``).
_GRPC_REASONS = {
    "UNAVAILABLE": "unavailable",
    "DEADLINE_EXCEEDED": "deadline_exceeded",
    "RESOURCE_EXHAUSTED": "resource_exhausted",
    "INVALID_ARGUMENT": "invalid_argument",
}
_HTTP_REASONS = {503: "unavailable", 504: "deadline_exceeded", 429: "resource_exhausted", 400: "invalid_argument"}
_DTYPES: dict[str, np.dtype[Any]] = {"float32": np.dtype(np.float32), "float16": np.dtype(np.float16)}
_PROTO_DTYPES: dict[int, np.dtype[Any]] = {types_pb2.DT_FLOAT: np.dtype("<f4"), types_pb2.DT_HALF: np.dtype("<f2")}


@dataclass(frozen=True)
class TFServingSettings:
    """Where TF Serving is and how the scorer talks to it."""

    target: str = DEFAULT_TFSERVING  # gRPC host:port
    rest: str = ""  # REST base URL for the fallback, e.g. http://127.0.0.1:8501; "" = no fallback
    model: str = ""  # model name on the server; "" = the card's name (the repository folder)
    label: str = ""  # version label; "" = the version folder's number
    tile: int = 512  # output pixels per tile side; 0 = the whole frame in one request
    transport: str = "float32"  # tile dtype on the wire: float32, or float16 where the card allows it
    timeout_s: float = 10.0  # deadline of one request
    concurrency: int = 4  # requests in flight at once
    retries: int = 2  # further attempts after a retryable failure
    backoff_s: float = 0.05  # first backoff; doubled after each retry
    backoff_max_s: float = 2.0
    breaker_failures: int = 5  # consecutive retryable failures that open a breaker
    breaker_cooldown_s: float = 30.0  # open → half-open after this long
    max_message_mb: int = 64  # gRPC send and receive limit

    def __post_init__(self) -> None:
        checks = [
            (self.transport in _DTYPES, f"transport must be one of {sorted(_DTYPES)}, got {self.transport!r}"),
            (self.timeout_s > 0, f"timeout_s must be > 0, got {self.timeout_s}"),
            (self.concurrency >= 1, f"concurrency must be >= 1, got {self.concurrency}"),
            (self.retries >= 0, f"retries must be >= 0, got {self.retries}"),
            (self.backoff_s >= 0 and self.backoff_max_s >= 0, "backoff_s and backoff_max_s must be >= 0"),
            (self.breaker_failures >= 1, f"breaker_failures must be >= 1, got {self.breaker_failures}"),
            (self.max_message_mb >= 1, f"max_message_mb must be >= 1, got {self.max_message_mb}"),
            (not self.rest or _is_http(self.rest), f"rest must be an http(s) URL, got {self.rest!r}"),
        ]
        problems = [problem for ok, problem in checks if not ok]
        if problems:
            msg = "tfserving settings: " + "; ".join(problems)
            raise ConfigError(msg)

    @classmethod
    def from_scorer_settings(cls, settings: ScorerSettings) -> TFServingSettings:
        """The fields :class:`serve.scoring.ScorerSettings` carries; the rest keep their defaults."""
        return cls(
            target=settings.target,
            rest=settings.rest,
            label=settings.label,
            tile=settings.tile,
            transport=settings.transport,
            timeout_s=settings.timeout_s,
            concurrency=settings.concurrency,
        )


def _is_http(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


# -- tensors on the wire ------------------------------------------------------------------


def tensor_proto(array: NDArray[Any]) -> Any:
    """A float32 or float16 array as a ``TensorProto`` (little-endian ``tensor_content``)."""
    dtype = {np.dtype(np.float32): types_pb2.DT_FLOAT, np.dtype(np.float16): types_pb2.DT_HALF}[array.dtype]
    proto = tensor_pb2.TensorProto(dtype=dtype)
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    proto.tensor_content = np.ascontiguousarray(array, _PROTO_DTYPES[dtype]).tobytes()
    return proto


def from_tensor_proto(proto: Any) -> NDArray[Any]:
    """A float32 or float16 ``TensorProto`` as an array, from ``tensor_content`` or the typed value fields.

    Raises
    ------
    foundation.errors.BadOutput
        Another dtype, or a value count that does not fit the shape (a ``ValueError``).
    """
    if proto.dtype not in _PROTO_DTYPES:
        msg = f"expected a DT_FLOAT or DT_HALF tensor, found dtype enum {proto.dtype}"
        raise BadOutput(msg)
    dtype = _PROTO_DTYPES[proto.dtype]
    shape = tuple(int(d.size) for d in proto.tensor_shape.dim)
    size = int(np.prod(shape, dtype=np.int64))
    if proto.tensor_content:
        if len(proto.tensor_content) % dtype.itemsize:
            msg = f"tensor_content of {len(proto.tensor_content)} bytes is not whole {dtype.itemsize}-byte values"
            raise BadOutput(msg)
        values = np.frombuffer(proto.tensor_content, dtype)
    elif proto.dtype == types_pb2.DT_FLOAT:
        values = np.asarray(proto.float_val, dtype)
    else:  # DT_HALF values travel as their 16 bits in int32 fields
        values = np.asarray(proto.half_val, np.int32).astype(np.uint16).view(dtype)
    if 0 < values.size < size and not proto.tensor_content:  # TensorFlow's convention: the last value repeats
        values = np.concatenate([values, np.full(size - values.size, values[-1], dtype)])
    if values.size != size:
        msg = f"tensor of shape {shape} holds {values.size} values"
        raise BadOutput(msg)
    return values.reshape(shape).astype(dtype.newbyteorder("="))


# -- failure handling ----------------------------------------------------------------------


class CircuitBreaker:
    """Consecutive failures open it; after a cool-down one trial call decides (thread-safe).

    ``on_change`` hears the state when the breaker is built and each time a call
    (:meth:`allow`, :meth:`success`, :meth:`failure`) finds it changed; it is
    called under the breaker's lock, so in order, and must not call the breaker.

    >>> now, seen = [0.0], []
    >>> breaker = CircuitBreaker(failures=2, cooldown_s=10.0, clock=lambda: now[0], on_change=seen.append)
    >>> breaker.failure(); breaker.failure(); breaker.state
    'open'
    >>> breaker.allow()
    False
    >>> now[0] = 10.0; breaker.state, breaker.allow(), breaker.allow()
    ('half-open', True, False)
    >>> breaker.success(); breaker.state
    'closed'
    >>> seen
    ['closed', 'open', 'half-open', 'closed']
    """

    def __init__(
        self,
        failures: int,
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        self.failures = failures
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._consecutive = 0
        self._opened_at: float | None = None
        self._trial = False
        self._told = ""
        with self._lock:
            self._tell()

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half-open``."""
        with self._lock:
            return self._state()

    def _state(self) -> str:
        if self._opened_at is None:
            return "closed"
        return "open" if self._clock() - self._opened_at < self.cooldown_s else "half-open"

    def _tell(self) -> None:
        """Pass the state to ``on_change`` if it is not the one told last (hold the lock)."""
        state = self._state()
        if state != self._told:
            self._told = state
            if self._on_change is not None:
                self._on_change(state)

    def allow(self) -> bool:
        """Whether a call may go now (half-open: the one trial call only)."""
        with self._lock:
            state = self._state()
            allowed = state == "closed" or (state == "half-open" and not self._trial)
            if state == "half-open" and allowed:
                self._trial = True
            self._tell()
            return allowed

    def success(self) -> None:
        """The server answered: close."""
        with self._lock:
            self._consecutive, self._opened_at, self._trial = 0, None, False
            self._tell()

    def failure(self) -> None:
        """A retryable failure: count it; open at the limit, or at once after a failed trial."""
        with self._lock:
            self._consecutive += 1  # only a success resets it, so a failed trial re-opens at once
            if self._consecutive >= self.failures:
                if self._opened_at is None or self._trial:
                    log.warning("circuit breaker opens after %d consecutive failures", self._consecutive)
                self._opened_at, self._trial = self._clock(), False
            self._tell()


def _circuit_gauge(transport: str) -> Callable[[str], None]:
    """An ``on_change`` that exports a breaker's state as ``ltgcast_scorer_circuit_state{tfserving, transport}``."""
    gauge = SCORER_CIRCUIT.labels(TFSERVING, transport)
    return lambda state: gauge.set(CIRCUIT_STATES[state])


def backoff_delays(retries: int, first_s: float, max_s: float) -> list[float]:
    """The waits before each retry: ``first_s`` doubled each time, capped at ``max_s``.

    >>> backoff_delays(4, 0.1, 0.5)
    [0.1, 0.2, 0.4, 0.5]
    """
    return [min(max_s, first_s * 2.0**attempt) for attempt in range(retries)]


class _Retrying:
    """Calls through one breaker, retrying the failures ``retryable`` picks out."""

    def __init__(
        self,
        breaker: CircuitBreaker,
        errors: tuple[type[BaseException], ...],
        retryable: Callable[[BaseException], bool],
        delays: Sequence[float],
        sleep: Callable[[float], None],
    ) -> None:
        self.breaker = breaker
        self._errors = errors
        self._retryable = retryable
        self._delays = delays
        self._sleep = sleep

    def call(self, fn: Callable[[], T], what: str) -> T:
        attempt = 0
        while True:
            if not self.breaker.allow():
                msg = f"circuit breaker open ({self.breaker.failures} consecutive failures); {what} not sent"
                raise CircuitOpen(msg)
            try:
                result = fn()
            except self._errors as exc:
                if not self._retryable(exc):
                    self.breaker.success()  # the server is up and answered
                    raise
                self.breaker.failure()
                if attempt >= len(self._delays):
                    raise
                log.warning("%s failed (%s); retrying in %.3g s", what, _describe(exc), self._delays[attempt])
                self._sleep(self._delays[attempt])
                attempt += 1
            except BaseException:
                # Anything else (a closed channel's ValueError, an interrupt) is a failure too: the call ends
                # here, and a half-open breaker must never wait forever for the outcome of its trial call.
                self.breaker.failure()
                raise
            else:
                self.breaker.success()
                return result


def _grpc_code(exc: BaseException) -> Any:
    """The ``grpc.StatusCode`` of a gRPC error (``None`` for anything else)."""
    code = getattr(exc, "code", None)
    return code() if isinstance(exc, grpc.RpcError) and callable(code) else None


def _grpc_retryable(exc: BaseException) -> bool:
    code = _grpc_code(exc)
    return code is not None and code.name in RETRYABLE_GRPC


def _http_retryable(exc: BaseException) -> bool:
    if isinstance(exc, RestError):
        return exc.status in RETRYABLE_HTTP
    return True  # refused, reset, timed out, cut short: the transport, not the request


def _describe(exc: BaseException) -> str:
    """One line on what failed, from a gRPC error, an HTTP error or anything else."""
    code = _grpc_code(exc)
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
    code = _grpc_code(cause)
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


# -- the two transports --------------------------------------------------------------------


class PredictStub(Protocol):
    """The one call of ``PredictionServiceStub`` the scorer makes (a seam for doubles)."""

    def Predict(self, request: Any, timeout: float | None = None) -> Any:  # gRPC names its methods so
        """Send one ``PredictRequest``; return its ``PredictResponse`` or raise ``grpc.RpcError``."""
        ...


@dataclass(frozen=True)
class _Ask:
    """One tile's request: which version (pinned) or label, which signature."""

    tile: NDArray[Any]
    signature: str
    version: int | None
    label: str


class _Grpc:
    def __init__(self, model: str, stub: PredictStub, timeout_s: float) -> None:
        self.model, self.stub, self.timeout_s = model, stub, timeout_s

    def send(self, ask: _Ask) -> Any:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.model
        request.model_spec.signature_name = ask.signature
        if ask.version is not None:
            request.model_spec.version.value = ask.version
        else:
            request.model_spec.version_label = ask.label
        request.inputs["tile"].CopyFrom(tensor_proto(ask.tile[None]))
        return self.stub.Predict(request, timeout=self.timeout_s)

    @staticmethod
    def decode(response: Any) -> tuple[NDArray[Any], int | None]:
        if "probability" not in response.outputs:
            msg = f"the response has no 'probability' output; outputs: {sorted(response.outputs)}"
            raise BadOutput(msg)
        version = response.model_spec.version.value if response.model_spec.HasField("version") else None
        return from_tensor_proto(response.outputs["probability"]), version


class _Rest:
    def __init__(self, model: str, url: str, timeout_s: float) -> None:
        self.model, self.url, self.timeout_s = model, url.rstrip("/"), timeout_s

    def send(self, tile: NDArray[Any], signature: str, version: int) -> bytes:
        url = f"{self.url}/v1/models/{urllib.parse.quote(self.model, safe='')}/versions/{version}:predict"
        body = json.dumps({"signature_name": signature, "inputs": {"tile": tile[None].tolist()}})
        request = urllib.request.Request(
            url, body.encode("utf-8"), headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as reply:
                data: bytes = reply.read()
        except urllib.error.HTTPError as exc:  # keep TF Serving's {"error": ...} text
            raise RestError(exc.code, _error_text(exc) or str(exc.reason)) from exc
        return data

    @staticmethod
    def decode(data: bytes) -> NDArray[Any]:
        try:
            doc = json.loads(data)
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
            msg = f"the REST answer is not JSON: {exc}"
            raise BadOutput(msg) from exc
        outputs = doc.get("outputs") if isinstance(doc, dict) else None
        if isinstance(outputs, dict):  # several named outputs come as an object
            outputs = outputs.get("probability")
        if outputs is None:
            msg = "the REST answer has no columnar 'outputs' probability"
            raise BadOutput(msg)
        try:
            return np.asarray(outputs, np.float32)
        except ValueError as exc:  # ragged lists, strings
            msg = f"the REST 'outputs' are not an array of numbers: {exc}"
            raise BadOutput(msg) from exc


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        doc = json.loads(exc.read() or b"{}")
    except (OSError, ValueError):
        return ""
    return str(doc.get("error", "")) if isinstance(doc, dict) else ""


def _probability(values: NDArray[Any], rows: int, cols: int) -> F32:
    if values.shape != (1, rows, cols):
        msg = f"expected probability of shape (1, {rows}, {cols}), found {values.shape}"
        raise BadOutput(msg)
    return check_output(values[0], rows, cols)


# -- the scorer ---------------------------------------------------------------------------


def _grpc_options(max_message_mb: int) -> list[tuple[str, int]]:
    size = max_message_mb * 2**20
    return [("grpc.max_send_message_length", size), ("grpc.max_receive_message_length", size)]


class TFServingScorer:
    """Scores frames with one model served by TensorFlow Serving (see the module docstring)."""

    def __init__(
        self,
        version_path: Path,
        settings: TFServingSettings | None = None,
        *,
        stub: PredictStub | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings or TFServingSettings()
        self._repository = version_path.parent
        self.card = read_card(version_path)
        self.name = self.settings.model or str(self.card.get("name", version_path.parent.name))
        self.version = int(version_path.name)
        self.feature_set: FeatureSet = get_feature_set(self.card["feature_set"])
        self._check_transport(self.card, self.version)
        self.signature = SIGNATURES[self.settings.transport]
        self.served_by: Counter[str] = Counter()  # tiles of the last frame per transport (grpc, rest)
        self._resolved: int | None = None if self.settings.label else self.version
        self._channel = None
        if stub is None:
            self._channel = grpc.insecure_channel(
                self.settings.target, options=_grpc_options(self.settings.max_message_mb)
            )
            stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._grpc = _Grpc(self.name, stub, self.settings.timeout_s)
        self._rest = _Rest(self.name, self.settings.rest, self.settings.timeout_s) if self.settings.rest else None
        delays = backoff_delays(self.settings.retries, self.settings.backoff_s, self.settings.backoff_max_s)
        zero_error_counts(TFSERVING)
        breaker = (self.settings.breaker_failures, self.settings.breaker_cooldown_s, clock)
        self.grpc_breaker = CircuitBreaker(*breaker, on_change=_circuit_gauge("grpc"))
        self.rest_breaker = CircuitBreaker(*breaker, on_change=_circuit_gauge("rest") if self._rest else None)
        self._grpc_calls = _Retrying(self.grpc_breaker, (grpc.RpcError,), _grpc_retryable, delays, sleep)
        self._rest_calls = _Retrying(self.rest_breaker, (OSError, HTTPException), _http_retryable, delays, sleep)
        self._pool = ThreadPoolExecutor(self.settings.concurrency, thread_name_prefix="tfserving")
        if self.settings.label:  # bad labels are bad configuration: found now, not at the first frame
            self.version = self._resolve_label()
            log.info("tfserving: %s label %r is version %d", self.name, self.settings.label, self.version)

    def _check_transport(self, card: Mapping[str, Any], version: int) -> None:
        allowed = card.get(CARD_TRANSPORT_KEY, ["float32"])
        if self.settings.transport not in allowed:
            msg = (
                f"{self.name} v{version} allows transport {allowed} (model card key {CARD_TRANSPORT_KEY!r}); "
                f"settings ask for {self.settings.transport!r}"
            )
            raise ConfigError(msg)

    def _resolve_label(self) -> int:
        channels = len(self.feature_set.channels)
        probe = np.zeros((1 + 2 * HALO, 1 + 2 * HALO, channels), _DTYPES[self.settings.transport])
        _, version, _ = self._tile(probe, None, 1, 1)
        self._resolved = self._adopt(version)
        return self._resolved

    def _adopt(self, version: int) -> int:
        """Check a version the label resolved to against our feature set and transport (when its card is here)."""
        path = self._repository / str(version)
        if version != self.version and (path / "model_card.json").is_file():
            card = read_card(path)
            if card.get("feature_set") != self.feature_set.key:
                msg = (
                    f"{self.name} label {self.settings.label!r} now points at v{version}, whose feature set "
                    f"{card.get('feature_set')!r} differs from this scorer's {self.feature_set.key!r}"
                )
                raise ScoringError(msg)
            self._check_transport(card, version)
        return version

    def close(self) -> None:
        """Stop the request threads and close the gRPC channel."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._channel is not None:
            self._channel.close()

    def score(self, stacked: F32) -> F32:
        """``[H, W, C]`` filled model input → ``[H, W]`` probability, tile by tile with halos.

        A call that raises is counted once in ``ltgcast_scorer_errors_total`` (see the module docstring).
        """
        with counting_failures(TFSERVING, error_reason):
            return self._score(stacked)

    def _score(self, stacked: F32) -> F32:
        check_input(stacked, len(self.feature_set.channels))
        padded = with_halo(stacked, self.feature_set, HALO).astype(_DTYPES[self.settings.transport], copy=False)
        height, width = stacked.shape[:2]
        windows = tile_windows(height, width, self.settings.tile)
        out = np.empty((height, width), np.float32)
        served: Counter[str] = Counter()
        pin = self.version
        if self.settings.label:  # the first tile resolves the label; the others are pinned to the version that answered
            version, via = self._place(out, padded, windows[0], None)
            pin, windows = self._adopt(version), windows[1:]
            served[via] += 1
        futures = [self._pool.submit(self._place, out, padded, window, pin) for window in windows]
        try:
            served.update(future.result()[1] for future in futures)
        finally:
            for future in futures:
                future.cancel()
        self.version = self._resolved = pin
        self.served_by = served
        return out

    def _place(
        self, out: F32, padded: NDArray[Any], window: tuple[int, int, int, int], pin: int | None
    ) -> tuple[int, str]:
        row, col, rows, cols = window
        tile = padded[row : row + rows + 2 * HALO, col : col + cols + 2 * HALO]
        out[row : row + rows, col : col + cols], version, via = self._tile(tile, pin, rows, cols)
        return version, via

    def _tile(self, tile: NDArray[Any], pin: int | None, rows: int, cols: int) -> tuple[F32, int, str]:
        """One tile's probabilities, the version that produced them and the transport: the one error boundary."""
        ask = _Ask(tile, self.signature, pin, self.settings.label)
        where = f"gRPC {self.settings.target}"
        try:
            try:
                values, version = self._over_grpc(ask)
                via = "grpc"
            except (grpc.RpcError, CircuitOpen) as exc:
                if not self._falls_back(exc):
                    raise
                where = f"REST {self.settings.rest} after gRPC {self.settings.target} failed ({_describe(exc)})"
                values, version = self._over_rest(ask)
                via = "rest"
            return _probability(values, rows, cols), version, via
        except (grpc.RpcError, OSError, HTTPException, CircuitOpen, LabelUnresolved, ValueError) as exc:
            asked = f"version {pin}" if pin is not None else f"label {self.settings.label!r}"
            msg = f"{self.name} {asked} at {where}: {_describe(exc)}"
            transient = error_reason(exc) in TRANSIENT_REASONS  # the worker tries such a frame again later
            raise (ScoringUnavailable if transient else ScoringError)(msg) from exc

    def _falls_back(self, exc: BaseException) -> bool:
        return self._rest is not None and (isinstance(exc, CircuitOpen) or _grpc_retryable(exc))

    def _over_grpc(self, ask: _Ask) -> tuple[NDArray[Any], int]:
        response = self._grpc_calls.call(lambda: self._grpc.send(ask), f"tile {ask.tile.shape} over gRPC")
        values, version = _Grpc.decode(response)
        if version is None and ask.version is None:
            msg = f"the response does not say which version label {ask.label!r} resolved to"
            raise BadOutput(msg)
        if version is not None and ask.version is not None and version != ask.version:
            msg = f"asked for version {ask.version}, version {version} answered"
            raise BadOutput(msg)
        return values, version if version is not None else ask.version  # type: ignore[return-value]

    def _over_rest(self, ask: _Ask) -> tuple[NDArray[Any], int]:
        rest, version = self._rest, ask.version if ask.version is not None else self._resolved
        if rest is None or version is None:  # REST answers do not say which version a label reached
            msg = f"REST cannot resolve label {ask.label!r}: gRPC has not resolved it yet"
            raise LabelUnresolved(msg)
        data = self._rest_calls.call(
            lambda: rest.send(ask.tile, ask.signature, version), f"tile {ask.tile.shape} over REST"
        )
        return rest.decode(data), version


# -- version labels -------------------------------------------------------------------------


def set_version_labels(
    target: str,
    model_name: str,
    base_path: str,
    labels: Mapping[str, int],
    *,
    timeout_s: float = 60.0,
    poll_s: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Serve exactly the labelled versions of ``model_name`` and point the labels at them.

    Sends ``ModelService/HandleReloadConfigRequest`` with one ``ModelConfig``
    (``base_path`` as the *server* sees it, e.g. ``/models/lightning``; policy
    ``specific`` with the labelled versions; ``version_labels``). TF Serving
    accepts a label only for a version that is already ``AVAILABLE``, so when a
    labelled version is new this sends the versions first (with the labels that
    can already be assigned), waits on ``GetModelStatus`` until every version is
    ``AVAILABLE``, then sends all the labels.

    A reload *replaces the server's whole model list*: use this on a server
    that serves this one model (as ltgcast's does).

    Raises
    ------
    ModelRejected
        The server refused, or a version did not become available within ``timeout_s``.
    """
    if not labels:
        msg = "set_version_labels needs at least one label"
        raise ValueError(msg)
    channel = grpc.insecure_channel(target)
    try:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        versions = sorted(set(labels.values()))
        available = _available(stub, model_name, timeout_s)
        ready = {label: v for label, v in labels.items() if v in available}
        if len(ready) < len(labels):
            _reload(stub, _config(model_name, base_path, versions, ready), timeout_s)
            deadline = clock() + timeout_s
            while not set(versions) <= _available(stub, model_name, timeout_s):
                if clock() >= deadline:
                    msg = f"{model_name} versions {versions} not all AVAILABLE at {target} after {timeout_s:g} s"
                    raise ModelRejected(msg)
                sleep(poll_s)
        _reload(stub, _config(model_name, base_path, versions, labels), timeout_s)
        log.info("tfserving: %s at %s now labels %s", model_name, target, dict(labels))
    except grpc.RpcError as exc:
        msg = f"{model_name} at {target}: version labels {dict(labels)} not set: {_describe(exc)}"
        raise ModelRejected(msg) from exc
    finally:
        channel.close()


def _config(name: str, base_path: str, versions: Sequence[int], labels: Mapping[str, int]) -> Any:
    config = model_server_config_pb2.ModelServerConfig()
    entry = config.model_config_list.config.add(name=name, base_path=base_path, model_platform="tensorflow")
    entry.model_version_policy.specific.versions.extend(versions)
    for label, version in labels.items():
        entry.version_labels[label] = version
    return config


def _reload(stub: Any, config: Any, timeout_s: float) -> None:
    stub.HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(config=config), timeout=timeout_s)


def _available(stub: Any, name: str, timeout_s: float) -> set[int]:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = name
    try:
        response = stub.GetModelStatus(request, timeout=timeout_s)
    except grpc.RpcError as exc:
        if _grpc_code(exc) == grpc.StatusCode.NOT_FOUND:
            return set()  # not served yet
        raise
    state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
    return {int(s.version) for s in response.model_version_status if s.state == state}


__all__ = [
    "CARD_TRANSPORT_KEY",
    "CIRCUIT_STATES",
    "SIGNATURES",
    "CircuitBreaker",
    "CircuitOpen",
    "PredictStub",
    "RestError",
    "TFServingScorer",
    "TFServingSettings",
    "backoff_delays",
    "error_reason",
    "from_tensor_proto",
    "set_version_labels",
    "tensor_proto",
]
