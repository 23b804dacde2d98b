"""The sites file: the places (airports, stadiums, work sites) that get a lightning alert state.

A TOML file (read with :mod:`tomllib`, nothing executed) with optional file-level
defaults and one ``[[site]]`` table per place::

    [defaults]
    radius_km = 16          # lightning "within this distance of the site", 1-100 km
    threshold = 0.5         # probability that raises the alert, 0.01-0.99
    hold_minutes = 30       # minutes below the threshold before the all-clear, 0-240

    [[site]]
    id = "KOKC"             # ^[A-Za-z0-9_-]{1,32}$, unique in the file
    name = "Oklahoma City Will Rogers World"
    lat = 35.393            # geodetic degrees north, [-90, 90]
    lon = -97.601           # degrees east, [-180, 180]
    radius_km = 10          # any default may be overridden per site

Everything is checked when the file is read, before the service starts: a
refusal is one :class:`~foundation.errors.ConfigError` naming the file, the site
(its id, or its position in the file) and what was expected and found. The
file is at most :data:`MAX_FILE_BYTES` and holds at most :data:`MAX_SITES`
sites, which also bounds the ``site`` label of the alert metrics.

The package ships :data:`DEFAULT_SITES`, major US airports (ICAO ids; several
in Oklahoma, Kansas and north Texas, where the demo mesoscale sector lies).
This module is light (no numpy, no netCDF): ``ltgcast run`` checks the file
while it reads its flags.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from foundation.errors import ConfigError

#: What a site id may be (it becomes a URL path segment and a metric label value).
SITE_ID_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"
SITE_ID = re.compile(SITE_ID_PATTERN)
MAX_SITES = 1000
MAX_FILE_BYTES = 1024 * 1024
MAX_NAME = 200
#: The ``--sites`` value that turns site alerts off.
NO_SITES = "none"
#: ``(low, high)`` of each number a site has, inclusive, and the unit said in errors.
RANGES: dict[str, tuple[float, float, str]] = {
    "lat": (-90.0, 90.0, "degrees"),
    "lon": (-180.0, 180.0, "degrees"),
    "radius_km": (1.0, 100.0, "km"),
    "threshold": (0.01, 0.99, "probability"),
    "hold_minutes": (0.0, 240.0, "minutes"),
}
#: The defaults when the file has no ``[defaults]`` (a 16 km radius is the usual airport lightning ring).
BUILTIN_DEFAULTS: dict[str, float] = {"radius_km": 16.0, "threshold": 0.5, "hold_minutes": 30.0}
_SITE_KEYS = frozenset({"id", "name", "lat", "lon", *BUILTIN_DEFAULTS})


@dataclass(frozen=True)
class Site:
    """One place with an alert state."""

    id: str
    name: str
    lat: float
    lon: float
    radius_km: float
    threshold: float
    hold_minutes: float

    def as_json(self) -> dict[str, Any]:
        """The site's settings as JSON-able values."""
        return {"id": self.id, "name": self.name, "lat": self.lat, "lon": self.lon, "radius_km": self.radius_km,
                "threshold": self.threshold, "hold_minutes": self.hold_minutes}  # fmt: skip


def default_sites_path() -> Path:
    """The packaged sites file (major US airports)."""
    return Path(str(resources.files("serve").joinpath("sitefiles", "airports.toml")))


#: The packaged sites file's name as ``--sites`` shows it.
DEFAULT_SITES = "serve/sitefiles/airports.toml"


