"""``ltgcast dataset build``: an archive of ABI frames and GLM granules → a sharded, day-split training set.

For every band-13 frame of the sector in ``[start, end)`` whose GLM coverage
spans the ``ltg`` window before it and the label window after it: read it,
build the channels and labels, sample pixels (all positives, near-storm and
far negatives), cut patches, compute features, and queue the records in the
shuffle buffer of the frame's day split. Frames that cannot be used are
skipped and counted by reason: GLM coverage, unreadable files, windows that
reach into a day of another split, GLM and ABI from different orbital
positions (only granules of the frame's own satellite are used). Prints a progress bar on stderr and a JSON
summary on stdout; writes ``dataset.json`` and ``stats.json`` beside the shards.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from featurize.channels import DEFAULT_FEATURE_SET, FeatureSet, get_feature_set
from featurize.examples import Examples, Flashes, LabelRule, frame_examples
from featurize.features import dense_features, feature_names
from featurize.sampling import SPLITS, SamplingPlan, split_of
from featurize.stats import StatsBook
from foundation.clock import SystemClock
from foundation.errors import ConfigError, FrameDecodeError, IngestError
from foundation.utc import iso_utc, parse_utc
from ingest.abi import AbiImage
from ingest.archive import Archive, ArchiveItem, get_archive
from ingest.glm import MIN_COVERAGE, GlmGranule, span_coverage
from ingest.readers import read_product

log = logging.getLogger(__name__)

# Why a frame was skipped (the keys of ``frames_skipped`` in dataset.json).
SKIP_COVERAGE = f"GLM covers less than {MIN_COVERAGE:.0%} of the ltg and label windows"
SKIP_SPLIT = "its ltg or label window reaches into a day of another split"
SKIP_ORBIT = "GLM and ABI were not at the same orbital position"
SKIP_LISTING = "the archive could not be listed"
SKIP_FRAME = "a frame could not be read"
SKIP_NO_PREVIOUS = "no frame 15 min earlier for ir_trend"
SKIP_MOVED = "the frame 15 min earlier is on another grid (the sector moved)"


@dataclass(frozen=True)
class DatasetSettings:
    """Everything ``ltgcast dataset build`` needs, checked."""

    archive: str
    start: datetime
    end: datetime
    out: Path
    cache: Path
    sector: str
    band: int
    product: str
    feature_set: FeatureSet
    rule: LabelRule
    plan: SamplingPlan
    shards: int
    shuffle_buffer: int
    seed: int
    every_minutes: float = 5.0
    patch: int = 64

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DatasetSettings:
        """Parse and check the flags (``ConfigError`` names the bad one)."""
        start, end = utc_flag(args.start, "--start"), utc_flag(args.end, "--end")
        if end <= start:
            msg = f"--end ({args.end}) must be after --start ({args.start})"
            raise ConfigError(msg)
        if args.shards < 1 or args.shuffle_buffer < 2:
            msg = "--shards must be >= 1 and --shuffle-buffer >= 2"
            raise ConfigError(msg)
        if not 1 <= args.band <= 16 or args.label_box < 1 or args.label_minutes <= 0 or args.every_minutes < 0:
            msg = "--band must be 1..16, --label-box >= 1, --label-minutes > 0 and --every-minutes >= 0"
            raise ConfigError(msg)
        return cls(
            archive=args.archive,
            start=start,
            end=end,
            out=Path(args.out),
            cache=Path(args.cache) if args.cache else Path(args.out) / ".cache",
            sector=args.sector,
            band=args.band,
            product=args.product,
            feature_set=get_feature_set(args.feature_set),
            rule=LabelRule(window_s=args.label_minutes * 60.0, box=args.label_box),
            plan=SamplingPlan(max_positives=args.max_positives, near_px=args.near_px, min_negatives=args.min_negatives),
            shards=args.shards,
            shuffle_buffer=args.shuffle_buffer,
            seed=args.seed,
            every_minutes=args.every_minutes,
        )


def utc_flag(text: str, flag: str) -> datetime:
    """A command-line time (ISO 8601, UTC when naive); ``ConfigError`` naming ``flag`` otherwise."""
    try:
        return parse_utc(text, naive_is_utc=True)
    except ValueError as exc:
        msg = f"{flag}: expected ISO 8601 UTC like 2024-06-15T18:00Z, found {text!r}"
        raise ConfigError(msg) from exc


def _thin(frames: list[ArchiveItem], step: timedelta) -> list[ArchiveItem]:
    """Keep frames at least ``step`` apart (consecutive 1-minute mesoscale frames are near copies)."""
    kept: list[ArchiveItem] = []
    for item in frames:
        if not kept or item.name.scan_start - kept[-1].name.scan_start >= step - timedelta(seconds=30):
            kept.append(item)
    return kept


class FlashCache:
    """GLM granules read once each (bad ones remembered), dropped once no later frame can need them."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.granules: dict[str, tuple[datetime, Flashes, float]] = {}
        self.bad: set[str] = set()

    def _read(self, item: ArchiveItem) -> None:
        try:
            granule = read_product(self.archive.fetch(item))
        except (FrameDecodeError, IngestError) as exc:
            log.warning("leaving out GLM granule %s: %s", item.name.name, exc)
            self.bad.add(item.name.name)
            return
        if not isinstance(granule, GlmGranule):
            self.bad.add(item.name.name)
            return
        f = granule.flashes
        self.granules[item.name.name] = (item.name.scan_end, Flashes(f.lat, f.lon, f.time), granule.subpoint_lon)

    def read(self, items: list[ArchiveItem], keep_after: datetime) -> list[ArchiveItem]:
        """Read what is not cached yet; return the items that could be read."""
        for item in items:
            if item.name.name not in self.granules and item.name.name not in self.bad:
                self._read(item)
        good = [i for i in items if i.name.name in self.granules]
        wanted = {i.name.name for i in good}
        self.granules = {k: v for k, v in self.granules.items() if k in wanted or v[0] >= keep_after}
        return good

    def subpoints(self, items: list[ArchiveItem]) -> list[float]:
        """Each granule's nominal sub-satellite longitude."""
        return [self.granules[i.name.name][2] for i in items]

    def flashes(self, items: list[ArchiveItem]) -> Flashes:
        """The flashes of (read) ``items`` together."""
        return Flashes.concat([self.granules[i.name.name][1] for i in items])


