"""The HTTP API and viewer: what forecasters and operators read, over the file grid store.

Routes (``GET`` unless said otherwise; JSON errors ``{"error": …, "code": …}``
with a 4xx status name what was expected and what was found; the codes are
stable, see :data:`ERROR_CODES`)::

    /                                       the viewer (static page + script)
    /v1/grids/latest?sector=C               metadata of the newest grid of a sector (no sector: of any sector)
    /v1/sectors                             each sector's newest grid, the server's clock, the sector to open on
    /v1/grids?sector=C&hours=3              metadata of the sector's grids in its last hours (newest last)
    /v1/grids/{id}.nc                       the CF NetCDF file
    /v1/grids/{id}.png                      the PNG overlay with its legend
    /v1/grids/{id}/contours.geojson?levels=0.1,0.25&crs=lonlat|pixel&geometry=polygons|lines&parallax_km=0
    /v1/grids/{id}/flashes.geojson?crs=…    the GLM flashes the grid was made from
    /v1/grids/{id}/latlon.nc?parallax_km=9  CF NetCDF on a regular lat/lon grid (:mod:`serve.products.georef`)
    /v1/grids/{id}/latlon.tif?parallax_km=… Cloud-Optimized GeoTIFF, EPSG:4326
    /v1/grids/{id}/map.json?parallax_km=…   the Web Mercator layers' bounds and URLs: map/probability.png,
                                            map/value.png (p = byte * 0.004), map/ir.png (band-13 underlay)
    /v1/points?lat=…&lon=…&hours=…          probability at a place over the last hours
                  …&flash_radius_km=20      and the GLM flashes within that distance (times, deduplicated)
    /v1/models                              the model slot's status (stable, shadow, rejected)
    /v1/alerts  /v1/alerts/{site_id}        site alert states: ALERT, CLEAR or UNKNOWN (:mod:`serve.alerts.states`)
    POST /v1/admin/models/promote           {"version": N, "reason": "…"} with ``Authorization: Bearer TOKEN``
    POST /v1/admin/models/rollback          same token
    /healthz  /readyz  /metrics
    /openapi.json  /docs                    the contract and its human docs (:mod:`serve.api.web`)

Grid ids are parsed against their grammar before any file is touched
(:meth:`ingest.events.GridKey.parse`), so no request can reach outside the store.
``crs=pixel`` gives coordinates as ``[column, row]`` on the grid (what the
viewer draws over the PNG); the default is GeoJSON's lon/lat.

:class:`GridApi` is the routing and the answers, with no socket (tested
directly); :class:`serve.api.web.HttpService` serves it over HTTP (ASGI under
uvicorn) with its OpenAPI contract. A grid file that cannot be read is skipped
in listings and point series (``skipped`` counts them; the metric
``ltgcast_grid_files_unreadable_total`` too; each file is logged once), and
answers 500 only when asked for by id. NetCDF answers name the file to stream
(:attr:`Response.file`) instead of holding it in memory.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from foundation.errors import ApiError, ModelRejected
from foundation.utc import iso_utc
from ingest.events import SECTORS
from ingest.geometry import LIGHTNING_ELLIPSOID
from monitor.quality import LEVELS
from serve import metrics
from serve.alerts.sites import SITE_ID, SITE_ID_PATTERN
from serve.alerts.states import great_circle_km
from serve.api.settings import ApiSettings
from serve.products import georef
from serve.products.outputs import MAX_LEVELS, check_levels, contours, overlay_png, point_series, positions
from serve.stores.files import FileGridStore, StoredGrid, check_sector
from serve.stores.gridfile import GridFile, read_attributes, read_flashes, read_geometry, read_grid

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024  # admin requests are a few bytes of JSON
#: Exact paths and the route name each answers under (the ``route`` label of the HTTP metrics).
PATHS = {
    "/": "viewer", "/index.html": "viewer", "/healthz": "health", "/readyz": "ready", "/metrics": "metrics",
    "/v1/grids/latest": "latest", "/v1/grids": "list", "/v1/points": "points", "/v1/models": "models",
    "/v1/sectors": "sectors", "/v1/alerts": "alerts",
}  # fmt: skip
#: ``/v1/grids/{id}<suffix>``: what a grid is served as, by suffix.
GRID_FILES = {".nc": "netcdf", ".png": "png", "/contours.geojson": "contours", "/flashes.geojson": "flashes"}
#: The georeferenced products (:mod:`serve.products.georef`); longest suffix first (``/latlon.nc`` is not ``.nc``).
GRID_FILES.update({"/latlon.nc": "latlon", "/latlon.tif": "cog", "/map.json": "map", "/map/ir.png": "map_ir",
                   "/map/probability.png": "map_probability", "/map/value.png": "map_value"})  # fmt: skip
STATIC = {"viewer.js": "text/javascript; charset=utf-8", "viewer.css": "text/css; charset=utf-8"}
#: What the viewer's npm files (``serve/viewer/vendor-dist/``, built by ``make install``) are served as.
VENDOR_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                ".json": "application/json", ".png": "image/png"}  # fmt: skip
#: The order sectors are preferred in when their newest grids share a scan time (finest first).
SECTOR_PREFERENCE = ("M1", "M2", "C", "F")
#: The stable ``code`` of each error status (clients branch on it, not on the message).
ERROR_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 408: "timeout", 409: "conflict", 413: "too_large", 431: "headers_too_large",
               500: "internal", 503: "busy", 505: "http_version"}  # fmt: skip
#: The grammar of a grid id as the contract states it (a regular expression cannot check the calendar).
GRID_ID_PATTERN = (r"^G\d{2}_(C|F|M1|M2)_\d{4}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3])[0-5]\d[0-5]\dZ"
                   r"_[A-Za-z0-9._-]+-v[1-9]\d*$")  # fmt: skip
GRID_ID_SHAPE = re.compile(GRID_ID_PATTERN)
#: The widest circle a point series counts GLM flashes in, and the most flash times it lists.
MAX_FLASH_RADIUS_KM = 200.0
MAX_POINT_FLASHES = 20_000
MAX_FLASH_HOURS = timedelta(hours=3)
#: What reading a broken grid file raises (netCDF4/HDF5: OSError, RuntimeError; a missing variable: KeyError...).
UNREADABLE = (OSError, ValueError, RuntimeError, KeyError, IndexError)
#: How many unreadable grid files are remembered (so each is logged once).
_BROKEN_REMEMBERED = 10_000


@dataclass(frozen=True)
class Response:
    """What a route answers."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    file: Path | None = None  # a file to stream as the body (``body`` is then empty)


