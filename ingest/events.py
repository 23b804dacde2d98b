"""Events on the bus: small, typed, versioned JSON records (claim check, never arrays).

Every event is one JSON object with ``schema`` (which kind of event) and
``version`` (an integer bumped on any incompatible change), then the fields of
its record. Records are ``msgspec`` structs, and :func:`decode_event` is the one
place bytes from the bus become a record: any schema or version it does not
know, any missing field, any value of the wrong type or out of range raises
:class:`~foundation.errors.EventError` naming what was expected and what was found,
so a consumer dead-letters the message and moves on instead of guessing (or
crashing on ``"family": 1``). Times are ISO 8601 UTC strings with a ``Z``
suffix (:func:`foundation.utc.iso_utc`). Arrays never travel on the bus: a
:class:`FrameEvent` carries the URI of a verified local copy of the file, and
the file name, which is unique per NOAA product file and therefore the
idempotency key of the event; the name must parse and agree with the event's
satellite, product, sector, band and times.

Topics (:data:`TOPICS`) and message keys
----------------------------------------
* ``ltgcast.frames.v1`` — ABI frames, keyed by file name and placed by
  :attr:`FrameEvent.slot` (consecutive scans of a sector on consecutive
  partitions, :meth:`ingest.bus.Bus.publish` with ``slot``), so the workers of
  one consumer group share every sector's frames by load, and a frame announced
  twice (an ingest restart) lands on the same partition, where it is known.
  There is no per-sector order: grids are idempotent and "latest" only moves
  forward, so a frame scored before an older one changes nothing.
* ``ltgcast.glm.v1`` — GLM granules, keyed by satellite (in time order per
  satellite). Lightning is context every frame needs, so every worker reads
  this topic whole (:meth:`ingest.bus.Bus.broadcast`), never as a group.
* ``ltgcast.grids.v1`` — :class:`GridEvent`, keyed by sector.
* ``ltgcast.deadletter.v1`` — :class:`DeadLetterEvent`, keyed like the refused input.

A grid's identity is one record, :class:`GridKey` (satellite, sector, scan start,
model name and version); its text form is the grid id
``<satellite>_<sector>_<YYYYmmddTHHMMSSZ>_<model>-v<version>``, made and parsed
only there. Every other grid type is a view of it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar, TypeVar
from urllib.parse import unquote, urlsplit

import msgspec

from foundation.errors import EventError, FilenameError
from foundation.utc import iso_utc, parse_utc
from ingest.filenames import GoesFilename, parse_filename

FRAMES_TOPIC = "ltgcast.frames.v1"
GLM_TOPIC = "ltgcast.glm.v1"
GRIDS_TOPIC = "ltgcast.grids.v1"
DEADLETTER_TOPIC = "ltgcast.deadletter.v1"
TOPICS = (FRAMES_TOPIC, GLM_TOPIC, GRIDS_TOPIC, DEADLETTER_TOPIC)

#: The ABI scan sectors (CONUS, full disk, the two mesoscale sectors).
SECTORS = ("C", "F", "M1", "M2")
#: The label of GLM granules where a sector is expected (lag metrics, dead letters).
GLM_KEY = "GLM"
#: Seconds between two scans of a sector (ABI mode 6) and each sector's first slot: consecutive scans of a
#: sector take consecutive partition slots, and the sectors start apart.
CADENCE_S = {"C": 300, "F": 600, "M1": 60, "M2": 60}
SLOT_OFFSET = {"C": 0, "F": 3, "M1": 6, "M2": 9}
#: Why a message can be refused: its name, download or contents (ingest), a broken event or scoring (worker);
#: a spool entry that is a link (``spool``); a scan from the future (``future``: ingest and worker); shapes or
#: counts the product cannot have (``shape``) or too few valid earth pixels (``empty``: ingest).
DEAD_LETTER_STAGES = ("name", "download", "decode", "event", "score", "spool", "future", "shape", "empty")

_GRID_ID = re.compile(
    r"^(?P<satellite>G\d{2})_(?P<sector>C|F|M1|M2)_(?P<stamp>\d{8}T\d{6}Z)_(?P<model>[A-Za-z0-9._-]+)-v(?P<version>\d+)$"
)
_STAMP = "%Y%m%dT%H%M%SZ"


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


def _utc(record: str, field: str, value: str) -> datetime:
    try:
        return parse_utc(value)
    except (TypeError, ValueError, OverflowError) as exc:
        msg = f"{record}.{field}: expected ISO 8601 UTC, found {value!r}"
        raise ValueError(msg) from exc


@dataclass(frozen=True)
class GridKey:
    """What names a grid: one scan of one sector by one model version (the idempotency key of a grid).

    The scan start is kept to the second, as the id spells it.

    >>> key = GridKey.parse("G19_M1_20240615T200024Z_lightning-v3")
    >>> key.sector, key.model_version, key.scan_start.isoformat()
    ('M1', 3, '2024-06-15T20:00:24+00:00')
    >>> key.grid_id
    'G19_M1_20240615T200024Z_lightning-v3'
    >>> GridKey.parse("../../etc/passwd")
    Traceback (most recent call last):
    ...
    ValueError: grid id must look like G19_C_20240615T200024Z_lightning-v3; found '../../etc/passwd'
    """

    satellite: str
    sector: str
    scan_start: datetime
    model_name: str
    model_version: int

    def __post_init__(self) -> None:
        """Refuse a key whose id would not parse back (the id is a path component and a Redis key)."""
        if self.scan_start.utcoffset() is None:
            msg = f"GridKey.scan_start must be timezone-aware; found {self.scan_start.isoformat()}"
            raise ValueError(msg)
        object.__setattr__(self, "scan_start", self.scan_start.astimezone(UTC).replace(microsecond=0))
        if _GRID_ID.match(self._text()) is None:
            msg = f"not a valid grid key: {self!r}"
            raise ValueError(msg)

    @property
    def order(self) -> tuple[datetime, int, str]:
        """How grids sort: scan start, then model version, then id ("latest" is the greatest)."""
        return (self.scan_start, self.model_version, self.grid_id)

    def _text(self) -> str:
        stamp = self.scan_start.astimezone(UTC).strftime(_STAMP)
        return f"{self.satellite}_{self.sector}_{stamp}_{self.model_name}-v{self.model_version}"

    @property
    def grid_id(self) -> str:
        """``<satellite>_<sector>_<YYYYmmddTHHMMSSZ>_<model>-v<version>`` (scan start to the second)."""
        return self._text()

    @classmethod
    def parse(cls, grid_id: str) -> GridKey:
        """The key a grid id names; ``ValueError`` naming the expected form otherwise."""
        match = _GRID_ID.match(grid_id)
        if match is None:
            msg = f"grid id must look like G19_C_20240615T200024Z_lightning-v3; found {grid_id!r}"
            raise ValueError(msg)
        scan = datetime.strptime(match["stamp"], _STAMP).replace(tzinfo=UTC)
        return cls(match["satellite"], match["sector"], scan, match["model"], int(match["version"]))


class GridView:
    """The parts of a grid's key, for a record that holds one as ``grid`` (stored grids, notifications)."""

    grid: GridKey

    @property
    def grid_id(self) -> str:
        """The grid id."""
        return self.grid.grid_id

    @property
    def satellite(self) -> str:
        """The platform (``G19``)."""
        return self.grid.satellite

    @property
    def sector(self) -> str:
        """The ABI sector."""
        return self.grid.sector

    @property
    def model_name(self) -> str:
        """The model's name."""
        return self.grid.model_name

    @property
    def model_version(self) -> int:
        """The model's version."""
        return self.grid.model_version

    model = model_name
    version = model_version


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="schema"):
    """The envelope every event shares: ``schema`` (the record's tag) and ``version``."""

    VERSION: ClassVar[int] = 1

    version: int = 1

    def to_json(self) -> bytes:
        """UTF-8 JSON with ``schema`` and ``version`` first."""
        return msgspec.json.encode(self)

    @classmethod
    def from_json(cls: type[E], payload: bytes | str) -> E:
        """Parse and check an event of this type; :class:`EventError` names what is wrong."""
        return decode_event(payload, cls)


