"""Converted scorers: a version's ``model.onnx`` run by OpenVINO or ONNX Runtime, without TensorFlow.

The artefact is the SavedModel's ``serving_default`` converted at export
(:func:`models.export.convert_onnx`): same input ``tile`` ``[N, H + 64, W + 64, C]``,
same output ``probability`` ``[N, H, W]``, any ``H`` and ``W``. It is used only
when the model card vouches for it (``card["onnx"]``: its SHA-256, the runtimes
it was checked on and the largest probability difference against TensorFlow
measured there, at most :data:`EXACT_TOLERANCE`) and the file on disk has that
hash; anything else raises :class:`ArtefactUnavailable` with a bounded
``reason`` (:data:`FALLBACK_REASONS`), and :func:`serve.scoring.get_scorer`
falls back to TensorFlow. Tiling is the embedded scorer's
(:func:`serve.scoring.tile_windows`, :func:`featurize.channels.with_halo`), so
the grids are the same to within the recorded difference.

Nothing here imports TensorFlow.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import Counter

from featurize.channels import get_feature_set
from serve.scoring import (
    EMBEDDED,
    F32,
    HALO,
    ScorerSettings,
    check_output,
    counting_failures,
    export_embedded,
    read_card,
    score_tiled,
)

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
CARD_KEY = "onnx"
#: Largest |probability difference| against TensorFlow that makes an artefact "exact".
EXACT_TOLERANCE = 1e-5
#: The largest model.onnx read (the committed ones are 118 and 148 KB): a repository file is not trusted.
MAX_ARTEFACT_BYTES = 64 * 2**20
#: Runtimes, fastest first on the 2-core AVX2 development machine (tiles of 512, two in flight).
RUNTIMES = ("onnxruntime", "openvino")
#: ``reason`` of ``ltgcast_scorer_fallback_total``: why a version is scored by TensorFlow instead.
FALLBACK_REASONS = ("missing", "unrecorded", "hash_mismatch", "not_exact", "no_runtime", "load_failed")

SCORER_FALLBACK = Counter(
    "ltgcast_scorer_fallback_total",
    "Model versions loaded with TensorFlow because their converted artefact could not be used.",
    ["reason"],
)


class ArtefactUnavailable(ValueError):
    """The converted artefact cannot be used; ``reason`` is one of :data:`FALLBACK_REASONS`."""

    def __init__(self, detail: str, reason: str) -> None:
        super().__init__(detail)
        self.reason = reason


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verified_artefact(version_path: Path, card: dict[str, Any], runtime: str) -> bytes:
    """The bytes of a version's ``model.onnx``, once the card vouches for it on ``runtime`` and they hash to it.

    The bytes hashed are the bytes loaded (never the path again): a file swapped after the check is not used.
    """
    entry = card.get(CARD_KEY)
    path = version_path / ONNX_FILE
    if not path.is_file():
        msg = f"{version_path}: no {ONNX_FILE}"
        raise ArtefactUnavailable(msg, "missing")
    if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
        msg = f"{path}: the model card records no sha256 for it"
        raise ArtefactUnavailable(msg, "unrecorded")
    size = path.stat().st_size
    if size > MAX_ARTEFACT_BYTES:
        msg = f"{path}: {size} bytes; expected at most {MAX_ARTEFACT_BYTES} for a converted model"
        raise ArtefactUnavailable(msg, "load_failed")
    data = path.read_bytes()
    found = hashlib.sha256(data).hexdigest()
    if found != entry["sha256"]:
        msg = f"{path}: sha256 {found[:12]}… does not match the card's {entry['sha256'][:12]}…"
        raise ArtefactUnavailable(msg, "hash_mismatch")
    checked = entry.get("max_abs_difference", {})
    difference = checked.get(runtime) if isinstance(checked, dict) else None
    if not isinstance(difference, int | float) or not difference <= EXACT_TOLERANCE:
        msg = f"{path}: the card records Δp {difference!r} on {runtime} (needs ≤ {EXACT_TOLERANCE:g})"
        raise ArtefactUnavailable(msg, "not_exact")
    return data


Runner = Callable[[F32], np.ndarray]  # tile [1, h, w, C] -> probability [1, h - 64, w - 64]


def _openvino(model: bytes | Path, threads: int) -> Runner:
    import openvino as ov

    core = ov.Core()
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    if threads > 0:
        config["INFERENCE_NUM_THREADS"] = threads
    read = core.read_model(model, b"") if isinstance(model, bytes) else core.read_model(str(model))
    compiled = core.compile_model(read, "CPU", config)
    output = compiled.output(0)

    def run(tile: F32) -> np.ndarray:
        request = compiled.create_infer_request()  # one per call: tiles may run on several threads
        return np.asarray(request.infer([tile])[output])

    return run


def _onnxruntime(model: bytes | Path, threads: int) -> Runner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(threads, 0)
    options.inter_op_num_threads = 1
    source = model if isinstance(model, bytes) else str(model)
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])

    def run(tile: F32) -> np.ndarray:
        return np.asarray(session.run(["probability"], {"tile": tile})[0])

    return run


_RUNTIMES: dict[str, Callable[[bytes | Path, int], Runner]] = {"openvino": _openvino, "onnxruntime": _onnxruntime}


def load_runner(model: bytes | Path, runtime: str, threads: int = 0) -> Runner:
    """A function scoring ``[N, h, w, C]`` tiles with ``runtime`` (:class:`ArtefactUnavailable` if it cannot).

    ``model`` is the ONNX file's verified bytes (:func:`verified_artefact`; external data cannot load from them)
    or, where the caller made the file itself (the export's check), its path.
    """
    if runtime not in _RUNTIMES:
        msg = f"unknown runtime {runtime!r}; valid: {', '.join(RUNTIMES)}"
        raise ValueError(msg)
    try:
        run = _RUNTIMES[runtime](model, threads)
    except ImportError as exc:
        msg = f"{runtime} is not installed: {exc}"
        raise ArtefactUnavailable(msg, "no_runtime") from exc
    except Exception as exc:  # a runtime that cannot read the file: the caller falls back
        msg = f"{runtime} cannot load the model: {exc}"
        raise ArtefactUnavailable(msg, "load_failed") from exc
    return run


def _parallel_tiles(settings: ScorerSettings) -> int:
    """Tiles in flight at once (see :class:`ConvertedScorer`)."""
    if settings.threads == 0:
        return max(1, min(settings.concurrency, os.cpu_count() or 1))
    return max(1, settings.concurrency) if settings.threads == 1 else 1


class ConvertedScorer:
    """A model version scored from its verified ``model.onnx`` by OpenVINO or ONNX Runtime.

    ``settings.tile`` cuts the frame as :class:`serve.scoring.EmbeddedScorer` does. Threads:

    * ``threads`` 0 (the default): a frame of one tile runs on all cores; a frame of several tiles runs
      ``min(concurrency, cores)`` tiles at once, one thread each (on the 2-core machine faster than one
      tile at a time on both cores: no hand-over between threads inside a tile);
    * ``threads`` 1: ``concurrency`` tiles at once, one thread each;
    * ``threads`` above 1: one tile at a time on that many threads.
    """

    def __init__(
        self, version_path: Path, settings: ScorerSettings | None = None, *, runtime: str = "onnxruntime"
    ) -> None:
        self.settings = settings or ScorerSettings()
        card = read_card(version_path)
        self.card = card
        self.name, self.version = str(card.get("name", version_path.parent.name)), int(version_path.name)
        self.feature_set = get_feature_set(card["feature_set"])
        self.runtime = runtime
        artefact = verified_artefact(version_path, card, runtime)
        self._whole = load_runner(artefact, runtime, self.settings.threads)
        parallel = _parallel_tiles(self.settings)
        self._run = load_runner(artefact, runtime, 1) if parallel > 1 and self.settings.threads != 1 else self._whole
        self._pool = ThreadPoolExecutor(parallel, thread_name_prefix="ltgcast-tile") if parallel > 1 else None
        export_embedded()

    def _tile(self, tile: F32, run: Runner | None = None) -> F32:
        try:
            out = (run or self._run)(np.ascontiguousarray(tile[None]))
        except Exception as exc:  # one error type for the worker: it counts it and goes on
            msg = f"{self.name} v{self.version} ({self.runtime}) failed on a tile of shape {tile.shape}: {exc}"
            raise ValueError(msg) from exc
        return check_output(out[0], tile.shape[0] - 2 * HALO, tile.shape[1] - 2 * HALO)

    def score(self, stacked: F32) -> F32:
        """Probability at every pixel (whole frame, or tile by tile with halos); a failed call counts once."""
        with counting_failures(EMBEDDED):
            return self._score(stacked)

    def _score(self, stacked: F32) -> F32:
        return score_tiled(stacked, self.feature_set, self.settings.tile, self._tile,
                           lambda whole: self._tile(whole, self._whole), self._pool)  # fmt: skip

    def close(self) -> None:
        """Stop the tile threads (no-op without them)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)