def load_sites(path: Path) -> tuple[Site, ...]:
    """The sites of a sites file, checked; :class:`ConfigError` naming the file and the problem otherwise."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            msg = f"sites file {path}: expected at most {MAX_FILE_BYTES} bytes; found {size}"
            raise ConfigError(msg)
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"sites file {path}: cannot be read as UTF-8 text ({type(exc).__name__}: {exc})"
        raise ConfigError(msg) from exc
    return parse_sites(text, str(path))


def parse_sites(text: str, source: str = "<text>") -> tuple[Site, ...]:
    r"""The sites of a sites file's text; ``source`` names it in errors.

    >>> parse_sites('[[site]]\nid = "KOKC"\nname = "OKC"\nlat = 35.39\nlon = -97.6')[0].radius_km
    16.0
    >>> parse_sites('[[site]]\nid = "KOKC"\nlat = 95\nlon = 0', "x.toml")
    Traceback (most recent call last):
    ...
    foundation.errors.ConfigError: sites file x.toml, site 'KOKC': lat must be a number in [-90, 90] degrees; found 95
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = f"sites file {source}: not valid TOML ({exc})"
        raise ConfigError(msg) from exc
    unknown = sorted(set(doc) - {"defaults", "site"})
    if unknown:
        msg = f"sites file {source}: expected only [defaults] and [[site]] tables; found {', '.join(unknown)}"
        raise ConfigError(msg)
    defaults = _defaults(doc.get("defaults", {}), source)
    tables = doc.get("site", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        msg = f"sites file {source}: expected [[site]] tables; found site = {tables!r:.80}"
        raise ConfigError(msg)
    if len(tables) > MAX_SITES:
        msg = f"sites file {source}: expected at most {MAX_SITES} sites; found {len(tables)}"
        raise ConfigError(msg)
    sites = tuple(_site(table, defaults, source, n) for n, table in enumerate(tables, 1))
    _check_unique(sites, source)
    return sites


def _defaults(table: Any, source: str) -> dict[str, float]:
    if not isinstance(table, dict):
        msg = f"sites file {source}: expected a [defaults] table; found defaults = {table!r:.80}"
        raise ConfigError(msg)
    unknown = sorted(set(table) - set(BUILTIN_DEFAULTS))
    if unknown:
        msg = (f"sites file {source}, [defaults]: expected only {', '.join(BUILTIN_DEFAULTS)}; "
               f"found {', '.join(unknown)}")  # fmt: skip
        raise ConfigError(msg)
    return {key: _number(table.get(key, default), key, f"sites file {source}, [defaults]")
            for key, default in BUILTIN_DEFAULTS.items()}  # fmt: skip


def _site(table: Mapping[str, Any], defaults: Mapping[str, float], source: str, position: int) -> Site:
    raw_id = table.get("id")
    where = f"sites file {source}, " + (f"site {raw_id!r}" if isinstance(raw_id, str) else f"site #{position}")
    if not isinstance(raw_id, str) or not SITE_ID.fullmatch(raw_id):
        msg = f"{where}: id must be a string matching {SITE_ID_PATTERN}; found {raw_id!r}"
        raise ConfigError(msg)
    unknown = sorted(set(table) - _SITE_KEYS)
    if unknown:
        msg = f"{where}: expected only the keys {', '.join(sorted(_SITE_KEYS))}; found {', '.join(unknown)}"
        raise ConfigError(msg)
    name = table.get("name", raw_id)
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME:
        msg = f"{where}: name must be a string of 1 to {MAX_NAME} characters; found {name!r:.80}"
        raise ConfigError(msg)
    for key in ("lat", "lon"):
        if key not in table:
            msg = f"{where}: expected {key} (degrees); found none"
            raise ConfigError(msg)
    numbers = {key: _number(table.get(key, defaults.get(key)), key, where) for key in RANGES}
    return Site(id=raw_id, name=name, **numbers)


def _number(value: Any, key: str, where: str) -> float:
    low, high, unit = RANGES[key]
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not low <= value <= high:
        msg = f"{where}: {key} must be a number in [{low:g}, {high:g}] {unit}; found {value!r}"
        raise ConfigError(msg)
    return float(value)


def _check_unique(sites: tuple[Site, ...], source: str) -> None:
    seen: set[str] = set()
    for site in sites:
        if site.id in seen:
            msg = f"sites file {source}: site ids must be unique; found {site.id!r} twice"
            raise ConfigError(msg)
        seen.add(site.id)


def resolve_sites(value: str) -> tuple[Site, ...]:
    """The sites ``--sites`` names: ``""`` the packaged file, ``none`` no sites, else a path (checked).

    >>> resolve_sites("none")
    ()
    >>> len(resolve_sites("")) >= 20
    True
    """
    if value == NO_SITES:
        return ()
    return load_sites(default_sites_path() if value in ("", DEFAULT_SITES) else Path(value))
