"""The socket side of the API: :class:`~serve.api.grids.GridApi` as an ASGI app under uvicorn, with its OpenAPI spec.

What this layer adds to the routing logic of :mod:`serve.api.grids` (which stays socket-free and is tested directly):

* **A strict HTTP/1.1 parser** (h11, through uvicorn): a ``Content-Length`` that is not ASCII digits, two
  different ``Content-Length`` headers, ``Transfer-Encoding`` beside ``Content-Length``, request lines and
  header blocks larger than ``max_header_bytes`` are refused with 400 before any route runs, and a chunked
  body is read as a body, never as a second request (request smuggling behind a proxy).
* **Bounded resources**: at most ``max_connections`` open sockets (more are answered 503 and closed at once);
  a request line and headers must arrive within ``header_timeout_s`` of the connection opening or of the
  first byte after the previous answer (uvicorn's keep-alive timeout covers the idle gap), and then the body
  within ``body_timeout_s`` (else 408); a client that stops reading its answers for ``write_timeout_s`` is
  cut off (so pipelining without reading pins neither a request slot nor the answers' memory). Slow clients
  hold a coroutine, never a thread; at most
  ``max_in_flight`` requests are being answered (more get 503 with ``Retry-After``), except ``/healthz``,
  ``/readyz`` and ``/metrics``, which are answered on the event loop and so stay answerable while the
  ``threads`` worker threads read and render files; a listen backlog of ``backlog``.
* **The contract**: every route with typed, bounded parameters and its answers' schemas, served at
  ``/openapi.json``, and Swagger UI at ``/docs`` from the service's own files (no CDN). A request that breaks
  the contract is answered 400 naming the parameter, what was expected and what was found.
* **No leaks**: every error is JSON ``{"error": message about the request, "code": stable code}``; an
  unexpected failure answers ``{"error": "internal error", "code": "internal"}`` with a reference to the one
  log line (with the traceback) that explains it; no ``Server`` banner; a client that hangs up mid-answer
  is not an error. NetCDF files are streamed from disk, never read whole into memory.
* **CORS** for a viewer on another origin: off unless ``cors_origins`` names origins (``GET``/``HEAD`` only:
  the admin endpoints are never callable cross-origin).
"""

import asyncio
import contextlib
import importlib.util
import itertools
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any, BinaryIO, ClassVar, Literal

import anyio
import h11
import uvicorn
from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect
from starlette.responses import FileResponse, StreamingResponse
from starlette.responses import Response as StarletteResponse
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.utils import ClientDisconnected

from foundation.addresses import format_address
from foundation.errors import ApiError
from ingest.events import SECTORS
from serve import metrics
from serve.alerts.sites import SITE_ID_PATTERN
from serve.api.grids import ERROR_CODES, GRID_ID_PATTERN, MAX_BODY, GridApi, Response, route_name
from serve.api.settings import WebSettings

log = logging.getLogger(__name__)

#: Answered on the event loop, never queued behind file work, never refused for load.
PROBES = frozenset({"/healthz", "/readyz", "/metrics"})
SECTORS_PATTERN = r"^(C|F|M1|M2)(,(C|F|M1|M2)){0,3}$"
LEVELS_PATTERN = r"^\s*0?\.\d+\s*(,\s*0?\.\d+\s*){0,9}$"


# -- the contract's answers -----------------------------------------------------------------------------------------
class ErrorAnswer(BaseModel):
    """Every error: a message about the request and a stable code."""

    error: str
    code: str
    reference: str | None = Field(None, description="for internal errors: the id of the log line explaining it")


class GridLinks(BaseModel):
    netcdf: str
    png: str
    contours: str
    flashes: str
    map: str | None = Field(None, description="the Web Mercator map layers' description (map.json)")
    latlon_netcdf: str | None = Field(None, description="CF NetCDF on a regular lat/lon grid (EPSG:4326)")
    geotiff: str | None = Field(None, description="Cloud-Optimized GeoTIFF in EPSG:4326")


class GridSummary(BaseModel):
    """A stored grid's metadata."""

    grid_id: str = Field(pattern=GRID_ID_PATTERN)
    satellite: str
    sector: Literal["C", "F", "M1", "M2"]
    scan_start: str
    valid_time: str
    model_name: str
    model_version: int = Field(ge=1)
    shape: list[int] | None
    input_abi_file: str
    glm_granules_used: int = Field(ge=0)
    glm_granules_missing: int = Field(ge=0)
    created: str
    links: GridLinks


class GridList(BaseModel):
    sector: Literal["C", "F", "M1", "M2"]
    since: str
    grids: list[GridSummary]
    skipped: int = Field(0, ge=0, description="grid files that could not be read (counted and logged)")


class PointEntry(BaseModel):
    grid_id: str
    satellite: str
    sector: Literal["C", "F", "M1", "M2"]
    scan_start: str
    valid_time: str
    probability: float | None = Field(ge=0.0, le=1.0)
    model_name: str
    model_version: int
    row: int = Field(ge=0)
    col: int = Field(ge=0)


