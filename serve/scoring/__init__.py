"""Scorers: one protocol, chosen by name; each turns a frame's model input into a probability grid.

* ``embedded`` — the fastest exact in-process scorer this version and host
  allow: the version's converted ``model.onnx`` run by ONNX Runtime, else by
  OpenVINO (:mod:`serve.scoring.onnx`: the card vouches for its hash and for a
  probability difference ≤ 1e-5 against TensorFlow on each runtime), else
  ``tensorflow``. Falling back says why once per version and reason (a
  warning in the log) and counts ``ltgcast_scorer_fallback_total{reason}``.
  Nothing imports TensorFlow unless the fallback is taken.
* ``openvino`` / ``onnxruntime`` — the converted artefact on that runtime,
  or an error (no fallback): for measurements and pinning.
* ``tensorflow`` — the SavedModel's ``serving_default`` in this process, on the
  whole frame or on tiles of ``tile`` × ``tile`` output pixels, each cut with
  its 32-pixel halo from the frame with its halo beyond the border (the feature
  set's edge policy, :func:`featurize.channels.with_halo`: mirrored, or fill
  values for the raw sets), so a tile border is invisible in the result (the
  model is fully convolutional and exact).
* ``patch`` — the naive path: one 64 × 64 patch per pixel through the ``patch``
  signature. Kept for equivalence checks and as the benchmark's baseline.
* ``tfserving`` — the same tiles sent to TensorFlow Serving over gRPC (REST as
  the fallback); see :mod:`serve.scoring.tfserving`.

Inputs are ``[H, W, C]`` float32, already scaled and filled
(:func:`featurize.channels.model_input`); outputs ``[H, W]`` float32 in [0, 1].
Input that is not that is refused with :class:`BadInput`, a model answer of the
wrong shape or holding NaN/inf with :class:`BadOutput` (both ``ValueError``).

Metrics
-------
Each scorer counts its own failed calls, once per :meth:`Scorer.score` call
that raises (one frame for the worker; a tile that fails fails the call, and
the other tiles of the frame are not counted again), after its retries and
fallbacks, in ``ltgcast_scorer_errors_total{backend, reason}``: the reasons of
:data:`ERROR_REASONS`, ``backend`` ``embedded`` (``embedded`` and ``patch``) or
``tfserving``. Every call counts, whoever makes it: the worker's stable and
shadow grids, the hot-swap warm-ups. The embedded backends give
``invalid_argument`` (input refused), ``bad_output`` or ``other`` (TensorFlow
failed); ``tfserving`` maps the gRPC code or HTTP status
(:func:`serve.scoring.tfserving.errors.error_reason`). A scorer sets its backend's reasons to
0 when built, so ``rate()`` works from the first failure, and exports
``ltgcast_scorer_circuit_state`` (``embedded``/``local`` is always 0;
``tfserving`` per transport, see :mod:`serve.scoring.tfserving`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from featurize.channels import FeatureSet, get_feature_set, with_halo
from foundation.errors import BadInput, BadOutput, ConfigError
from foundation.registry import Registry
from monitor.metrics import SCORER_CIRCUIT, SCORER_ERRORS
from serve.scoring.settings import ScorerSettings

log = logging.getLogger(__name__)

F32 = NDArray[np.float32]
HALO = 32
PATCH = 2 * HALO
EMBEDDED = "embedded"  # the ``backend`` label of the in-process scorers
#: ``reason`` values of ``ltgcast_scorer_errors_total`` (monitor.metrics).
ERROR_REASONS = (
    "unavailable", "deadline_exceeded", "resource_exhausted", "invalid_argument", "circuit_open", "bad_output", "other"
)  # fmt: skip


class Scorer(Protocol):
    """Scores whole frames with one model version."""

    name: str
    version: int
    feature_set: FeatureSet

    def score(self, stacked: F32) -> F32:
        """``[H, W, C]`` filled model input → ``[H, W]`` probability."""
        ...


def read_card(version_path: Path) -> dict[str, Any]:
    """A version folder's ``model_card.json``; :class:`~foundation.errors.ConfigError` (a ``ValueError``) naming it."""
    path = version_path / "model_card.json"
    try:
        card: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        msg = f"{version_path}: cannot read model_card.json: {exc}"
        raise ConfigError(msg) from exc
    return card