class AlertBoard(Protocol):
    """What the alert routes read (:class:`serve.alerts.states.AlertRunner`)."""

    def current(self) -> dict[str, Any]:
        """``{"sites": [one status per site], "evaluated_at": ..., "reference": ...}``."""
        ...


class ModelControl(Protocol):
    """What the admin endpoints drive (:class:`serve.scoring.hotswap.ModelSlot`)."""

    def status(self) -> dict[str, Any]:
        """JSON-able state of the served models."""
        ...

    def promote(self, version: int, reason: str = "") -> dict[str, Any]:
        """Serve ``version`` from the next frame on."""
        ...

    def rollback(self) -> dict[str, Any]:
        """Serve the previously promoted version."""
        ...


def _json(status: int, doc: Any) -> Response:
    return Response(status, (json.dumps(doc, allow_nan=False) + "\n").encode())


def error_response(status: int, message: str) -> Response:
    """The JSON answer of an error: the message about the request and the status's stable code."""
    return _json(status, {"error": message, "code": ERROR_CODES.get(status, "error")})


def _one(query: Mapping[str, list[str]], name: str, default: str | None = None) -> str:
    values = query.get(name)
    if not values:
        if default is None:
            msg = f"missing query parameter {name!r}"
            raise ApiError(400, msg)
        return default
    if len(values) > 1:
        msg = f"query parameter {name!r} given {len(values)} times; expected once"
        raise ApiError(400, msg)
    return values[0]


def _number(query: Mapping[str, list[str]], name: str, low: float, high: float, default: str | None = None) -> float:
    text = _one(query, name, default)
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not low <= value <= high:
        msg = f"{name} must be a number in [{low:g}, {high:g}]; found {text!r}"
        raise ApiError(400, msg)
    return value


def _sector(query: Mapping[str, list[str]]) -> str:
    try:
        return check_sector(_one(query, "sector", "C"))
    except ValueError as exc:
        raise ApiError(400, str(exc)) from exc


def _levels(query: Mapping[str, list[str]]) -> tuple[float, ...]:
    text = _one(query, "levels", ",".join(f"{v:g}" for v in LEVELS))
    try:  # whole percent: the grids are stored in percent, and equal levels share one cached rendering
        return check_levels(sorted({round(float(v), 2) for v in text.split(",") if v.strip()}))
    except ValueError as exc:
        msg = (f"levels must be 1 to {MAX_LEVELS} comma-separated probabilities in (0, 1), e.g. 0.1,0.25; "
               f"found {text!r} ({exc})")  # fmt: skip
        raise ApiError(400, msg) from exc


