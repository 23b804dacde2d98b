"""Events on the bus: small, versioned JSON documents (claim check, never arrays).

Every event is one JSON object with ``schema`` (which kind of event) and
``version`` (an integer bumped on any incompatible change). A consumer refuses a
schema or version it does not know with :class:`~ingest.errors.EventError`
instead of guessing. Times are ISO 8601 UTC strings with a ``Z`` suffix. Arrays
never travel on the bus: a :class:`FrameEvent` carries the URI of a verified
local copy of the file, and the file name, which is unique per NOAA product
file and therefore the idempotency key of the event.

Topics (:data:`TOPICS`) and message keys: frame and dead-letter events are keyed
by sector (``C``, ``F``, ``M1``, ``M2``; ``GLM`` for lightning granules), so one
sector's frames stay ordered on one partition.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

from ingest.errors import EventError
from ingest.filenames import GoesFilename
from ingest.ncio import iso_utc, parse_utc

FRAMES_TOPIC = "ltgcast.frames.v1"
GRIDS_TOPIC = "ltgcast.grids.v1"
DEADLETTER_TOPIC = "ltgcast.deadletter.v1"
TOPICS = (FRAMES_TOPIC, GRIDS_TOPIC, DEADLETTER_TOPIC)

#: Message key of events about GLM granules, which have no sector.
GLM_KEY = "GLM"


def local_path(uri: str) -> Path:
    """The file an event's ``uri`` names: a ``file://`` URI or a plain path; ``EventError`` for anything else.

    >>> local_path("file:///var/spool/OR_ABI%20x.nc")
    PosixPath('/var/spool/OR_ABI x.nc')
    >>> local_path("/tmp/a.nc")
    PosixPath('/tmp/a.nc')
    """
    parts = urlsplit(uri)
    if parts.scheme == "file" and parts.netloc in ("", "localhost"):
        return Path(unquote(parts.path))
    if parts.scheme == "" and uri:
        return Path(uri)
    msg = f"expected a file:// URI or a local path in the event; found {uri!r}"
    raise EventError(msg)


def _decode(payload: bytes | str, schema: str, version: int) -> dict[str, Any]:
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        msg = f"expected a JSON {schema} event, found undecodable bytes: {exc}"
        raise EventError(msg) from exc
    if not isinstance(doc, dict):
        msg = f"expected a JSON object ({schema} event), found {type(doc).__name__}"
        raise EventError(msg)
    found = (doc.get("schema"), doc.get("version"))
    if found != (schema, version):
        msg = f"expected schema {schema!r} version {version}, found schema {found[0]!r} version {found[1]!r}"
        raise EventError(msg)
    return doc


def _encode(event: Any) -> bytes:
    return json.dumps({"schema": event.SCHEMA, "version": event.VERSION, **asdict(event)}).encode()


def _fields_of(cls: type[Any], doc: dict[str, Any]) -> dict[str, Any]:
    names = [f.name for f in fields(cls)]
    missing = [n for n in names if n not in doc]
    if missing:
        msg = f"{cls.__name__} is missing {', '.join(missing)}; found keys {sorted(doc)}"
        raise EventError(msg)
    return {n: doc[n] for n in names}


@dataclass(frozen=True)
class FrameEvent:
    """A new GOES-R file, verified and ready to read at ``uri``.

    ``product`` is NOAA's folder name (``ABI-L1b-RadC``), ``family`` the reader
    key (``ABI-L1b-Rad``). ``sector``, ``band`` and ``mode`` are ``None`` for GLM.
    ``source_uri`` is where the file was found (``s3://bucket/key`` or a spool
    path); ``uri`` is the local copy that was checked and may be read.
    """

    SCHEMA: ClassVar[str] = "ltgcast.frame"
    VERSION: ClassVar[int] = 1

    name: str
    satellite: str
    family: str
    product: str
    sector: str | None
    band: int | None
    mode: int | None
    scan_start: str
    scan_end: str
    created: str
    uri: str
    source_uri: str
    size: int
    ingest_time: str

    @classmethod
    def of(cls, name: GoesFilename, *, uri: str, source_uri: str, size: int, ingest_time: datetime) -> FrameEvent:
        """The event announcing the file ``name``."""
        return cls(
            name=name.name,
            satellite=name.satellite,
            family=name.family,
            product=name.product,
            sector=name.sector,
            band=name.band,
            mode=name.mode,
            scan_start=iso_utc(name.scan_start),
            scan_end=iso_utc(name.scan_end),
            created=iso_utc(name.created),
            uri=uri,
            source_uri=source_uri,
            size=size,
            ingest_time=iso_utc(ingest_time),
        )

    @property
    def key(self) -> str:
        """The message key: the sector, or ``GLM``."""
        return self.sector or GLM_KEY

    def to_json(self) -> bytes:
        """UTF-8 JSON with ``schema`` and ``version`` first."""
        return _encode(self)

    @classmethod
    def from_json(cls, payload: bytes | str) -> FrameEvent:
        """Parse and check an event; :class:`EventError` names what is wrong."""
        values = _fields_of(cls, _decode(payload, cls.SCHEMA, cls.VERSION))
        for stamp in ("scan_start", "scan_end", "created", "ingest_time"):
            try:
                parse_utc(values[stamp])
            except (TypeError, ValueError) as exc:
                msg = f"FrameEvent.{stamp}: expected ISO 8601 UTC, found {values[stamp]!r}"
                raise EventError(msg) from exc
        if not isinstance(values["size"], int) or values["size"] < 0:
            msg = f"FrameEvent.size: expected a byte count >= 0, found {values['size']!r}"
            raise EventError(msg)
        return cls(**values)


@dataclass(frozen=True)
class DeadLetterEvent:
    """A file that was not announced, why, and where its bytes were kept.

    ``stage`` is one of :data:`DEAD_LETTER_STAGES`. ``quarantine_uri`` is the
    quarantined copy (``None`` when nothing could be downloaded).
    """

    SCHEMA: ClassVar[str] = "ltgcast.deadletter"
    VERSION: ClassVar[int] = 1

    name: str
    key: str
    stage: str
    reason: str
    source_uri: str
    quarantine_uri: str | None
    ingest_time: str

    def to_json(self) -> bytes:
        """UTF-8 JSON with ``schema`` and ``version`` first."""
        return _encode(self)

    @classmethod
    def from_json(cls, payload: bytes | str) -> DeadLetterEvent:
        """Parse and check an event; :class:`EventError` names what is wrong."""
        values = _fields_of(cls, _decode(payload, cls.SCHEMA, cls.VERSION))
        if values["stage"] not in DEAD_LETTER_STAGES:
            msg = f"DeadLetterEvent.stage: expected one of {DEAD_LETTER_STAGES}, found {values['stage']!r}"
            raise EventError(msg)
        return cls(**values)


@dataclass(frozen=True)
class GridEvent:
    """A probability grid was stored: which frame, which model, where it is.

    ``grid_id`` (satellite, sector, scan start, model version) is the
    idempotency key: a replayed frame announces the same id again.
    """

    SCHEMA: ClassVar[str] = "ltgcast.grid"
    VERSION: ClassVar[int] = 1

    grid_id: str
    satellite: str
    sector: str
    scan_start: str
    valid_time: str
    model_name: str
    model_version: int
    uri: str
    frame: str
    glm_used: int
    glm_missing: int
    created: str

    @property
    def key(self) -> str:
        """The message key: the sector."""
        return self.sector

    def to_json(self) -> bytes:
        """UTF-8 JSON with ``schema`` and ``version`` first."""
        return _encode(self)

    @classmethod
    def from_json(cls, payload: bytes | str) -> GridEvent:
        """Parse and check an event; :class:`EventError` names what is wrong."""
        return cls(**_fields_of(cls, _decode(payload, cls.SCHEMA, cls.VERSION)))


#: Why a file can be refused: its name, its download or its contents (ingest), a broken event or scoring (worker).
DEAD_LETTER_STAGES = ("name", "download", "decode", "event", "score")
