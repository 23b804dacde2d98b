"""The HTTP API and viewer: what forecasters and operators read, over the file grid store.

Routes (``GET`` unless said otherwise; JSON errors ``{"error": …}`` with a 4xx
status name what was expected and what was found)::

    /                                       the viewer (static page + script)
    /v1/grids/latest?sector=C               metadata of the newest grid of a sector
    /v1/grids?sector=C&hours=3              metadata of the sector's grids in its last hours (newest last)
    /v1/grids/{id}.nc                       the CF NetCDF file
    /v1/grids/{id}.png                      the PNG overlay with its legend
    /v1/grids/{id}/contours.geojson?levels=0.1,0.25&crs=lonlat|pixel
    /v1/grids/{id}/flashes.geojson?crs=…    the GLM flashes the grid was made from
    /v1/points?lat=…&lon=…&hours=…          probability at a place over the last hours
    /v1/models                              the model slot's status (stable, shadow, rejected)
    POST /v1/admin/models/promote           {"version": N, "reason": "…"} with ``Authorization: Bearer TOKEN``
    POST /v1/admin/models/rollback          same token
    /healthz  /readyz  /metrics

Grid ids are parsed against their grammar before any file is touched
(:meth:`ingest.events.GridKey.parse`), so no request can reach outside the store.
``crs=pixel`` gives coordinates as ``[column, row]`` on the grid (what the
viewer draws over the PNG); the default is GeoJSON's lon/lat.

:class:`GridApi` is the routing and the answers, with no socket (tested
directly); :func:`start_http` puts it behind a threaded HTTP server.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ingest.errors import ModelRejected
from ingest.events import SECTORS
from ingest.geometry import LIGHTNING_ELLIPSOID
from ingest.ncio import iso_utc
from monitor.quality import LEVELS
from serve import metrics
from serve.gridfile import read_attributes, read_flashes, read_geometry, read_grid
from serve.outputs import MAX_LEVELS, check_levels, contours, overlay_png, point_series
from serve.store import FileGridStore, StoredGrid, check_sector

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024  # admin requests are a few bytes of JSON
#: Exact paths and the route name each answers under (the ``route`` label of the HTTP metrics).
PATHS = {
    "/": "viewer", "/index.html": "viewer", "/healthz": "health", "/readyz": "ready", "/metrics": "metrics",
    "/v1/grids/latest": "latest", "/v1/grids": "list", "/v1/points": "points", "/v1/models": "models",
}  # fmt: skip
#: ``/v1/grids/{id}<suffix>``: what a grid is served as, by suffix.
GRID_FILES = {".nc": "netcdf", ".png": "png", "/contours.geojson": "contours", "/flashes.geojson": "flashes"}
STATIC = {"viewer.js": "text/javascript; charset=utf-8", "viewer.css": "text/css; charset=utf-8"}


@dataclass(frozen=True)
class ApiSettings:
    """Limits and the admin token of the API."""

    admin_token: str = ""  # empty: the admin endpoints answer 403
    max_hours: float = 48.0  # longest history a list or point request may ask for
    cache_entries: int = 32  # rendered contours/PNGs kept in memory
    renderers: int = 2  # PNG/contour renderings at once; more wait up to render_wait_s, then get 503
    summary_entries: int = 20_000  # grid attributes kept in memory (a few hundred bytes each)
    max_vertices: int = 1_000_000  # a contour answer larger than this is refused (413): a noise field is not a forecast
    render_wait_s: float = 30.0


@dataclass(frozen=True)
class Response:
    """What a route answers."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