class _Skip(Exception):  # noqa: N818 - a control-flow signal, not an error
    """A frame cannot be used; the message is the reason counted in the summary."""


class _Progress:
    """A one-line progress bar on stderr (a line per 10 % when stderr is not a terminal)."""

    def __init__(self, total: int) -> None:
        self.total, self.began, self.last_decile = max(total, 1), time.monotonic(), -1

    def show(self, done: int, examples: int) -> None:
        fraction = done / self.total
        text = (
            f"[{'#' * int(30 * fraction):<30}] {done}/{self.total} frames, {examples} examples, "
            f"{time.monotonic() - self.began:.0f} s"
        )
        if sys.stderr.isatty():
            sys.stderr.write("\r" + text + ("\n" if done == self.total else ""))
        elif int(10 * fraction) > self.last_decile:
            self.last_decile = int(10 * fraction)
            sys.stderr.write(text + "\n")
        sys.stderr.flush()


class DatasetBuilder:
    """The named steps of a build: frames → examples → shuffled shards, stats and a manifest."""

    def __init__(self, settings: DatasetSettings) -> None:
        from models.dataset import ShardedWriter  # TensorFlow is imported only for a build

        self.settings = settings
        self.archive = get_archive(settings.archive, settings.cache, SystemClock())
        self.rng = np.random.default_rng(settings.seed)
        self.writers = {
            split: ShardedWriter(settings.out, split, settings.shards, settings.shuffle_buffer, self.rng)
            for split in SPLITS
        }
        self.stats = StatsBook()
        self.skipped: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        self.positives: Counter[str] = Counter()
        self.frame_positive_rates: list[float] = []
        self.persistence = (0, 0)  # train-split pixels with lightning in their box now, and how many got lightning
        self.flashes = FlashCache(self.archive)

    def run(self) -> dict[str, Any]:
        """Build the dataset; return the summary (also written into ``dataset.json``)."""
        s = self.settings
        try:
            available = self.archive.frames(s.sector, s.band, s.start, s.end, s.product)
            by_time = {item.name.scan_start: item for item in available}
            frames = _thin(available, timedelta(minutes=s.every_minutes))
            progress = _Progress(len(frames))
            for done, item in enumerate(frames, start=1):
                try:
                    self._frame(item, by_time)
                except _Skip as skip:
                    self.skipped[str(skip)] += 1
                    log.info("skipped %s: %s", item.name.name, skip)
                progress.show(done, sum(self.counts.values()))
        finally:
            for writer in self.writers.values():
                writer.close()
        return self._finish(len(available), len(frames))

    def _frame(self, item: ArchiveItem, by_time: dict[datetime, ArchiveItem]) -> None:
        s = self.settings
        t = item.name.scan_start
        need_start = t - timedelta(minutes=s.feature_set.window_minutes)
        need_end = t + timedelta(seconds=s.rule.window_s)
        split = split_of(t.date())
        if {split_of(need_start.date()), split_of(need_end.date())} != {split}:
            raise _Skip(SKIP_SPLIT)
        granules = self._granules(item, need_start, need_end)
        image = self._image(item)
        if any(abs(lon - image.grid.projection.lon_0) > 0.5 for lon in self.flashes.subpoints(granules)):
            raise _Skip(SKIP_ORBIT)
        previous = self._previous(item, image, by_time) if "ir_trend" in s.feature_set.channels else None
        rng = np.random.default_rng([s.seed, int.from_bytes(hashlib.sha256(item.name.name.encode()).digest()[:8])])
        examples = frame_examples(
            image.values, image.grid, self.flashes.flashes(granules), t.timestamp(), s.feature_set, rng,
            previous_bt_k=previous, rule=s.rule, plan=s.plan, patch_size=s.patch,
        )  # fmt: skip
        self._write(examples, item, split)

    def _granules(self, item: ArchiveItem, start: datetime, end: datetime) -> list[ArchiveItem]:
        """The readable granules of the frame's satellite covering ``[start, end]``, or skip the frame."""
        try:
            listed = self.archive.granules(start, end)
        except IngestError as exc:
            log.warning("%s: %s", item.name.name, exc)
            raise _Skip(SKIP_LISTING) from exc
        same_satellite = [g for g in listed if g.name.satellite == item.name.satellite]
        good = self.flashes.read(same_satellite, keep_after=start)
        coverage = span_coverage([(g.name.scan_start, g.name.scan_end) for g in good], start, end)
        if coverage < MIN_COVERAGE:
            log.info("%s: readable GLM covers %.0f%% of %s..%s", item.name.name, 100 * coverage, start, end)
            raise _Skip(SKIP_COVERAGE)
        return good

    def _image(self, item: ArchiveItem) -> AbiImage:
        try:
            image = read_product(self.archive.fetch(item))
        except (FrameDecodeError, IngestError) as exc:
            log.warning("%s: %s", item.name.name, exc)
            raise _Skip(SKIP_FRAME) from exc
        if not isinstance(image, AbiImage):
            raise _Skip(SKIP_FRAME)
        return image

    def _previous(self, item: ArchiveItem, current: AbiImage, by_time: dict[datetime, ArchiveItem]) -> Any:
        target = item.name.scan_start - timedelta(minutes=self.settings.feature_set.window_minutes)
        near = [t for t in by_time if abs((t - target).total_seconds()) <= 90]
        if not near:
            raise _Skip(SKIP_NO_PREVIOUS)
        before = self._image(by_time[min(near, key=lambda t: abs((t - target).total_seconds()))])
        if not (np.array_equal(before.grid.x, current.grid.x) and np.array_equal(before.grid.y, current.grid.y)):
            raise _Skip(SKIP_MOVED)
        return before.values

    def _write(self, examples: Examples, item: ArchiveItem, split: str) -> None:
        from models.dataset import encode

        stamp = int(item.name.scan_start.timestamp())
        records = [encode(examples, i, item.name.name, stamp) for i in range(len(examples))]
        self.writers[split].add(records)
        self.counts[split] += len(examples)
        self.positives[split] += int(examples.labels.sum())
        self.frame_positive_rates.append(examples.positive_rate)
        if split == "train":
            active, hits = examples.persistence
            self.persistence = (self.persistence[0] + active, self.persistence[1] + hits)
        if split == "train":  # the drift reference: whole frames, as the live service sees them
            self.stats.update({**examples.channels, **dense_features(examples.channels)})

    def _finish(self, available: int, frames: int) -> dict[str, Any]:
        s = self.settings
        total = sum(self.counts.values())
        summary: dict[str, Any] = {
            "schema_version": 1,
            "created": iso_utc(datetime.now(UTC)),
            "archive": s.archive,
            "start": iso_utc(s.start),
            "end": iso_utc(s.end),
            "sector": s.sector,
            "band": s.band,
            "product": s.product,
            "feature_set": s.feature_set.key,
            "channels": list(s.feature_set.channels),
            "features": list(feature_names(s.feature_set.channels)),
            "patch": s.patch,
            "label_rule": asdict(s.rule),
            "sampling": asdict(s.plan),
            "seed": s.seed,
            "frames_available": available,
            "frames_considered": frames,
            "frames_used": frames - sum(self.skipped.values()),
            "frames_skipped": dict(self.skipped),
            "examples": total,
            "positive_rate": (sum(self.positives.values()) / total) if total else None,
            "pixel_positive_rate": float(np.mean(self.frame_positive_rates)) if self.frame_positive_rates else None,
            # P(lightning in the next 30 min | lightning in the 16x16 box now), train-split pixels
            "persistence_rate": (self.persistence[1] / self.persistence[0]) if self.persistence[0] else None,
            "splits": {
                split: {
                    "examples": self.counts[split],
                    "positives": self.positives[split],
                    "shards": [w.path(i).name for i in range(w.shards)],
                    "shard_counts": w.counts,
                }
                for split, w in self.writers.items()
            },
        }
        (s.out / "dataset.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
        (s.out / "stats.json").write_text(json.dumps(self.stats.to_dict()) + "\n", encoding="utf-8")
        return summary


def dataset_command(args: argparse.Namespace) -> int:
    """``ltgcast dataset build``: exit 0, or 1 when no frame could be used."""
    settings = DatasetSettings.from_args(args)
    summary = DatasetBuilder(settings).run()
    brief = {k: summary[k] for k in ("examples", "positive_rate", "frames_used", "frames_skipped")}
    brief["splits"] = {k: v["examples"] for k, v in summary["splits"].items()}
    sys.stdout.write(json.dumps(brief) + "\n")
    return 0 if summary["frames_used"] else 1


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``ltgcast dataset build``."""
    parser.add_argument("--archive", required=True, help="dir:PATH or s3://noaa-goes16[?endpoint=URL]")
    parser.add_argument("--start", required=True, help="ISO 8601 UTC, first frame time")
    parser.add_argument("--end", required=True, help="ISO 8601 UTC, frames start before this")
    parser.add_argument("--out", required=True, help="output folder for shards, dataset.json and stats.json")
    parser.add_argument("--cache", help="download cache for s3 archives (default OUT/.cache)")
    parser.add_argument("--sector", choices=("C", "F", "M1", "M2"), default="M1", help="ABI sector of the frames")
    parser.add_argument("--band", type=int, default=13, help="ABI band of the frames (1-16)")
    parser.add_argument("--product", choices=("ABI-L1b-Rad", "ABI-L2-CMIP"), default="ABI-L1b-Rad", help="ABI product")
    parser.add_argument("--feature-set", default=DEFAULT_FEATURE_SET, help="NAME/VERSION of the input channels")
    parser.add_argument("--label-minutes", type=float, default=30.0, help="positive: a flash within this many minutes")
    parser.add_argument("--label-box", type=int, default=16, help="... in a box this many pixels wide around it")
    parser.add_argument("--max-positives", type=int, default=1000, help="per frame")
    parser.add_argument("--every-minutes", type=float, default=5.0, help="use frames at least this far apart")
    parser.add_argument("--near-px", type=int, default=32, help="radius of 'near a storm' for negatives")
    parser.add_argument("--min-negatives", type=int, default=50, help="near and far negatives per frame, at least")
    parser.add_argument("--shards", type=int, default=4, help="shards per split")
    parser.add_argument("--shuffle-buffer", type=int, default=8000, help="records mixed per split (~33 KB each)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling and shuffling")
