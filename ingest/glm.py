"""GLM L2 Lightning Cluster-Filter Algorithm (LCFA) reader: flashes, groups, events.

Real files differ in ways the reader handles from the attributes alone, never
from the year in the file name:

* Time offsets: older files store signed ``int16 × 2.0`` in
  ``milliseconds since <product_time>``; newer ones unsigned
  ``int16 × 3.814756e-4 − 5.0`` in ``seconds since <product_time>``. Both are
  decoded by the packing attributes and the ``units`` string.
* Areas: ``km2`` in older files, ``m2`` in newer ones; always returned in km².
* Energies, areas and quality flags are ``_Unsigned`` ``int16`` with
  ``_FillValue = -1`` (65535 once unsigned) and a ``valid_range`` stored signed.
* The signedness of the packed time offsets is not always declared right:
  some files of October 2018 use the unsigned packing but lack
  ``_Unsigned``, and a GOES-17 check-out file declares ``_Unsigned = "true"``
  on signed millisecond offsets. The declaration is used when it puts every
  time inside the granule window (see :data:`WINDOW_MARGIN_S`); when only the
  other signedness does, that one is used and the correction is recorded in
  :attr:`GlmGranule.decode_notes`.
* Empty granules have zero-length dimensions and fill in the count variables:
  they give empty tables, not an error.
* The ``*_count`` variables can disagree with the dimension lengths; the
  dimensions are trusted and the disagreement is reported in
  :attr:`GlmGranule.count_mismatches`.
* Event longitudes of GOES-West can run past -180°; every longitude is wrapped
  into [-180, 180).

Positions are on GLM's lightning ellipsoid (see :mod:`ingest.geometry`).
Times are float64 seconds since 1970-01-01T00:00:00Z.

What the reader verifies
------------------------
Before any array is read (:class:`~foundation.errors.FrameShapeError`, stage ``shape``):

* the event, group and flash dimensions hold at most :data:`MAX_GLM_COUNT`
  (630 000, the upper bound of the ``valid_range`` NOAA gives ``event_count``,
  ``group_count`` and ``flash_count``; the busiest sample holds 21 480 events in
  20 s) and flashes ≤ groups ≤ events (a flash is one or more groups, a group one
  or more events);
* every variable read has exactly the shape of its dimension, and
  ``product_time``, ``nominal_satellite_subpoint_lon`` and the counts are scalars.

Of the granule as a whole (:class:`~foundation.errors.FrameDecodeError`, stage ``decode``):

* ``platform_ID`` is the satellite of the name;
* ``product_time`` is the granule start of the name (± :data:`PRODUCT_TIME_TOLERANCE_S`)
  and every time offset counts from it (its ``units`` epoch), so a granule whose
  clock says 2099 is refused, not read;
* ``nominal_satellite_subpoint_lon`` is a longitude in [-180, 180];
* area units are km² or m², and the packing attributes are sane (:mod:`ingest.ncio`).

Of each flash: a flash with a non-finite position, a latitude outside
[-90, 90] or a stored longitude outside [-360, 360] (one wrap at most); a time
outside the granule window widened by :data:`WINDOW_MARGIN_S` or a last event
before its first; or a non-finite, negative or larger than
:data:`MAX_FLASH_ENERGY_J` energy is dropped, counted in
``ltgcast_glm_flashes_dropped_total{reason}`` and in
:attr:`GlmGranule.flashes_dropped`, with one log line per granule; the rest of
the granule is kept. Groups and events are returned as stored (nothing draws them).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path

import netCDF4
import numpy as np
from numpy.typing import NDArray

from foundation.errors import FrameDecodeError, FrameShapeError
from foundation.utc import iso_utc
from ingest import metrics
from ingest.filenames import GoesFilename, parse_filename
from ingest.ncio import (
    attribute,
    check_scalar,
    check_shape,
    declared_unsigned,
    decode,
    decode_int,
    decode_time,
    open_dataset,
    time_units,
    variable,
)

log = logging.getLogger(__name__)

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

_AREA_TO_KM2 = {"km2": 1.0, "km^2": 1.0, "m2": 1e-6, "m^2": 1e-6}
_DIMENSIONS = {"flash": "number_of_flashes", "group": "number_of_groups", "event": "number_of_events"}

#: Slack around the granule window [start, end] inside which decoded times must
#: fall: a flash is reported in the granule where it ends, so its first event
#: may precede the start by the flash's duration (NOAA's newer packing reserves
#: 5 s for that; in the samples first events precede the start by up to 1.73 s,
#: flashes last up to 3.1 s, and nothing is later than the end).
WINDOW_MARGIN_S = (5.5, 1.0)

#: Most events, groups or flashes a granule may declare: the upper bound of the ``valid_range`` of NOAA's
#: ``event_count``/``group_count``/``flash_count``. Reading that many of each adds about 75 MB (73 MiB measured).
MAX_GLM_COUNT = 630_000
#: Largest plausible flash energy, J: ten times what NOAA's packing can hold (65530 × 1.526e-15 J ≈ 1e-10 J);
#: the brightest flash of the samples has 8.5e-12 J.
MAX_FLASH_ENERGY_J = 1e-9
#: How far ``product_time`` may be from the granule start of the file name (they are equal in every sample).
PRODUCT_TIME_TOLERANCE_S = 1.0

#: The variables the reader reads, by the dimension they must have.
READ_VARIABLES = {
    "number_of_flashes": (
        "flash_id", "flash_lat", "flash_lon", "flash_time_offset_of_first_event",
        "flash_time_offset_of_last_event", "flash_energy", "flash_area", "flash_quality_flag",
    ),
    "number_of_groups": (
        "group_id", "group_lat", "group_lon", "group_time_offset", "group_energy", "group_area",
        "group_quality_flag", "group_parent_flash_id",
    ),
    "number_of_events": ("event_id", "event_lat", "event_lon", "event_time_offset", "event_energy",
                         "event_parent_group_id"),
}  # fmt: skip

#: Every packed time-offset variable of an LCFA file (all share one packing and one ``units`` epoch).
TIME_OFFSET_VARIABLES = (
    "event_time_offset",
    "group_time_offset",
    "group_frame_time_offset",
    "flash_time_offset_of_first_event",
    "flash_time_offset_of_last_event",
    "flash_frame_time_offset_of_first_event",
    "flash_frame_time_offset_of_last_event",
)


@dataclass(frozen=True, eq=False)
class Flashes:
    """GLM flashes; every array has shape ``[n_flashes]``.

    ``time``/``time_last`` are the first/last constituent event (s since 1970 UTC),
    ``energy`` is J, ``area`` km², ``quality_flag`` -1 where missing.
    """

    id: I64
    lat: F32
    lon: F32
    time: F64
    time_last: F64
    energy: F32
    area: F32
    quality_flag: I64

    def __len__(self) -> int:
        """Number of flashes."""
        return int(self.id.size)


@dataclass(frozen=True, eq=False)
class Groups:
    """GLM groups; every array has shape ``[n_groups]``."""

    id: I64
    lat: F32
    lon: F32
    time: F64
    energy: F32
    area: F32
    quality_flag: I64
    parent_flash_id: I64

    def __len__(self) -> int:
        """Number of groups."""
        return int(self.id.size)


@dataclass(frozen=True, eq=False)
class Events:
    """GLM events; every array has shape ``[n_events]``."""

    id: I64
    lat: F32
    lon: F32
    time: F64
    energy: F32
    parent_group_id: I64

    def __len__(self) -> int:
        """Number of events."""
        return int(self.id.size)


@dataclass(frozen=True, eq=False)
class GlmGranule:
    """One GLM LCFA file (normally 20 s of lightning)."""

    path: str
    name: GoesFilename
    platform: str
    orbital_slot: str
    product_time: datetime
    subpoint_lon: float
    flashes: Flashes
    groups: Groups
    events: Events
    count_mismatches: dict[str, tuple[int | None, int]] = field(default_factory=dict)
    decode_notes: tuple[str, ...] = ()
    flashes_dropped: dict[str, int] = field(default_factory=dict)

    @property
    def scan_start(self) -> datetime:
        """Start of the granule's observation window, aware UTC."""
        return self.name.scan_start

    @property
    def scan_end(self) -> datetime:
        """End of the granule's observation window, aware UTC."""
        return self.name.scan_end