def check_input(stacked: F32, channels: int) -> None:
    """Refuse scorer input that is not ``[H, W, channels]`` or holds NaN/inf (:class:`BadInput` saying which)."""
    if stacked.ndim != 3 or stacked.shape[-1] != channels:
        msg = f"scorer input must be [H, W, {channels}]; found shape {stacked.shape}"
        raise BadInput(msg)
    if not np.isfinite(stacked).all():
        msg = "scorer input holds NaN or inf; apply the fill policy (featurize.channels.model_input) first"
        raise BadInput(msg)


def check_output(probability: NDArray[Any], rows: int, cols: int) -> F32:
    """A model's answer as float32 ``[rows, cols]``; :class:`BadOutput` if it has another shape or holds NaN/inf.

    >>> check_output(np.zeros((2, 3)), 2, 3).dtype
    dtype('float32')
    >>> check_output(np.full((2, 3), np.nan), 2, 3)
    Traceback (most recent call last):
    ...
    foundation.errors.BadOutput: the model answered NaN or inf at 6 of 6 pixels
    """
    if probability.shape != (rows, cols):
        msg = f"expected a probability of shape ({rows}, {cols}); the model answered {probability.shape}"
        raise BadOutput(msg)
    bad = int(np.count_nonzero(~np.isfinite(probability)))
    if bad:
        msg = f"the model answered NaN or inf at {bad} of {probability.size} pixels"
        raise BadOutput(msg)
    return np.asarray(probability, np.float32)


def failure_reason(exc: BaseException) -> str:
    """The ``reason`` of a failed in-process call: refused input, bad answer, or anything else.

    >>> failure_reason(BadInput("x")), failure_reason(BadOutput("x")), failure_reason(RuntimeError("x"))
    ('invalid_argument', 'bad_output', 'other')
    """
    if isinstance(exc, BadInput):
        return "invalid_argument"
    return "bad_output" if isinstance(exc, BadOutput) else "other"


def zero_error_counts(backend: str) -> None:
    """Create every ``reason`` of ``backend`` in ``ltgcast_scorer_errors_total`` at 0 (no-op when they exist)."""
    for reason in ERROR_REASONS:
        SCORER_ERRORS.labels(backend, reason)


@contextmanager
def counting_failures(backend: str, reason: Callable[[BaseException], str] = failure_reason) -> Iterator[None]:
    """Count an exception leaving the block once, as ``reason(exc)`` of ``backend``; it goes on up unchanged."""
    try:
        yield
    except Exception as exc:
        SCORER_ERRORS.labels(backend, reason(exc)).inc()
        raise


def export_embedded() -> None:
    """Zero the in-process backends' error counts and export their (always closed) circuit state."""
    zero_error_counts(EMBEDDED)
    SCORER_CIRCUIT.labels(EMBEDDED, "local").set(0)  # no breaker in process: always closed


def tile_windows(height: int, width: int, size: int) -> list[tuple[int, int, int, int]]:
    """``(row, col, rows, cols)`` of the output tiles of a ``height`` × ``width`` frame, row by row.

    Tiles are ``size`` × ``size`` output pixels, ragged at the bottom and right
    edges; ``size <= 0``, or a frame no larger than one tile, gives the whole
    frame. Tile ``(row, col, rows, cols)`` is scored on
    ``padded[row : row + rows + 64, col : col + cols + 64]`` of the frame ringed
    with its 32-pixel halo.

    >>> tile_windows(5, 7, 4)
    [(0, 0, 4, 4), (0, 4, 4, 3), (4, 0, 1, 4), (4, 4, 1, 3)]
    >>> tile_windows(5, 7, 0)
    [(0, 0, 5, 7)]
    """
    if size <= 0 or (height <= size and width <= size):
        return [(0, 0, height, width)]
    return [
        (row, col, min(size, height - row), min(size, width - col))
        for row in range(0, height, size)
        for col in range(0, width, size)
    ]


