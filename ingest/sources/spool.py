"""Directory spool source (``dir:PATH``): files land in a tree, as LDM delivers GOES-R to NWS offices.

A file is listed only once it is complete:

* it matches one of the patterns (default ``*.nc``) and is not hidden or a
  temporary name (``.*``, ``*.tmp``, ``*.part``, ``*.partial``);
* and either it was **renamed into place** (from a hidden or temporary name in
  the spool, or moved in from another folder of the same file system, the way
  most feeders deliver) and has not changed since — it is ready at once — or it
  was **written in place** under its final name and its size and modification
  time were the same at two looks at least ``settle_s`` seconds apart, so it is
  read only after the writer stopped (a writer that pauses longer than
  ``settle_s`` can still be read early: the decode then refuses the partial
  file, and when the file changes again it is tried again, see
  :mod:`ingest.daemon`).

Files are released in scan order: a ready file never overtakes an older one (by the scan start in its name)
that is still settling, since the worker takes a later GLM granule for proof that an earlier window is
complete. A backlog found when the notifications start, or an in-place writer, therefore holds back newer
renamed-in files for at most the settle time.

How new files are noticed (``watch``):

* ``events`` — the kernel's notifications (inotify, through the ``watchdog``
  library): a rename into the tree wakes the daemon at once (:meth:`DirSpool.wait`),
  a file written in place wakes it when it changes and again when its settle
  time is up. The tree is still listed in full at every look (and at least
  every poll interval), so a missed notification, or a spool on a network file
  system whose remote writers the kernel cannot see, costs one poll interval,
  not a file.
* ``poll`` — a listing every poll interval, with the settle rule for every file
  (a rename cannot be told from a write).
* ``auto`` (the default) — ``events`` where the kernel gives them, ``poll``
  (with a warning saying why) where it does not: no inotify, or the limit of
  inotify instances or watches reached.

The spool belongs to its feeder (LDM and its scour): the daemon never deletes
or moves anything in it; refused files are *copied* to quarantine.

Only regular files inside the spool are read. Entries are examined with
``lstat`` and links are never followed: a symbolic link named like a GOES-R file
(to ``/etc/passwd``, or to a frame outside the spool) is listed with a
``refusal`` at stage ``spool`` and quarantined with its reason only (the target
is never opened or copied); a folder that is a symbolic link is not walked; and
:meth:`DirSpool.fetch` checks again that the file is a regular file whose
resolved path lies inside the spool.

Options: ``dir:PATH?patterns=OR_ABI-*.nc,OR_GLM-*.nc&settle_s=2&watch=auto``.
"""

from __future__ import annotations

import fnmatch
import logging
import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from stat import S_ISLNK, S_ISREG

from foundation.clock import Clock
from foundation.errors import ConfigError, FilenameError, IngestError
from ingest.filenames import parse_filename
from ingest.sources import Candidate, SourceContext, parse_options

log = logging.getLogger(__name__)

_TEMPORARY = ("*.tmp", "*.part", "*.partial")
#: How new files are noticed (see the module docstring).
WATCH_MODES = ("auto", "events", "poll")


@dataclass
class _Seen:
    size: int
    mtime_ns: int
    since: float  # monotonic time the (size, mtime) pair was first seen


class _Watch:
    """Kernel notifications on a tree: wakes a waiter on any change, remembers what was renamed into place.

    ``renamed`` maps a path to the ``(size, mtime_ns)`` it had when it was renamed (or moved) into the tree:
    while the file still has them, it is complete. The notifications arrive on watchdog's own thread.
    """

    def __init__(self, root: Path, wanted: Callable[[str], bool]) -> None:
        from watchdog.events import (
            FileClosedEvent,
            FileClosedNoWriteEvent,
            FileCreatedEvent,
            FileModifiedEvent,
            FileMovedEvent,
            FileOpenedEvent,
            FileSystemEvent,
            FileSystemEventHandler,
        )
        from watchdog.observers.api import BaseObserver
        from watchdog.observers.inotify import InotifyFullEmitter

        self.changed = threading.Event()
        self.wanted = wanted
        self.renamed: dict[Path, tuple[int, int]] = {}
        self._order: dict[Path, int] = {}  # when each rename was recorded (a count)
        self._recorded = 0
        self._lock = threading.Lock()
        watch = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                if isinstance(event, FileOpenedEvent | FileClosedNoWriteEvent):
                    return  # a reader (the daemon's own check, LDM's decoders): nothing new to list
                if isinstance(event, FileMovedEvent) and event.dest_path:  # also a move from outside the tree
                    watch.moved_in(Path(os.fsdecode(event.dest_path)))
                elif isinstance(event, FileModifiedEvent | FileClosedEvent | FileCreatedEvent):
                    watch.written(Path(os.fsdecode(event.src_path)))
                watch.changed.set()

        # The "full" emitter reports a file moved in from outside the tree as a move, not as a creation.
        self._observer = BaseObserver(emitter_class=InotifyFullEmitter)
        self._observer.schedule(Handler(), str(root), recursive=True)
        self._observer.start()  # OSError where inotify is missing or its limits are reached

    def moved_in(self, path: Path) -> None:
        """Remember the size and time ``path`` had when it was renamed into place (a file the spool lists)."""
        if not self.wanted(path.name):
            return
        try:
            stat = path.lstat()
        except OSError:
            return  # gone again (renamed on): nothing to remember
        if S_ISREG(stat.st_mode):
            with self._lock:
                self.renamed[path] = (stat.st_size, stat.st_mtime_ns)
                self._order[path] = self._recorded
                self._recorded += 1

    def written(self, path: Path) -> None:
        """``path`` was written in place: complete only once it settles, whatever its rename said."""
        with self._lock:
            self.renamed.pop(path, None)
            self._order.pop(path, None)

    def take_renamed(self, path: Path) -> tuple[int, int] | None:
        """The size and time ``path`` had when renamed into place, forgotten once asked for."""
        with self._lock:
            self._order.pop(path, None)
            return self.renamed.pop(path, None)

    def mark(self) -> int:
        """How many renames were recorded so far (taken before a listing, for :meth:`forget_except`)."""
        with self._lock:
            return self._recorded

    def forget_except(self, listed: set[Path], before: int) -> None:
        """Drop renames recorded before a listing (``mark``) that it did not find: moved on, deleted, hidden.

        A rename recorded during the listing is kept for the next one. Memory stays bounded by the tree.
        """
        with self._lock:
            for path in [p for p, order in self._order.items() if order < before and p not in listed]:
                self.renamed.pop(path, None)
                del self._order[path]

    def close(self) -> None:
        """Stop the notifications."""
        self._observer.stop()
        self._observer.join(timeout=5.0)