def wrap_longitude(lon: F64) -> F64:
    """Wrap longitudes into [-180, 180) degrees.

    >>> wrap_longitude(np.array([-186.5, 173.5, 180.0])).tolist()
    [173.5, 173.5, -180.0]
    """
    with np.errstate(invalid="ignore"):
        return np.asarray((lon + 180.0) % 360.0 - 180.0)


class GlmLcfaReader:
    """Reader for ``OR_GLM-L2-LCFA_*`` files."""

    family = "GLM-L2-LCFA"

    def read(self, path: str | Path) -> GlmGranule:
        """Read every flash, group and event of one granule."""
        name = parse_filename(path)
        if name.family != self.family:
            raise FrameDecodeError(str(path), f"expected a {self.family} file, the name says {name.family}")
        with open_dataset(path) as ds:
            _check_shapes(ds)
            platform = str(attribute(ds, "platform_ID"))
            if platform != name.satellite:
                raise FrameDecodeError(str(path), f"file name says {name.satellite}, platform_ID says {platform}")
            product_time = _product_time(ds, name)
            times = _TimeDecoder(ds, name)
            flashes, dropped = _sound_flashes(ds, times, name)
            granule = GlmGranule(
                path=str(path),
                name=name,
                platform=platform,
                orbital_slot=str(getattr(ds, "orbital_slot", "unknown")),
                product_time=product_time,
                subpoint_lon=_subpoint_lon(ds),
                flashes=flashes,
                groups=_groups(ds, times),
                events=_events(ds, times),
                count_mismatches=_count_mismatches(ds),
                decode_notes=tuple(times.notes),
                flashes_dropped=dropped,
            )
        if granule.decode_notes:
            log.warning("%s: time offsets decoded against their declaration: %s", path, "; ".join(times.notes))
        report_dropped(path, dropped, len(granule.flashes))
        return granule