def score_tiled(stacked: F32, feature_set: FeatureSet, tile: int, run: Callable[[F32], F32],
                run_whole: Callable[[F32], F32] | None = None, pool: Executor | None = None) -> F32:  # fmt: skip
    """Probability of a frame, the whole or tile by tile, each cut with its halo (:func:`tile_windows`).

    ``run`` scores one ``[h + 64, w + 64, C]`` cut into ``[h, w]``; ``run_whole`` (default ``run``) a frame of
    one tile; with ``pool`` the tiles are scored on its threads. The input is checked first (:class:`BadInput`).
    """
    check_input(stacked, len(feature_set.channels))
    padded = with_halo(stacked, feature_set, HALO)
    height, width = stacked.shape[:2]
    windows = tile_windows(height, width, tile)
    if len(windows) == 1:
        return (run_whole or run)(padded)
    cuts = [padded[r : r + rows + 2 * HALO, c : c + cols + 2 * HALO] for r, c, rows, cols in windows]
    answers = pool.map(run, cuts) if pool is not None else map(run, cuts)
    out = np.empty((height, width), np.float32)
    for (row, col, rows, cols), answer in zip(windows, answers, strict=True):
        out[row : row + rows, col : col + cols] = answer
    return out


class EmbeddedScorer:
    """A SavedModel version scored in this process by TensorFlow (the ``tensorflow`` backend)."""

    def __init__(self, version_path: Path, settings: ScorerSettings | None = None) -> None:
        import tensorflow as tf

        self.settings = settings or ScorerSettings()
        if self.settings.threads > 0:
            try:
                tf.config.threading.set_intra_op_parallelism_threads(self.settings.threads)
            except RuntimeError:  # TensorFlow already started; its pool is fixed for this process
                log.warning("TensorFlow is already running; threads=%d cannot apply", self.settings.threads)
        card = read_card(version_path)
        self.name, self.version = str(card.get("name", version_path.parent.name)), int(version_path.name)
        self.feature_set = get_feature_set(card["feature_set"])
        self.card = card
        self._tf = tf
        self._dense: Callable[..., Any] = tf.saved_model.load(str(version_path)).signatures["serving_default"]
        export_embedded()

    def _run(self, tile: F32) -> F32:
        try:
            out = self._dense(tile=self._tf.constant(tile[None]))["probability"]
        except self._tf.errors.OpError as exc:  # one error type for the worker: it counts it and goes on
            msg = f"{self.name} v{self.version} failed on a tile of shape {tile.shape}: {exc.message}"
            raise ValueError(msg) from exc
        return check_output(out.numpy()[0], tile.shape[0] - 2 * HALO, tile.shape[1] - 2 * HALO)

    def score(self, stacked: F32) -> F32:
        """Probability at every pixel (whole frame, or tile by tile with halos); a failed call counts once."""
        with counting_failures(EMBEDDED):
            return self._score(stacked)

    def _score(self, stacked: F32) -> F32:
        return score_tiled(stacked, self.feature_set, self.settings.tile, self._run)


