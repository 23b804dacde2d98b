"""The previous band-13 frames of temporal models (``ir_trend``): kept per satellite and sector, found by time and grid.

A feature set with ``ir_trend`` (``ir-ltg-trend/1``, ``ir-ltg-trend/2``) needs,
beside the frame, band 13 of the frame ``window_minutes`` (15) earlier on the
same grid: the cooling of cloud tops, the classic precursor of first
lightning. :class:`PreviousFrames` finds it for the worker's scoring step, the
stable model's and the shadow's alike, in this order:

1. :class:`FrameCache`: the band-13 frames this worker has read (to score them,
   or as a predecessor), per (satellite, sector), for ``KEEP_S`` (20 min)
   behind the newest scan of any sector and at most ``max_bytes`` in all (the
   worker's ``trend_cache_mib``, 256 MiB; beyond, the oldest scans go first). A
   CONUS frame is 15 MB (4 or 5 kept), a mesoscale one 1 MB (about 20), a full
   disk 118 MB. Only while a temporal model is served (stable or shadow);
   otherwise it holds nothing.
2. :class:`FrameIndex` and the frame's file: the band-13 frame events of the
   frame topic, which the worker reads whole while a temporal model is served
   (a broadcast reader, as for GLM: every partition, no group, from the
   worker's GLM look-back), name the file of the frame 15 minutes earlier,
   which is read (from the shared volume, the ingest daemon's cache: kept 6 h)
   and cached. At most two files are read per frame (a copy of an event with
   a bogus URI never hides the real frame). This is what a worker of
   the distributed mode needs: frame events are spread over the 12 partitions
   by their scan's slot (:attr:`ingest.events.FrameEvent.slot`), so the frame 15
   minutes earlier (3 CONUS slots, 15 mesoscale slots back) is on another
   partition, often another worker's; and what a worker restarted on Kafka
   needs, as the topic still holds the events of the frames before it stopped.

Matching is training's (``ltgcast/datasets.py``,
:func:`serve.worker.nowcast.previous_problem`): the same satellite and sector, the scan
start nearest to ``window_minutes`` before the frame's and within
:data:`~serve.worker.nowcast.TREND_TOLERANCE_S` (90 s), on the same grid (shape and
``x``/``y`` scan angles: a mesoscale sector that moved is another grid).

**When there is no previous frame** the frame is scored all the same, never
dead-lettered nor held back: with the frame itself as its predecessor, so
``ir_trend`` is 0 at every pixel, the channel's neutral fill value ("no change"),
what the model sees wherever the trend has no data. The grid's provenance says
``"trend": "missing"`` with ``"trend_missing"`` the reason (``no_frame``,
``moved``, ``unreadable``), and ``ltgcast_trend_missing_total{sector,reason}``
counts it; a grid with a trend says ``"trend": "ok"`` and
``"trend_from"``, the previous frame's file. The drift monitor leaves such a
frame's ``ir_trend`` out (a field of zeros is not the weather). Expect it:

* ``no_frame``: the first 15 minutes of each sector after the service started
  on the in-process bus (``ltgcast run`` with ingest: its bus starts empty; on
  Kafka the topic remembers), a gap in the feed, a full disk scanned every 10
  minutes (mode 6: no scan falls 15 ± 1.5 minutes before another; such models
  are for sectors with a 1- or 5-minute cadence), or a predecessor that arrives
  after its successor is scored;
* ``moved``: a mesoscale sector re-pointed in the last 15 minutes;
* ``unreadable``: the predecessor's file is gone or broken.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from prometheus_client import Counter

from ingest.abi import AbiImage
from ingest.events import FrameEvent, local_path
from serve.worker.nowcast import IR_BAND, TREND_TOLERANCE_S, same_grid

log = logging.getLogger(__name__)

F32 = NDArray[np.float32]
#: How long a frame is kept behind its sector's newest scan: the 15-minute window, its 90 s tolerance, and room
#: for frames scored a few minutes out of order.
KEEP_S = 20 * 60.0
DEFAULT_MAX_BYTES = 256 * 2**20
MAX_INDEXED = 1024  # scans indexed per (satellite, sector): 6 h of 1-minute scans and room to spare
COPIES_PER_SCAN = 4  # events with different URIs kept per scan
READS_PER_FRAME = 2  # predecessor files read at most per frame (a bogus copy first, then the real one)
MISSING_REASONS = ("no_frame", "moved", "unreadable")

TREND_MISSING = Counter(
    "ltgcast_trend_missing_total",
    "Frames a temporal model (ir_trend) scored without the frame 15 minutes earlier, so with ir_trend 0 "
    "(no change), by why: no_frame (none within 90 s known), moved (another grid), unreadable (its file).",
    ["sector", "reason"],
)

Key = tuple[str, str]  # (satellite, sector)


@dataclass(frozen=True)
class Band13:
    """One band-13 frame kept for the trend of the frames after it (``values`` read-only)."""

    name: str
    scan_start: datetime
    image: AbiImage

    @property
    def values(self) -> F32:
        """Brightness temperature ``[H, W]`` in K."""
        return self.image.values

    @property
    def nbytes(self) -> int:
        """Bytes of the brightness temperatures (the grid's axes are small beside them)."""
        return int(self.image.values.nbytes)


@dataclass(frozen=True)
class Previous:
    """The previous frame found for a frame (``values``), or why there is none (``missing``)."""

    values: F32 | None = None
    name: str | None = None
    missing: str | None = None

    @property
    def found(self) -> bool:
        """Whether the frame 15 minutes earlier was found."""
        return self.values is not None

    def provenance(self) -> dict[str, str]:
        """What the grid's provenance records: ``trend`` ok or missing, and the frame used or the reason."""
        if self.found:
            return {"trend": "ok", "trend_from": str(self.name)}
        return {"trend": "missing", "trend_missing": str(self.missing)}


class FrameCache:
    """Recent band-13 frames per (satellite, sector): ``keep_s`` behind the newest scan, ``max_bytes`` in all."""

    def __init__(self, *, keep_s: float = KEEP_S, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.keep = timedelta(seconds=keep_s)
        self.max_bytes = max_bytes
        self._frames: dict[Key, dict[str, Band13]] = {}  # by file name

    def __len__(self) -> int:
        return sum(len(frames) for frames in self._frames.values())

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        return sum(f.nbytes for frames in self._frames.values() for f in frames.values())

    def names(self) -> set[str]:
        """The file names of every frame held."""
        return {name for frames in self._frames.values() for name in frames}

    def put(self, key: Key, image: AbiImage) -> None:
        """Keep ``image`` (band 13) for the frames after it; then drop what the bounds leave out."""
        values = image.values.view()
        values.flags.writeable = False  # shared with the scoring step: never changed in place
        frame = Band13(image.name.name, image.scan_start, _with_values(image, values))
        if frame.nbytes > self.max_bytes:
            return
        self._frames.setdefault(key, {})[frame.name] = frame
        self._bound()

    def candidates(self, key: Key, target: datetime, tolerance_s: float) -> list[Band13]:
        """The frames of ``key`` whose scan starts within ``tolerance_s`` of ``target``, nearest first."""
        near = [f for f in self._frames.get(key, {}).values()
                if abs((f.scan_start - target).total_seconds()) <= tolerance_s]  # fmt: skip
        return sorted(near, key=lambda f: abs((f.scan_start - target).total_seconds()))

    def clear(self) -> None:
        """Hold nothing (no temporal model is served)."""
        self._frames.clear()

    def _bound(self) -> None:
        if not self._frames:
            return
        latest = max(f.scan_start for frames in self._frames.values() for f in frames.values())
        for key, frames in list(self._frames.items()):
            # behind the newest scan of any sector: a sector this worker no longer receives (a rebalance, M2
            # switched off) does not keep its frames until the byte cap forces them out (a late frame whose
            # predecessor went is read from its file)
            kept = {n: f for n, f in frames.items() if f.scan_start >= latest - self.keep}
            if kept:
                self._frames[key] = kept
            else:
                del self._frames[key]
        total = self.nbytes
        while total > self.max_bytes:
            key, oldest = min(((k, f) for k, frames in self._frames.items() for f in frames.values()),
                              key=lambda kf: kf[1].scan_start)  # fmt: skip
            del self._frames[key][oldest.name]
            if not self._frames[key]:
                del self._frames[key]
            total -= oldest.nbytes


def _start(candidate: Band13 | FrameEvent) -> datetime:
    return candidate.scan_start if isinstance(candidate, Band13) else candidate.start


def _with_values(image: AbiImage, values: F32) -> AbiImage:
    from dataclasses import replace

    return replace(image, values=values)


class FrameIndex:
    """The band-13 frame events seen on the frame topic, per (satellite, sector) and scan start (bounded).

    Copies of one scan with different URIs are all kept (a few): an event naming a real frame with a bogus URI
    must not hide the real one.
    """

    def __init__(self, max_per_key: int = MAX_INDEXED) -> None:
        self.max_per_key = max_per_key
        self._events: dict[Key, dict[datetime, dict[str, FrameEvent]]] = {}

    def __len__(self) -> int:
        """The scans indexed."""
        return sum(len(events) for events in self._events.values())

    def add(self, event: FrameEvent) -> None:
        """Note a band-13 frame event."""
        if event.band != IR_BAND or event.sector is None:
            return
        events = self._events.setdefault((event.satellite, str(event.sector)), {})
        copies = events.setdefault(event.start, {})
        if event.uri in copies or len(copies) < COPIES_PER_SCAN:
            copies[event.uri] = event
        while len(events) > self.max_per_key:
            del events[min(events)]

    def candidates(self, key: Key, target: datetime, tolerance_s: float) -> list[FrameEvent]:
        """The events of ``key`` whose scan starts within ``tolerance_s`` of ``target``, nearest first."""
        near = [e for t, copies in self._events.get(key, {}).items()
                if abs((t - target).total_seconds()) <= tolerance_s for e in copies.values()]  # fmt: skip
        return sorted(near, key=lambda e: abs((e.start - target).total_seconds()))

    def prune(self, horizon: datetime) -> None:
        """Forget the events of scans before ``horizon``."""
        for key, events in list(self._events.items()):
            kept = {t: e for t, e in events.items() if t >= horizon}
            if kept:
                self._events[key] = kept
            else:
                del self._events[key]


class PreviousFrames:
    """Finds the previous frame of a band-13 frame: in the cache, else by the frame index and its file."""

    def __init__(self, read: Callable[[Path], Any], *, max_bytes: int = DEFAULT_MAX_BYTES,
                 tolerance_s: float = TREND_TOLERANCE_S) -> None:  # fmt: skip
        self._read = read
        self.tolerance_s = tolerance_s
        self.cache = FrameCache(max_bytes=max_bytes)
        self.index = FrameIndex()
        self.reads = 0  # predecessor files read (not found in the cache)

    def keep(self, image: AbiImage) -> None:
        """Cache a frame just read, for the frames 15 minutes after it."""
        if image.band == IR_BAND and image.name.sector is not None:
            self.cache.put((image.name.satellite, image.name.sector), image)

    def find(self, image: AbiImage, window_s: float) -> Previous:
        """Band 13 of the frame ``window_s`` before ``image`` on its grid, or why there is none.

        The nearest scan within the tolerance wins, as in training, whether it is cached or known by its event
        only (then its file is read: :data:`READS_PER_FRAME` files at most per frame).
        """
        key = (image.name.satellite, str(image.name.sector))
        target = image.scan_start - timedelta(seconds=window_s)
        cached: list[Band13 | FrameEvent] = list(self.cache.candidates(key, target, self.tolerance_s))
        held = {f.name for f in cached} | self.cache.names() | {image.name.name}
        known: list[Band13 | FrameEvent] = [
            e for e in self.index.candidates(key, target, self.tolerance_s) if e.name not in held
        ]
        reasons, reads = set(), 0
        for candidate in sorted(cached + known, key=lambda c: abs((_start(c) - target).total_seconds())):
            if isinstance(candidate, FrameEvent):
                if reads >= READS_PER_FRAME or candidate.name in self.cache.names():  # read already, as a copy
                    continue
                reads += 1
                before = self._read_frame(candidate)
                if before is None:
                    reasons.add("unreadable")
                    continue
                self.keep(before)
                candidate = Band13(before.name.name, before.scan_start, before)
            if same_grid(candidate.image.grid, image.grid):
                return Previous(candidate.values, candidate.name)
            reasons.add("moved")
        return Previous(missing=next((r for r in ("moved", "unreadable") if r in reasons), "no_frame"))

    def _read_frame(self, event: FrameEvent) -> AbiImage | None:
        self.reads += 1
        try:
            image = self._read(local_path(event.uri))
        except Exception as exc:  # gone (pruned), broken, or not a file URI: the frame goes on without a trend
            log.warning("worker: cannot read %s, the previous frame for ir_trend: %s", event.name, exc)
            return None
        if not isinstance(image, AbiImage) or image.name.name != event.name or image.band != IR_BAND:
            log.warning("worker: %s does not hold the band-13 frame %s; no trend from it", event.uri, event.name)
            return None
        return image
