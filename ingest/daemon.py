"""The ingest daemon: poll a source, announce each new file exactly once, refuse bad ones.

One poll, for every listed file not yet in the checkpoint, in scan-start order
(GLM granules and ABI frames interleaved as they were observed):

1. parse the name — a GOES-R product without a reader here (ACHA, MCMIP…) is
   left alone; a name that is no GOES-R name at all is refused (stage ``name``);
2. apply the :class:`~ingest.sources.FrameFilter` — unwanted files are left alone;
3. a file its source will not hand over (a symbolic link in a spool) is refused
   with its reason only, never opened (stage ``spool``);
4. a file whose scan starts more than ``future_tolerance_s`` after the clock is
   refused (stage ``future``) — before the checkpoint's watermark can learn of
   it, so one file named in 2099 never makes the real files after it ``late``;
5. a file older than the checkpoint's retention behind the watermark is ``late``;
6. fetch a size-checked local copy — failures are retried on later polls, and
   after ``max_fetch_failures`` the file is dead-lettered (stage ``download``);
7. decode it with its product reader — a file declaring shapes or counts its
   product cannot have is refused before any array is read (stage ``shape``), a
   truncated, non-NetCDF or wrong-product file (stage ``decode``), and an ABI frame
   with fewer than ``min_valid_share`` valid earth pixels (stage ``empty``); the
   file is read in a child process with a time limit and a memory cap
   (:mod:`ingest.sandbox`), so a file that hangs or crashes the HDF5 library is
   refused (stage ``decode``) instead of stopping the daemon. With a
   :class:`~ingest.handoff.DecodedFiles` (the embedded service), the product
   read comes back from the child and waits there for the worker of this
   process, which then does not read the file again;
8. publish a :class:`~ingest.events.FrameEvent` — an ABI frame on
   ``ltgcast.frames.v1``, placed by its scan's slot so the workers share the
   frames by load; a GLM granule on ``ltgcast.glm.v1``, keyed by satellite, which
   every worker reads whole — and, once the bus acknowledged it, record it in the
   checkpoint and observe the lag (ingest time − scan end).

A refused file is copied to quarantine with a reason file (only the reason
file for a refused link or a failed download), a
:class:`~ingest.events.DeadLetterEvent` is published, the source drops its own
copy (the S3 cache; a spool is left untouched), and the outcome is recorded with
the file's size — in that order, so a crash part-way repeats the step instead of
losing the file. The same name seen later with another size is tried again (a
writer that paused longer than the settle time, then finished). A failed listing or publish ends
the poll (counted); the daemon backs off and tries again, and never exits on bad
data.
"""

from __future__ import annotations

import logging
import math
import statistics
import threading
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from foundation.clock import FUTURE_TOLERANCE_S, Clock, too_far_ahead
from foundation.errors import ConfigError, FilenameError, FrameDecodeError, IngestError
from foundation.retry import Retry
from foundation.settings import check_numbers
from foundation.utc import iso_utc
from ingest import metrics
from ingest.abi import MIN_VALID_SHARE, AbiImage
from ingest.bus import Bus
from ingest.checkpoint import Checkpoint
from ingest.events import DEADLETTER_TOPIC, GLM_KEY, DeadLetterEvent, FrameEvent
from ingest.filenames import GoesFilename, is_goes_product_name, parse_filename
from ingest.glm import GlmGranule
from ingest.handoff import DecodedFiles
from ingest.quarantine import Quarantine
from ingest.readers import read_product
from ingest.sandbox import Isolation, check_in_child
from ingest.sources import Candidate, FrameFilter, FrameSource

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DaemonSettings:
    """How the daemon polls and how patient it is."""

    poll_interval_s: float = 5.0
    max_fetch_failures: int = 5
    max_poll_failures: int = 5
    validate: bool = True
    min_valid_share: float = MIN_VALID_SHARE  # of an ABI frame's earth pixels, or it is refused (see ingest.abi)
    # each file is checked in a bounded child process (ingest.sandbox); None reads it in this process
    isolation: Isolation | None = field(default_factory=Isolation)
    future_tolerance_s: float = FUTURE_TOLERANCE_S  # a scan starting further ahead of the clock is refused
    backoff: Retry = field(default_factory=lambda: Retry(base_s=2.0, max_s=60.0))

    def __post_init__(self) -> None:
        check_numbers(self, positive=("poll_interval_s",), non_negative=("future_tolerance_s",),
                      counts=("max_fetch_failures", "max_poll_failures"))  # fmt: skip
        if not 0.0 <= self.min_valid_share <= 1.0:
            msg = f"DaemonSettings.min_valid_share: expected a share in [0, 1], found {self.min_valid_share!r}"
            raise ConfigError(msg)