class _TimeDecoder:
    """Decodes time offsets, resolving a wrong ``_Unsigned`` declaration by the granule window."""

    def __init__(self, ds: netCDF4.Dataset, name: GoesFilename) -> None:
        self.ds = ds
        self.low = name.scan_start.timestamp() - WINDOW_MARGIN_S[0]
        self.high = name.scan_end.timestamp() + WINDOW_MARGIN_S[1]
        self.notes: list[str] = []

    def __call__(self, name: str) -> F64:
        var = variable(self.ds, name)
        declared = declared_unsigned(var)
        times = decode_time(var, declared)
        if self._fits(times) or var.dtype.kind != "i":
            return times
        flipped = decode_time(var, not declared)
        if not self._fits(flipped):
            return times
        declaration = "true" if declared else "absent"
        self.notes.append(f"{name}: _Unsigned={declaration} contradicts the granule window, decoded as the other")
        return flipped

    def _fits(self, times: F64) -> bool:
        finite = times[np.isfinite(times)]
        return bool(finite.size == 0 or (finite.min() >= self.low and finite.max() <= self.high))


def _check_shapes(ds: netCDF4.Dataset) -> None:
    """Dimension sizes against :data:`MAX_GLM_COUNT` and each other, variable shapes against them; reads nothing."""
    sizes = {dim: len(ds.dimensions[dim]) if dim in ds.dimensions else 0 for dim in READ_VARIABLES}
    flashes, groups, events = sizes["number_of_flashes"], sizes["number_of_groups"], sizes["number_of_events"]
    if not (flashes <= groups <= events <= MAX_GLM_COUNT):
        msg = (
            f"declares {flashes} flashes, {groups} groups and {events} events; expected "
            f"flashes <= groups <= events <= {MAX_GLM_COUNT}"
        )
        raise FrameShapeError(ds.filepath(), msg)
    for dim, names in READ_VARIABLES.items():
        for var_name in names:
            check_shape(variable(ds, var_name), (sizes[dim],), f"{dim} = {sizes[dim]}")
    for var_name in ("product_time", "nominal_satellite_subpoint_lon"):
        check_scalar(variable(ds, var_name))
    for var_name in ("flash_count", "group_count", "event_count"):  # optional: only compared with the dimensions
        if var_name in ds.variables:
            check_scalar(ds.variables[var_name])


