"""Streaming statistics with mergeable accumulators: one pass, any number of shards.

:class:`RunningStats` keeps, for one quantity, the count of finite values, the
NaN count, mean and sum of squared deviations (merged with Chan et al.'s
parallel formula), min, max and a histogram on fixed bin edges (with
underflow and overflow bins). Accumulators built on different frames, files or
processes merge into exactly the statistics of the union, so a dataset's
statistics are computed while it is written and become the drift reference of
the model card.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

F64 = NDArray[np.float64]


def default_edges(name: str) -> F64:
    """Histogram bin edges for a channel or feature name (by its channel and statistic).

    >>> default_edges("ir_max_64")[[0, -1]].tolist()
    [-0.5, 1.5]
    >>> default_edges("ir_coldfrac_64")[[0, -1]].tolist()
    [0.0, 1.0]
    """
    if "coldfrac" in name:
        return np.linspace(0.0, 1.0, 21)
    if name.startswith("ir_trend"):
        return np.linspace(-3.0, 3.0, 61)
    if name.startswith("ir"):
        return np.linspace(-0.5, 1.5, 41)
    if name.startswith("ltg"):  # raw counts reach 100s; the bounded channel fills [0, 1] (0.15 is one flash)
        return np.array([0.0, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.2, 0.3, 0.45, 0.6, 0.75, 0.9, 1.0, 3.0, 10.0, 30.0, 100.0])
    return np.linspace(0.0, 1.0, 11)


@dataclass
class RunningStats:
    """Mergeable one-pass statistics of one quantity.

    Examples
    --------
    >>> a, b = RunningStats(np.array([0.0, 5.0])), RunningStats(np.array([0.0, 5.0]))
    >>> a.update([1.0, 2.0, np.nan]); b.update([3.0, 4.0, 6.0])
    >>> m = a.merge(b)
    >>> m.count, m.nan_count, m.mean, round(m.variance, 6), m.minimum, m.maximum
    (5, 1, 3.2, 2.96, 1.0, 6.0)
    >>> m.histogram.tolist()  # below 0, [0, 5), at or above 5
    [0, 4, 1]
    """

    edges: F64
    count: int = 0
    nan_count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    minimum: float = float("inf")
    maximum: float = float("-inf")
    histogram: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))

    def __post_init__(self) -> None:
        self.edges = np.asarray(self.edges, np.float64)
        if self.histogram.size == 0:
            self.histogram = np.zeros(self.edges.size + 1, np.int64)

    @property
    def variance(self) -> float:
        """Population variance of the finite values (NaN before any)."""
        return self.m2 / self.count if self.count else float("nan")

    def update(self, values: ArrayLike) -> None:
        """Add a batch of values (any shape; NaN counted apart)."""
        flat = np.asarray(values, np.float64).ravel()
        finite = flat[np.isfinite(flat)]
        self.nan_count += int(flat.size - finite.size)
        if finite.size == 0:
            return
        batch = RunningStats(
            self.edges,
            count=int(finite.size),
            mean=float(finite.mean()),
            m2=float(((finite - finite.mean()) ** 2).sum()),
            minimum=float(finite.min()),
            maximum=float(finite.max()),
            histogram=np.bincount(np.searchsorted(self.edges, finite, side="right"), minlength=self.edges.size + 1),
        )
        merged = self.merge(batch)
        self.count, self.mean, self.m2 = merged.count, merged.mean, merged.m2
        self.minimum, self.maximum, self.histogram = merged.minimum, merged.maximum, merged.histogram

    def merge(self, other: RunningStats) -> RunningStats:
        """The statistics of both inputs together (neither is changed)."""
        if not np.array_equal(self.edges, other.edges):
            msg = "cannot merge statistics with different histogram edges"
            raise ValueError(msg)
        count = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * other.count / count if count else 0.0
        m2 = self.m2 + other.m2 + delta * delta * self.count * other.count / count if count else 0.0
        return RunningStats(
            self.edges,
            count=count,
            nan_count=self.nan_count + other.nan_count,
            mean=mean,
            m2=m2,
            minimum=min(self.minimum, other.minimum),
            maximum=max(self.maximum, other.maximum),
            histogram=self.histogram + other.histogram,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``min``/``max`` are ``None`` before any finite value)."""
        return {
            "count": self.count,
            "nan_count": self.nan_count,
            "mean": self.mean if self.count else None,
            "variance": self.variance if self.count else None,
            "m2": self.m2,
            "min": self.minimum if self.count else None,
            "max": self.maximum if self.count else None,
            "edges": self.edges.tolist(),
            "histogram": self.histogram.tolist(),
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> RunningStats:
        """Inverse of :meth:`to_dict`."""
        return cls(
            np.asarray(doc["edges"], np.float64),
            count=int(doc["count"]),
            nan_count=int(doc["nan_count"]),
            mean=float(doc["mean"] or 0.0),
            m2=float(doc["m2"]),
            minimum=float("inf") if doc["min"] is None else float(doc["min"]),
            maximum=float("-inf") if doc["max"] is None else float(doc["max"]),
            histogram=np.asarray(doc["histogram"], np.int64),
        )


class StatsBook:
    """One :class:`RunningStats` per name, created on first use with :func:`default_edges`."""

    def __init__(self) -> None:
        self.stats: dict[str, RunningStats] = {}

    def update(self, values: dict[str, ArrayLike]) -> None:
        """Add a batch for each named quantity."""
        for name, batch in values.items():
            self.stats.setdefault(name, RunningStats(default_edges(name))).update(batch)

    def merge(self, other: StatsBook) -> StatsBook:
        """Both books together."""
        merged = StatsBook()
        for name in sorted(set(self.stats) | set(other.stats)):
            mine, theirs = self.stats.get(name), other.stats.get(name)
            if mine is None or theirs is None:
                merged.stats[name] = RunningStats.from_dict((mine or theirs).to_dict())  # type: ignore[union-attr]
            else:
                merged.stats[name] = mine.merge(theirs)
        return merged

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, sorted by name."""
        return {name: s.to_dict() for name, s in sorted(self.stats.items())}