def _crs(query: Mapping[str, list[str]]) -> str:
    crs = _one(query, "crs", "lonlat")
    if crs not in ("lonlat", "pixel"):
        msg = f"crs must be lonlat or pixel; found {crs!r}"
        raise ApiError(400, msg)
    return crs


class GridApi:
    """Routes requests to answers over a :class:`FileGridStore`."""

    def __init__(self, store: FileGridStore, settings: ApiSettings | None = None, *,
                 models: ModelControl | None = None, ready: Callable[[], dict[str, str]] | None = None,
                 now: Callable[[], datetime] | None = None, alerts: AlertBoard | None = None) -> None:  # fmt: skip
        self.store = store
        self.settings = settings or ApiSettings()
        self.models = models
        self.ready = ready or dict  # problems by component; empty = ready
        self.now = now or (lambda: datetime.now(UTC))
        self.alerts = alerts  # None: site alerts are off (``--sites none``)
        self._cache: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._rendering = threading.BoundedSemaphore(self.settings.renderers)
        self._attrs: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()
        self._broken: OrderedDict[tuple[Any, ...], None] = OrderedDict()
        self._vendor = vendor_files()
        self._routes: dict[str, Callable[[Mapping[str, list[str]]], Response]] = {
            "viewer": lambda q: Response(200, _static("index.html"), "text/html; charset=utf-8"),
            "health": lambda q: _json(200, {"status": "ok"}),
            "ready": self._readyz,
            "metrics": lambda q: Response(200, generate_latest(), CONTENT_TYPE_LATEST),
            "latest": self._latest,
            "list": self._list,
            "points": self._points,
            "models": self._models,
            "sectors": self._sectors,
            "alerts": self._alerts,
        }
        self._grid_files: dict[str, Callable[[StoredGrid, Mapping[str, list[str]]], Response]] = {
            "netcdf": self._netcdf,
            "png": self._png,
            "contours": self._contours,
            "flashes": self._flashes,
            "latlon": self._latlon,
            "cog": self._cog,
            "map": self._map,
            **{f"map_{layer}": self._map_layer(layer) for layer in georef.MAP_LAYERS},
        }
        self.index_maps = georef.IndexMaps()  # resampling index maps by grid geometry (kept across grids)

    # -- dispatch ---------------------------------------------------------------------------------------------------
    def handle(self, method: str, target: str, headers: Mapping[str, str] | None = None,
               body: bytes = b"") -> tuple[str, Response]:  # fmt: skip
        """Answer one request; return the route name (for metrics) and the response."""
        parts = urlsplit(target)
        query = parse_qs(parts.query, keep_blank_values=True)
        route = route_name(parts.path)
        try:
            if parts.path.startswith("/v1/admin/"):
                return route, self._admin(method, parts.path, headers or {}, body)
            if method not in ("GET", "HEAD"):
                msg = f"{parts.path} answers GET; found {method}"
                raise ApiError(405, msg)
            return route, self._get(parts.path, query)
        except ApiError as exc:
            return route, error_response(exc.status, str(exc))

    def _get(self, path: str, query: Mapping[str, list[str]]) -> Response:
        if path in PATHS:
            return self._routes[PATHS[path]](query)
        if path.startswith("/static/") and path[len("/static/") :] in STATIC:
            name = path[len("/static/") :]
            return Response(200, _static(name), STATIC[name])
        if path.startswith("/static/vendor/"):
            return self._vendor_file(path[len("/static/vendor/") :])
        if path.startswith("/v1/alerts/"):
            return self._alert(path[len("/v1/alerts/") :])
        if path.startswith("/v1/grids/"):
            return self._grid_file(path[len("/v1/grids/") :], query)
        msg = f"no such route {path!r}; see / for the viewer and /v1/grids/latest?sector=C"
        raise ApiError(404, msg)

    # -- grids ------------------------------------------------------------------------------------------------------
    def _find(self, grid_id: str) -> StoredGrid:
        try:
            stored = self.store.get(grid_id)
        except ValueError as exc:
            if GRID_ID_SHAPE.match(grid_id):  # the grammar's shape with an impossible time: no such grid
                msg = f"no grid {grid_id!r} in the store (its scan time is not a date)"
                raise ApiError(404, msg) from exc
            raise ApiError(400, str(exc)) from exc
        if stored is None:
            msg = f"no grid {grid_id!r} in the store"
            raise ApiError(404, msg)
        return stored

    def _attributes(self, stored: StoredGrid) -> dict[str, Any]:
        """A grid's attributes, cached by (id, mtime, size): a listing of hours of grids opens only new files."""
        key = self._key(stored, "attributes")
        with self._lock:
            if key in self._attrs:
                return self._attrs[key]
        attrs = read_attributes(stored.path)
        with self._lock:
            self._attrs[key] = attrs
            while len(self._attrs) > self.settings.summary_entries:
                self._attrs.popitem(last=False)
        return attrs

    def _summary(self, stored: StoredGrid) -> dict[str, Any]:
        attrs = self._attributes(stored)
        base = f"/v1/grids/{stored.grid_id}"
        created = attrs.get("date_created", "")
        return {
            "grid_id": stored.grid_id,
            "satellite": stored.satellite,
            "sector": stored.sector,
            "scan_start": iso_utc(stored.scan_start),
            "valid_time": attrs.get("valid_time", iso_utc(stored.scan_start + timedelta(minutes=30))),
            "model_name": stored.model,
            "model_version": stored.version,
            "shape": attrs.get("shape"),
            "input_abi_file": attrs.get("input_abi_file", ""),
            "glm_granules_used": int(attrs.get("input_glm_granules_used", 0)),
            "glm_granules_missing": int(attrs.get("input_glm_granules_missing", 0)),
            "created": created,
            "links": {
                "netcdf": f"{base}.nc",
                "png": f"{base}.png",
                "contours": f"{base}/contours.geojson",
                "flashes": f"{base}/flashes.geojson",
                "map": f"{base}/map.json",
                "latlon_netcdf": f"{base}/latlon.nc",
                "geotiff": f"{base}/latlon.tif",
            },
        }

    def _vendor_file(self, name: str) -> Response:
        """One of the viewer's npm files: only names found in ``vendor-dist/`` when the API started are answered."""
        found = self._vendor.get(name)
        if found is None:
            if not self._vendor:
                msg = ("the viewer's map packages are not built on this server; "
                       "run make install (npm ci and node serve/viewer/build.mjs)")  # fmt: skip
                raise ApiError(404, msg)
            msg = f"no viewer file {name!r}; expected one of the {len(self._vendor)} built files of the viewer"
            raise ApiError(404, msg)
        return Response(200, found.read_bytes(), VENDOR_TYPES[found.suffix], {"Cache-Control": "max-age=3600"})

    def _newest_sector(self) -> tuple[str, StoredGrid] | None:
        """The sector whose newest grid is the newest of all (ties: finest sector first), and that grid."""
        newest = [(stored, s) for s in SECTOR_PREFERENCE if (stored := self.store.latest(s)) is not None]
        if not newest:
            return None
        stored, sector = max(newest, key=lambda pair: (pair[0].scan_start, -SECTOR_PREFERENCE.index(pair[1])))
        return sector, stored

    def _sectors(self, query: Mapping[str, list[str]]) -> Response:
        """Each sector's newest grid (``null`` for none), the server's clock, and the sector a viewer opens on."""
        entries = []
        for sector in SECTOR_PREFERENCE:
            stored = self.store.latest(sector)
            summary = None
            if stored is not None:
                try:
                    summary = self._summary(stored)
                except UNREADABLE as exc:
                    self.unreadable(stored, "sectors", exc)
            entries.append({"sector": sector, "latest": summary})
        chosen = self._newest_sector()
        return _json(200, {"now": iso_utc(self.now()), "default": chosen[0] if chosen else None,
                           "sectors": entries})  # fmt: skip

    def _latest(self, query: Mapping[str, list[str]]) -> Response:
        if not _one(query, "sector", ""):  # no sector named: the newest grid of any sector
            chosen = self._newest_sector()
            if chosen is None:
                raise ApiError(404, "no grid of any sector yet")
            query = {**query, "sector": [chosen[0]]}
        sector = _sector(query)
        stored = self.store.latest(sector)
        if stored is None:
            msg = f"no grid of sector {sector} yet"
            raise ApiError(404, msg)
        try:
            return _json(200, self._summary(stored))
        except UNREADABLE as exc:  # a broken newest file: answer with the newest one that reads
            self.unreadable(stored, "latest", exc)
        for older in reversed(self.store.grids_between(sector, stored.scan_start - timedelta(hours=6))):
            if older.path == stored.path:
                continue
            try:
                return _json(200, self._summary(older))
            except UNREADABLE as exc:
                self.unreadable(older, "latest", exc)
        msg = f"no readable grid of sector {sector} in the 6 hours before its newest"
        raise ApiError(404, msg)

    def _list(self, query: Mapping[str, list[str]]) -> Response:
        sector = _sector(query)
        hours = _number(query, "hours", 0.0, self.settings.max_hours, "3")
        since = self._reference((sector,)) - timedelta(hours=hours)
        summaries, skipped = [], 0
        for stored in self.store.grids_between(sector, since):
            try:
                summaries.append(self._summary(stored))
            except UNREADABLE as exc:  # one bad file on disk must not fail the listing
                self.unreadable(stored, "list", exc)
                skipped += 1
        return _json(200, {"sector": sector, "since": iso_utc(since), "grids": summaries, "skipped": skipped})

    def unreadable(self, stored: StoredGrid, route: str, exc: BaseException) -> None:
        """Count a grid file that could not be read; log it once (per file version)."""
        metrics.UNREADABLE_GRIDS.labels(route).inc()
        try:
            stat = stored.path.stat()
            key: tuple[Any, ...] = (stored.grid_id, stat.st_mtime_ns, stat.st_size)
        except OSError:
            key = (stored.grid_id,)
        with self._lock:
            if key in self._broken:
                return
            self._broken[key] = None
            while len(self._broken) > _BROKEN_REMEMBERED:
                self._broken.popitem(last=False)
        log.warning("api: grid file %s cannot be read (%s: %s); skipped where it is listed", stored.grid_id,
                    type(exc).__name__, str(exc)[:200])  # fmt: skip

    def _reference(self, sectors: tuple[str, ...]) -> datetime:
        """The end of "the last hours": the newest scan of these sectors, or now when the store is empty.

        Live, that is a few minutes ago; on a replay or backfill it is the end of the record, so the
        viewer's slider and point series still show its last hours.
        """
        newest = [g.scan_start for g in (self.store.latest(s) for s in sectors) if g is not None]
        return max(newest) if newest else self.now()

    def _grid_file(self, rest: str, query: Mapping[str, list[str]]) -> Response:
        for suffix, name in _longest_first():
            if rest.endswith(suffix):
                stored = self._find(rest[: -len(suffix)])
                try:
                    return self._grid_files[name](stored, query)
                except UNREADABLE as exc:  # counted and logged once, answered without a traceback
                    self.unreadable(stored, name, exc)
                    msg = f"grid {stored.grid_id} cannot be read (a damaged file); listings skip it"
                    raise ApiError(500, msg) from exc
        msg = f"expected /v1/grids/ID followed by one of {', '.join(GRID_FILES)}; found {rest!r}"
        raise ApiError(404, msg)

    def _netcdf(self, stored: StoredGrid, query: Mapping[str, list[str]]) -> Response:
        disposition = {"Content-Disposition": f'attachment; filename="{stored.grid_id}.nc"'}
        return Response(200, b"", "application/x-netcdf", disposition, file=stored.path)

    def _cached(self, key: tuple[Any, ...], make: Callable[[], bytes]) -> bytes:
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        if not self._rendering.acquire(timeout=self.settings.render_wait_s):
            msg = "too many PNG or contour renderings in progress; try again shortly"
            raise ApiError(503, msg)
        try:  # renderings are bounded, so slow ones never take every thread of the server
            value = make()
        finally:
            self._rendering.release()
        with self._lock:
            self._cache[key] = value
            while len(self._cache) > self.settings.cache_entries:
                self._cache.popitem(last=False)
        return value

    def _key(self, stored: StoredGrid, *rest: Any) -> tuple[Any, ...]:
        stat = stored.path.stat()  # a replayed grid is rewritten under the same id: its mtime is part of the key
        return (stored.grid_id, stat.st_mtime_ns, stat.st_size, *rest)

    def _png(self, stored: StoredGrid, query: Mapping[str, list[str]]) -> Response:
        legend = _one(query, "legend", "1") != "0"
        body = self._cached(self._key(stored, "png", legend), lambda: overlay_png(read_grid(stored.path)[0],
                                                                                  legend=legend))  # fmt: skip
        return Response(200, body, "image/png", {"Cache-Control": "max-age=60"})

    def _contours(self, stored: StoredGrid, query: Mapping[str, list[str]]) -> Response:
        levels, crs, shape = _levels(query), _crs(query), _one(query, "geometry", "polygons")
        parallax = _parallax(query) if crs == "lonlat" else 0.0  # crs=pixel is the grid itself: nothing to move
        if shape not in ("polygons", "lines"):
            msg = f"geometry must be polygons or lines; found {shape!r}"
            raise ApiError(400, msg)

        def make() -> bytes:
            with GridFile(stored.path) as grid_file:
                probability, grid, attrs = grid_file.probability(), grid_file.geometry(), grid_file.attributes()
            properties = _identity(attrs, stored)
            doc = contours(probability, grid, levels, properties=properties, crs=crs, geometry=shape,
                           parallax_km=parallax)  # fmt: skip
            vertices = positions(doc)
            if vertices > self.settings.max_vertices:
                msg = (
                    f"the contours of {stored.grid_id} at {levels} have {vertices} vertices, more than the "
                    f"{self.settings.max_vertices} this API sends; ask for fewer levels or take the NetCDF"
                )
                raise ApiError(413, msg)
            doc["properties"] = {"grid_id": stored.grid_id, "crs": crs, "geometry": shape, "parallax_km": parallax}
            return (json.dumps(doc, allow_nan=False) + "\n").encode()

        body = self._cached(self._key(stored, "contours", levels, crs, shape, parallax), make)
        return Response(200, body, "application/geo+json")

    # -- georeferenced rasters (serve.products.georef) -----------------------------------------------------------------
    def _loaded(self, stored: StoredGrid, *, ir: bool = False) -> tuple[Any, Any, dict[str, Any]]:
        """The probability (or the infrared underlay, ``None`` when the file has none), geometry and attributes."""
        with GridFile(stored.path) as grid_file:
            values = grid_file.underlay() if ir else grid_file.probability()
            return values, grid_file.geometry(), grid_file.attributes()

    def _latlon(self, stored: StoredGrid, query: Mapping[str, list[str]]) -> Response:
        parallax = _parallax(query)

        def make() -> bytes:
            probability, grid, attrs = self._loaded(stored)
            return georef.latlon_netcdf(probability, self.index_maps.get(grid, "latlon", parallax), attrs)

        body = self._cached(self._key(stored, "latlon", parallax), make)
        name = f"{stored.grid_id}_latlon{_parallax_tag(parallax)}.nc"
        return Response(200, body, "application/x-netcdf", {"Content-Disposition": f'attachment; filename="{name}"'})

    def _cog(self, stored: StoredGrid, query: Mapping[str, list[str]]) -> Response:
        parallax = _parallax(query)

        def make() -> bytes:
            probability, grid, attrs = self._loaded(stored)
            return georef.cog(probability, self.index_maps.get(grid, "latlon", parallax), attrs)

        body = self._cached(self._key(stored, "cog", parallax), make)
        name = f"{stored.grid_id}{_parallax_tag(parallax)}.tif"
        return Response(200, body, "image/tiff; application=geotiff; profile=cloud-optimized",
                        {"Content-Disposition": f'attachment; filename="{name}"'})  # fmt: skip

    def _map(self, stored: StoredGrid, query: Mapping[str, list[str]]) -> Response:
        parallax = _parallax(query)

        def make() -> bytes:
            with GridFile(stored.path) as grid_file:
                grid, attrs, has_ir = grid_file.geometry(), grid_file.attributes(), grid_file.has_underlay()
            index_map = self.index_maps.get(grid, "mercator", parallax)
            doc = georef.map_document(index_map, f"/v1/grids/{stored.grid_id}", attrs, has_ir=has_ir)
            return (json.dumps({**doc, "grid_id": stored.grid_id}, allow_nan=False) + "\n").encode()

        return Response(200, self._cached(self._key(stored, "map", parallax), make), "application/json",
                        {"Cache-Control": "max-age=60"})  # fmt: skip

    def _map_layer(self, layer: str) -> Callable[[StoredGrid, Mapping[str, list[str]]], Response]:
        def answer(stored: StoredGrid, query: Mapping[str, list[str]]) -> Response:
            parallax = _parallax(query)

            def make() -> bytes:
                values, grid, _ = self._loaded(stored, ir=layer == "ir")
                if values is None:
                    msg = (f"grid {stored.grid_id} has no infrared underlay (written before grids carried one, or "
                           "from another band); map.json lists its ir layer as null")  # fmt: skip
                    raise ApiError(404, msg)
                return georef.map_layer(layer, values, self.index_maps.get(grid, "mercator", parallax))

            body = self._cached(self._key(stored, "map", layer, parallax), make)
            return Response(200, body, "image/png", {"Cache-Control": "max-age=60"})

        return answer

    def _flashes(self, stored: StoredGrid, query: Mapping[str, list[str]]) -> Response:
        crs = _crs(query)
        flashes = read_flashes(stored.path)
        lat, lon, t = (np.asarray(flashes[k], np.float64) for k in ("lat", "lon", "time"))
        if crs == "pixel":
            row, col = read_geometry(stored.path).rowcol(lat, lon, ellipsoid=LIGHTNING_ELLIPSOID)  # GLM's ellipsoid
            xs, ys = col, row
        else:
            xs, ys = lon, lat
        keep = np.isfinite(xs) & np.isfinite(ys)
        features = [
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [round(float(x), 4), round(float(y), 4)]},
                "properties": {"time": iso_utc(datetime.fromtimestamp(float(s), UTC))},
            }
            for x, y, s in zip(xs[keep], ys[keep], t[keep], strict=True)
        ]
        doc = {"type": "FeatureCollection", "features": features, "properties": {"grid_id": stored.grid_id,
                                                                                  "crs": crs}}  # fmt: skip
        return Response(200, (json.dumps(doc, allow_nan=False) + "\n").encode(), "application/geo+json")

    def _points(self, query: Mapping[str, list[str]]) -> Response:
        lat = _number(query, "lat", -90.0, 90.0)
        lon = _number(query, "lon", -180.0, 180.0)
        hours = _number(query, "hours", 0.0, self.settings.max_hours, "3")
        sectors = tuple(dict.fromkeys(s for s in _one(query, "sectors", ",".join(SECTORS)).split(",") if s))
        if not sectors or any(s not in SECTORS for s in sectors):
            msg = f"sectors must be a comma-separated subset of {','.join(SECTORS)}; found {sectors!r}"
            raise ApiError(400, msg)
        try:
            since = self._reference(sectors) - timedelta(hours=hours)
            series = point_series(self.store, lat, lon, since=since, sectors=sectors,
                                  unreadable=lambda stored, exc: self.unreadable(stored, "points", exc))  # fmt: skip
        except ValueError as exc:
            raise ApiError(400, str(exc)) from exc
        radius_km = _number(query, "flash_radius_km", 0.0, MAX_FLASH_RADIUS_KM, "0")
        if radius_km > 0:  # each grid's flashes are a file read: only those of the last MAX_FLASH_HOURS are listed
            newest = max((datetime.fromisoformat(e["scan_start"]) for e in series["series"]), default=None)
            recent = [
                e
                for e in series["series"]
                if newest is not None and datetime.fromisoformat(e["scan_start"]) >= newest - MAX_FLASH_HOURS
            ]
            series["flashes"] = self._flashes_near(recent, lat, lon, radius_km)
        return _json(200, series)

    def _flashes_near(self, entries: list[dict[str, Any]], lat: float, lon: float,
                      radius_km: float) -> dict[str, Any]:  # fmt: skip
        """The GLM flashes within ``radius_km`` of a point, from the grids of a point series.

        Each grid keeps the flashes of its window (the 15 minutes before its scan), so consecutive grids share
        flashes: they are merged by (time, lat, lon). At most :data:`MAX_POINT_FLASHES` are listed (the newest).
        """
        seen: set[tuple[float, float, float]] = set()
        for entry in entries:
            stored = self.store.get(entry["grid_id"])
            if stored is None:
                continue
            try:
                flashes = read_flashes(stored.path)
            except UNREADABLE as exc:
                self.unreadable(stored, "points", exc)
                continue
            near = great_circle_km(lat, lon, flashes["lat"], flashes["lon"]) <= radius_km  # NaN: never near
            seen.update(zip(flashes["time"][near].tolist(), flashes["lat"][near].tolist(),
                            flashes["lon"][near].tolist(), strict=True))  # fmt: skip
        times = sorted(t for t, _, _ in seen)
        listed = times[-MAX_POINT_FLASHES:]
        return {"radius_km": radius_km, "count": len(times),
                "times": [iso_utc(datetime.fromtimestamp(t, UTC)) for t in listed]}  # fmt: skip

    # -- site alerts ------------------------------------------------------------------------------------------------
    def _alerts(self, query: Mapping[str, list[str]]) -> Response:
        if self.alerts is None:
            return _json(200, {"sites": [], "evaluated_at": iso_utc(self.now()), "reference": None})
        return _json(200, self.alerts.current())

    def _alert(self, site_id: str) -> Response:
        if not SITE_ID.fullmatch(site_id):
            msg = f"expected a site id matching {SITE_ID_PATTERN}; found {site_id!r}"
            raise ApiError(400, msg)
        if self.alerts is None:
            msg = f"no site {site_id!r}: site alerts are off on this service (started with --sites none)"
            raise ApiError(404, msg)
        doc = self.alerts.current()
        found = next((entry for entry in doc["sites"] if entry["id"] == site_id), None)
        if found is None:
            msg = f"no site {site_id!r} in the sites file; GET /v1/alerts lists the {len(doc['sites'])} sites"
            raise ApiError(404, msg)
        return _json(200, {**found, "evaluated_at": doc["evaluated_at"], "reference": doc.get("reference")})

    # -- service state ----------------------------------------------------------------------------------------------
    def _readyz(self, query: Mapping[str, list[str]]) -> Response:
        problems = self.ready()
        return _json(503 if problems else 200, {"ready": not problems, "problems": problems})

    def _models(self, query: Mapping[str, list[str]]) -> Response:
        if self.models is None:
            raise ApiError(404, "this service has no model slot (hot-swap is off)")
        return _json(200, self.models.status())

    def _admin(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Response:
        if method != "POST":
            msg = f"{path} answers POST; found {method}"
            raise ApiError(405, msg)
        self.authorize(headers)
        if self.models is None:
            raise ApiError(404, "this service has no model slot (hot-swap is off)")
        return self._admin_action(path, _body(body))

    def authorize(self, headers: Mapping[str, str]) -> None:
        """``ApiError`` 403 when the admin endpoints are off, 401 without the right bearer token."""
        token = self.settings.admin_token
        if not token:
            raise ApiError(403, "the admin endpoints are off: the service was started without an admin token")
        given = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise ApiError(401, "expected the header Authorization: Bearer <admin token>")

    def _admin_action(self, path: str, doc: dict[str, Any]) -> Response:
        assert self.models is not None
        try:
            if path == "/v1/admin/models/promote":
                version = doc.get("version")
                if not isinstance(version, int) or isinstance(version, bool) or version < 1:
                    msg = f'expected a JSON body {{"version": N}} with a positive integer N; found {doc!r}'
                    raise ApiError(400, msg)
                return _json(200, self.models.promote(version, str(doc.get("reason", "admin endpoint"))))
            if path == "/v1/admin/models/rollback":
                return _json(200, self.models.rollback())
        except ModelRejected as exc:
            raise ApiError(409, str(exc)) from exc
        msg = f"no admin route {path!r}; expected /v1/admin/models/promote or /v1/admin/models/rollback"
        raise ApiError(404, msg)


def _body(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        doc = json.loads(body)
    except ValueError as exc:
        msg = f"expected a JSON object body; found {body[:80]!r}"
        raise ApiError(400, msg) from exc
    if not isinstance(doc, dict):
        msg = f"expected a JSON object body; found {type(doc).__name__}"
        raise ApiError(400, msg)
    return doc


def _parallax(query: Mapping[str, list[str]]) -> float:
    """The ``parallax_km`` query value: a cloud-top height in ``[0, 20]`` km, rounded to whole km (0: none).

    Whole km bound the index maps one grid geometry can ask for to 21 (each costs about a second to build for
    CONUS), and a cloud-top height is not known better than that.
    """
    return float(round(_number(query, "parallax_km", 0.0, georef.MAX_PARALLAX_KM, "0")))


def _parallax_tag(parallax: float) -> str:
    return f"_parallax{parallax:g}km" if parallax else ""


def _identity(attrs: Mapping[str, Any], stored: StoredGrid) -> dict[str, Any]:
    """What every contour Feature says about its grid (from the file's attributes)."""
    return {"grid_id": stored.grid_id, "valid_time": attrs.get("valid_time"),
            "scan_start": attrs.get("forecast_reference_time", iso_utc(stored.scan_start)),
            "model_name": stored.model, "model_version": stored.version, "sector": stored.sector,
            "satellite": stored.satellite}  # fmt: skip


def _longest_first() -> list[tuple[str, str]]:
    """:data:`GRID_FILES` by suffix length, longest first (``/map/value.png`` before ``.png``)."""
    return sorted(GRID_FILES.items(), key=lambda item: -len(item[0]))


def route_name(path: str) -> str:
    """The bounded ``route`` label of a path (from :data:`PATHS` and :data:`GRID_FILES`)."""
    if path in PATHS:
        return PATHS[path]
    if path.startswith("/v1/admin/"):
        return "admin"
    if path.startswith("/v1/alerts/"):
        return "alert"
    if path.startswith("/static/"):
        return "static"
    if path.startswith("/v1/grids/"):
        return next((name for suffix, name in _longest_first() if path.endswith(suffix)), "unknown")
    return "unknown"


def vendor_files() -> dict[str, Path]:
    """The viewer's third-party files by their name under ``serve/viewer/vendor-dist/`` (empty when not built)."""
    root = Path(str(resources.files("serve").joinpath("viewer", "vendor-dist")))
    if not root.is_dir():
        return {}
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*"))
            if p.is_file() and p.suffix in VENDOR_TYPES}  # fmt: skip


def _static(name: str) -> bytes:
    return resources.files("serve").joinpath("viewer", name).read_bytes()