class PointFlashes(BaseModel):
    radius_km: float = Field(gt=0)
    count: int = Field(ge=0, description="flashes within radius_km in the grids' windows, deduplicated")
    times: list[str] = Field(description="their times (ISO 8601 UTC, oldest first; at most the newest 20000)")


class PointSeries(BaseModel):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    since: str
    until: str | None
    series: list[PointEntry]
    skipped: int = Field(0, ge=0, description="grid files that could not be read (counted and logged)")
    flashes: PointFlashes | None = Field(None, description="only when flash_radius_km > 0")


class FeatureCollection(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["FeatureCollection"]
    features: list[dict[str, Any]]
    properties: dict[str, Any]


class MapLayers(BaseModel):
    probability: str = Field(description="RGBA PNG: LightningCast colours from 10 %, transparent below and missing")
    value: str = Field(description="8-bit grey PNG: p = byte * value_scale, value_missing where missing")
    ir: str | None = Field(description="grey+alpha PNG of the band-13 brightness temperature; null without one")


class MapDocument(BaseModel):
    """Where a grid's Web Mercator layers go on a map (Leaflet ``imageOverlay`` bounds) and how to read them."""

    grid_id: str = Field(pattern=GRID_ID_PATTERN)
    crs: Literal["EPSG:3857"]
    bounds: list[list[float]] = Field(description="[[south, west], [north, east]]: the images' outer edges, degrees")
    width: int = Field(ge=1, le=4096)
    height: int = Field(ge=1, le=4096)
    value_scale: float
    value_missing: int
    parallax_km: float = Field(ge=0, le=20)
    valid_time: str
    scan_start: str
    layers: MapLayers


class GeoJSONResponse(JSONResponse):
    """GeoJSON's media type (RFC 7946), for the contract."""

    media_type = "application/geo+json"


class Health(BaseModel):
    status: Literal["ok"]


class SectorLatest(BaseModel):
    sector: Literal["C", "F", "M1", "M2"]
    latest: GridSummary | None


class SectorList(BaseModel):
    now: str = Field(description="the server's clock (ISO 8601 UTC): a grid's age is now minus its scan start")
    default: Literal["C", "F", "M1", "M2"] | None = Field(description="the sector whose newest grid is newest")
    sectors: list[SectorLatest]


class Readiness(BaseModel):
    ready: bool
    problems: dict[str, str]


class Promotion(BaseModel):
    version: int = Field(ge=1, strict=True, description="the model version to serve from the next frame on")
    reason: str = Field("admin endpoint", max_length=500)


class SiteAlert(BaseModel):
    """A site's alert state (:mod:`serve.alerts.states`); times are scan times, ISO 8601 UTC."""

    id: str = Field(pattern=SITE_ID_PATTERN)
    name: str
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    radius_km: float = Field(ge=1, le=100)
    threshold: float = Field(ge=0.01, le=0.99)
    hold_minutes: float = Field(ge=0, le=240)
    state: Literal["ALERT", "CLEAR", "UNKNOWN"] = Field(description="UNKNOWN: no grid covered the site lately")
    probability: float | None = Field(ge=0.0, le=1.0, description="highest within the radius in the newest grid")
    since: str | None = Field(description="when the current state began (the crossing, the all-clear)")
    last_exceeded: str | None = Field(description="the newest scan whose probability reached the threshold")
    sector: Literal["C", "F", "M1", "M2"] | None
    grid_id: str | None
    scan_start: str | None


class SiteAlertList(BaseModel):
    sites: list[SiteAlert]
    evaluated_at: str
    reference: str | None = Field(None, description="the scan time the states are at (the newest scan)")


class SiteAlertOne(SiteAlert):
    evaluated_at: str
    reference: str | None = None


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    described = {400: "the request breaks the contract", 401: "a wrong or missing admin token",
                 403: "the admin endpoints are off", 404: "no such grid, route or model slot",
                 405: "another method", 409: "the model slot refused", 413: "the answer or body is too large",
                 503: "busy: try again shortly"}  # fmt: skip
    json_error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorAnswer"}}}
    return {s: {"model": ErrorAnswer, "description": described[s], "content": json_error} for s in statuses}


# FastAPI reads the route signatures at run time: this module has no ``from __future__ import annotations``.


# -- the app --------------------------------------------------------------------------------------------------------
def build_app(api: GridApi, settings: WebSettings | None = None) -> FastAPI:
    """The ASGI app answering :class:`GridApi`'s routes under its OpenAPI contract."""
    s = settings or WebSettings()
    limiter = anyio.CapacityLimiter(s.threads)
    app = FastAPI(
        title="ltgcast",
        version=_version(),
        summary="Lightning in the next 30 minutes from GOES-R ABI and GLM: probability grids, contours, points.",
        description=_DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )

    async def answer(request: Request, body: bytes = b"") -> StarletteResponse:
        """GridApi's answer to this request, computed (and a file to stream opened) in a worker thread."""
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        headers = dict(request.headers)

        def work() -> StarletteResponse:
            route, response = api.handle(request.method, target, headers, body)
            request.scope["ltgcast.route"] = route
            return _starlette(response, head=request.method == "HEAD")

        return await anyio.to_thread.run_sync(work, limiter=limiter)

    async def page(request: Request) -> StarletteResponse:
        """The viewer's files (no parameters)."""
        return await answer(request)

    _grid_routes(app, answer, api.settings.max_hours)
    _georef_routes(app, answer)
    _service_routes(app, answer, page, api)
    _alert_routes(app, answer)
    _docs(app)
    for route in list(app.routes):  # HEAD answers as GET does, without a body (not listed in the contract)
        if isinstance(route, APIRoute) and "GET" in (route.methods or ()):
            app.add_api_route(route.path, route.endpoint, methods=["HEAD"], include_in_schema=False)
    _install_error_answers(app)
    _add_security_scheme(app)
    wrapped: ASGIApp = app
    if s.cors_origins:
        wrapped = CORSMiddleware(wrapped, allow_origins=list(s.cors_origins), allow_methods=["GET", "HEAD"],
                                 allow_headers=[], max_age=600)  # fmt: skip
    return _Guard(wrapped, s)  # type: ignore[return-value]


Answer = Callable[..., Awaitable[StarletteResponse]]
#: The cloud-top height of the parallax correction (serve.products.georef), km; 0: none.
Parallax = Annotated[float, Query(ge=0, le=20, description="cloud-top height of the parallax correction, km (0: none)")]
_GRID_ID = Annotated[str, PathParam(pattern=GRID_ID_PATTERN, max_length=120,
                                    examples=["G19_C_20240615T200024Z_lightning-v3"])]  # fmt: skip


def _georef_routes(app: FastAPI, answer: Answer) -> None:
    """The georeferenced products of :mod:`serve.products.georef`: lat/lon NetCDF, COG, Web Mercator layers."""

    def png(description: str) -> dict[int | str, dict[str, Any]]:
        return {200: {"content": {"image/png": {}}, "description": description}, **_errors(400, 404, 503)}

    @app.get("/v1/grids/{grid_id}/latlon.nc", response_class=StarletteResponse, tags=["georeferenced"],
             responses={200: {"content": {"application/x-netcdf": {}}, "description": "CF NetCDF, EPSG:4326"},
                        **_errors(400, 404, 503)})  # fmt: skip
    async def latlon(request: Request, grid_id: _GRID_ID, parallax_km: Parallax = 0.0) -> StarletteResponse:
        """The probability on a regular lat/lon grid (nearest neighbour, about the native pixel size), CF-1.8."""
        return await answer(request)

    @app.get("/v1/grids/{grid_id}/latlon.tif", response_class=StarletteResponse, tags=["georeferenced"],
             responses={200: {"content": {"image/tiff; application=geotiff; profile=cloud-optimized": {}},
                              "description": "Cloud-Optimized GeoTIFF, EPSG:4326, float32, nodata NaN"},
                        **_errors(400, 404, 503)})  # fmt: skip
    async def geotiff(request: Request, grid_id: _GRID_ID, parallax_km: Parallax = 0.0) -> StarletteResponse:
        """The probability as a Cloud-Optimized GeoTIFF in EPSG:4326 (float32, nodata NaN; tags: valid time, model)."""
        return await answer(request)

    @app.get("/v1/grids/{grid_id}/map.json", response_model=MapDocument, responses=_errors(400, 404, 503),
             tags=["georeferenced"])  # fmt: skip
    async def map_json(request: Request, grid_id: _GRID_ID, parallax_km: Parallax = 0.0) -> StarletteResponse:
        """Where the grid's Web Mercator layers go (Leaflet imageOverlay bounds) and how to read their bytes."""
        return await answer(request)

    @app.get("/v1/grids/{grid_id}/map/probability.png", response_class=StarletteResponse, tags=["georeferenced"],
             responses=png("RGBA, EPSG:3857: blue 10-25 %, cyan 25-50 %, green 50-75 %, purple >= 75 %"))  # fmt: skip
    async def map_probability(request: Request, grid_id: _GRID_ID, parallax_km: Parallax = 0.0) -> StarletteResponse:
        """The probability in LightningCast's colours on Web Mercator; transparent below 10 % and where missing."""
        return await answer(request)

    @app.get("/v1/grids/{grid_id}/map/value.png", response_class=StarletteResponse, tags=["georeferenced"],
             responses=png("8-bit grey, EPSG:3857: p = byte * 0.004, 255 missing; no gAMA/sRGB"))  # fmt: skip
    async def map_value(request: Request, grid_id: _GRID_ID, parallax_km: Parallax = 0.0) -> StarletteResponse:
        """The probability as bytes on Web Mercator, for a hover readout read back from a canvas."""
        return await answer(request)

    @app.get("/v1/grids/{grid_id}/map/ir.png", response_class=StarletteResponse, tags=["georeferenced"],
             responses=png("grey + alpha, EPSG:3857: 180 K white, 320 K black, clear where missing"))  # fmt: skip
    async def map_ir(request: Request, grid_id: _GRID_ID, parallax_km: Parallax = 0.0) -> StarletteResponse:
        """The scan's band-13 brightness temperature on Web Mercator (404 for grids stored without it)."""
        return await answer(request)


def _grid_routes(app: FastAPI, answer: Answer, max_hours: float) -> None:  # noqa: C901 (one closure a route)
    grid_id = Annotated[str, PathParam(pattern=GRID_ID_PATTERN, max_length=120,
                                       examples=["G19_C_20240615T200024Z_lightning-v3"])]  # fmt: skip
    sector = Annotated[Literal["C", "F", "M1", "M2"], Query(description="ABI sector")]
    hours = Annotated[float, Query(ge=0, le=max_hours, description="how far back, in hours")]
    crs = Annotated[Literal["lonlat", "pixel"], Query(description="lon/lat degrees or [column, row] on the grid")]

    @app.get(
        "/v1/grids/latest",
        response_model=GridSummary,
        responses=_errors(400, 404),
        tags=["grids"],
    )
    async def latest(request: Request, sector: sector | None = None) -> StarletteResponse:
        """The newest grid of a sector, or of any sector when none is named (never one dated in the future)."""
        return await answer(request)

    @app.get("/v1/sectors", response_model=SectorList, tags=["grids"])
    async def sectors(request: Request) -> StarletteResponse:
        """Each sector's newest grid (``null`` where none), the server's clock, and the sector a viewer opens on."""
        return await answer(request)

    @app.get("/v1/grids", response_model=GridList, responses=_errors(400), tags=["grids"])
    async def grids(request: Request, sector: sector = "C", hours: hours = 3.0) -> StarletteResponse:
        """The sector's grids of its last ``hours`` (newest last); unreadable files are skipped and counted."""
        return await answer(request)

    @app.get("/v1/grids/{grid_id}.nc", responses={200: {"content": {"application/x-netcdf": {}},
                                                        "description": "the CF NetCDF file"}, **_errors(400, 404)},
             response_class=FileResponse, tags=["grids"])  # fmt: skip
    async def netcdf(request: Request, grid_id: grid_id) -> StarletteResponse:
        """The grid as CF-1.8 NetCDF on the ABI fixed grid (streamed)."""
        return await answer(request)

    @app.get("/v1/grids/{grid_id}.png", responses={200: {"content": {"image/png": {}},
                                                         "description": "the overlay"}, **_errors(400, 404, 503)},
             response_class=StarletteResponse, tags=["grids"])  # fmt: skip
    async def png(request: Request, grid_id: grid_id,
                  legend: Annotated[Literal["0", "1"], Query(description="1: draw the legend")] = "1",
                  ) -> StarletteResponse:  # fmt: skip
        """The probability as a PNG overlay (with its legend unless ``legend=0``)."""
        return await answer(request)

    @app.get("/v1/grids/{grid_id}/contours.geojson", response_model=FeatureCollection, response_class=GeoJSONResponse,
             responses=_errors(400, 404, 413, 503), tags=["grids"])  # fmt: skip
    async def contours(request: Request, grid_id: grid_id, crs: crs = "lonlat",
                       levels: Annotated[str, Query(pattern=LEVELS_PATTERN, max_length=100,
                                                    description="1 to 10 probabilities in (0, 1)")] = "0.1,0.25,0.5",
                       geometry: Annotated[Literal["polygons", "lines"], Query(
                           description="valid MultiPolygons with holes, or their rings as lines")] = "polygons",
                       parallax_km: Parallax = 0.0) -> StarletteResponse:  # fmt: skip
        """Probability contours as GeoJSON polygons (RFC 7946: valid, exteriors anticlockwise), one feature per level.

        Each feature carries the level and the grid's identity (grid_id, valid_time, scan_start, model, sector,
        satellite). ``parallax_km`` applies to ``crs=lonlat`` only (``crs=pixel`` ignores it and says 0).
        """
        return await answer(request)

    @app.get("/v1/grids/{grid_id}/flashes.geojson", response_model=FeatureCollection, response_class=GeoJSONResponse,
             responses=_errors(400, 404), tags=["grids"])  # fmt: skip
    async def flashes(request: Request, grid_id: grid_id, crs: crs = "lonlat") -> StarletteResponse:
        """The GLM flashes the grid was made from, as GeoJSON points."""
        return await answer(request)

    @app.get("/v1/points", response_model=PointSeries, responses=_errors(400), tags=["points"])
    async def points(request: Request,
                     lat: Annotated[float, Query(ge=-90, le=90, description="geodetic latitude, degrees")],
                     lon: Annotated[float, Query(ge=-180, le=180, description="longitude, degrees east")],
                     hours: hours = 3.0,
                     sectors: Annotated[str, Query(pattern=SECTORS_PATTERN, max_length=20)] = ",".join(SECTORS),
                     flash_radius_km: Annotated[float, Query(ge=0, le=200, description="also list the GLM flashes "
                                                             "within this distance (0: none)")] = 0.0,
                     ) -> StarletteResponse:  # fmt: skip
        """The probability at a place in every grid of the last ``hours`` that covers it."""
        return await answer(request)


def _alert_routes(app: FastAPI, answer: Answer) -> None:
    @app.get("/v1/alerts", response_model=SiteAlertList, tags=["alerts"])
    async def alerts(request: Request) -> StarletteResponse:
        """Every configured site's lightning alert state (empty when site alerts are off)."""
        return await answer(request)

    @app.get("/v1/alerts/{site_id}", response_model=SiteAlertOne, responses=_errors(400, 404), tags=["alerts"])
    async def alert(request: Request,
                    site_id: Annotated[str, PathParam(pattern=SITE_ID_PATTERN, examples=["KOKC"])],
                    ) -> StarletteResponse:  # fmt: skip
        """One site's lightning alert state."""
        return await answer(request)


def _service_routes(app: FastAPI, answer: Answer, page: Answer, api: GridApi) -> None:
    @app.get("/v1/models", response_model=dict[str, Any], responses=_errors(404), tags=["models"])
    async def models(request: Request) -> StarletteResponse:
        """The model slot: stable, shadow and rejected versions."""
        return await answer(request)

    admin: dict[str, Any] = {"security": [{"bearer": []}]}

    async def authorized(request: Request) -> None:  # a dependency: checked before the body is validated
        api.authorize(dict(request.headers))

    guard = [Depends(authorized)]

    @app.post("/v1/admin/models/promote", response_model=dict[str, Any], openapi_extra=admin, dependencies=guard,
              responses=_errors(400, 401, 403, 404, 409, 413), tags=["admin"])  # fmt: skip
    async def promote(request: Request, promotion: Promotion) -> StarletteResponse:
        """Serve a validated model version from the next frame on (``Authorization: Bearer TOKEN``)."""
        return await answer(request, promotion.model_dump_json().encode())

    @app.post("/v1/admin/models/rollback", response_model=dict[str, Any], openapi_extra=admin, dependencies=guard,
              responses=_errors(401, 403, 404, 409, 413), tags=["admin"])  # fmt: skip
    async def rollback(request: Request) -> StarletteResponse:
        """Serve the previously promoted version again (``Authorization: Bearer TOKEN``)."""
        return await answer(request, await request.body())

    @app.get("/healthz", response_model=Health, tags=["operations"])
    async def healthz(request: Request) -> StarletteResponse:
        """The process answers (liveness)."""
        return _starlette(api.handle(request.method, "/healthz")[1])

    @app.get(
        "/readyz",
        response_model=Readiness,
        responses={503: {"model": Readiness}},
        tags=["operations"],
    )
    async def readyz(request: Request) -> StarletteResponse:
        """Every part runs and the worker comes round (readiness)."""
        return _starlette(api.handle(request.method, "/readyz")[1])

    @app.get("/metrics", response_class=StarletteResponse, tags=["operations"],
             responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})  # fmt: skip
    async def prometheus_metrics(request: Request) -> StarletteResponse:
        """Prometheus metrics."""
        return _starlette(api.handle(request.method, "/metrics")[1])

    for path in ("/", "/index.html", "/static/viewer.js", "/static/viewer.css"):
        app.add_api_route(path, page, methods=["GET"], include_in_schema=False)

    async def vendor(request: Request, name: Annotated[str, PathParam(max_length=200)]) -> StarletteResponse:
        """The viewer's third-party files (map library, basemaps), built from npm by ``make install``."""
        return await answer(request)

    app.add_api_route("/static/vendor/{name:path}", vendor, methods=["GET"], include_in_schema=False)