@dataclass
class PollReport:
    """What one poll did."""

    listed: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    filtered: int = 0
    pending: int = 0
    error: str | None = None


class LagStats:
    """Announcement lags of one kind of file: count, min and max over the run, median of the last ``keep``.

    Bounded: a daemon that runs for months keeps ``keep`` floats per kind, not one per file.

    >>> stats = LagStats(keep=3)
    >>> for lag in (9.0, 1.0, 2.0, 3.0):
    ...     stats.add(lag)
    >>> stats.to_dict()
    {'count': 4, 'min_s': 1.0, 'median_s': 2.0, 'max_s': 9.0}
    """

    def __init__(self, keep: int = 1000) -> None:
        self.count = 0
        self.low = math.inf
        self.high = -math.inf
        self.recent: deque[float] = deque(maxlen=keep)

    def add(self, lag: float) -> None:
        """Count one lag (seconds)."""
        self.count += 1
        self.low, self.high = min(self.low, lag), max(self.high, lag)
        self.recent.append(lag)

    def to_dict(self) -> dict[str, float | int]:
        """JSON-ready, seconds rounded to the millisecond (the median is over the last ``keep`` lags)."""
        return {"count": self.count, "min_s": round(self.low, 3), "median_s": round(statistics.median(self.recent), 3),
                "max_s": round(self.high, 3)}  # fmt: skip