E = TypeVar("E", bound=Event)


class _Envelope(msgspec.Struct):
    schema: str
    version: int


def decode_event(payload: bytes | str, record: type[E]) -> E:
    """The one decoder of bus messages: bytes → a checked ``record``, or :class:`EventError` saying why not."""
    schema = record.__struct_config__.tag
    try:
        envelope = msgspec.json.decode(payload, type=_Envelope)
    except (msgspec.DecodeError, TypeError) as exc:  # TypeError: not bytes or str at all
        problem = "undecodable bytes" if not isinstance(exc, msgspec.ValidationError) else "an invalid envelope"
        msg = f"expected a JSON {schema} event (an object with schema and version), found {problem}: {exc}"
        raise EventError(msg) from exc
    if (envelope.schema, envelope.version) != (schema, record.VERSION):
        msg = (f"expected schema {schema!r} version {record.VERSION}, "
               f"found schema {envelope.schema!r} version {envelope.version!r}")  # fmt: skip
        raise EventError(msg)
    try:
        return msgspec.json.decode(payload, type=record)
    except msgspec.DecodeError as exc:
        msg = f"{record.__name__}: {exc}"
        raise EventError(msg) from exc
    except Exception as exc:  # a check that met a value no check foresaw (an overflowing date): still bad input
        msg = f"{record.__name__}: {type(exc).__name__}: {exc}"
        raise EventError(msg) from exc


