"""The ``tfserving`` scorer: :class:`TFServingScorer` (see :mod:`serve.scoring.tfserving` for its contract)."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import Any, TypeVar

import grpc  # type: ignore[import-untyped]
import numpy as np
from numpy.typing import NDArray
from tensorflow_serving.apis import prediction_service_pb2_grpc

from featurize.channels import FeatureSet, get_feature_set, with_halo
from foundation.errors import (
    BadOutput,
    CircuitOpen,
    ConfigError,
    LabelUnresolved,
    ScoringError,
    ScoringUnavailable,
)
from foundation.retry import Retry
from serve.scoring import (
    HALO,
    check_input,
    check_output,
    counting_failures,
    read_card,
    tile_windows,
    zero_error_counts,
)
from serve.scoring.settings import DTYPES, ScorerSettings, TFServingSettings
from serve.scoring.tfserving.breaker import CircuitBreaker, circuit_gauge
from serve.scoring.tfserving.codec import decode_grpc, decode_rest
from serve.scoring.tfserving.errors import (
    TFSERVING,
    TRANSIENT_REASONS,
    describe,
    error_reason,
    grpc_retryable,
    http_retryable,
)
from serve.scoring.tfserving.transports import Ask, GrpcTransport, PredictStub, RestTransport, grpc_options

log = logging.getLogger(__name__)

F32 = NDArray[np.float32]
T = TypeVar("T")

#: Transport dtype → the signature that takes it (models.export writes ``serving_float16`` on request).
SIGNATURES = {"float32": "serving_default", "float16": "serving_float16"}
#: The model card key listing the transports a version allows; absent means float32 only.
CARD_TRANSPORT_KEY = "transport"


def retry_of(settings: TFServingSettings) -> Retry:
    """The back-off ``settings`` ask for: ``retries`` more tries, ``backoff_s`` doubled up to ``backoff_max_s``.

    >>> retry = retry_of(TFServingSettings(retries=4, backoff_s=0.1, backoff_max_s=0.5))
    >>> retry.attempts, [retry.delay(failures) for failures in range(1, retry.attempts)]
    (5, [0.1, 0.2, 0.4, 0.5])
    """
    return Retry(attempts=settings.retries + 1, base_s=settings.backoff_s, factor=2.0, max_s=settings.backoff_max_s)


@dataclass(frozen=True)
class _Calls:
    """One transport's calls: ``retry`` through its breaker, retrying what ``retryable`` picks out of ``transient``.

    Also the clock :meth:`foundation.retry.Retry.call` waits on: its ``sleep`` is the scorer's injected one.
    """

    retry: Retry
    breaker: CircuitBreaker
    transient: tuple[type[BaseException], ...]
    retryable: Callable[[BaseException], bool]
    sleep: Callable[[float], None]

    def call(self, fn: Callable[[], T], what: str) -> T:
        """``fn``'s result, retried and gated as :meth:`foundation.retry.Retry.call` does; ``what`` names it in logs."""
        return self.retry.call(
            fn, self, transient=self.transient, what=what, retryable=self.retryable, breaker=self.breaker,
            describe=describe,
        )  # fmt: skip


def _probability(values: NDArray[Any], rows: int, cols: int) -> F32:
    if values.shape != (1, rows, cols):
        msg = f"expected probability of shape (1, {rows}, {cols}), found {values.shape}"
        raise BadOutput(msg)
    return check_output(values[0], rows, cols)