class PatchScorer:
    """The naive path: a 64 × 64 patch per pixel through the ``patch`` signature."""

    def __init__(self, version_path: Path, batch: int = 1024) -> None:
        import tensorflow as tf

        card = read_card(version_path)
        self.name, self.version = str(card.get("name", version_path.parent.name)), int(version_path.name)
        self.feature_set = get_feature_set(card["feature_set"])
        self.batch = batch
        self._tf = tf
        self._patch: Callable[..., Any] = tf.saved_model.load(str(version_path)).signatures["patch"]
        export_embedded()

    def score_pixels(self, stacked: F32, pixels: NDArray[np.int64]) -> F32:
        """Probability at ``pixels`` (``[N, 2]`` row, column), one patch each; a failed call counts once."""
        with counting_failures(EMBEDDED):
            return self._score_pixels(stacked, pixels)

    def _score_pixels(self, stacked: F32, pixels: NDArray[np.int64]) -> F32:
        check_input(stacked, len(self.feature_set.channels))
        padded = with_halo(stacked, self.feature_set, HALO)
        out = []
        for start in range(0, len(pixels), self.batch):
            chunk = pixels[start : start + self.batch]
            patches = np.stack([padded[r : r + PATCH, c : c + PATCH] for r, c in chunk])
            out.append(self._patch(patch=self._tf.constant(patches))["probability"].numpy())
        answer = np.concatenate(out) if out else np.zeros(0, np.float32)
        probability: F32 = check_output(answer.reshape(1, -1), 1, len(pixels))[0]  # one per pixel, finite
        return probability

    def score(self, stacked: F32) -> F32:
        """Probability at every pixel, a patch at a time (slow: for small frames and checks)."""
        height, width = stacked.shape[:2]
        rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
        pixels = np.stack([rows.ravel(), cols.ravel()], axis=1)
        return self.score_pixels(stacked, pixels).reshape(height, width)


_FELL_BACK: set[tuple[str, str]] = set()  # (version folder, reason) already warned about


def _converted(runtime: str) -> Callable[[Path, ScorerSettings], Scorer]:
    def build(version_path: Path, settings: ScorerSettings) -> Scorer:
        from serve.scoring.onnx import ConvertedScorer

        return ConvertedScorer(version_path, settings, runtime=runtime)

    return build


def fastest_exact(version_path: Path, settings: ScorerSettings) -> Scorer:
    """The ``embedded`` backend: the converted artefact on the first runtime that takes it, else TensorFlow."""
    from foundation.errors import ArtefactUnavailable
    from models.onnx import RUNTIMES
    from serve.scoring.onnx import SCORER_FALLBACK, ConvertedScorer

    reason, detail = "", ""
    for runtime in RUNTIMES:
        try:
            return ConvertedScorer(version_path, settings, runtime=runtime)
        except ArtefactUnavailable as exc:
            reason, detail = exc.reason, str(exc)
            if exc.reason not in ("no_runtime", "load_failed", "not_exact"):
                break  # the file or its card is the problem: no other runtime will do better
    SCORER_FALLBACK.labels(reason).inc()
    if (str(version_path), reason) not in _FELL_BACK:
        _FELL_BACK.add((str(version_path), reason))
        log.warning("scoring %s with TensorFlow: %s", version_path, detail)
    return EmbeddedScorer(version_path, settings)


def _tfserving(version_path: Path, settings: ScorerSettings) -> Scorer:
    from serve.scoring.tfserving import TFServingScorer

    return TFServingScorer(version_path, settings)


_FACTORIES: Registry[Callable[[Path, ScorerSettings], Scorer]] = Registry(
    "scorer backend",
    {
        "embedded": fastest_exact,
        "patch": lambda version_path, _settings: PatchScorer(version_path),
        "tfserving": _tfserving,
        "tensorflow": EmbeddedScorer,
        "openvino": _converted("openvino"),
        "onnxruntime": _converted("onnxruntime"),
    },
)
BACKENDS = tuple(_FACTORIES)


def get_scorer(version_path: Path, settings: ScorerSettings) -> Scorer:
    """The scorer of ``settings.backend`` for one model version folder; unknown names list the valid ones."""
    return _FACTORIES.lookup(settings.backend)(version_path, settings)
