"""``ltgcast models compare``: exported models and the baselines on every pixel of held-out frames, with intervals.

Models trained on different feature sets (``ir-ltg/1`` and ``ir-ltg/2`` scale
their channels differently) cannot share one dataset's test split, whose
patches hold one feature set's channels. So each frame of an archive period
is read once and every forecast builds its own input from it:

* a model (``--saved-model NAME=PATH``, a repository version folder) builds
  the channels of its card's ``feature_set`` with
  :func:`featurize.examples.frame_channels`, fills them
  (:func:`featurize.channels.model_input`), adds the halo
  (:func:`featurize.channels.with_halo`) and runs the SavedModel's
  ``serving_default`` signature (``tile [1, H + 64, W + 64, C]`` →
  ``probability [1, H, W]``);
* **climatology**: one probability everywhere: with ``--logistic-data``, the
  weighted base rate of that dataset's training split (the data the new models
  learnt from); else the training base rate of the first model card that
  records one (``evaluation.base_rate``); else the pooled base rate of the
  held-out frames themselves (the JSON says which). It is also the reference
  of every Brier skill score;
* **persistence**: 1 where the 16×16 box around the pixel held a GLM flash in
  the 15 min before the frame (``ltg_max_16 > 0`` of
  :func:`featurize.features.dense_features` on the raw flash counts, so it does
  not depend on any feature set's scaling), else 0;
* **logistic** (with ``--logistic-data``): the logistic regression of
  ``ltgcast evaluate`` (:func:`models.evaluate.fit_logistic` on that dataset's
  training split, run densely by :func:`models.evaluate.dense_forecasts` on the
  channels of that dataset's feature set).

Frames (the band-13 frames of ``[start, end)``, thinned to ``--every-minutes``)
are walked as ``ltgcast evaluate --lead-archive`` walks them
(:mod:`ltgcast.leadtimes`). A frame is scored when the GLM granules of its
satellite cover the 15 min before it and the 30 min after it (the label
window; so the last scored frame starts 30 min before the end of the GLM
record); frames without the 30 min after them still count for storm lead
times. An onset counts only if GLM covered its whole quiet hour (the first
storms of a held-out day, with no record before them, are not onsets). Pixels whose band 13 is NaN are
left out. A frame that one forecast cannot use (no frame 15 min earlier for
``ir_trend``, an unreadable file, GLM gaps) is left out for all of them and
counted by reason, so every forecast is scored on the same pixels.

Each scored frame leaves sufficient statistics per forecast
(:func:`models.compare.frame_statistics`); the scores and their bootstrap
intervals come from their sums (:mod:`models.compare`). The bootstrap resamples
whole days when the scored frames span at least 5 UTC days (frames of one day
are strongly correlated), else single frames. Writes ``comparison.json`` and
``comparison.md`` into ``--out`` and prints the markdown.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from bisect import bisect_left, bisect_right
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from featurize.channels import FeatureSet, get_feature_set
from featurize.examples import Flashes, LabelRule, frame_channels, frame_labels
from foundation.errors import ConfigError, FrameDecodeError, IngestError
from models.compare import Tally, compare_units, constant_statistics, frame_statistics, lead_time_intervals, unpack

log = logging.getLogger(__name__)

F32 = NDArray[np.float32]
BASELINES = ("climatology", "persistence", "logistic")

SKIP_COVERAGE = "GLM covers too little of the ltg and label windows"
SKIP_ORBIT = "GLM and ABI were not at the same orbital position"
SKIP_FRAME = "a frame could not be read"
SKIP_NO_PREVIOUS = "no frame 15 min earlier for ir_trend"
SKIP_MOVED = "the earlier frame is on another grid (the sector moved)"


#: How far from ``window`` before a frame the earlier frame of ``ir_trend`` may be (as the dataset builder).
_NEAR = timedelta(seconds=90)


class _Skip(Exception):  # noqa: N818 - a control-flow signal, not an error
    """A frame cannot be used by every forecast; the message is the reason counted in the output."""


@dataclass(frozen=True)
class CompareSettings:
    """Where the held-out frames are, how they are labelled, and how the intervals are drawn."""

    archives: tuple[str, ...]
    start: datetime
    end: datetime
    cache: Path
    sector: str = "M1"
    band: int = 13
    product: str = "ABI-L1b-Rad"
    every_minutes: float = 5.0
    rule: LabelRule = field(default_factory=LabelRule)
    resamples: int = 1000
    seed: int = 0
    level: float = 0.95
    min_days: int = 5
    persistence_window_s: float = 900.0
    radius: int = 16
    quiet_s: float = 3600.0
    lookback_s: float = 2700.0
    lead_thresholds: tuple[float, ...] = (0.25, 0.5)


class Scene:
    """One frame and the flashes around it; each feature set's channels are built once, when first asked for."""

    def __init__(
        self, image: Any, flashes: Flashes, frame_time: float, previous: Callable[[float], F32 | None]
    ) -> None:
        self.bt: F32 = image.values
        self.grid = image.grid
        self.flashes = flashes
        self.time = frame_time
        self._previous = previous
        self._channels: dict[str, dict[str, F32]] = {}

    def channels(self, feature_set: FeatureSet) -> dict[str, F32]:
        """The channels of ``feature_set`` for this frame (NaN kept)."""
        if feature_set.key not in self._channels:
            earlier = self._previous(feature_set.window_minutes * 60.0) if "ir_trend" in feature_set.channels else None
            self._channels[feature_set.key] = frame_channels(
                self.bt, self.grid, self.flashes, self.time, feature_set, earlier
            )
        return self._channels[feature_set.key]

    def flash_counts(self, window_s: float) -> F32:
        """Raw GLM flashes per pixel in the ``window_s`` before the frame."""
        from featurize.glm_grid import ltg_channel

        f = self.flashes
        counts, _ = ltg_channel(self.grid, f.lat, f.lon, f.time, self.time, window_s)
        return counts