def _docs(app: FastAPI) -> None:
    bundle = _swagger_files()
    if bundle is not None:
        app.mount("/docs/assets", StaticFiles(directory=bundle), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        if bundle is None:
            return HTMLResponse(_PLAIN_DOCS, status_code=200)
        return get_swagger_ui_html(openapi_url="/openapi.json", title="ltgcast API",
                                   swagger_js_url="/docs/assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs/assets/swagger-ui.css",
                                   swagger_favicon_url="/docs/assets/favicon-32x32.png")  # fmt: skip


_DESCRIPTION = """\
Probability of lightning in the next 30 minutes, on each GOES-R ABI frame's own fixed grid.

Grids are named `G19_C_20240615T200024Z_lightning-v3` (satellite, sector, scan start, model, version).
Every error is JSON `{"error": "...", "code": "..."}`; `503` asks the client to try again shortly.
"""

_PLAIN_DOCS = """<!doctype html><title>ltgcast API</title>
<p>The API's contract is at <a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1).</p>"""


def _version() -> str:
    try:
        return version("ltgcast")
    except PackageNotFoundError:  # a checkout run without installing
        return "0+unknown"


def _swagger_files() -> Path | None:
    """Swagger UI's static files (the ``swagger-ui-py`` distribution), found without importing it."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "static"
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None


def _add_security_scheme(app: FastAPI) -> None:
    make = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = make()
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer", "description": "the service's admin token"}
            }
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _starlette(response: Response, *, head: bool = False) -> StarletteResponse:
    """The answer as Starlette's; a file is opened here (in the worker thread) and streamed from that handle.

    Streaming from the handle opened before the headers go out means a grid rewritten meanwhile (a replay
    replaces the file) is still sent whole, as it was: the length sent is the opened file's. Ranges are not
    served (a grid is a few MB).
    """
    if response.file is None:
        return StarletteResponse(response.body, status_code=response.status, media_type=response.content_type,
                                 headers=response.headers)  # fmt: skip
    handle = response.file.open("rb")
    size = os.fstat(handle.fileno()).st_size
    headers = {**response.headers, "Content-Length": str(size)}
    if head:
        handle.close()
        return StarletteResponse(b"", status_code=response.status, media_type=response.content_type, headers=headers)

    return _FileStream(handle, status_code=response.status, media_type=response.content_type, headers=headers)


class _FileStream(StreamingResponse):
    """A file streamed from an open handle, closed however the answer ends (a client hanging up too)."""

    def __init__(self, handle: BinaryIO, **kwargs: Any) -> None:
        def chunks() -> Iterator[bytes]:
            while chunk := handle.read(256 * 1024):
                yield chunk

        super().__init__(chunks(), **kwargs)
        self.handle = handle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:  # no thread reads it any more: anyio waits for a running read before the cancellation lands
            self.handle.close()


_REFERENCES = itertools.count(1)


def _error(status: int, message: str, **extra: Any) -> StarletteResponse:
    body = json.dumps({"error": message, "code": ERROR_CODES.get(status, "error"), **extra}).encode() + b"\n"
    return StarletteResponse(body, status_code=status, media_type="application/json")


def _install_error_answers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> StarletteResponse:
        return _error(400, "; ".join(_explain(e) for e in exc.errors()[:5]))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> StarletteResponse:
        if exc.status_code == 404:
            msg = f"no such route {request.url.path[:200]!r}; see /docs for the API and / for the viewer"
        elif exc.status_code == 405:
            msg = f"{request.url.path[:200]} does not answer {request.method}"
        else:
            msg = str(exc.detail)
        answer = _error(exc.status_code, msg)
        answer.headers.update(exc.headers or {})  # Allow, for a 405
        return answer

    @app.exception_handler(ApiError)
    async def refused(request: Request, exc: ApiError) -> StarletteResponse:
        return _error(exc.status, str(exc))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> StarletteResponse:
        return _internal(request.method, request.url.path, exc)


def _internal(method: str, path: str, exc: BaseException) -> StarletteResponse:
    reference = f"E{next(_REFERENCES)}"
    log.error("http: %s %s failed [%s]", method, path[:200], reference, exc_info=exc)
    return _error(500, "internal error; the service's log explains it under the reference", reference=reference)


def _explain(error: Mapping[str, Any]) -> str:
    """One validation error as 'where: what was expected; found what'."""
    where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("query", "path", "body"))
    found = error.get("input")
    shown = repr(found)[:80] if not isinstance(found, dict) else "an object"
    context = error.get("ctx") or {}
    expected = str(error.get("msg", "invalid"))
    if "pattern" in context:
        expected = f"should match {context['pattern']}"
    return f"{where or 'request'}: {expected}; found {shown}"


# -- load control, metrics and the last line of defence ------------------------------------------------------------
class _Guard:
    """ASGI middleware: refuse past ``max_in_flight``, count and time every answer, never let a failure out."""

    def __init__(self, app: ASGIApp, settings: WebSettings) -> None:
        self.app = app
        self.settings = settings
        self.in_flight = 0

    def _refusal(self, scope: Scope) -> StarletteResponse | None:
        """The answer refusing a request whose framing is dangerous, or ``None``."""
        headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
        size = len(scope.get("raw_path", b"")) + len(scope.get("query_string", b""))
        size += sum(len(k) + len(v) + 4 for k, v in headers)
        names = [k.lower() for k, _ in headers]
        refusal = None
        if scope.get("http_version") not in ("1.0", "1.1"):
            refusal = _error(505, f"this server speaks HTTP/1.0 and 1.1; found HTTP/{scope.get('http_version')}")
        elif size > self.settings.max_header_bytes:
            refusal = _error(431, f"the request line and headers are at most {self.settings.max_header_bytes} "
                                  f"bytes; found {size}")  # fmt: skip
        elif b"transfer-encoding" in names and b"content-length" in names:  # RFC 9112 6.3: a smuggling attempt
            refusal = _error(400, "a request may carry Transfer-Encoding or Content-Length, not both")
        if refusal is not None:
            metrics.HTTP_REFUSED.labels("malformed").inc()
            refusal.headers["Connection"] = "close"  # what follows on this connection cannot be trusted
        return refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, began = str(scope.get("path", "")), time.perf_counter()
        exchange = _Exchange(send)
        probe = path in PROBES
        refusal = self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, exchange.send)
        elif not probe and self.in_flight >= self.settings.max_in_flight:
            metrics.HTTP_REFUSED.labels("in_flight").inc()
            busy = _error(503, f"more than {self.settings.max_in_flight} requests in progress; try again shortly")
            busy.headers["Retry-After"] = "1"
            await busy(scope, receive, exchange.send)
        else:
            self.in_flight += not probe
            try:
                await self._answer(scope, receive, exchange)
            finally:
                self.in_flight -= not probe
        route = str(scope.get("ltgcast.route", route_name(path)))
        status = exchange.status
        metrics.REQUESTS.labels(route, f"{status // 100}xx" if status else "none").inc()
        metrics.REQUEST_SECONDS.labels(route).observe(time.perf_counter() - began)

    async def _answer(self, scope: Scope, receive: Receive, exchange: "_Exchange") -> None:
        try:
            body = await _read_body(scope, receive, self.settings.body_timeout_s)
            if isinstance(body, StarletteResponse):
                await body(scope, receive, exchange.send)
            else:
                await self.app(scope, _replay(body, receive), exchange.send)
        except (ClientDisconnect, ClientDisconnected):  # the client hung up: nothing to answer, nothing to log
            exchange.status = exchange.status or 499
        except Exception as exc:  # noqa: BLE001 (whatever a route raises, the client gets an answer)
            if not exchange.started:
                await _internal(str(scope.get("method")), str(scope.get("path")), exc)(scope, receive, exchange.send)
            # else: the app's handler answered 500 and logged it (Starlette raises it again after)
        except asyncio.CancelledError:  # the server stops with this request unanswered
            if not exchange.started:
                with contextlib.suppress(BaseException):
                    await _closing(503, "the service is stopping; try again shortly")(scope, receive, exchange.send)
            raise


class _Exchange:
    """One request's ``send``, noting the status once the answer's head went out."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status = 0
        self.started = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), (b"x-content-type-options", b"nosniff")]
            await self._send(message)
            self.status, self.started = int(message["status"]), True
            return
        await self._send(message)


