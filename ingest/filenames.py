"""GOES-R product file names: one declarative pattern per product.

NOAA names every GOES-R product file as::

    OR_ABI-L1b-RadC-M6C13_G16_s20241671801178_e20241671803563_c20241671804099.nc
    │  │       │   │  │   │   │              │              └ file created
    │  │       │   │  │   │   │              └ scan end   (YYYY DOY HH MM SS tenths)
    │  │       │   │  │   │   └ scan start
    │  │       │   │  │   └ platform (G16, G17, G18, G19)
    │  │       │   │  └ ABI band (C01..C16)
    │  │       │   └ scan mode (M3, M4, M6)
    │  │       └ sector: C (CONUS), F (full disk), M1/M2 (mesoscale)
    │  └ data short name (instrument, level, product)
    └ system environment (OR = operational real-time, OT = operational test)

GLM LCFA files carry no sector, mode or band: ``OR_GLM-L2-LCFA_G16_s…_e…_c….nc``.

Names are matched by regular expressions only, never split by hand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import PurePath

from foundation.errors import FilenameError

_TIME = r"\d{14}"
_TAIL = rf"_(?P<satellite>G\d{{2}})_s(?P<start>{_TIME})_e(?P<end>{_TIME})_c(?P<created>{_TIME})\.nc"
_ENV = r"(?P<environment>O[RT])"

#: product name -> compiled pattern. Product names are NOAA's bucket folder names.
PATTERNS: dict[str, re.Pattern[str]] = {
    "ABI-L1b-Rad": re.compile(rf"^{_ENV}_ABI-L1b-Rad(?P<sector>C|F|M1|M2)-M(?P<mode>\d)C(?P<band>\d{{2}}){_TAIL}$"),
    "ABI-L2-CMIP": re.compile(rf"^{_ENV}_ABI-L2-CMIP(?P<sector>C|F|M1|M2)-M(?P<mode>\d)C(?P<band>\d{{2}}){_TAIL}$"),
    "GLM-L2-LCFA": re.compile(rf"^{_ENV}_GLM-L2-LCFA{_TAIL}$"),
}

#: Human-readable form of each pattern, shown in errors.
EXPECTED: dict[str, str] = {
    "ABI-L1b-Rad": "OR_ABI-L1b-Rad{C|F|M1|M2}-M{mode}C{band:02d}_G{nn}_s{YYYYJJJHHMMSSt}_e{…}_c{…}.nc",
    "ABI-L2-CMIP": "OR_ABI-L2-CMIP{C|F|M1|M2}-M{mode}C{band:02d}_G{nn}_s{YYYYJJJHHMMSSt}_e{…}_c{…}.nc",
    "GLM-L2-LCFA": "OR_GLM-L2-LCFA_G{nn}_s{YYYYJJJHHMMSSt}_e{…}_c{…}.nc",
}


@dataclass(frozen=True)
class GoesFilename:
    """The fields of a GOES-R product file name.

    ``product`` is NOAA's folder name (``ABI-L1b-RadC`` for a CONUS L1b file,
    ``ABI-L1b-RadM`` for either mesoscale sector), ``family`` the reader key
    (``ABI-L1b-Rad``, ``ABI-L2-CMIP``, ``GLM-L2-LCFA``).
    """

    name: str
    family: str
    environment: str
    satellite: str
    scan_start: datetime
    scan_end: datetime
    created: datetime
    sector: str | None = None
    mode: int | None = None
    band: int | None = None

    @property
    def product(self) -> str:
        """NOAA's product folder name, as used in the open-data buckets."""
        if self.sector is None:
            return self.family
        return f"{self.family}{self.sector[0]}"

    @property
    def instrument(self) -> str:
        """``ABI`` or ``GLM``."""
        return self.family.split("-", 1)[0]


