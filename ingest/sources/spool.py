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

Only regular files inside the spool are read. Entries are examined with
``lstat`` and links are never followed: a symbolic link named like a GOES-R file
(to ``/etc/passwd``, or to a frame outside the spool) is listed with a
``refusal`` at stage ``spool`` and quarantined with its reason only (the target
is never opened or copied); a folder that is a symbolic link is not walked; and
:meth:`DirSpool.fetch` checks again that the file is a regular file whose
resolved path lies inside the spool.

Options: ``dir:PATH?patterns=OR_ABI-*.nc,OR_GLM-*.nc&settle_s=2``.
"""

from __future__ import annotations

import fnmatch
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISLNK, S_ISREG

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
                ready.append(self._candidate(path, stat))
            else:
                log.debug("%s is still being written (%d bytes)", path, stat.st_size)
        self._seen = seen
        return sorted(ready, key=lambda c: (c.name, c.source_uri))

    def pending(self) -> int:
        """Files seen but not yet settled at the last poll."""
        now = self.clock.monotonic()
        return sum(1 for s in self._seen.values() if now - s.since < self.settle_s)

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