class TFServingScorer:
    """Scores frames with one model served by TensorFlow Serving (see :mod:`serve.scoring.tfserving`)."""

    def __init__(
        self,
        version_path: Path,
        settings: ScorerSettings | None = None,
        *,
        stub: PredictStub | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        scoring = settings or ScorerSettings(backend="tfserving")
        self.settings: TFServingSettings = scoring.tfserving
        self.tile, self.concurrency = scoring.tile, scoring.concurrency
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
                self.settings.target, options=grpc_options(self.settings.max_message_mb)
            )
            stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._grpc = GrpcTransport(self.name, stub, self.settings.timeout_s)
        self._rest = (
            RestTransport(self.name, self.settings.rest, self.settings.timeout_s) if self.settings.rest else None
        )
        zero_error_counts(TFSERVING)
        breaker = (self.settings.breaker_failures, self.settings.breaker_cooldown_s, clock)
        self.grpc_breaker = CircuitBreaker(*breaker, on_change=circuit_gauge("grpc"))
        self.rest_breaker = CircuitBreaker(*breaker, on_change=circuit_gauge("rest") if self._rest else None)
        retry = retry_of(self.settings)
        self._grpc_calls = _Calls(retry, self.grpc_breaker, (grpc.RpcError,), grpc_retryable, sleep)
        self._rest_calls = _Calls(retry, self.rest_breaker, (OSError, HTTPException), http_retryable, sleep)
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="tfserving")
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
        probe = np.zeros((1 + 2 * HALO, 1 + 2 * HALO, channels), DTYPES[self.settings.transport])
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

        A call that raises is counted once in ``ltgcast_scorer_errors_total`` (see :mod:`serve.scoring.tfserving`).
        """
        with counting_failures(TFSERVING, error_reason):
            return self._score(stacked)

    def _score(self, stacked: F32) -> F32:
        check_input(stacked, len(self.feature_set.channels))
        padded = with_halo(stacked, self.feature_set, HALO).astype(DTYPES[self.settings.transport], copy=False)
        height, width = stacked.shape[:2]
        windows = tile_windows(height, width, self.tile)
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
        ask = Ask(tile, self.signature, pin, self.settings.label)
        where = f"gRPC {self.settings.target}"
        try:
            try:
                values, version = self._over_grpc(ask)
                via = "grpc"
            except (grpc.RpcError, CircuitOpen) as exc:
                if not self._falls_back(exc):
                    raise
                where = f"REST {self.settings.rest} after gRPC {self.settings.target} failed ({describe(exc)})"
                values, version = self._over_rest(ask)
                via = "rest"
            return _probability(values, rows, cols), version, via
        except (grpc.RpcError, OSError, HTTPException, CircuitOpen, LabelUnresolved, ValueError) as exc:
            asked = f"version {pin}" if pin is not None else f"label {self.settings.label!r}"
            msg = f"{self.name} {asked} at {where}: {describe(exc)}"
            transient = error_reason(exc) in TRANSIENT_REASONS  # the worker tries such a frame again later
            raise (ScoringUnavailable if transient else ScoringError)(msg) from exc

    def _falls_back(self, exc: BaseException) -> bool:
        return self._rest is not None and (isinstance(exc, CircuitOpen) or grpc_retryable(exc))

    def _over_grpc(self, ask: Ask) -> tuple[NDArray[Any], int]:
        response = self._grpc_calls.call(lambda: self._grpc.send(ask), f"tile {ask.tile.shape} over gRPC")
        values, version = decode_grpc(response)
        if version is None and ask.version is None:
            msg = f"the response does not say which version label {ask.label!r} resolved to"
            raise BadOutput(msg)
        if version is not None and ask.version is not None and version != ask.version:
            msg = f"asked for version {ask.version}, version {version} answered"
            raise BadOutput(msg)
        return values, version if version is not None else ask.version  # type: ignore[return-value]

    def _over_rest(self, ask: Ask) -> tuple[NDArray[Any], int]:
        rest, version = self._rest, ask.version if ask.version is not None else self._resolved
        if rest is None or version is None:  # REST answers do not say which version a label reached
            msg = f"REST cannot resolve label {ask.label!r}: gRPC has not resolved it yet"
            raise LabelUnresolved(msg)
        data = self._rest_calls.call(
            lambda: rest.send(ask.tile, ask.signature, version), f"tile {ask.tile.shape} over REST"
        )
        return decode_rest(data), version