def _scan_start(name: str) -> datetime | None:
    try:
        return parse_filename(name).scan_start
    except FilenameError:
        return None  # refused for its name by the daemon: it neither waits nor holds anything back


def _in_scan_order(ready: list[Candidate], settling: list[str]) -> list[Candidate]:
    """The ready files that scanned before every file still settling: a file never overtakes an older one.

    A renamed-in file is ready at once while one written in place (or one already there when the notifications
    started) settles; announced out of scan order, a frame could be scored before an older GLM granule of its
    window arrives, as the worker takes a later granule for proof that the window is complete.
    """
    oldest = min((t for t in map(_scan_start, settling) if t is not None), default=None)
    if oldest is None:
        return ready
    return [c for c in ready if (t := _scan_start(c.name)) is None or t < oldest]


class DirSpool:
    """A :class:`~ingest.sources.FrameSource` over a directory tree."""

    def __init__(
        self,
        root: Path,
        clock: Clock,
        *,
        patterns: tuple[str, ...] = ("*.nc",),
        settle_s: float = 2.0,
        watch: str = "poll",
    ) -> None:
        if watch not in WATCH_MODES:
            msg = f"watch: expected one of {', '.join(WATCH_MODES)}, found {watch!r}"
            raise ConfigError(msg)
        self.root = root
        self.clock = clock
        self.patterns = patterns
        self.settle_s = settle_s
        self.watch = watch
        self._seen: dict[Path, _Seen] = {}
        self._watch: _Watch | None = None
        self._tried_watching = False

    @classmethod
    def from_uri(cls, uri: str, context: SourceContext) -> DirSpool:
        """``dir:PATH[?patterns=a,b&settle_s=S]``; the folder must exist."""
        body = uri.split(":", 1)[1]
        path, _, query = body.partition("?")
        options = parse_options(query, ("patterns", "settle_s", "watch"), uri)
        root = Path(path).expanduser()
        if not root.is_dir():
            msg = f"spool folder {root} (from {uri!r}) does not exist or is not a folder"
            raise ConfigError(msg)
        patterns = tuple(p for p in options.get("patterns", "*.nc").split(",") if p)
        try:
            settle_s = float(options.get("settle_s", "2"))
        except ValueError as exc:
            msg = f"settle_s: expected seconds, found {options['settle_s']!r}"
            raise ConfigError(msg) from exc
        spool = cls(root.resolve(), context.clock, patterns=patterns, settle_s=settle_s,
                    watch=options.get("watch", "auto"))  # fmt: skip
        if spool.watch == "events":  # asked for by name: refused at start-up when the kernel cannot give them
            spool._start_watching()
        return spool

    def _wanted(self, name: str) -> bool:
        if name.startswith(".") or any(fnmatch.fnmatch(name, t) for t in _TEMPORARY):
            return False
        return any(fnmatch.fnmatch(name, p) for p in self.patterns)

    def _files(self) -> list[tuple[Path, os.stat_result]]:
        """Wanted regular files and symbolic links of the tree (never followed: ``lstat``, linked folders unwalked)."""
        found = []
        for folder, dirs, names in os.walk(self.root, followlinks=False):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not Path(folder, d).is_symlink())
            for name in sorted(names):
                if not self._wanted(name):
                    continue
                path = Path(folder, name)
                try:
                    stat = path.lstat()
                except FileNotFoundError:
                    continue  # renamed or removed between listing and stat
                if S_ISREG(stat.st_mode) or S_ISLNK(stat.st_mode):
                    found.append((path, stat))
        return found

    def _candidate(self, path: Path, stat: os.stat_result) -> Candidate:
        """A regular file as itself; a symbolic link as a refusal (stage ``spool``) with no local path."""
        if not S_ISLNK(stat.st_mode):
            return Candidate(path.name, path.as_uri(), stat.st_size, local=path)
        try:
            target = os.readlink(path)
        except OSError as exc:
            target = f"unreadable: {exc.strerror}"
        reason = (
            f"{path} is a symbolic link (to {target}); expected a regular file inside the spool {self.root} "
            "(links are never followed, and the target was not read)"
        )
        return Candidate(path.name, path.as_uri(), stat.st_size, refusal=("spool", reason))

    def poll(self) -> list[Candidate]:
        """Complete files in the tree, oldest name first."""
        before = self._watch.mark() if self._watch is not None else 0
        try:
            files = self._files()
        except OSError as exc:
            msg = f"cannot list spool {self.root}: {exc}"
            raise IngestError(msg) from exc
        now = self.clock.monotonic()
        ready, seen, settling = [], {}, []
        for path, stat in files:
            previous = self._seen.get(path)
            unchanged = previous is not None and (previous.size, previous.mtime_ns) == (stat.st_size, stat.st_mtime_ns)
            entry = previous if unchanged and previous is not None else _Seen(stat.st_size, stat.st_mtime_ns, now)
            renamed = self._watch.take_renamed(path) if self._watch is not None else None
            if renamed == (stat.st_size, stat.st_mtime_ns):  # renamed into place and untouched since: complete
                entry.since = -math.inf
            seen[path] = entry
            if now - entry.since >= self.settle_s:
                ready.append(self._candidate(path, stat))
            else:
                settling.append(path.name)
                log.debug("%s is still being written (%d bytes)", path, stat.st_size)
        self._seen = seen
        if self._watch is not None:
            self._watch.forget_except(set(seen), before)
        return sorted(_in_scan_order(ready, settling), key=lambda c: (c.name, c.source_uri))

    def pending(self) -> int:
        """Files seen but not yet settled at the last poll."""
        now = self.clock.monotonic()
        return sum(1 for s in self._seen.values() if now - s.since < self.settle_s)

    @property
    def watching(self) -> bool:
        """Whether kernel notifications wake :meth:`wait` (``False`` before the first wait, and when polling)."""
        return self._watch is not None

    def wait(self, seconds: float) -> None:
        """Wait for the next look at the tree: at most ``seconds``, less when something changed or settles sooner.

        The first call starts the notifications (``watch`` ``events`` or ``auto``); without them this is the
        clock's sleep, as a polling source waits.
        """
        if not self._tried_watching:
            self._start_watching()
        if self._watch is None:
            self.clock.sleep(seconds)
            return
        now = self.clock.monotonic()
        settling = [s.since + self.settle_s - now for s in self._seen.values() if now - s.since < self.settle_s]
        self.clock.wait_for(self._watch.changed, min([seconds, *settling]))
        self._watch.changed.clear()  # before the next listing: a change after it wakes the next wait

    def _start_watching(self) -> None:
        self._tried_watching = True
        if self.watch == "poll":
            return
        try:
            self._watch = _Watch(self.root, self._wanted)
        except (OSError, ImportError) as exc:
            if self.watch == "events":
                msg = f"spool {self.root}: watch=events, but the kernel's notifications are unavailable: {exc}"
                raise ConfigError(msg) from exc
            log.warning("spool %s: no kernel notifications (%s); listing it every poll interval instead",
                        self.root, exc)  # fmt: skip
            return
        log.info("spool %s: watching for new files with the kernel's notifications", self.root)

    def close(self) -> None:
        """Stop the notifications (a later :meth:`wait` polls)."""
        if self._watch is not None:
            self._watch.close()
            self._watch = None

    def fetch(self, candidate: Candidate) -> Path:
        """The spool file itself, if it is still a regular file inside the spool with the listed size."""
        path = candidate.local or Path(candidate.source_uri)
        try:
            stat = path.lstat()
            inside = path.resolve().is_relative_to(self.root.resolve())
        except OSError as exc:
            msg = f"spool file {path} vanished before it was read: {exc}"
            raise IngestError(msg) from exc
        if not S_ISREG(stat.st_mode) or not inside:
            found = "a path leading outside it" if S_ISREG(stat.st_mode) else "a link or special file"
            msg = f"spool entry {path}: expected a regular file inside {self.root}, found {found}"
            raise IngestError(msg)
        size = stat.st_size
        if size != candidate.size:
            msg = f"spool file {path} changed size since listed: expected {candidate.size} bytes, found {size}"
            raise IngestError(msg)
        return path

    def discard(self, candidate: Candidate, local: Path) -> None:
        """Leave the spool file where it is: the spool is not ours to change."""
        log.debug("leaving refused %s in the spool (a copy is in quarantine)", local)