def _product_time(ds: netCDF4.Dataset, name: GoesFilename) -> datetime:
    """``product_time``, which must be the name's granule start and the epoch of every time offset."""
    stamp = float(decode_time(variable(ds, "product_time")).reshape(-1)[0])
    start = name.scan_start.timestamp()
    if not abs(stamp - start) <= PRODUCT_TIME_TOLERANCE_S:
        found = iso_utc(stamp) if np.isfinite(stamp) and abs(stamp) < 1e11 else repr(stamp)
        msg = f"product_time is {found}; expected the granule start {iso_utc(name.scan_start)} of the file name"
        raise FrameDecodeError(ds.filepath(), msg)
    read_offsets = ("flash_time_offset_of_first_event", "flash_time_offset_of_last_event", "group_time_offset",
                    "event_time_offset")  # fmt: skip
    for var_name in read_offsets:
        epoch = time_units(variable(ds, var_name))[1]
        if abs(epoch.timestamp() - stamp) > 1e-3:
            msg = f"{var_name} counts from {iso_utc(epoch)}; expected the product_time {iso_utc(stamp)}"
            raise FrameDecodeError(ds.filepath(), msg)
    return datetime.fromtimestamp(stamp, tz=UTC)


def _subpoint_lon(ds: netCDF4.Dataset) -> float:
    """``nominal_satellite_subpoint_lon``: a longitude in [-180, 180]."""
    lon = float(decode(variable(ds, "nominal_satellite_subpoint_lon")).reshape(-1)[0])
    if not -180.0 <= lon <= 180.0:
        msg = f"nominal_satellite_subpoint_lon should be a longitude in [-180, 180], found {lon!r}"
        raise FrameDecodeError(ds.filepath(), msg)
    return lon


def _sound_flashes(ds: netCDF4.Dataset, times: _TimeDecoder, name: GoesFilename) -> tuple[Flashes, dict[str, int]]:
    """The granule's flashes less those with an impossible position, time or energy, and how many of each went.

    A flash failing several checks is counted once, under the first (position, time, energy).
    """
    flashes = _flashes(ds, times)
    raw_lon = decode(variable(ds, "flash_lon"))
    low = name.scan_start.timestamp() - WINDOW_MARGIN_S[0]
    high = name.scan_end.timestamp() + WINDOW_MARGIN_S[1]
    with np.errstate(invalid="ignore"):
        bad = {
            "position": ~(np.isfinite(flashes.lat) & np.isfinite(raw_lon) & (np.abs(flashes.lat) <= 90.0)
                          & (np.abs(raw_lon) <= 360.0)),
            "time": ~((flashes.time >= low) & (flashes.time <= flashes.time_last) & (flashes.time_last <= high)),
            "energy": ~((flashes.energy >= 0.0) & (flashes.energy <= MAX_FLASH_ENERGY_J)),
        }  # fmt: skip
    dropped: dict[str, int] = {}
    taken = np.zeros(len(flashes), dtype=bool)
    for reason, mask in bad.items():
        count = int((mask & ~taken).sum())
        taken |= mask
        if count:
            dropped[reason] = count
    if not dropped:
        return flashes, dropped
    keep = ~taken
    return Flashes(**{f.name: getattr(flashes, f.name)[keep] for f in fields(Flashes)}), dropped


def _f32(ds: netCDF4.Dataset, name: str) -> F32:
    with np.errstate(over="ignore"):
        return decode(variable(ds, name)).astype(np.float32)


def _lon(ds: netCDF4.Dataset, name: str) -> F32:
    return wrap_longitude(decode(variable(ds, name))).astype(np.float32)


def _area_km2(ds: netCDF4.Dataset, name: str) -> F32:
    var = variable(ds, name)
    units = str(attribute(var, "units"))
    if units not in _AREA_TO_KM2:
        raise FrameDecodeError(ds.filepath(), f"{name} units should be km2 or m2, found {units!r}")
    with np.errstate(over="ignore"):
        return (decode(var) * _AREA_TO_KM2[units]).astype(np.float32)