class FrameEvent(Event, frozen=True, kw_only=True, tag="ltgcast.frame"):
    """A new GOES-R file, verified and ready to read at ``uri``.

    ``product`` is NOAA's folder name (``ABI-L1b-RadC``), ``family`` the reader
    key (``ABI-L1b-Rad``). ``sector``, ``band`` and ``mode`` are ``None`` for GLM.
    ``source_uri`` is where the file was found (``s3://bucket/key`` or a spool
    path); ``uri`` is the local copy that was checked and may be read.
    """

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

    def __post_init__(self) -> None:
        """The name must be a GOES-R name that agrees with the fields; times UTC; size a byte count."""
        try:
            parsed = parse_filename(self.name)
        except FilenameError as exc:
            msg = f"FrameEvent.name: {exc.reason}"
            raise ValueError(msg) from exc
        claimed = (self.satellite, self.family, self.product, self.sector, self.band, self.mode)
        named = (parsed.satellite, parsed.family, parsed.product, parsed.sector, parsed.band, parsed.mode)
        if claimed != named:
            msg = f"FrameEvent fields {claimed} disagree with its name {self.name!r}, which says {named}"
            raise ValueError(msg)
        for field in ("scan_start", "scan_end", "created", "ingest_time"):
            _utc("FrameEvent", field, getattr(self, field))
        if (self.start, self.end) != (parsed.scan_start, parsed.scan_end):
            msg = f"FrameEvent times {self.scan_start}..{self.scan_end} disagree with its name {self.name!r}"
            raise ValueError(msg)
        if self.size < 0:
            msg = f"FrameEvent.size: expected a byte count >= 0, found {self.size}"
            raise ValueError(msg)
        try:
            local_path(self.uri)
        except EventError as exc:
            raise ValueError(str(exc)) from exc

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
    def is_glm(self) -> bool:
        """A GLM granule (no sector), not an ABI frame."""
        return self.family.startswith("GLM")

    @property
    def topic(self) -> str:
        """Where the event goes: GLM granules to ``ltgcast.glm.v1``, frames to ``ltgcast.frames.v1``."""
        return GLM_TOPIC if self.is_glm else FRAMES_TOPIC

    @property
    def key(self) -> str:
        """The message key: the satellite for a GLM granule (time order per satellite), else the file name."""
        return self.satellite if self.is_glm else self.name

    @property
    def slot(self) -> int | None:
        """The frame's place in its sector's sequence of scans (its partition slot); ``None`` for a granule."""
        if self.sector is None:
            return None
        return int(self.start.timestamp() // CADENCE_S[self.sector]) + SLOT_OFFSET[self.sector]

    @property
    def label(self) -> str:
        """The sector, or ``GLM`` (bounded metric labels, dead-letter keys)."""
        return self.sector or GLM_KEY

    @property
    def start(self) -> datetime:
        """``scan_start`` as an aware datetime."""
        return parse_utc(self.scan_start)

    @property
    def end(self) -> datetime:
        """``scan_end`` as an aware datetime."""
        return parse_utc(self.scan_end)


class DeadLetterEvent(Event, frozen=True, kw_only=True, tag="ltgcast.deadletter"):
    """A file or message that was not processed, why, and where its bytes were kept.

    ``stage`` is one of :data:`DEAD_LETTER_STAGES`. ``quarantine_uri`` is the
    quarantined copy (``None`` when nothing could be downloaded or the input was
    a bus message). ``origin`` names the message a worker refused
    (``topic/partition@offset``), so letters about one message from several
    workers (a GLM event every worker reads) can be told apart and de-duplicated.
    """

    name: str
    key: str
    stage: str
    reason: str
    source_uri: str
    quarantine_uri: str | None
    ingest_time: str
    origin: str | None = None

    def __post_init__(self) -> None:
        """Known stage, UTC time."""
        if self.stage not in DEAD_LETTER_STAGES:
            msg = f"DeadLetterEvent.stage: expected one of {DEAD_LETTER_STAGES}, found {self.stage!r}"
            raise ValueError(msg)
        _utc("DeadLetterEvent", "ingest_time", self.ingest_time)


class GridEvent(Event, frozen=True, kw_only=True, tag="ltgcast.grid"):
    """A probability grid was stored: which frame, which model, where it is (a view of its :class:`GridKey`).

    ``grid_id`` must be the id of the event's own satellite, sector, scan start
    and model: a replayed frame announces the same id again.
    """

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

    def __post_init__(self) -> None:
        """The id is the key of the fields; times UTC; counts non-negative."""
        for field in ("scan_start", "valid_time", "created"):
            _utc("GridEvent", field, getattr(self, field))
        own = GridKey(self.satellite, self.sector, self.start, self.model_name, self.model_version).grid_id
        if own != self.grid_id:
            msg = f"GridEvent.grid_id {self.grid_id!r} is not the id of its fields ({own!r})"
            raise ValueError(msg)
        if self.glm_used < 0 or self.glm_missing < 0:
            msg = f"GridEvent granule counts must be >= 0; found used {self.glm_used}, missing {self.glm_missing}"
            raise ValueError(msg)

    @classmethod
    def of(cls, key: GridKey, *, valid_time: datetime, uri: str, frame: str, glm_used: int, glm_missing: int,
           created: datetime, scan_start: datetime | None = None) -> GridEvent:  # fmt: skip
        """The event of a stored grid; ``scan_start`` to the millisecond when known (the key keeps seconds)."""
        return cls(
            grid_id=key.grid_id, satellite=key.satellite, sector=key.sector,
            scan_start=iso_utc(scan_start or key.scan_start), valid_time=iso_utc(valid_time),
            model_name=key.model_name, model_version=key.model_version, uri=uri, frame=frame,
            glm_used=glm_used, glm_missing=glm_missing, created=iso_utc(created),
        )  # fmt: skip

    @property
    def key(self) -> str:
        """The message key: the sector."""
        return self.sector

    @property
    def start(self) -> datetime:
        """``scan_start`` as an aware datetime."""
        return parse_utc(self.scan_start)

    @property
    def grid(self) -> GridKey:
        """The grid this event is about."""
        return GridKey.parse(self.grid_id)


#: The record each topic carries.
RECORDS: dict[str, type[Event]] = {FRAMES_TOPIC: FrameEvent, GLM_TOPIC: FrameEvent, GRIDS_TOPIC: GridEvent,
                                   DEADLETTER_TOPIC: DeadLetterEvent}  # fmt: skip


def describe(topic: str, payload: bytes) -> Event:
    """Decode a message of a known topic into its record (``EventError`` if it is not one)."""
    return decode_event(payload, RECORDS[topic])