def _closing(status: int, message: str) -> StarletteResponse:
    """An error answer after which the connection closes (what follows on it cannot be trusted)."""
    refused = _error(status, message)
    refused.headers["Connection"] = "close"
    return refused


async def _read_body(scope: Scope, receive: Receive, limit_s: float) -> bytes | StarletteResponse:
    """The whole request body (at most :data:`serve.api.grids.MAX_BODY` bytes, within ``limit_s``), or the refusal."""
    declared = dict(scope.get("headers", [])).get(b"content-length", b"0")
    if declared.isdigit() and int(declared) > MAX_BODY:
        return _closing(413, f"request bodies are at most {MAX_BODY} bytes; found a Content-Length of {int(declared)}")
    chunks, size = [], 0
    with anyio.move_on_after(limit_s) as deadline:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY:
                return _closing(413, f"request bodies are at most {MAX_BODY} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
    assert deadline.cancel_called
    metrics.HTTP_REFUSED.labels("body_timeout").inc()
    return _closing(408, f"the request body did not arrive within {limit_s:g} s")


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` giving the buffered body once, then the client's own messages (its disconnect)."""
    given = False

    async def replayed() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


# -- the server -----------------------------------------------------------------------------------------------------
class _Protocol(H11Protocol):
    """uvicorn's h11 protocol with a connection cap and a deadline for each request's line and headers."""

    limits: ClassVar[WebSettings] = WebSettings()
    _header_timer: asyncio.TimerHandle | None = None
    _write_timer: asyncio.TimerHandle | None = None
    _refusing = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._refuse_connection()
            return
        self._arm()

    def _refuse_connection(self) -> None:
        """Answer 503 at once, stop writing, and drop what the client sends until it goes (at most 2 s).

        Closing at once would reset a connection whose request is still unread, and the client could lose
        the 503 before reading it.
        """
        self._refusing = True
        metrics.HTTP_REFUSED.labels("connections").inc()
        body = json.dumps({"error": f"more than {self.limits.max_connections} connections open; try again shortly",
                           "code": "busy"}).encode()  # fmt: skip
        head = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n"
                b"connection: close\r\ncontent-length: %d\r\n\r\n" % len(body))  # fmt: skip
        self.transport.write(head + body)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(2.0, self.transport.close)

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.limits.header_timeout_s, self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _headers_late(self) -> None:
        self._header_timer = None
        if self._between_requests() and not self.transport.is_closing():
            metrics.HTTP_REFUSED.labels("header_timeout").inc()
            self.transport.abort()  # a client that cannot send its headers in time gets no answer

    def pause_writing(self) -> None:
        """The client stopped reading: it has ``write_timeout_s`` to start again, or the connection is cut."""
        super().pause_writing()
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(self.limits.write_timeout_s, self._not_reading)

    def resume_writing(self) -> None:
        """The client reads again."""
        self._cancel_write_timer()
        super().resume_writing()

    def _cancel_write_timer(self) -> None:
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _not_reading(self) -> None:
        self._write_timer = None
        metrics.HTTP_REFUSED.labels("write_timeout").inc()
        self.transport.abort()  # frees the answer's buffer and, through connection_lost, the request's slot

    def _unsupported_upgrade_warning(self) -> None:
        """An ``Upgrade`` (h2c, websocket) is answered as plain HTTP/1.1: counted, not logged each time."""
        metrics.HTTP_REFUSED.labels("upgrade").inc()

    def data_received(self, data: bytes) -> None:
        """Parse what arrived; the header deadline runs while a request's headers are incomplete."""
        if self._refusing:
            return
        if self._between_requests():
            self._arm()
        try:
            super().data_received(data)
        except (UnicodeDecodeError, h11.ProtocolError) as exc:  # a target h11 let through but ASGI cannot carry
            log.debug("http: refused a malformed request: %s", exc)
            self.send_400_response("Invalid HTTP request received.")
            return
        if not self._between_requests():
            self._disarm()

    def send_400_response(self, msg: str) -> None:
        """Refuse what the parser could not take, as JSON like every other error, and close."""
        metrics.HTTP_REFUSED.labels("malformed").inc()
        body = json.dumps({"error": "not a well-formed HTTP request (request line, headers or framing)",
                           "code": "bad_request"}).encode()  # fmt: skip
        head = (b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nconnection: close\r\n"
                b"content-length: %d\r\n\r\n" % len(body))  # fmt: skip
        if not self.transport.is_closing():
            self.transport.write(head + body)
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the deadlines with the connection."""
        self._disarm()
        self._cancel_write_timer()
        super().connection_lost(exc)


class _QuietInvalid(logging.Filter):
    """uvicorn warns once per malformed request: counted in a metric instead, and logged at most once a minute."""

    def __init__(self) -> None:
        super().__init__()
        self.last = 0.0
        self.lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "Invalid HTTP request" not in message:
            return True  # (counted where it is answered: _Protocol.send_400_response)
        with self.lock:
            now = time.monotonic()
            if now - self.last < 60:
                return False
            self.last = now
        record.msg, record.args = "http: refused a malformed request (more are counted in " \
                                  "ltgcast_http_refused_total, logged at most once a minute)", ()  # fmt: skip
        return True


_QUIET = _QuietInvalid()


class HttpService:
    """The API under uvicorn on a socket bound at construction, served from a background thread."""

    def __init__(self, api: GridApi, host: str, port: int, settings: WebSettings | None = None) -> None:
        self.settings = s = settings or WebSettings()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.socket.bind((host, port))
            self.socket.listen(s.backlog)
        except OSError as exc:
            self.socket.close()
            msg = f"cannot listen on {host}:{port}: {exc}"
            raise OSError(msg) from exc
        self.socket.setblocking(False)
        protocol = type("Protocol", (_Protocol,), {"limits": s})
        config = uvicorn.Config(
            build_app(api, s), http=protocol, ws="none", lifespan="off", log_config=None, access_log=False,
            server_header=False, proxy_headers=False, timeout_keep_alive=s.keep_alive_s, backlog=s.backlog,
            h11_max_incomplete_event_size=s.max_header_bytes, timeout_graceful_shutdown=5,
        )  # fmt: skip
        logging.getLogger("uvicorn.error").addFilter(_QUIET)
        logging.getLogger("uvicorn.access").propagate = False  # no access log (uvicorn logs one when it has handlers)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._serve, name="ltgcast-http", daemon=True)

    def _serve(self) -> None:
        try:
            self.server.run(sockets=[self.socket])
        except BaseException:  # the thread must say why it died (uvicorn exits with SystemExit on a failed start)
            log.exception("http: the server stopped on an unexpected error")

    @property
    def address(self) -> tuple[str, int]:
        """The host and port actually bound (port 0 picks a free one)."""
        host, port = self.socket.getsockname()[:2]
        return str(host), int(port)

    def alive(self) -> bool:
        """Whether the server thread runs."""
        return self.thread.is_alive()

    def start(self, wait_s: float = 10.0) -> "HttpService":
        """Start serving (return once the server accepts connections, or after ``wait_s``); return self."""
        self.thread.start()
        deadline = time.monotonic() + wait_s
        while not self.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self.server.started:
            self.stop()
            msg = f"the HTTP server on {format_address(*self.address)} did not start within {wait_s:g} s"
            raise OSError(msg)
        log.info("http: serving on http://%s/", format_address(*self.address))
        return self

    def stop(self) -> None:
        """Stop accepting, finish the answers in progress (at most 5 s), close the socket."""
        self.server.should_exit = True
        if self.thread.ident is not None:
            self.thread.join(timeout=10)
        with contextlib.suppress(OSError):
            self.socket.close()


__all__ = ["HttpService", "build_app"]