@dataclass(frozen=True)
class Contender:
    """A forecast under comparison: a frame → probability ``[H, W]``, and what it is."""

    name: str
    forecast: Callable[[Scene], NDArray[Any]]
    about: dict[str, Any]
    history_s: float = 900.0  # how far before the frame its inputs reach (GLM window, the earlier frame)


# -- forecasts ----------------------------------------------------------------------------


def _saved_model(name: str, path: Path) -> Contender:
    """A repository version folder (SavedModel and ``model_card.json``) as a contender."""
    import tensorflow as tf

    from featurize.channels import model_input, with_halo
    from serve.scoring import read_card

    try:
        card = read_card(path)
    except ConfigError as exc:
        msg = f"--saved-model {name}: {exc}"
        raise ConfigError(msg) from exc
    if "feature_set" not in card:
        msg = f"--saved-model {name}: {path / 'model_card.json'} names no feature_set"
        raise ConfigError(msg)
    feature_set = get_feature_set(card["feature_set"])
    signature = tf.saved_model.load(str(path)).signatures["serving_default"]

    def forecast(scene: Scene) -> NDArray[Any]:
        tile = with_halo(model_input(scene.channels(feature_set), feature_set)[0], feature_set)
        p: NDArray[Any] = np.asarray(signature(tile=tf.constant(tile[None]))["probability"])[0]
        if p.shape != scene.bt.shape:
            msg = f"{name}: serving_default gave {p.shape} for a frame of {scene.bt.shape}"
            raise ValueError(msg)
        return p

    about = {
        "kind": "model",
        "path": str(path),
        "feature_set": feature_set.key,
        "label_rule": card.get("label_rule"),
        "card_base_rate": (card.get("evaluation") or {}).get("base_rate"),
    }
    return Contender(name, forecast, about, feature_set.window_minutes * 60.0)


def _persistence(window_s: float) -> Contender:
    from featurize.features import dense_features

    def forecast(scene: Scene) -> NDArray[Any]:
        return (dense_features({"ltg": scene.flash_counts(window_s)})["ltg_max_16"] > 0).astype(np.float32)

    about = {"kind": "baseline", "rule": f"1 where the 16x16 box held a GLM flash in the {window_s / 60:g} min before"}
    return Contender("persistence", forecast, about, window_s)


