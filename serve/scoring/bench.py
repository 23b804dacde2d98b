"""Time the scorer backends on frames of each sector's shape (a helper for measurements, not a test).

``measure(version_path, cases)`` builds each case's scorer once, scores one warm-up frame, then times
``repeats`` frames and returns min/median seconds and the largest |Δp| against TensorFlow's
``serving_default`` on the same frame (TensorFlow is imported here: this is a bench, not the fast path).

>>> SECTORS["C"]
(1500, 2500)
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from serve.scoring import get_scorer
from serve.scoring.settings import ScorerSettings

SECTORS = {"C": (1500, 2500), "M": (500, 500), "F": (5424, 5424)}


@dataclass(frozen=True)
class Case:
    """One measurement: a sector shape and the scorer settings (``backend`` names the runtime)."""

    sector: str
    settings: ScorerSettings


def frame(sector: str, channels: int, seed: int = 0) -> np.ndarray:
    """In-range model input ``[H, W, C]`` of a sector's shape: random ``ir``, lightning at 1 % of pixels.

    Timing does not depend on values, but Δp does: lightning everywhere would pin every probability at 1.
    """
    height, width = SECTORS[sector]
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (height, width, channels)).astype(np.float32)
    x[..., 1] *= rng.uniform(0, 1, (height, width)) < 0.01
    if channels > 2:
        x[..., 2] = 0.2 * x[..., 2] - 0.1  # ir_trend: small changes
    return x


def measure(
    version_path: Path, cases: Iterable[Case], repeats: int = 5, *, reference: bool = True
) -> Iterator[dict[str, Any]]:
    """min/median seconds of each case, and (with ``reference``) its Δp against TensorFlow (tiles of 1024).

    Rows come as each case is done. Without ``reference`` TensorFlow is not imported unless a case asks for it
    (``max_abs_dp`` is then NaN), so a process times one runtime alone.
    """
    references: dict[str, np.ndarray] = {}
    for case in cases:
        scorer = get_scorer(version_path, case.settings)
        x = frame(case.sector, len(scorer.feature_set.channels))
        if reference and case.sector not in references:
            references[case.sector] = get_scorer(version_path, ScorerSettings("tensorflow", 1024)).score(x)
        out = scorer.score(x)  # warm-up
        times = []
        for _ in range(repeats):
            began = time.perf_counter()
            scorer.score(x)
            times.append(time.perf_counter() - began)
        s, dp = case.settings, float(np.abs(out - references[case.sector]).max()) if reference else float("nan")
        yield {
            "sector": case.sector, "backend": type(scorer).__name__ + "/" + s.backend, "tile": s.tile,
            "threads": s.threads, "concurrency": s.concurrency, "min_s": round(min(times), 3),
            "median_s": round(statistics.median(times), 3), "max_abs_dp": dp,
        }  # fmt: skip