def _flashes(ds: netCDF4.Dataset, times: _TimeDecoder) -> Flashes:
    return Flashes(
        id=decode_int(variable(ds, "flash_id")),
        lat=_f32(ds, "flash_lat"),
        lon=_lon(ds, "flash_lon"),
        time=times("flash_time_offset_of_first_event"),
        time_last=times("flash_time_offset_of_last_event"),
        energy=_f32(ds, "flash_energy"),
        area=_area_km2(ds, "flash_area"),
        quality_flag=decode_int(variable(ds, "flash_quality_flag")),
    )


def _groups(ds: netCDF4.Dataset, times: _TimeDecoder) -> Groups:
    return Groups(
        id=decode_int(variable(ds, "group_id")),
        lat=_f32(ds, "group_lat"),
        lon=_lon(ds, "group_lon"),
        time=times("group_time_offset"),
        energy=_f32(ds, "group_energy"),
        area=_area_km2(ds, "group_area"),
        quality_flag=decode_int(variable(ds, "group_quality_flag")),
        parent_flash_id=decode_int(variable(ds, "group_parent_flash_id")),
    )


def _events(ds: netCDF4.Dataset, times: _TimeDecoder) -> Events:
    return Events(
        id=decode_int(variable(ds, "event_id")),
        lat=_f32(ds, "event_lat"),
        lon=_lon(ds, "event_lon"),
        time=times("event_time_offset"),
        energy=_f32(ds, "event_energy"),
        parent_group_id=decode_int(variable(ds, "event_parent_group_id")),
    )


def _count_mismatches(ds: netCDF4.Dataset) -> dict[str, tuple[int | None, int]]:
    """Count variables that disagree with their dimension (fill counts as ``None``)."""
    mismatches: dict[str, tuple[int | None, int]] = {}
    for kind in ("flash", "group", "event"):
        dim = len(ds.dimensions[_DIMENSIONS[kind]]) if _DIMENSIONS[kind] in ds.dimensions else 0
        if f"{kind}_count" not in ds.variables:
            continue
        stored = int(decode_int(ds.variables[f"{kind}_count"]).reshape(-1)[0])
        count = None if stored < 0 else stored
        if count != dim and not (count is None and dim == 0):
            mismatches[f"{kind}_count"] = (count, dim)
    if mismatches:
        log.info("%s: count variables disagree with dimensions %s; trusting dimensions", ds.filepath(), mismatches)
    return mismatches


def report_dropped(path: str | Path, dropped: dict[str, int], kept: int) -> None:
    """Count the flashes dropped from one granule in ``ltgcast_glm_flashes_dropped_total`` and log one line.

    ``dropped`` maps a reason (:data:`ingest.metrics.FLASH_DROP_REASONS`) to a count; ``kept`` is how many
    flashes the granule kept. Nothing happens when nothing was dropped.
    """
    if not dropped:
        return
    for reason, count in dropped.items():
        metrics.GLM_FLASHES_DROPPED.labels(reason=reason).inc(count)
    detail = ", ".join(f"{reason} {n}" for reason, n in dropped.items())
    total = sum(dropped.values())
    log.warning("%s: dropped %d of %d flashes (%s)", path, total, kept + total, detail)


#: Fraction of a time window the GLM granules must cover for the window to count as complete.
MIN_COVERAGE = 0.98


def span_coverage(spans: Iterable[tuple[datetime, datetime]], start: datetime, end: datetime) -> float:
    """Fraction of ``[start, end]`` covered by the union of ``spans`` (granule start/end times).

    >>> from datetime import timedelta
    >>> t = datetime(2024, 6, 15, tzinfo=UTC)
    >>> s = timedelta(seconds=20)
    >>> span_coverage([(t, t + s), (t + s, t + 2 * s), (t + s, t + 2 * s)], t, t + 4 * s)
    0.5
    """
    covered, cursor = 0.0, start
    for lo, hi in sorted(spans):
        lo, hi = max(lo, cursor), min(hi, end)
        if hi > lo:
            covered += (hi - lo).total_seconds()
            cursor = hi
    return covered / max((end - start).total_seconds(), 1e-9)