def _logistic(data: Path) -> Contender:
    from models.data import manifest
    from models.evaluate import dense_forecasts, fit_logistic, load_split

    doc = manifest(data)
    feature_set = get_feature_set(doc["feature_set"])
    train = load_split(data, "train")
    if train["label"].size == 0:
        msg = f"--logistic-data: {data} has no training examples"
        raise ConfigError(msg)
    names = list(train["feature_names"])
    linear = dense_forecasts({}, fit_logistic(train), names, feature_set)["logistic"]
    rate = float(np.sum(train["weight"] * train["label"]) / np.sum(train["weight"]))  # as models.evaluate's climatology
    about = {"kind": "baseline", "data": str(data), "feature_set": feature_set.key, "features": names,
             "train_base_rate": rate}  # fmt: skip

    def forecast(scene: Scene) -> NDArray[Any]:
        return np.asarray(linear(scene.channels(feature_set)))

    return Contender("logistic", forecast, about, feature_set.window_minutes * 60.0)


# -- the archive walk ---------------------------------------------------------------------


class _Images:
    """ABI images read once each (the frame 15 min earlier is a frame read three steps before)."""

    def __init__(self, archive: Any, keep: int = 32) -> None:
        self.archive, self.keep = archive, keep
        self.images: OrderedDict[str, Any] = OrderedDict()

    def get(self, item: Any) -> Any:
        from ltgcast.leadtimes import read_image

        key = item.name.name
        if key not in self.images:
            try:
                self.images[key] = read_image(self.archive, item)
            except (FrameDecodeError, IngestError) as exc:
                log.warning("compare: leaving out %s: %s", key, exc)
                raise _Skip(SKIP_FRAME) from exc
            while len(self.images) > self.keep:
                self.images.popitem(last=False)
        return self.images[key]


def _same_grid(a: Any, b: Any) -> bool:
    return bool(np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y))


@dataclass
class _Totals:
    """What the walk of every archive adds up to."""

    tally: Any
    skipped: Counter[str] = field(default_factory=Counter)
    frames_scored: int = 0
    frames_lead_only: int = 0
    frames_listed: int = 0
    lead_minutes: dict[str, dict[str, list[float | None]]] = field(default_factory=dict)
    onsets: int = 0
    onsets_without_history: int = 0
    flashes: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))


class _Glm:
    """The GLM granules of one satellite over the period: flashes sorted by time, coverage and orbit checks."""

    def __init__(self, archive: Any, satellite: str, start: datetime, end: datetime) -> None:
        from ltgcast.datasets import FlashCache

        cache = FlashCache(archive)
        good = cache.read([g for g in archive.granules(start, end) if g.name.satellite == satellite], keep_after=start)
        self.spans = [(g.name.scan_start, g.name.scan_end) for g in good]
        self.starts = np.array([a.timestamp() for a, _ in self.spans], np.float64)
        self.ends = np.array([b.timestamp() for _, b in self.spans], np.float64)
        self.subpoints = np.array(cache.subpoints(good), np.float64)
        every = cache.flashes(good)
        order = np.argsort(every.time, kind="stable")
        self.flashes = Flashes(every.lat[order], every.lon[order], every.time[order])

    def check(self, lo: datetime, hi: datetime, lon_0: float) -> None:
        """``_Skip`` unless readable granules cover ``[lo, hi]`` and were all taken at the ABI's longitude."""
        from ingest.glm import MIN_COVERAGE, span_coverage

        near = (self.ends >= lo.timestamp()) & (self.starts <= hi.timestamp())
        if span_coverage([self.spans[i] for i in np.flatnonzero(near)], lo, hi) < MIN_COVERAGE:
            raise _Skip(SKIP_COVERAGE)
        if np.any(np.abs(self.subpoints[near] - lon_0) > 0.5):
            raise _Skip(SKIP_ORBIT)

    def watched(self, lo: float, hi: float) -> bool:
        """Whether readable granules cover ``[lo, hi]`` (s since 1970): a quiet hour that was observed."""
        from ingest.glm import MIN_COVERAGE, span_coverage

        near = (self.ends >= lo) & (self.starts <= hi)
        spans = [self.spans[i] for i in np.flatnonzero(near)]
        begin, end = datetime.fromtimestamp(lo, UTC), datetime.fromtimestamp(hi, UTC)
        return span_coverage(spans, begin, end) >= MIN_COVERAGE

    def around(self, lo: datetime, hi: datetime) -> Flashes:
        """The flashes of ``[lo, hi]`` (and a second either side)."""
        i0, i1 = np.searchsorted(self.flashes.time, [lo.timestamp() - 1.0, hi.timestamp() + 1.0])
        f = self.flashes
        return Flashes(f.lat[i0:i1], f.lon[i0:i1], f.time[i0:i1])


