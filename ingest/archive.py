"""Archives: past ABI frames and GLM granules over a time range, for building datasets.

``dir:PATH`` indexes a folder tree of NOAA-named files (what ``ltgcast
simulate`` writes, or a mirror); ``s3://noaa-goes16[?endpoint=…]`` lists NOAA's
bucket hour folder by hour folder over the range and downloads into a cache
with size checks (:mod:`ingest.sources.noaa_s3`). Both answer the same two
questions — which frames, which granules — and hand out local paths.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from foundation.clock import Clock
from foundation.errors import ConfigError, FilenameError
from ingest.filenames import GoesFilename, parse_filename
from ingest.sources import Candidate, FrameFilter, SourceContext
from ingest.sources.noaa_s3 import NoaaS3Source

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArchiveItem:
    """One archived file: its parsed name and where to get it."""

    name: GoesFilename
    candidate: Candidate


class Archive(Protocol):
    """Past files over a time range."""

    def frames(
        self, sector: str, band: int, start: datetime, end: datetime, family: str = "ABI-L1b-Rad"
    ) -> list[ArchiveItem]:
        """ABI frames of one product family, sector and band starting in ``[start, end)``, by time."""
        ...

    def granules(self, start: datetime, end: datetime) -> list[ArchiveItem]:
        """GLM granules overlapping ``[start, end]``, by time."""
        ...

    def fetch(self, item: ArchiveItem) -> Path:
        """A local copy of ``item``."""
        ...


def _overlaps(name: GoesFilename, start: datetime, end: datetime) -> bool:
    return name.scan_end >= start and name.scan_start <= end


class DirArchive:
    """A folder tree of NOAA-named files (unparseable names are skipped and counted)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.skipped = 0
        self._items: list[ArchiveItem] = []
        for folder, _, names in os.walk(root):
            for file_name in sorted(names):
                if not file_name.endswith(".nc"):
                    continue
                path = Path(folder, file_name)
                try:
                    name = parse_filename(file_name)
                except FilenameError:
                    self.skipped += 1
                    continue
                self._items.append(ArchiveItem(name, Candidate(file_name, path.as_uri(), path.stat().st_size, path)))
        self._items.sort(key=lambda i: (i.name.scan_start, i.name.name))

    def frames(
        self, sector: str, band: int, start: datetime, end: datetime, family: str = "ABI-L1b-Rad"
    ) -> list[ArchiveItem]:
        """Frames of ``family``/``sector``/``band`` starting in ``[start, end)``."""
        return [
            i
            for i in self._items
            if i.name.family == family
            and i.name.sector == sector
            and i.name.band == band
            and start <= i.name.scan_start < end
        ]

    def granules(self, start: datetime, end: datetime) -> list[ArchiveItem]:
        """GLM granules overlapping ``[start, end]``."""
        return [i for i in self._items if i.name.instrument == "GLM" and _overlaps(i.name, start, end)]

    def fetch(self, item: ArchiveItem) -> Path:
        """The file itself."""
        return item.candidate.local or Path(item.candidate.source_uri)


class S3Archive:
    """NOAA's bucket (or an S3-compatible mirror), listed hour by hour over the range."""

    def __init__(self, source: NoaaS3Source) -> None:
        self.source = source
        self._listed: dict[str, list[ArchiveItem]] = {}

    def _hour_folders(self, product: str, start: datetime, end: datetime) -> list[str]:
        hour = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)  # folders are UTC hours
        folders = []
        while hour <= end.astimezone(UTC):
            folders.append(f"{product}/{hour:%Y/%j/%H}/")
            hour += timedelta(hours=1)
        return folders

    def _items(self, product: str, start: datetime, end: datetime) -> list[ArchiveItem]:
        items: list[ArchiveItem] = []
        for prefix in self._hour_folders(product, start, end):
            if prefix not in self._listed:
                listed = []
                for candidate in self.source.list_prefix(prefix):
                    try:
                        listed.append(ArchiveItem(parse_filename(candidate.name), candidate))
                    except FilenameError:
                        log.warning("skipping %s: not a GOES-R product name", candidate.source_uri)
                self._listed[prefix] = listed
            items.extend(self._listed[prefix])
        return sorted(items, key=lambda i: (i.name.scan_start, i.name.name))

    def frames(
        self, sector: str, band: int, start: datetime, end: datetime, family: str = "ABI-L1b-Rad"
    ) -> list[ArchiveItem]:
        """Frames of ``family``/``sector``/``band`` starting in ``[start, end)``."""
        return [
            i
            for i in self._items(f"{family}{sector[0]}", start, end)
            if i.name.sector == sector and i.name.band == band and start <= i.name.scan_start < end
        ]

    def granules(self, start: datetime, end: datetime) -> list[ArchiveItem]:
        """GLM granules overlapping ``[start, end]`` (the folder before ``start`` too, for overlap)."""
        items = self._items("GLM-L2-LCFA", start - timedelta(minutes=1), end)
        return [i for i in items if _overlaps(i.name, start, end)]

    def fetch(self, item: ArchiveItem) -> Path:
        """Download (size-checked) into the cache."""
        return self.source.fetch(item.candidate)


def get_archive(uri: str, cache: Path, clock: Clock) -> Archive:
    """``dir:PATH`` or ``s3://BUCKET[?endpoint=…]``; unknown schemes list the valid ones."""
    scheme = urlsplit(uri).scheme
    if scheme == "dir":
        root = Path(uri.split(":", 1)[1]).expanduser().resolve()  # file URIs of the items need an absolute path
        if not root.is_dir():
            msg = f"archive folder {root} (from {uri!r}) does not exist"
            raise ConfigError(msg)
        return DirArchive(root)
    if scheme == "s3":
        context = SourceContext(cache=cache, clock=clock, frame_filter=FrameFilter())
        return S3Archive(NoaaS3Source.from_uri(uri, context))
    msg = f"unknown archive {uri!r}; expected dir:PATH or s3://BUCKET"
    raise ConfigError(msg)
