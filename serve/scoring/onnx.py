"""Converted scorers: a version's ``model.onnx`` run by OpenVINO or ONNX Runtime, without TensorFlow.

The artefact is the SavedModel's ``serving_default`` converted at export
(:func:`models.export.convert_onnx`): same input ``tile`` ``[N, H + 64, W + 64, C]``,
same output ``probability`` ``[N, H, W]``, any ``H`` and ``W``. It is used only
when the model card vouches for it (``card["onnx"]``: its SHA-256, the runtimes
it was checked on and the largest probability difference against TensorFlow
measured there, at most :data:`models.onnx.EXACT_TOLERANCE`) and the file on disk has that
hash (:func:`models.onnx.verified_artefact`); anything else raises :class:`ArtefactUnavailable` with a bounded
``reason`` (:data:`FALLBACK_REASONS`), and :func:`serve.scoring.get_scorer`
falls back to TensorFlow. Tiling is the embedded scorer's
(:func:`serve.scoring.tile_windows`, :func:`featurize.channels.with_halo`), so
the grids are the same to within the recorded difference.

Nothing here imports TensorFlow.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from prometheus_client import Counter

from featurize.channels import get_feature_set
from models.onnx import Runner, load_runner, verified_artefact
from serve.scoring import EMBEDDED, F32, HALO, check_output, counting_failures, export_embedded, read_card, score_tiled
from serve.scoring.settings import ScorerSettings

log = logging.getLogger(__name__)

SCORER_FALLBACK = Counter(
    "ltgcast_scorer_fallback_total",
    "Model versions loaded with TensorFlow because their converted artefact could not be used.",
    ["reason"],
)


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