@dataclass
class RunSummary:
    """Totals over a run, and the announcement lag per sector and band."""

    polls: int = 0
    failed_polls: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    lags: dict[str, LagStats] = field(default_factory=lambda: defaultdict(LagStats))
    last_error: str | None = None
    gave_up: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: counts and lag statistics in seconds."""
        return {
            "polls": self.polls,
            "failed_polls": self.failed_polls,
            "outcomes": dict(sorted(self.outcomes.items())),
            "lag": {key: stats.to_dict() for key, stats in sorted(self.lags.items())},
            "last_error": self.last_error,
            "gave_up": self.gave_up,
        }


def lag_key(name: GoesFilename) -> str:
    """``C/13``, ``M1/13``, ``GLM`` — the unit lag is reported in."""
    return GLM_KEY if name.sector is None else f"{name.sector}/{name.band:02d}"


class IngestDaemon:
    """Polls one :class:`~ingest.sources.FrameSource` into one :class:`~ingest.bus.Bus`."""

    def __init__(
        self,
        source: FrameSource,
        bus: Bus,
        checkpoint: Checkpoint,
        quarantine: Quarantine,
        clock: Clock,
        *,
        frame_filter: FrameFilter | None = None,
        settings: DaemonSettings | None = None,
        handoff: DecodedFiles | None = None,
    ) -> None:
        self.source = source
        self.bus = bus
        self.checkpoint = checkpoint
        self.quarantine = quarantine
        self.clock = clock
        self.frame_filter = frame_filter or FrameFilter()
        self.settings = settings or DaemonSettings()
        self.summary = RunSummary()
        self.handoff = handoff  # the products read, for the worker of this process (ingest.handoff)
        self._fetch_failures: Counter[str] = Counter()

    # -- one poll ------------------------------------------------------------------------

    def poll_once(self) -> PollReport:
        """List, then handle every new file; a source or bus failure ends the poll early."""
        report = PollReport()
        try:
            candidates = sorted(self.source.poll(), key=_time_order)
            report.listed = len(candidates)
            for candidate in candidates:
                if not self.checkpoint.seen(candidate.name, candidate.size):
                    self._handle(candidate, report)
                self._done(candidate)
        except IngestError as exc:
            report.error = str(exc)
            metrics.ERRORS.labels(stage="poll").inc()
            log.error("poll failed: %s", exc)
        else:
            metrics.LAST_POLL.set(self.clock.now().timestamp())
        report.pending = self.source.pending() + sum(1 for n in self._fetch_failures if not self.checkpoint.seen(n))
        metrics.PENDING.set(report.pending)
        self._tally(report)
        return report

    def _done(self, candidate: Candidate) -> None:
        """Tell a source with ``done`` (:class:`~ingest.sources.AcknowledgingSource`) this candidate is finished.

        Finished: its outcome is recorded, or it was left alone; not when its fetch failed and is tried again.
        """
        done = getattr(self.source, "done", None)
        if done is not None and candidate.name not in self._fetch_failures:
            done(candidate)

    def _tally(self, report: PollReport) -> None:
        self.summary.polls += 1
        self.summary.outcomes.update(report.outcomes)
        if report.error:
            self.summary.failed_polls += 1
            self.summary.last_error = report.error

    def _handle(self, candidate: Candidate, report: PollReport) -> None:
        name = self._parse(candidate, report)
        if name is None:
            return
        if candidate.refusal is not None:  # the source will not hand it over: the reason only, never the bytes
            self._refuse(candidate, None, *candidate.refusal, None, report)
            return
        ahead = too_far_ahead(name.scan_start, self.clock.now(), self.settings.future_tolerance_s)
        if ahead is not None:  # refused before the checkpoint records its scan start: the watermark never sees it
            self._refuse(candidate, candidate.local, "future", ahead, None, report)
            return
        if self.checkpoint.too_late(name.scan_start):
            log.warning("%s is older than the checkpoint retention behind the newest frame; not announced", name.name)
            self._final(name.name, "late", name.scan_start, report)
            return
        local = self._fetch(candidate, name, report)
        if local is None:
            return
        before = DecodedFiles.key(local) if self.handoff is not None else None  # the file as it was read
        problem, product = self._decode(local) if self.settings.validate else (None, None)
        if problem is not None:
            self._refuse(candidate, local, problem[0], problem[1], name.scan_start, report)
            return
        if product is not None and self.handoff is not None:  # read once: the worker of this process takes it
            self.handoff.put(local, product, read_as=before)
        self._announce(candidate, name, local, report)

    def _parse(self, candidate: Candidate, report: PollReport) -> GoesFilename | None:
        """The parsed name of a wanted file, or ``None`` when the file was left alone or refused for its name."""
        try:
            name = parse_filename(candidate.name)
        except FilenameError as exc:
            if is_goes_product_name(candidate.name):  # a GOES-R product we have no reader for: not ours
                report.filtered += 1
            elif candidate.refusal is not None:  # a link named anything: refused for being a link
                self._refuse(candidate, None, *candidate.refusal, None, report)
            else:
                self._refuse(candidate, candidate.local, "name", exc.reason, None, report)
            return None
        if not self.frame_filter.accepts(name):
            report.filtered += 1
            return None
        return name

    def _fetch(self, candidate: Candidate, name: GoesFilename, report: PollReport) -> Path | None:
        try:
            local = self.source.fetch(candidate)
        except IngestError as exc:
            self._fetch_failures[candidate.name] += 1
            failures = self._fetch_failures[candidate.name]
            metrics.ERRORS.labels(stage="fetch").inc()
            log.warning("fetch %d of %d failed for %s: %s", failures, self.settings.max_fetch_failures, name.name, exc)
            if failures >= self.settings.max_fetch_failures:
                self._refuse(candidate, None, "download", str(exc), name.scan_start, report)
            return None
        self._fetch_failures.pop(candidate.name, None)
        return local

    def _decode(self, local: Path) -> tuple[tuple[str, str] | None, AbiImage | GlmGranule | None]:
        """Why the file cannot be read as the product its name claims (stage, reason), and the product.

        The product comes back from the child only when there is a :attr:`handoff` to give it to.
        """
        keep = self.handoff is not None
        try:
            if self.settings.isolation is None:
                return None, read_product(local, min_valid_share=self.settings.min_valid_share)
            return None, check_in_child(local, min_valid_share=self.settings.min_valid_share,
                                        isolation=self.settings.isolation, keep=keep)  # fmt: skip
        except FrameDecodeError as exc:
            return (exc.stage, exc.reason), None
        except Exception as exc:  # any reader failure on bad bytes must quarantine, not kill the daemon
            log.exception("unexpected failure decoding %s", local)
            return ("decode", f"unexpected {type(exc).__name__} while decoding: {exc}"), None

    def _announce(self, candidate: Candidate, name: GoesFilename, local: Path, report: PollReport) -> None:
        now = self.clock.now()
        event = FrameEvent.of(
            name, uri=local.resolve().as_uri(), source_uri=candidate.source_uri, size=candidate.size, ingest_time=now
        )
        self.bus.publish(event.topic, event.key, event.to_json(), slot=event.slot)
        self._final(name.name, "announced", name.scan_start, report, now)
        replay = getattr(self.source, "replay_now", lambda: None)()  # a replay's lag is against its own clock
        lag = ((replay or now) - name.scan_end).total_seconds()
        metrics.LAG.labels(product=name.product, sector=name.sector or GLM_KEY, band=_band(name)).observe(lag)
        self.summary.lags[lag_key(name)].add(lag)
        log.info("announced %s (lag %.1f s%s)", name.name, lag, " on the replay clock" if replay else "")

    def _refuse(
        self,
        candidate: Candidate,
        local: Path | None,
        stage: str,
        reason: str,
        scan_start: datetime | None,
        report: PollReport,
    ) -> None:
        now = self.clock.now()
        kept = self.quarantine.put(
            candidate.name, local=local, stage=stage, reason=reason, source_uri=candidate.source_uri, at=now
        )
        key = _key_of(candidate.name)
        letter = DeadLetterEvent(
            name=candidate.name,
            key=key,
            stage=stage,
            reason=reason,
            source_uri=candidate.source_uri,
            quarantine_uri=kept.copy.resolve().as_uri() if kept.copy else None,
            ingest_time=iso_utc(now),
        )
        self.bus.publish(DEADLETTER_TOPIC, key, letter.to_json())
        if local is not None:
            self.source.discard(candidate, local)
        outcome = "deadletter" if stage == "download" else "quarantined"
        self._final(candidate.name, outcome, scan_start, report, now, size=candidate.size)
        log.warning("refused %s at stage %s: %s (kept in %s)", candidate.name, stage, reason, kept.reason_file.parent)

    def _final(
        self,
        name: str,
        outcome: str,
        scan_start: datetime | None,
        report: PollReport,
        at: datetime | None = None,
        size: int | None = None,
    ) -> None:
        self.checkpoint.record(name, outcome, scan_start, at or self.clock.now(), size)
        self._fetch_failures.pop(name, None)
        report.outcomes[outcome] += 1
        metrics.FILES.labels(outcome=outcome).inc()

    # -- the loop ------------------------------------------------------------------------

    def run(self, *, once: bool = False, stop: threading.Event | None = None) -> RunSummary:
        """Poll until ``stop`` is set; with ``once``, until nothing new or pending is left.

        A one-shot run also ends after ``max_poll_failures`` consecutive failed polls
        (the summary's ``last_error`` says why).
        """
        failures = 0
        try:
            while stop is None or not stop.is_set():
                report = self.poll_once()
                failures = failures + 1 if report.error else 0
                if once and failures >= self.settings.max_poll_failures:
                    self.summary.gave_up = True
                    break
                if once and not failures and not report.pending:
                    break
                if failures:
                    self.clock.sleep(self.settings.backoff.delay(failures))
                else:
                    self._wait(min(self.settings.poll_interval_s, 1.0) if once else self.settings.poll_interval_s)
        finally:
            close = getattr(self.source, "close", None)
            if close is not None:
                close()
        return self.summary

    def _wait(self, seconds: float) -> None:
        """Until the next poll: the source's own wait where it has one (a spool woken by the kernel), else sleep."""
        wait = getattr(self.source, "wait", None)
        if wait is None:
            self.clock.sleep(seconds)
        else:
            wait(seconds)


def _time_order(candidate: Candidate) -> tuple[datetime, str]:
    """Scan start, then name; unparseable names last (they are refused anyway)."""
    try:
        return parse_filename(candidate.name).scan_start, candidate.name
    except FilenameError:
        return datetime.max.replace(tzinfo=UTC), candidate.name


def _band(name: GoesFilename) -> str:
    return "-" if name.band is None else f"{name.band:02d}"


def _key_of(file_name: str) -> str:
    """The message key of a file whose name may not parse (then ``unknown``)."""
    try:
        return parse_filename(file_name).sector or GLM_KEY
    except FilenameError:
        return "unknown"