def parse_goes_time(stamp: str) -> datetime:
    """Parse NOAA's ``YYYYJJJHHMMSSt`` stamp into an aware UTC datetime.

    >>> parse_goes_time("20171921817189").isoformat()
    '2017-07-11T18:17:18.900000+00:00'
    """
    year, doy = int(stamp[0:4]), int(stamp[4:7])
    hour, minute, second, tenth = (int(stamp[7:9]), int(stamp[9:11]), int(stamp[11:13]), int(stamp[13]))
    if not (1 <= doy <= 366 and hour < 24 and minute < 60 and second < 61):
        msg = f"time stamp {stamp!r} is out of range (expected YYYYJJJHHMMSSt)"
        raise ValueError(msg)
    try:
        base = datetime(year, 1, 1, tzinfo=UTC)
        return base + timedelta(days=doy - 1, hours=hour, minutes=minute, seconds=second, milliseconds=100 * tenth)
    except OverflowError as exc:  # year 9999, day 366 and later: no datetime holds it
        msg = f"time stamp {stamp!r} is out of range (past the year 9999)"
        raise ValueError(msg) from exc


def format_goes_time(when: datetime) -> str:
    """Format an aware datetime as NOAA's ``YYYYJJJHHMMSSt`` stamp (truncating to tenths).

    >>> from datetime import datetime, UTC
    >>> format_goes_time(datetime(2017, 7, 11, 18, 17, 18, 900000, tzinfo=UTC))
    '20171921817189'
    """
    if when.tzinfo is None:
        msg = "format_goes_time needs a timezone-aware datetime, got a naive one"
        raise ValueError(msg)
    utc = when.astimezone(UTC)
    return f"{utc:%Y%j%H%M%S}{utc.microsecond // 100_000}"


def parse_filename(path: str | PurePath) -> GoesFilename:
    """Parse a GOES-R product file name (a bare name or a path).

    Raises
    ------
    FilenameError
        When the name matches no known product grammar, or holds impossible times.
        The message lists every expected pattern.
    """
    name = PurePath(path).name
    for family, pattern in PATTERNS.items():
        match = pattern.match(name)
        if match is None:
            continue
        fields = match.groupdict()
        try:
            start, end, created = (parse_goes_time(fields[k]) for k in ("start", "end", "created"))
        except ValueError as exc:
            raise FilenameError(str(path), f"bad time in file name: {exc}") from exc
        return GoesFilename(
            name=name,
            family=family,
            environment=fields["environment"],
            satellite=fields["satellite"],
            scan_start=start,
            scan_end=end,
            created=created,
            sector=fields.get("sector"),
            mode=int(fields["mode"]) if fields.get("mode") else None,
            band=int(fields["band"]) if fields.get("band") else None,
        )
    expected = "; ".join(EXPECTED.values())
    raise FilenameError(str(path), f"file name {name!r} matches no known GOES-R product; expected one of: {expected}")


#: Any GOES-R product file name, including products ltgcast has no reader for (ACHA, MCMIP, SUVI…).
_ANY_PRODUCT = re.compile(rf"^{_ENV}_[A-Za-z0-9-]+(?:_[A-Za-z0-9-]+)?{_TAIL}$")


def is_goes_product_name(path: str | PurePath) -> bool:
    """Whether a name follows NOAA's GOES-R product naming, known product or not.

    >>> is_goes_product_name("OR_ABI-L2-ACHAC-M6_G16_s20241671801178_e20241671803563_c20241671804099.nc")
    True
    >>> is_goes_product_name("notes.nc")
    False
    """
    return _ANY_PRODUCT.match(PurePath(path).name) is not None


def abi_filename(
    *,
    sector: str,
    mode: int,
    band: int,
    satellite: str,
    scan_start: datetime,
    scan_end: datetime,
    created: datetime,
    level: str = "L1b",
) -> str:
    """Build an ABI file name (``level`` ``L1b`` for ``Rad``, ``L2`` for ``CMIP``)."""
    product = {"L1b": "L1b-Rad", "L2": "L2-CMIP"}[level]
    name = (
        f"OR_ABI-{product}{sector}-M{mode}C{band:02d}_{satellite}_s{format_goes_time(scan_start)}"
        f"_e{format_goes_time(scan_end)}_c{format_goes_time(created)}.nc"
    )
    parse_filename(name)  # the writer never produces a name the reader refuses
    return name


def glm_filename(*, satellite: str, scan_start: datetime, scan_end: datetime, created: datetime) -> str:
    """Build a GLM LCFA file name."""
    name = (
        f"OR_GLM-L2-LCFA_{satellite}_s{format_goes_time(scan_start)}"
        f"_e{format_goes_time(scan_end)}_c{format_goes_time(created)}.nc"
    )
    parse_filename(name)
    return name
