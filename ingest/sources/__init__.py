"""Frame sources: where new GOES-R files come from, behind one :class:`FrameSource` protocol.

Contract of every source
------------------------
* :meth:`FrameSource.poll` lists the *complete* files available now as
  :class:`Candidate` objects (name, where it is, size in bytes). A file still
  being written is never listed. Listing the same file again on later polls is
  expected: the daemon's checkpoint, not the source, decides what is new.
  Transient trouble (an outage, a slow listing) is retried inside the source;
  when retries run out the poll raises :class:`~foundation.errors.IngestError` and
  the daemon tries again on its next poll.
* :meth:`FrameSource.pending` counts files seen but not complete yet, so a
  one-shot run knows whether to wait.
* A source may list a file it will not hand over (a spool entry that is a
  symbolic link): its :class:`Candidate` carries ``refusal`` = ``(stage,
  reason)`` and no ``local`` path; the daemon quarantines the reason alone and
  never fetches, opens or copies it.
* :meth:`FrameSource.fetch` returns a local path to a copy whose size was checked
  against the listing (a spool file is used in place; an S3 object is downloaded
  into the cache). It raises :class:`~foundation.errors.IngestError` on failure.
* :meth:`FrameSource.discard` is called after the daemon copied a refused file to
  quarantine: a source removes its own copies (the S3 download cache) and leaves
  alone what it does not own (a spool).
* Sources select products by name with a :class:`FrameFilter` where that saves work
  (the S3 source lists only the product folders the filter wants).
* Optional: a source that must acknowledge what it handed over (the SQS source
  deletes a queue message only then) has a ``done(candidate)`` method
  (:class:`AcknowledgingSource`). The daemon calls it, when the source has one,
  for every listed candidate it is finished with: after the checkpoint recorded
  the outcome (announced, quarantined, deadletter, late), for a candidate the
  checkpoint had already recorded, and for one it left alone (filtered) — never
  for one whose fetch failed and will be tried again, nor when the poll failed
  before the outcome was recorded. ``done`` must not raise for a failed
  acknowledgement (the source gets the candidate again and lists it again, and
  the checkpoint drops it). ``dir:``, ``s3://`` and ``sim:`` have no ``done``:
  their listings need no acknowledgement.
* Optional: ``wait(seconds)`` and ``close()``. A source that can be woken by
  what it watches (the spool, by the kernel's notifications) has ``wait``: the
  daemon calls it between polls instead of sleeping the poll interval, and it
  returns as soon as something changed (or at most after ``seconds``). The
  daemon calls ``close()`` when its run ends.

Sources are made from a URI by :func:`get_source` (``dir:PATH``, ``s3://BUCKET``,
``sim:``, ``sqs://QUEUE``); unknown schemes list the valid ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs

from foundation.clock import Clock
from foundation.errors import ConfigError
from foundation.registry import Registry
from ingest.events import SECTORS
from ingest.filenames import GoesFilename

#: The ABI scan sectors a source may be asked for (:data:`ingest.events.SECTORS`).
ABI_SECTORS = SECTORS


@dataclass(frozen=True)
class Candidate:
    """One complete file a source can hand over.

    ``source_uri`` is where it lives (``s3://bucket/key`` or ``file:///…``);
    ``size`` is the byte count the source listed. ``refusal`` is ``(stage,
    reason)`` when the source will not hand the file over (it is then
    quarantined with its reason only, never fetched).
    """

    name: str
    source_uri: str
    size: int
    local: Path | None = None
    refusal: tuple[str, str] | None = None


@dataclass(frozen=True)
class FrameFilter:
    """Which files the service wants, by name.

    >>> f = FrameFilter(sectors=("C",), bands=(13,))
    >>> f.products()
    ['ABI-L1b-RadC', 'GLM-L2-LCFA']
    >>> from ingest.filenames import parse_filename
    >>> f.accepts(parse_filename("OR_ABI-L1b-RadC-M6C08_G16_s20241671801178_e20241671803563_c20241671804099.nc"))
    False
    """

    satellites: tuple[str, ...] = ()
    sectors: tuple[str, ...] = ABI_SECTORS
    bands: tuple[int, ...] = (13,)
    abi_families: tuple[str, ...] = ("ABI-L1b-Rad",)
    glm: bool = True

    def __post_init__(self) -> None:
        bad = [s for s in self.sectors if s not in ABI_SECTORS]
        if bad:
            msg = f"unknown ABI sectors {bad}; valid: {', '.join(ABI_SECTORS)}"
            raise ConfigError(msg)
        bad_bands = [b for b in self.bands if not 1 <= b <= 16]
        if bad_bands:
            msg = f"ABI bands are 1..16, found {bad_bands}"
            raise ConfigError(msg)

    def accepts(self, name: GoesFilename) -> bool:
        """Whether a parsed file name is wanted."""
        if self.satellites and name.satellite not in self.satellites:
            return False
        if name.instrument == "GLM":
            return self.glm
        return name.family in self.abi_families and name.sector in self.sectors and name.band in self.bands

    def products(self) -> list[str]:
        """NOAA product folders holding wanted files (both mesoscale sectors share ``…M``)."""
        folders = {f"{family}{sector[0]}" for family in self.abi_families for sector in self.sectors}
        return sorted(folders) + (["GLM-L2-LCFA"] if self.glm else [])


class FrameSource(Protocol):
    """Lists complete files and hands out checked local copies."""

    def poll(self) -> list[Candidate]:
        """Every complete file available now (already-announced ones included)."""
        ...

    def pending(self) -> int:
        """Files known to be on their way but not listable yet (still being written)."""
        ...

    def fetch(self, candidate: Candidate) -> Path:
        """A local, size-checked copy of ``candidate``."""
        ...

    def discard(self, candidate: Candidate, local: Path) -> None:
        """Drop the source's copy after it was quarantined."""
        ...


class AcknowledgingSource(FrameSource, Protocol):
    """A source that is told when the daemon is finished with a candidate (see the module docstring)."""

    def done(self, candidate: Candidate) -> None:
        """The daemon is finished with ``candidate`` (its outcome is recorded, or it was left alone)."""
        ...


@dataclass(frozen=True)
class SourceContext:
    """What every source factory may use: a cache folder, the clock and the filter."""

    cache: Path
    clock: Clock
    frame_filter: FrameFilter = field(default_factory=FrameFilter)


SourceFactory = Callable[[str, SourceContext], FrameSource]


def _dir(uri: str, context: SourceContext) -> FrameSource:
    from ingest.sources.spool import DirSpool

    return DirSpool.from_uri(uri, context)


def _s3(uri: str, context: SourceContext) -> FrameSource:
    from ingest.sources.noaa_s3 import NoaaS3Source  # boto3 is imported only when used

    return NoaaS3Source.from_uri(uri, context)


def _sqs(uri: str, context: SourceContext) -> FrameSource:
    from ingest.sources.sqs import SqsSource  # boto3 is imported only when used

    return SqsSource.from_uri(uri, context)


def _sim(uri: str, context: SourceContext) -> FrameSource:
    from ingest.sources.sim import SimSource

    return SimSource.from_uri(uri, context)


#: URI scheme -> factory.
SOURCES: Registry[SourceFactory] = Registry(
    "source",
    {"dir": _dir, "s3": _s3, "sim": _sim, "sqs": _sqs},
    shown={"dir": "dir:PATH", "s3": "s3://BUCKET", "sim": "sim:[?options]", "sqs": "sqs://QUEUE"},
)


def get_source(uri: str, context: SourceContext) -> FrameSource:
    """The source for ``uri``; unknown schemes list the valid ones.

    >>> get_source("ftp://example", SourceContext(Path("."), clock=None))  # doctest: +ELLIPSIS +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    foundation.errors.ConfigError: unknown source 'ftp://example';
    expected one of: dir:PATH, s3://BUCKET, sim:[?options], sqs://QUEUE
    """
    scheme = uri.split(":", 1)[0] if ":" in uri else ""
    return SOURCES.lookup(scheme, asked=uri)(uri, context)


def parse_options(query: str, allowed: Iterable[str], uri: str) -> dict[str, str]:
    """``a=1&b=2`` into a dict, refusing options not in ``allowed``."""
    options = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        msg = f"unknown option(s) {unknown} in source {uri!r}; valid: {', '.join(sorted(allowed))}"
        raise ConfigError(msg)
    return options
