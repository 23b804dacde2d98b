"""The ingest daemon's persistent memory of what it has already dealt with.

``<state>/checkpoint.json`` maps each file name to its outcome (``announced``,
``quarantined``, ``deadletter``, ``late``), its scan start and when that
happened, plus the *watermark*: the latest scan start announced so far. File
names are unique per NOAA product file, so the name is the key.

Rules
-----
* The checkpoint is written (atomically: temporary file, ``fsync``, rename)
  right after each outcome is final — after a publish was acknowledged — so a
  restart never announces a recorded file again.
* At the edge: a file that was seen, or even published, but not yet recorded
  when the process died is announced again after the restart. That repeat is at
  most the one file in flight; its event has the same ``name``, the idempotency
  key consumers use (grids are written idempotently under their frame key).
* Entries whose scan start is more than ``retention`` behind the watermark are
  forgotten, which bounds the file. A file that shows up that late is not
  announced (outcome ``late``), since it could no longer be told apart from one
  announced and forgotten. Entries without a usable scan start (unparseable
  names, late files, files refused as from the future or as spool links,
  anything before the first announcement) are kept for ``retention`` of
  wall-clock time instead. The watermark never runs ahead of the wall clock,
  and the daemon refuses a file from the future before it is recorded here
  (:mod:`ingest.daemon`), so it never moves the watermark at all.
* A file refused at decode is recorded with its size; the same name with
  another size (the writer finished it, or a good copy was resent) is tried
  again.
* One daemon per state folder: ``<state>/lock`` is held with ``flock``.
* A checkpoint that cannot be read stops the daemon with the path and the
  reason: starting afresh would announce everything again.
"""

from __future__ import annotations

import fcntl
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

from foundation.errors import IngestError
from foundation.files import atomic_write_text
from foundation.utc import iso_utc, parse_utc

OUTCOMES = ("announced", "quarantined", "deadletter", "late")


@dataclass(frozen=True)
class Entry:
    """What happened to one file."""

    outcome: str
    scan_start: str | None
    at: str
    size: int | None = None


class Checkpoint:
    """Load, update and atomically save the ingest state of one state folder."""

    VERSION = 1

    def __init__(self, state: Path, *, retention: timedelta = timedelta(hours=6)) -> None:
        self.state = state
        self.path = state / "checkpoint.json"
        self.retention = retention
        self.entries: dict[str, Entry] = {}
        self.watermark: datetime | None = None
        self._lock: IO[str] | None = None

    @classmethod
    def open(cls, state: Path, *, retention: timedelta = timedelta(hours=6)) -> Checkpoint:
        """Lock ``state`` for this process and load its checkpoint (empty if none yet)."""
        checkpoint = cls(state, retention=retention)
        checkpoint._acquire()
        try:
            checkpoint._load()
        except IngestError:
            checkpoint.close()
            raise
        return checkpoint

    def _acquire(self) -> None:
        try:
            self.state.mkdir(parents=True, exist_ok=True)
            lock = (self.state / "lock").open("a", encoding="utf-8")
        except OSError as exc:
            msg = f"cannot use state folder {self.state}: {exc}"
            raise IngestError(msg) from exc
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            lock.close()
            msg = f"state folder {self.state} is locked by another ingest daemon (one daemon per --state)"
            raise IngestError(msg) from exc
        self._lock = lock

    def _load(self) -> None:
        if not self.path.exists():
            return
        try:
            doc: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8"))
            if doc.get("version") != self.VERSION:
                msg = f"expected checkpoint version {self.VERSION}, found {doc.get('version')!r}"
                raise ValueError(msg)
            self.entries = {name: Entry(**entry) for name, entry in doc["files"].items()}
            self.watermark = parse_utc(doc["watermark"]) if doc.get("watermark") else None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            msg = (
                f"checkpoint {self.path} is unreadable ({type(exc).__name__}: {exc}); "
                "refusing to start afresh, which would announce every file again — repair or move it"
            )
            raise IngestError(msg) from exc

    def seen(self, name: str, size: int | None = None) -> bool:
        """Whether ``name`` already has a final outcome.

        A file refused at decode is tried again when it shows up with another
        ``size`` (a writer finished it, or a good copy was resent).
        """
        entry = self.entries.get(name)
        if entry is None:
            return False
        return not (entry.outcome == "quarantined" and size is not None and entry.size not in (None, size))

    def too_late(self, scan_start: datetime) -> bool:
        """Whether a file that old can no longer be deduplicated."""
        return self.watermark is not None and scan_start < self.watermark - self.retention

    def record(
        self, name: str, outcome: str, scan_start: datetime | None, at: datetime, size: int | None = None
    ) -> None:
        """Record a final outcome, advance the watermark, forget old entries and save.

        The watermark never runs ahead of ``at`` (the wall clock): one file named
        in the future must not make every real file look late.
        """
        if outcome not in OUTCOMES:
            msg = f"unknown outcome {outcome!r}; valid: {', '.join(OUTCOMES)}"
            raise ValueError(msg)
        self.entries[name] = Entry(outcome, iso_utc(scan_start) if scan_start else None, iso_utc(at), size)
        if outcome == "announced" and scan_start is not None:
            mark = min(scan_start, at)
            self.watermark = max(self.watermark or mark, mark)
        self._forget(at)
        self.save()

    def _keep(self, entry: Entry, now: datetime) -> bool:
        if entry.scan_start and entry.outcome != "late" and self.watermark is not None:
            return parse_utc(entry.scan_start) >= self.watermark - self.retention
        return parse_utc(entry.at) >= now - self.retention

    def _forget(self, now: datetime) -> None:
        self.entries = {name: e for name, e in self.entries.items() if self._keep(e, now)}

    def save(self) -> None:
        """Write the checkpoint atomically."""
        doc = {
            "version": self.VERSION,
            "watermark": iso_utc(self.watermark) if self.watermark else None,
            "files": {name: vars(e) for name, e in sorted(self.entries.items())},
        }
        try:
            atomic_write_text(self.path, json.dumps(doc, indent=0))
        except OSError as exc:
            msg = f"cannot save checkpoint {self.path}: {exc}"
            raise IngestError(msg) from exc

    def close(self) -> None:
        """Release the state folder."""
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None