class ApiError(Exception):
    """A request the API refuses: an HTTP status and a message for the caller."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ModelControl(Protocol):
    """What the admin endpoints drive (:class:`serve.hotswap.ModelSlot`)."""

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
                 now: Callable[[], datetime] | None = None) -> None:  # fmt: skip
        self.store = store
        self.settings = settings or ApiSettings()
        self.models = models
        self.ready = ready or dict  # problems by component; empty = ready
        self.now = now or (lambda: datetime.now(UTC))
        self._cache: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._rendering = threading.BoundedSemaphore(self.settings.renderers)
        self._attrs: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()
        self._routes: dict[str, Callable[[Mapping[str, list[str]]], Response]] = {
            "viewer": lambda q: Response(200, _static("index.html"), "text/html; charset=utf-8"),
            "health": lambda q: _json(200, {"status": "ok"}),
            "ready": self._readyz,
            "metrics": lambda q: Response(200, generate_latest(), CONTENT_TYPE_LATEST),
            "latest": self._latest,
            "list": self._list,
            "points": self._points,
            "models": self._models,
        }
        self._grid_files: dict[str, Callable[[StoredGrid, Mapping[str, list[str]]], Response]] = {
            "netcdf": self._netcdf,
            "png": self._png,
            "contours": self._contours,
            "flashes": self._flashes,
        }

    # -- dispatch ---------------------------------------------------------------------------------------------------
    def handle(self, method: str, target: str, headers: Mapping[str, str] | None = None,
               body: bytes = b"") -> tuple[str, Response]:  # fmt: skip
        """Answer one request; return the route name (for metrics) and the response."""
        parts = urlsplit(target)
        query = parse_qs(parts.query, keep_blank_values=True)
        route = _route_name(parts.path)
        try:
            if parts.path.startswith("/v1/admin/"):
                return route, self._admin(method, parts.path, headers or {}, body)
            if method not in ("GET", "HEAD"):
                msg = f"{parts.path} answers GET; found {method}"
                raise ApiError(405, msg)
            return route, self._get(parts.path, query)
        except ApiError as exc:
            return route, _json(exc.status, {"error": str(exc)})

    def _get(self, path: str, query: Mapping[str, list[str]]) -> Response:
        if path in PATHS:
            return self._routes[PATHS[path]](query)
        if path.startswith("/static/") and path[len("/static/") :] in STATIC:
            name = path[len("/static/") :]
            return Response(200, _static(name), STATIC[name])
        if path.startswith("/v1/grids/"):
            return self._grid_file(path[len("/v1/grids/") :], query)
        msg = f"no such route {path!r}; see / for the viewer and /v1/grids/latest?sector=C"
        raise ApiError(404, msg)

    # -- grids ------------------------------------------------------------------------------------------------------
    def _find(self, grid_id: str) -> StoredGrid:
        try:
            stored = self.store.get(grid_id)
        except ValueError as exc:
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
            },
        }

    def _latest(self, query: Mapping[str, list[str]]) -> Response:
        sector = _sector(query)
        stored = self.store.latest(sector)
        if stored is None:
            msg = f"no grid of sector {sector} yet"
            raise ApiError(404, msg)
        return _json(200, self._summary(stored))

    def _list(self, query: Mapping[str, list[str]]) -> Response:
        sector = _sector(query)
        hours = _number(query, "hours", 0.0, self.settings.max_hours, "3")
        since = self._reference((sector,)) - timedelta(hours=hours)
        grids = self.store.grids_between(sector, since)
        return _json(200, {"sector": sector, "since": iso_utc(since), "grids": [self._summary(g) for g in grids]})

    def _reference(self, sectors: tuple[str, ...]) -> datetime:
        """The end of "the last hours": the newest scan of these sectors, or now when the store is empty.

        Live, that is a few minutes ago; on a replay or backfill it is the end of the record, so the
        viewer's slider and point series still show its last hours.
        """
        newest = [g.scan_start for g in (self.store.latest(s) for s in sectors) if g is not None]
        return max(newest) if newest else self.now()

    def _grid_file(self, rest: str, query: Mapping[str, list[str]]) -> Response:
        for suffix, name in GRID_FILES.items():
            if rest.endswith(suffix):
                return self._grid_files[name](self._find(rest[: -len(suffix)]), query)
        msg = f"expected /v1/grids/ID.nc, ID.png, ID/contours.geojson or ID/flashes.geojson; found {rest!r}"
        raise ApiError(404, msg)

    def _netcdf(self, stored: StoredGrid, query: Mapping[str, list[str]]) -> Response:
        disposition = {"Content-Disposition": f'attachment; filename="{stored.grid_id}.nc"'}
        return Response(200, stored.path.read_bytes(), "application/x-netcdf", disposition)

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
        levels, crs = _levels(query), _crs(query)

        def make() -> bytes:
            probability, _ = read_grid(stored.path)
            grid = read_geometry(stored.path)
            doc = contours(probability, grid, levels)
            vertices = sum(len(line) for f in doc["features"] for line in f["geometry"]["coordinates"])
            if vertices > self.settings.max_vertices:
                msg = (
                    f"the contours of {stored.grid_id} at {levels} have {vertices} vertices, more than the "
                    f"{self.settings.max_vertices} this API sends; ask for fewer levels or take the NetCDF"
                )
                raise ApiError(413, msg)
            if crs == "pixel":
                doc = _to_pixels(doc, grid)
            doc["properties"] = {"grid_id": stored.grid_id, "crs": crs}
            return (json.dumps(doc, allow_nan=False) + "\n").encode()

        body = self._cached(self._key(stored, "contours", levels, crs), make)
        return Response(200, body, "application/geo+json")

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
        return _json(200, doc)

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
            series = point_series(self.store, lat, lon, since=since, sectors=sectors)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from exc
        return _json(200, series)

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
        token = self.settings.admin_token
        if not token:
            raise ApiError(403, "the admin endpoints are off: the service was started without an admin token")
        given = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise ApiError(401, "expected the header Authorization: Bearer <admin token>")
        if self.models is None:
            raise ApiError(404, "this service has no model slot (hot-swap is off)")
        return self._admin_action(path, _body(body))

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


def _to_pixels(doc: dict[str, Any], grid: Any) -> dict[str, Any]:
    """Contour vertices from lon/lat to ``[column, row]`` on the grid (for drawing over the PNG)."""
    for feature in doc["features"]:
        lines = []
        for line in feature["geometry"]["coordinates"]:
            lonlat = np.asarray(line, np.float64).reshape(-1, 2)
            row, col = grid.rowcol(lonlat[:, 1], lonlat[:, 0])
            lines.append([[round(float(c), 2), round(float(r), 2)] for c, r in zip(col, row, strict=True)])
        feature["geometry"]["coordinates"] = lines
    return doc


def _route_name(path: str) -> str:
    """The bounded ``route`` label of a path (from :data:`PATHS` and :data:`GRID_FILES`)."""
    if path in PATHS:
        return PATHS[path]
    if path.startswith("/v1/admin/"):
        return "admin"
    if path.startswith("/static/"):
        return "static"
    if path.startswith("/v1/grids/"):
        return next((name for suffix, name in GRID_FILES.items() if path.endswith(suffix)), "unknown")
    return "unknown"


def _static(name: str) -> bytes:
    return resources.files("serve").joinpath("viewer", name).read_bytes()


# -- the socket side ------------------------------------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    api: GridApi
    timeout = 30  # seconds a connection may sit idle or send slowly before it is closed
    protocol_version = "HTTP/1.1"
    server_version = "ltgcast"

    def _body(self) -> bytes | Response:
        text = self.headers.get("Content-Length") or "0"
        if not text.isdigit():
            return _json(400, {"error": f"Content-Length must be a non-negative integer; found {text!r}"})
        if int(text) > MAX_BODY:
            return _json(413, {"error": f"request bodies are at most {MAX_BODY} bytes; found {text}"})
        return self.rfile.read(int(text)) if int(text) else b""

    def _answer(self, method: str) -> None:
        began = time.perf_counter()
        route = _route_name(urlsplit(self.path).path)
        body = self._body()
        if isinstance(body, Response):
            response = body
            self.close_connection = True  # the unread body must not be taken for the next request
        else:
            try:
                route, response = self.api.handle(method, self.path, dict(self.headers.items()), body)
            except Exception as exc:  # a grid that vanished or broke under us: answer 500, keep serving
                log.exception("http: %s %s failed", method, self.path)
                response = _json(500, {"error": f"internal error: {type(exc).__name__}: {exc}"})
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(response.body)
        metrics.REQUESTS.labels(route, f"{response.status // 100}xx").inc()
        metrics.REQUEST_SECONDS.labels(route).observe(time.perf_counter() - began)

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        """Answer a GET."""
        self._answer("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        """Answer a HEAD (headers only)."""
        self._answer("HEAD")

    def do_POST(self) -> None:  # noqa: N802
        """Answer a POST (admin endpoints)."""
        self._answer("POST")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
        """Access log through logging at DEBUG, not stderr."""
        log.debug("http: " + format, *args)


class HttpService:
    """The API on a threaded HTTP server, in a background thread."""

    def __init__(self, api: GridApi, host: str, port: int) -> None:
        handler = type("Handler", (_Handler,), {"api": api})
        try:
            self.server = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            msg = f"cannot listen on {host}:{port}: {exc}"
            raise OSError(msg) from exc
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="ltgcast-http", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        """The host and port actually bound (port 0 picks a free one)."""
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    def start(self) -> HttpService:
        """Start serving; return self."""
        self.thread.start()
        log.info("http: serving on http://%s:%d/", *self.address)
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
