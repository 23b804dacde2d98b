"""Directory spool source (``dir:PATH``): files land in a tree, as LDM delivers GOES-R to NWS offices.

A file is listed only once it is complete:

* it matches one of the patterns (default ``*.nc``) and is not hidden or a
  temporary name (``.*``, ``*.tmp``, ``*.part``, ``*.partial``), so a writer that
  writes ``.name.tmp`` and renames it into place is picked up at the rename;
* and its size and modification time were the same at two polls at least
  ``settle_s`` seconds apart, so a file written in place under its final name is
  read only after the writer stopped (a writer that pauses longer than
  ``settle_s`` can still be read early: the decode then refuses the partial
  file, and when the file changes again it is tried again, see
  :mod:`ingest.daemon`).

The spool belongs to its feeder (LDM and its scour): the daemon never deletes
or moves anything in it; refused files are *copied* to quarantine.

Options: ``dir:PATH?patterns=OR_ABI-*.nc,OR_GLM-*.nc&settle_s=2``.
"""

from __future__ import annotations

import fnmatch
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG

from ingest.clock import Clock
from ingest.errors import ConfigError, IngestError
from ingest.sources import Candidate, SourceContext, parse_options

log = logging.getLogger(__name__)

_TEMPORARY = ("*.tmp", "*.part", "*.partial")


@dataclass
class _Seen:
    size: int
    mtime_ns: int
    since: float  # monotonic time the (size, mtime) pair was first seen


class DirSpool:
    """A :class:`~ingest.sources.FrameSource` over a directory tree."""

    def __init__(
        self, root: Path, clock: Clock, *, patterns: tuple[str, ...] = ("*.nc",), settle_s: float = 2.0
    ) -> None:
        self.root = root
        self.clock = clock
        self.patterns = patterns
        self.settle_s = settle_s
        self._seen: dict[Path, _Seen] = {}

    @classmethod
    def from_uri(cls, uri: str, context: SourceContext) -> DirSpool:
        """``dir:PATH[?patterns=a,b&settle_s=S]``; the folder must exist."""
        body = uri.split(":", 1)[1]
        path, _, query = body.partition("?")
        options = parse_options(query, ("patterns", "settle_s"), uri)
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
        return cls(root.resolve(), context.clock, patterns=patterns, settle_s=settle_s)

    def _wanted(self, name: str) -> bool:
        if name.startswith(".") or any(fnmatch.fnmatch(name, t) for t in _TEMPORARY):
            return False
        return any(fnmatch.fnmatch(name, p) for p in self.patterns)

    def _files(self) -> list[tuple[Path, os.stat_result]]:
        found = []
        for folder, dirs, names in os.walk(self.root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(names):
                if not self._wanted(name):
                    continue
                path = Path(folder, name)
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue  # renamed or removed between listing and stat
                if S_ISREG(stat.st_mode):
                    found.append((path, stat))
        return found

    def poll(self) -> list[Candidate]:
        """Complete files in the tree, oldest name first."""
        try:
            files = self._files()
        except OSError as exc:
            msg = f"cannot list spool {self.root}: {exc}"
            raise IngestError(msg) from exc
        now = self.clock.monotonic()
        ready, seen = [], {}
        for path, stat in files:
            previous = self._seen.get(path)
            unchanged = previous is not None and (previous.size, previous.mtime_ns) == (stat.st_size, stat.st_mtime_ns)
            entry = previous if unchanged and previous is not None else _Seen(stat.st_size, stat.st_mtime_ns, now)
            seen[path] = entry
            if now - entry.since >= self.settle_s:
                ready.append(Candidate(path.name, path.as_uri(), stat.st_size, local=path))
            else:
                log.debug("%s is still being written (%d bytes)", path, stat.st_size)
        self._seen = seen
        return sorted(ready, key=lambda c: (c.name, c.source_uri))

    def pending(self) -> int:
        """Files seen but not yet settled at the last poll."""
        now = self.clock.monotonic()
        return sum(1 for s in self._seen.values() if now - s.since < self.settle_s)

    def fetch(self, candidate: Candidate) -> Path:
        """The spool file itself, if it still has the listed size."""
        path = candidate.local or Path(candidate.source_uri)
        try:
            size = path.stat().st_size
        except OSError as exc:
            msg = f"spool file {path} vanished before it was read: {exc}"
            raise IngestError(msg) from exc
        if size != candidate.size:
            msg = f"spool file {path} changed size since listed: expected {candidate.size} bytes, found {size}"
            raise IngestError(msg)
        return path

    def discard(self, candidate: Candidate, local: Path) -> None:
        """Leave the spool file where it is: the spool is not ours to change."""
        log.debug("leaving refused %s in the spool (a copy is in quarantine)", local)