class _Walk:
    """Every contender on the frames of one archive: statistics into the tally, box maxima at the storm onsets."""

    def __init__(self, settings: CompareSettings, uri: str, contenders: list[Contender], totals: _Totals) -> None:
        from foundation.clock import SystemClock
        from ingest.archive import get_archive

        s = settings
        self.settings, self.uri, self.contenders, self.totals = s, uri, contenders, totals
        self.archive = get_archive(uri, s.cache, SystemClock())
        self.history = timedelta(seconds=max(c.history_s for c in contenders))  # ltg windows and earlier frames
        listed = self.archive.frames(s.sector, s.band, s.start - self.history - timedelta(minutes=2), s.end, s.product)
        self.by_time = {item.name.scan_start: item for item in listed}
        self.times = sorted(self.by_time)
        step = timedelta(minutes=s.every_minutes) - timedelta(seconds=30)
        self.frames: list[Any] = []
        for item in listed:
            t = item.name.scan_start
            if t >= s.start and (not self.frames or t - self.frames[-1].name.scan_start >= step):
                self.frames.append(item)
        self.images = _Images(self.archive)
        self.reference: Any = None  # the grid of the first scored frame: onsets and lead times live on it
        self.onsets: list[Any] = []
        self.lead_frame_times: list[float] = []
        self.maxima: dict[str, list[NDArray[np.float64]]] = {c.name: [] for c in contenders}

    def run(self) -> None:
        """Walk the frames; add statistics, counts and lead times to the totals."""
        s, totals = self.settings, self.totals
        totals.frames_listed += len(self.frames)
        if not self.frames:
            log.warning("compare: %s holds no %s band %d frames in %s..%s", self.uri, s.sector, s.band, s.start, s.end)
            return
        self.glm = _Glm(self.archive, self.frames[0].name.satellite, s.start - self.history, s.end)
        totals.flashes += int(self.glm.flashes.time.size)
        began = time.monotonic()
        for done, item in enumerate(self.frames, start=1):
            try:
                self._frame(item)
            except _Skip as skip:
                totals.skipped[str(skip)] += 1
                log.info("compare: skipped %s: %s", item.name.name, skip)
            if done % max(len(self.frames) // 10, 1) == 0 or done == len(self.frames):
                log.info("compare: %s %d/%d frames, %.0f s", self.uri, done, len(self.frames), time.monotonic() - began)
        _add_lead_times(s, self.onsets, self.lead_frame_times, self.maxima, totals)

    def _previous(self, item: Any, image: Any) -> Callable[[float], F32]:
        def previous(window_s: float) -> F32:
            target = item.name.scan_start - timedelta(seconds=window_s)
            lo, hi = bisect_left(self.times, target - _NEAR), bisect_right(self.times, target + _NEAR)
            close = self.times[lo:hi]
            if not close:
                raise _Skip(SKIP_NO_PREVIOUS)
            before = self.images.get(self.by_time[min(close, key=lambda u: abs((u - target).total_seconds()))])
            if not _same_grid(before.grid, image.grid):
                raise _Skip(SKIP_MOVED)
            values: F32 = before.values
            return values

        return previous

    def _frame(self, item: Any) -> None:
        """Run every contender on one frame (``_Skip`` if any cannot), then score and keep what is needed."""
        s, totals = self.settings, self.totals
        t = item.name.scan_start
        labelled = t + timedelta(seconds=s.rule.window_s) <= s.end
        lo, hi = t - self.history, t + timedelta(seconds=s.rule.window_s) if labelled else t
        image = self.images.get(item)
        self.glm.check(lo, hi, image.grid.projection.lon_0)
        around = self.glm.around(lo, hi)
        scene = Scene(image, around, t.timestamp(), self._previous(item, image))
        grids: dict[str, NDArray[np.float64]] = {}
        for c in self.contenders:
            clock = time.perf_counter()
            grids[c.name] = np.asarray(c.forecast(scene), np.float64)
            totals.seconds[c.name] += time.perf_counter() - clock
        clock = time.perf_counter()
        earth = np.isfinite(scene.bt)
        for name, p in grids.items():
            if p.shape != scene.bt.shape or not np.isfinite(p[earth]).all():
                msg = f"{name} gave {p.shape} probabilities, or non-finite ones on Earth, for {item.name.name}"
                raise ValueError(msg)
            grids[name] = np.where(earth, np.clip(p, 0.0, 1.0), np.nan)
        if labelled:
            y = frame_labels(scene.grid, around.lat, around.lon, around.time, scene.time, s.rule)[earth]
            totals.tally.add(
                item.name.name, t.date().isoformat(), {n: frame_statistics(p[earth], y) for n, p in grids.items()}
            )
            totals.frames_scored += 1
        else:
            totals.frames_lead_only += 1
        self._lead_rows(scene, grids)
        totals.seconds["scoring"] += time.perf_counter() - clock

    def _lead_rows(self, scene: Scene, grids: dict[str, NDArray[np.float64]]) -> None:
        """The largest probability in each watched onset's box (NaN for onsets this frame does not watch)."""
        from featurize.glm_grid import flash_pixels
        from models.leadtime import box_max_at, storm_onsets

        s = self.settings
        if self.reference is None:  # the first scored frame fixes the grid, and with it the onsets' pixels
            self.reference = scene.grid
            f = self.glm.flashes
            pixels = flash_pixels(self.reference, f.lat, f.lon, margin=s.radius)
            onsets = storm_onsets(
                pixels.rows, pixels.cols, f.time[pixels.index], self.reference.shape,
                radius=s.radius, quiet_s=s.quiet_s, record_start=(s.start - self.history).timestamp(),
            )  # fmt: skip
            # an onset is one only if GLM watched its quiet hour: a held-out day's first storms are not onsets
            self.onsets = [
                o for o in onsets if o.time < s.end.timestamp() and self.glm.watched(o.time - s.quiet_s, o.time)
            ]
        if not _same_grid(self.reference, scene.grid):
            self.totals.skipped["on another grid than the first frame (scored, but not for lead times)"] += 1
            return
        self.lead_frame_times.append(scene.time)
        watching = [k for k, o in enumerate(self.onsets) if o.time - s.lookback_s <= scene.time < o.time]
        for name, p in grids.items():
            row = np.full(len(self.onsets), np.nan)
            for k in watching:
                row[k] = box_max_at(p, self.onsets[k], s.rule.box)
            self.maxima[name].append(row)


def _add_lead_times(
    settings: CompareSettings,
    onsets: list[Any],
    times: list[float],
    maxima: dict[str, list[NDArray[np.float64]]],
    totals: _Totals,
) -> None:
    """Each contender's per-onset lead times on one archive (:func:`models.leadtime.lead_times`), appended."""
    from models.leadtime import lead_times

    if not times:
        return
    first = None
    for name, rows in maxima.items():
        box = np.array(rows, np.float64).reshape(len(times), len(onsets)).T
        result = lead_times(onsets, times, box, settings.lead_thresholds, lookback_s=settings.lookback_s)
        first = first or result
        mine = totals.lead_minutes.setdefault(name, {f"{t:g}": [] for t in settings.lead_thresholds})
        for t in settings.lead_thresholds:
            mine[f"{t:g}"].extend(result[f"{t:g}"]["lead_minutes"])
    if first is not None:
        totals.onsets += first["onsets"]
        totals.onsets_without_history += first["onsets_without_history"]


def _lead_intervals(settings: CompareSettings, totals: _Totals, order: list[str], rate: float) -> dict[str, Any]:
    """Each forecast's lead times per threshold with onset-bootstrap intervals (one resampling shared by all)."""
    s = settings
    leads: dict[str, Any] = {}
    for name in order:
        minutes = totals.lead_minutes.get(name)
        if name == "climatology" and totals.lead_minutes:
            # One value everywhere: below a threshold it never reaches it (every onset missed); at or above it,
            # it "warns" of every onset from the first frame of the look-back, which measures only the frame
            # spacing, so that lead time is not reported.
            template = next(iter(totals.lead_minutes.values()))
            minutes = {k: [None] * len(v) for k, v in template.items() if rate < float(k)}
        if minutes is not None:
            leads[name] = {
                k: lead_time_intervals(v, s.resamples, np.random.default_rng([s.seed, 1]), s.level)
                for k, v in minutes.items()
            }
    return leads


# -- the comparison -----------------------------------------------------------------------


def compare(settings: CompareSettings, models: dict[str, Path], logistic_data: Path | None = None) -> dict[str, Any]:
    """Score ``models`` (name → repository version folder) and the baselines on the archives' frames.

    Parameters
    ----------
    settings
        Archives, period, label rule, bootstrap.
    models
        Forecast name → SavedModel folder (with ``model_card.json``).
    logistic_data
        A dataset folder whose training split fits the logistic baseline; none without it.

    Returns
    -------
    The comparison as written to ``comparison.json``: settings, frames, days,
    pixels, the climatology used, and per forecast every score with its
    interval, storm lead times with theirs, and paired differences from the
    first model.
    """
    s = settings
    contenders = [_saved_model(name, path) for name, path in models.items()]
    rate_from = next((c for c in contenders if isinstance(c.about.get("card_base_rate"), (int, float))), None)
    contenders.append(_persistence(s.persistence_window_s))
    if logistic_data is not None:  # the climatology of the data the new models were trained on, not an old card's
        contenders.append(_logistic(logistic_data))
        rate_from = contenders[-1]
    names = [c.name for c in contenders]
    totals = _Totals(tally=Tally(names, min_days=s.min_days))
    began = time.monotonic()
    for uri in s.archives:
        _Walk(s, uri, contenders, totals).run()
    if totals.frames_scored == 0:
        msg = (f"no frame of {', '.join(s.archives)} in {s.start}..{s.end} could be scored "
               f"(skipped: {dict(totals.skipped) or 'none listed'}); a frame needs GLM {s.rule.window_s / 60:g} "
               "min after it, so --end must be that much past the first frame")  # fmt: skip
        raise ValueError(msg)
    unit, unit_names, stats = totals.tally.units()
    counts = unpack(stats[names[0]])  # pixels and positives per unit: the same for every forecast
    view = unpack(stats[names[0]].sum(axis=0))
    if rate_from is not None and "train_base_rate" in rate_from.about:
        rate = float(rate_from.about["train_base_rate"])
        source = f"the weighted base rate of the training split of {rate_from.about['data']} (--logistic-data)"
    elif rate_from is not None:
        rate = float(rate_from.about["card_base_rate"])
        source = f"the training base rate in the model card of {rate_from.name} (evaluation.base_rate)"
    else:
        rate = float(view["sum_y"] / view["n"])
        source = "the pooled base rate of the held-out frames scored here (no model card records one)"
    stats = {"climatology": constant_statistics(rate, counts["n"], counts["sum_y"])} | stats
    order = ["climatology", *names]
    result = compare_units(
        stats, rate, resamples=s.resamples, seed=s.seed, level=s.level, reference=next(iter(models), None)
    )
    leads = _lead_intervals(s, totals, order, rate)
    for name in order:
        result["forecasts"][name]["lead_time"] = leads.get(name)
        result["forecasts"][name]["about"] = next(
            (c.about for c in contenders if c.name == name),
            {"kind": "baseline", "probability": rate, "source": source},
        )
        if name in totals.seconds:
            run = totals.frames_scored + totals.frames_lead_only
            result["forecasts"][name]["seconds_per_frame"] = totals.seconds[name] / max(run, 1)
    rule = asdict(s.rule)
    differs = sorted(c.name for c in contenders if c.about.get("label_rule") not in (None, rule))
    if differs:
        log.warning("compare: %s were trained on another label rule than %s", differs, rule)
    return {
        "settings": {
            "archives": list(s.archives),
            "start": s.start.isoformat(),
            "end": s.end.isoformat(),
            "sector": s.sector,
            "band": s.band,
            "every_minutes": s.every_minutes,
            "label_rule": rule,
            "bootstrap": {"resamples": s.resamples, "seed": s.seed, "level": s.level, "method": "percentile"},
            "models": {name: str(path) for name, path in models.items()},
            "logistic_data": str(logistic_data) if logistic_data else None,
        },
        "label_rule_differs": differs,
        "frames": totals.frames_scored,
        "frames_lead_only": totals.frames_lead_only,
        "frames_listed": totals.frames_listed,
        "frames_skipped": dict(totals.skipped),
        "days": totals.tally.days,
        "pixels": int(view["n"]),
        "positives": int(view["sum_y"]),
        "flashes": totals.flashes,
        "resampling": {
            "unit": unit,
            "units": len(unit_names),
            "why": f"whole UTC days when the scored frames span at least {s.min_days} days, else frames",
        },
        "climatology": {"probability": rate, "source": source},
        "lead_time_rule": {
            "onsets": totals.onsets,
            "onsets_without_history": totals.onsets_without_history,
            "radius_px": s.radius,
            "quiet_minutes": s.quiet_s / 60.0,
            "box_px": s.rule.box,
            "lookback_minutes": s.lookback_s / 60.0,
            "interval": "bootstrap over onsets; the median is over the detected onsets",
        },
        "seconds": time.monotonic() - began,
        "seconds_scoring_per_frame": totals.seconds["scoring"] / max(totals.frames_scored + totals.frames_lead_only, 1),
        **result,
    }


# -- output -------------------------------------------------------------------------------


def _num(x: dict[str, Any] | None, digits: int = 3) -> str:
    """``value [lo, hi]``, ``–`` for an undefined value."""
    if not x or x.get("value") is None:
        return "–"

    def text(v: float) -> str:
        return f"{round(v, digits) + 0.0:.{digits}f}"  # + 0.0: no "-0.000"

    bounds = "" if x.get("lo") is None else f" [{text(x['lo'])}, {text(x['hi'])}]"
    return f"{text(x['value'])}{bounds}"


def report_markdown(summary: dict[str, Any]) -> str:
    """The markdown report: the headline table with intervals, paired differences and the contingency scores."""
    st = summary["settings"]
    res = summary["resampling"]
    level = round(100 * st["bootstrap"]["level"])
    lines = [
        f"# Comparison on held-out frames ({', '.join(st['archives'])}, {st['start']} .. {st['end']})",
        "",
        f"{summary['frames']} frames scored on {len(summary['days'])} day(s), {summary['pixels']:,} pixels, "
        f"{summary['positives']:,} positive (lightning within {st['label_rule']['box']} px in "
        f"{st['label_rule']['window_s'] / 60:g} min). Intervals: {level} % percentile bootstrap, "
        f"{st['bootstrap']['resamples']} resamples of {res['units']} {res['unit']} (seed {st['bootstrap']['seed']}). "
        f"Climatology: {summary['climatology']['probability']:.4f}, {summary['climatology']['source']}.",
        "",
        f"| forecast | ROC-AUC [{level} %] | Brier skill [{level} %] | best CSI (thr) [{level} %] | ECE [{level} %] | "
        f"median lead @25 % (min) [{level} %] | @50 % (min) [{level} %] |",
        "|---|---|---|---|---|---|---|",
    ]

    def lead(r: dict[str, Any], key: str) -> str:
        block = (r.get("lead_time") or {}).get(key)
        if not block:
            return "–"
        return f"{_num(block['median_minutes'], 0)} ({block['detected']}/{block['onsets']})"

    for name, r in summary["forecasts"].items():
        best = r["best_csi"]
        thr = best["threshold"]["value"]
        lines.append(
            f"| {name} | {_num(r['roc_auc'])} | {_num(r['brier_skill'])} | "
            f"{_num(best['csi'])} ({'–' if thr is None else f'{thr:.2f}'}) | {_num(r['ece'])} | "
            f"{lead(r, '0.25')} | {lead(r, '0.5')} |"
        )
    rule = summary["lead_time_rule"]
    lines += [
        "",
        f"Lead times: {rule['onsets']} storm onsets (no flash within {rule['radius_px']} px for "
        f"{rule['quiet_minutes']:g} min); median over the detected ones (detected/onsets), interval by resampling "
        "onsets.",
    ]
    differences = summary.get("differences") or {}
    if differences.get("forecasts"):
        ref = differences["reference"]
        lines += [
            "",
            f"## Paired differences from {ref} (same resamples)",
            "",
            f"| forecast − {ref} | ΔROC-AUC | ΔBrier skill | Δbest CSI | ΔECE |",
            "|---|---|---|---|---|",
        ]
        for name, d in differences["forecasts"].items():
            lines.append(
                f"| {name} | {_num(d['roc_auc'])} | {_num(d['brier_skill'])} | {_num(d['best_csi'])} | "
                f"{_num(d['ece'])} |"
            )
    lines += ["", "## At fixed thresholds: CSI / POD / FAR", "", "| forecast | threshold | CSI | POD | FAR |"]
    lines.append("|---|---|---|---|---|")
    for name, r in summary["forecasts"].items():
        for t in r["thresholds"]:
            lines.append(f"| {name} | {t['threshold']:.2f} | {_num(t['csi'])} | {_num(t['pod'])} | {_num(t['far'])} |")
    skipped = summary["frames_skipped"]
    if skipped:
        lines += ["", "Frames left out: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()) + "."]
    lines.append("")
    return "\n".join(lines)


def _saved_models(values: list[str]) -> dict[str, Path]:
    """``NAME=PATH`` (or a bare ``PATH``, named ``<model>/<version>``) → name → folder."""
    models: dict[str, Path] = {}
    for value in values:
        name, sep, path = value.partition("=")
        folder = Path(path if sep else value)
        name = name if sep else f"{folder.parent.name}/{folder.name}"
        if not name or name in models or name in BASELINES:
            msg = f"--saved-model: names must be unique and not a baseline's ({', '.join(BASELINES)}); got {name!r}"
            raise ConfigError(msg)
        if not (folder / "saved_model.pb").is_file():
            msg = f"--saved-model {name}: {folder} holds no saved_model.pb"
            raise ConfigError(msg)
        models[name] = folder
    return models


def compare_command(args: argparse.Namespace) -> int:
    """Run ``ltgcast models compare``; write ``comparison.json`` and ``comparison.md``, print the markdown."""
    from ltgcast.datasets import utc_flag

    start, end = utc_flag(args.start, "--start"), utc_flag(args.end, "--end")
    if end <= start:
        msg = f"--end ({args.end}) must be after --start ({args.start})"
        raise ConfigError(msg)
    if args.bootstrap < 1 or not 0 < args.level < 1 or args.every_minutes < 0:
        msg = "--bootstrap must be >= 1, --level within (0, 1) and --every-minutes >= 0"
        raise ConfigError(msg)
    models = _saved_models(args.saved_model or [])
    if not models:
        msg = "--saved-model: name at least one model (NAME=PATH)"
        raise ConfigError(msg)
    logistic = Path(args.logistic_data) if args.logistic_data else None
    if logistic is not None and not (logistic / "dataset.json").is_file():
        msg = f"--logistic-data: {logistic} holds no dataset.json"
        raise ConfigError(msg)
    out = Path(args.out)
    settings = CompareSettings(
        archives=tuple(args.archive),
        start=start,
        end=end,
        cache=Path(args.cache) if args.cache else out / ".cache",
        sector=args.sector,
        band=args.band,
        every_minutes=args.every_minutes,
        resamples=args.bootstrap,
        seed=args.seed,
        level=args.level,
    )
    summary = compare(settings, models, logistic)
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.json").write_text(json.dumps(summary, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    report = report_markdown(summary)
    (out / "comparison.md").write_text(report, encoding="utf-8")
    sys.stdout.write(report)
    return 0


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``ltgcast models compare``."""
    parser.add_argument("--archive", action="append", required=True, help="dir:PATH or s3://bucket (repeatable)")
    parser.add_argument("--start", required=True, help="first frame time, ISO 8601 UTC")
    parser.add_argument("--end", required=True, help="end of the period (exclusive; labels need 30 min before it)")
    parser.add_argument("--sector", default="M1", help="ABI sector (default M1)")
    parser.add_argument("--band", type=int, default=13, help=argparse.SUPPRESS)
    parser.add_argument("--every-minutes", type=float, default=5.0, help="frame spacing (default 5)")
    parser.add_argument("--saved-model", action="append", help="NAME=PATH of a repository version folder (repeatable)")
    parser.add_argument("--logistic-data", help="a dataset folder: fit the logistic baseline on its training split")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the resampling (default 0)")
    parser.add_argument("--level", type=float, default=0.95, help="coverage of the intervals (default 0.95)")
    parser.add_argument("--cache", help="where remote archive files are cached (default OUT/.cache)")
    parser.add_argument("--out", required=True, help="where comparison.json and comparison.md go")
