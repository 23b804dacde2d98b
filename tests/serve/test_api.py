"""The HTTP API over a real file store: metadata, files, contours, flashes, points, errors, admin, sockets."""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from foundation.clock import wait_until
from foundation.errors import ModelRejected
from ingest.geometry import LIGHTNING_ELLIPSOID, FixedGrid, GeosProjection
from serve.api.grids import GridApi, Response
from serve.api.settings import ApiSettings
from serve.api.web import HttpService
from serve.stores.files import FileGridStore
from serve.stores.gridfile import GridMeta, read_grid

T0 = datetime(2024, 6, 15, 20, 0, 24, tzinfo=UTC)
SHAPE = (60, 80)


def grid() -> FixedGrid:
    step = 5.6e-5  # 2 km ABI pixels
    rows, cols = SHAPE
    return FixedGrid(GeosProjection(lon_0=-75.0, height=35786023.0), -0.02 + step * np.arange(cols),
                     0.09 - step * np.arange(rows))  # fmt: skip


def disc(peak: float, row: float = 30.0, col: float = 40.0, radius: float = 12.0) -> np.ndarray:
    rr, cc = np.mgrid[: SHAPE[0], : SHAPE[1]]
    p = peak * np.exp(-(((rr - row) ** 2 + (cc - col) ** 2) / (2 * (radius / 2) ** 2)))
    p = p.astype(np.float32)
    p[:3, :5] = np.nan  # missing input
    return p


def put(store: FileGridStore, minute: int, peak: float, sector: str = "M1", version: int = 1) -> str:
    t = T0 + timedelta(minutes=minute)
    meta = GridMeta("G19", sector, t, t + timedelta(minutes=30), "lightning", version, f"frame{minute}.nc",
                    glm_files=("g1.nc", "g2.nc"), glm_missing=3)  # fmt: skip
    g = grid()
    x, y = g.scan_angles_of(30, 40)  # a flash seen at pixel (30, 40), navigated on GLM's lightning ellipsoid
    lon, lat = g.projection.on_ellipsoid(LIGHTNING_ELLIPSOID).lonlat(x, y)
    flashes = {"lat": np.array([lat, lat]), "lon": np.array([lon, lon + 0.05]), "time": np.array([t.timestamp()] * 2)}
    store.put(disc(peak), g, meta, flashes=flashes)
    return meta.grid_id


@pytest.fixture
def store(tmp_path: Path) -> FileGridStore:
    """Three M1 grids, 5 minutes apart (peaks 30, 60 and 90 %)."""
    return seeded_store(tmp_path / "grids")


def seeded_store(root: Path) -> FileGridStore:
    """A store under ``root`` holding the three M1 grids of these tests."""
    s = FileGridStore(root)
    for minute, peak in ((0, 0.3), (5, 0.6), (10, 0.9)):
        put(s, minute, peak)
    return s


def body(response: Response) -> Any:
    return json.loads(response.body)


def get(api: GridApi, target: str) -> Response:
    return api.handle("GET", target)[1]


def test_latest_names_the_newest_grid_with_its_provenance_and_links(store: FileGridStore) -> None:
    api = GridApi(store)
    response = get(api, "/v1/grids/latest?sector=M1")
    assert response.status == 200
    doc = body(response)
    assert doc["grid_id"] == "G19_M1_20240615T201024Z_lightning-v1"
    assert doc["scan_start"] == "2024-06-15T20:10:24.000Z"
    assert doc["valid_time"] == "2024-06-15T20:40:24.000Z"
    assert (doc["model_name"], doc["model_version"], doc["shape"]) == ("lightning", 1, list(SHAPE))
    assert (doc["glm_granules_used"], doc["glm_granules_missing"]) == (2, 3)
    assert get(api, doc["links"]["netcdf"]).status == 200
    assert get(api, "/v1/grids/latest?sector=C").status == 404


def test_list_holds_the_last_hours_of_the_record_oldest_first(store: FileGridStore) -> None:
    api = GridApi(store)
    doc = body(get(api, "/v1/grids?sector=M1&hours=0.1"))  # 6 minutes before the newest scan
    assert [g["scan_start"][11:16] for g in doc["grids"]] == ["20:05", "20:10"]
    assert len(body(get(api, "/v1/grids?sector=M1&hours=3"))["grids"]) == 3


def test_the_netcdf_is_the_stored_file_and_the_png_is_an_overlay_of_the_grid(store: FileGridStore) -> None:
    api = GridApi(store)
    grid_id = "G19_M1_20240615T201024Z_lightning-v1"
    nc = get(api, f"/v1/grids/{grid_id}.nc")
    assert nc.content_type == "application/x-netcdf"
    stored = store.get(grid_id)
    assert stored is not None
    assert nc.file == stored.path  # streamed from the file, not held in memory
    png = get(api, f"/v1/grids/{grid_id}.png")
    assert png.content_type == "image/png"
    image = Image.open(io.BytesIO(png.body))
    assert image.size == (SHAPE[1], SHAPE[0])
    assert image.convert("RGBA").getpixel((40, 30))[3] > 0  # the 90 % centre is painted
    assert get(api, f"/v1/grids/{grid_id}.png").body == png.body  # cached rendering is the same


def test_contours_in_lonlat_and_in_pixels_circle_the_disc(store: FileGridStore) -> None:
    api = GridApi(store)
    grid_id = "G19_M1_20240615T201024Z_lightning-v1"
    doc = body(get(api, f"/v1/grids/{grid_id}/contours.geojson?levels=0.5&crs=pixel"))
    assert doc["properties"] == {"grid_id": grid_id, "crs": "pixel", "geometry": "polygons", "parallax_km": 0.0}
    (feature,) = doc["features"]
    assert feature["properties"] == {"level": 0.5, "percent": 50.0, "parallax_km": 0.0, "grid_id": grid_id,
                                     "valid_time": "2024-06-15T20:40:24.000Z", "scan_start": "2024-06-15T20:10:24.000Z",
                                     "model_name": "lightning", "model_version": 1, "sector": "M1",
                                     "satellite": "G19"}  # fmt: skip
    assert feature["geometry"]["type"] == "MultiPolygon"
    ((exterior,),) = feature["geometry"]["coordinates"]  # one polygon, no hole
    ring = np.array(exterior)
    # p = 0.9 exp(-r² / 72) = 0.5 at r = sqrt(72 ln 1.8) = 6.52 px from (row 30, col 40)
    radius = np.hypot(ring[:, 0] - 40, ring[:, 1] - 30)
    assert radius == pytest.approx(np.sqrt(72 * np.log(1.8)), abs=0.15)
    lonlat = body(get(api, f"/v1/grids/{grid_id}/contours.geojson?levels=0.5"))
    lon, lat = np.array(lonlat["features"][0]["geometry"]["coordinates"][0][0]).T
    row, col = grid().rowcol(lat, lon)
    # The same vertices (rings run the other way round: [column, row] has rows running south).
    assert np.sort(np.hypot(col - 40, row - 30)[1:]) == pytest.approx(np.sort(radius[1:]), abs=0.01)
    outline = body(get(api, f"/v1/grids/{grid_id}/contours.geojson?levels=0.5&crs=pixel&geometry=lines&parallax_km=9"))
    assert outline["properties"]["parallax_km"] == 0.0  # pixels are the grid itself: nothing to correct
    assert outline["features"][0]["geometry"] == {"type": "MultiLineString", "coordinates": [exterior]}


def test_flashes_come_from_the_grid_file(store: FileGridStore) -> None:
    api = GridApi(store)
    doc = body(get(api, "/v1/grids/G19_M1_20240615T201024Z_lightning-v1/flashes.geojson?crs=pixel"))
    points = [f["geometry"]["coordinates"] for f in doc["features"]]
    assert points[0] == pytest.approx([40.0, 30.0], abs=0.01)
    assert points[1][0] > 41  # 0.05° east
    assert doc["features"][0]["properties"]["time"] == "2024-06-15T20:10:24.000Z"


def test_a_point_series_reads_each_grid_at_the_place(store: FileGridStore) -> None:
    api = GridApi(store)
    lon, lat = (float(a[30, 40]) for a in grid().lonlat())
    doc = body(get(api, f"/v1/points?lat={lat}&lon={lon}&hours=1"))
    assert [round(p["probability"], 2) for p in doc["series"]] == [0.3, 0.6, 0.9]


@pytest.mark.parametrize(
    ("target", "status", "message"),
    [
        ("/v1/grids/latest?sector=X", 400, "sector must be one of"),
        ("/v1/grids/latest?sector=C&sector=M1", 400, "given 2 times"),
        ("/v1/grids?sector=M1&hours=1000", 400, "hours must be a number in [0, 48]"),
        ("/v1/grids?sector=M1&hours=nan", 400, "hours must be a number"),
        ("/v1/points?lat=91&lon=0", 400, "lat must be a number in [-90, 90]"),
        ("/v1/points?lon=0", 400, "missing query parameter 'lat'"),
        ("/v1/points?lat=10&lon=10&sectors=M3", 400, "sectors must be"),
        ("/v1/grids/G19_M1_20240615T201024Z_lightning-v1/contours.geojson?levels=0,2", 400, "levels must be"),
        ("/v1/grids/G19_M1_20240615T201024Z_lightning-v1/contours.geojson?crs=utm", 400, "crs must be"),
        ("/v1/grids/..%2F..%2Fetc%2Fpasswd.nc", 400, "grid id must look like"),
        ("/v1/grids/../../etc/passwd.nc", 400, "grid id must look like"),
        ("/v1/grids/G19_M1_20240615T201024Z_lightning-v7.nc", 404, "no grid"),
        ("/v1/grids/G19_M1_20240615T201024Z_lightning-v1.tif", 404, "expected /v1/grids/ID followed by one of .nc"),
        ("/v1/grids/G19_M1_20240615T201024Z_lightning-v1/map.json?parallax_km=21", 400, "parallax_km must be"),
        ("/v1/grids/G19_M1_20240615T201024Z_lightning-v1/contours.geojson?geometry=points", 400, "geometry must be"),
        ("/v1/grids/G19_M1_20240615T201024Z_lightning-v1/map/ir.png", 404, "has no infrared underlay"),
        ("/nowhere", 404, "no such route"),
        ("/static/../api.py", 404, "no such route"),
        ("/v1/models", 404, "no model slot"),
    ],
)
def test_bad_requests_get_a_4xx_naming_what_was_expected(store: FileGridStore, target: str, status: int,
                                                         message: str) -> None:  # fmt: skip
    response = get(GridApi(store), target)
    assert response.status == status
    assert message in body(response)["error"]


def test_the_viewer_and_its_script_are_served(store: FileGridStore) -> None:
    api = GridApi(store)
    page = get(api, "/")
    assert page.content_type.startswith("text/html")
    assert b"/static/viewer.js" in page.body
    assert b"/v1/grids?sector=" in get(api, "/static/viewer.js").body


class FakeModels:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def status(self) -> dict[str, Any]:
        return {"stable": 1}

    def promote(self, version: int, reason: str = "") -> dict[str, Any]:
        if version == 9:
            msg = "version 9 failed the gate: output is not finite"
            raise ModelRejected(msg)
        self.calls.append(("promote", version))
        return {"stable": version}

    def rollback(self) -> dict[str, Any]:
        self.calls.append(("rollback", 0))
        return {"stable": 1}


def test_admin_needs_the_token_and_a_version_and_reports_a_rejection(store: FileGridStore) -> None:
    models = FakeModels()
    api = GridApi(store, ApiSettings(admin_token="s3cret"), models=models)
    good = {"Authorization": "Bearer s3cret"}
    promote = "/v1/admin/models/promote"
    assert api.handle("POST", promote, {}, b'{"version": 2}')[1].status == 401
    assert api.handle("POST", promote, {"Authorization": "Bearer nope"}, b'{"version": 2}')[1].status == 401
    assert api.handle("GET", promote, good)[1].status == 405
    assert api.handle("POST", promote, good, b'{"version": "2"}')[1].status == 400
    assert api.handle("POST", promote, good, b"not json")[1].status == 400
    rejected = api.handle("POST", promote, good, b'{"version": 9}')[1]
    assert rejected.status == 409
    assert "not finite" in body(rejected)["error"]
    assert body(api.handle("POST", promote, good, b'{"version": 2}')[1]) == {"stable": 2}
    assert api.handle("POST", "/v1/admin/models/rollback", good)[1].status == 200
    assert models.calls == [("promote", 2), ("rollback", 0)]
    assert body(get(api, "/v1/models")) == {"stable": 1}
    off = GridApi(store, models=models)  # no token configured: admin is off, whatever is sent
    assert off.handle("POST", promote, {"Authorization": "Bearer "}, b'{"version": 2}')[1].status == 403


def test_readiness_reports_problems(store: FileGridStore) -> None:
    problems: dict[str, str] = {}
    api = GridApi(store, ready=lambda: problems)
    assert get(api, "/readyz").status == 200
    problems["worker"] = "the worker loop has not come round for 75 s"
    response = get(api, "/readyz")
    assert response.status == 503
    assert body(response)["problems"] == problems
    assert get(api, "/healthz").status == 200


def test_over_a_real_socket_with_metrics(store: FileGridStore) -> None:
    service = HttpService(GridApi(store), "127.0.0.1", 0).start()
    try:
        host, port = service.address
        with urllib.request.urlopen(f"http://{host}:{port}/v1/grids/latest?sector=M1", timeout=10) as reply:
            assert json.loads(reply.read())["sector"] == "M1"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://{host}:{port}/v1/grids/latest?sector=Q", timeout=10)
        assert refused.value.code == 400
        assert "sector: Input should be 'C', 'F', 'M1' or 'M2'; found 'Q'" in json.loads(refused.value.read())["error"]
        wanted = 'ltgcast_http_requests_total{route="latest",status="4xx"}'

        def metrics() -> str:
            with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as reply:
                return str(reply.read().decode())

        # a request is counted once its answer is written: the client may read /metrics first
        text = wait_until(lambda: text if wanted in (text := metrics()) else None, wanted, limit_s=10, every_s=0.05)
        assert 'ltgcast_http_requests_total{route="latest",status="2xx"}' in text
        assert 'ltgcast_http_requests_total{route="latest",status="4xx"}' in text
    finally:
        service.stop()


def test_a_replayed_grid_is_rendered_again(store: FileGridStore) -> None:
    api = GridApi(store)
    grid_id = "G19_M1_20240615T200024Z_lightning-v1"
    before = get(api, f"/v1/grids/{grid_id}/contours.geojson?levels=0.25")
    put(store, 0, 0.8)  # the same frame and model, rescored: same id, new values
    after = get(api, f"/v1/grids/{grid_id}/contours.geojson?levels=0.25")
    stored = store.get(grid_id)
    assert stored is not None
    assert float(np.nanmax(read_grid(stored.path)[0])) == pytest.approx(0.8)
    assert before.body != after.body


def test_renderings_are_bounded_and_the_rest_get_503(store: FileGridStore, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    import serve.api.grids

    started, release = threading.Event(), threading.Event()
    real = serve.api.grids.overlay_png

    def slow_png(probability: np.ndarray, *, legend: bool = True) -> bytes:
        started.set()
        release.wait(30)
        return real(probability, legend=legend)

    monkeypatch.setattr(serve.api.grids, "overlay_png", slow_png)
    api = GridApi(store, ApiSettings(renderers=1, render_wait_s=0.05))
    grid_id = "G19_M1_20240615T201024Z_lightning-v1"
    answers: list[Response] = []
    first = threading.Thread(target=lambda: answers.append(get(api, f"/v1/grids/{grid_id}.png")))
    first.start()
    assert started.wait(30)
    busy = get(api, f"/v1/grids/{grid_id}/contours.geojson")
    assert busy.status == 503
    assert "too many PNG or contour renderings" in body(busy)["error"]
    release.set()
    first.join(30)
    assert answers[0].status == 200
    assert get(api, f"/v1/grids/{grid_id}/contours.geojson").status == 200  # the slot is free again


def test_a_contour_answer_too_large_is_refused_and_levels_are_whole_percent(store: FileGridStore) -> None:
    grid_id = "G19_M1_20240615T201024Z_lightning-v1"
    small = GridApi(store, ApiSettings(max_vertices=10))
    refused = get(small, f"/v1/grids/{grid_id}/contours.geojson?levels=0.1")
    assert refused.status == 413
    assert "more than the 10 this API sends" in body(refused)["error"]
    api = GridApi(store)
    rounded = body(get(api, f"/v1/grids/{grid_id}/contours.geojson?levels=0.2500001,0.25"))
    assert [f["properties"]["level"] for f in rounded["features"]] == [0.25]


def raw(service: HttpService, request: bytes) -> bytes:
    import socket

    with socket.create_connection(service.address, timeout=10) as conn:
        conn.sendall(request)
        reply = b""
        while b"\r\n\r\n" not in reply or len(reply.partition(b"\r\n\r\n")[2]) < length(reply):
            chunk = conn.recv(65536)
            if not chunk:
                break
            reply += chunk
        return reply


def length(reply: bytes) -> int:
    for line in reply.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def test_the_socket_refuses_bad_lengths_and_survives_an_internal_error(store: FileGridStore, monkeypatch: Any) -> None:
    import serve.api.grids

    service = HttpService(GridApi(store, ApiSettings(admin_token="t")), "127.0.0.1", 0).start()
    try:
        negative = raw(service, b"POST /v1/admin/models/rollback HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n")
        assert negative.startswith(b"HTTP/1.1 400")
        assert b'"code": "bad_request"' in negative
        huge = raw(service, b"POST /v1/admin/models/rollback HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n")
        assert huge.startswith(b"HTTP/1.1 413")

        def broken(path: Path) -> dict[str, Any]:
            msg = "HDF5: corrupt B-tree"
            raise TypeError(msg)  # an unforeseen failure (a damaged file is skipped instead)

        monkeypatch.setattr(serve.api.grids, "read_attributes", broken)
        failed = raw(service, b"GET /v1/grids/latest?sector=M1 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert failed.startswith(b"HTTP/1.1 500")
        assert b'"code": "internal"' in failed
        assert b"RuntimeError" not in failed
        assert b"HDF5" not in failed
        assert raw(service, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 200")
    finally:
        service.stop()


# -- georeferenced products (serve.products.georef) --------------------------------------------------------------------
def test_map_json_places_the_layers_and_a_value_pixel_reads_back_the_grid(store: FileGridStore) -> None:
    import pyproj

    api = GridApi(store)
    grid_id = "G19_M1_20240615T201024Z_lightning-v1"
    doc = body(get(api, f"/v1/grids/{grid_id}/map.json"))
    assert set(doc) == {"grid_id", "crs", "bounds", "width", "height", "value_scale", "value_missing", "parallax_km",
                        "valid_time", "scan_start", "layers"}  # fmt: skip
    assert (doc["grid_id"], doc["crs"], doc["value_scale"], doc["value_missing"]) == (grid_id, "EPSG:3857", 0.004, 255)
    assert (doc["valid_time"], doc["scan_start"]) == ("2024-06-15T20:40:24.000Z", "2024-06-15T20:10:24.000Z")
    base = f"/v1/grids/{grid_id}"
    assert doc["layers"] == {"probability": f"{base}/map/probability.png", "value": f"{base}/map/value.png",
                             "ir": None}  # fmt: skip
    (south, west), (north, east) = doc["bounds"]
    to_merc = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    (x0, x1), (y0, y1) = to_merc.transform([west, east], [north, south])
    size = (x1 - x0) / doc["width"]
    assert (y0 - y1) / doc["height"] == pytest.approx(size, rel=1e-9)  # square Mercator pixels, edges exact
    value = Image.open(io.BytesIO(get(api, doc["layers"]["value"]).body))
    assert value.mode == "L"
    assert value.size == (doc["width"], doc["height"])
    pixels = np.asarray(value)
    probability, _ = read_grid(store.root / "M1" / "2024-06-15" / f"{grid_id}.nc")
    g = grid()
    for row, col in ((30, 40), (25, 45), (33, 36), (1, 1)):  # the peak, its flanks, a missing pixel
        lon, lat = g.projection.lonlat(*g.scan_angles_of(row, col))
        mx, my = to_merc.transform(float(lon), float(lat))
        r, c = int((y0 - my) // size), int((mx - x0) // size)
        # The image pixel's centre, through pyproj, and the grid pixel nearest to it.
        centre_lon, centre_lat = to_merc.transform(x0 + (c + 0.5) * size, y0 - (r + 0.5) * size,
                                                   direction=pyproj.enums.TransformDirection.INVERSE)  # fmt: skip
        near_row, near_col = (int(np.floor(v + 0.5)) for v in g.rowcol(centre_lat, centre_lon))
        assert abs(near_row - row) <= 1
        assert abs(near_col - col) <= 1
        native = probability[near_row, near_col]
        expected = 255 if np.isnan(native) else round(float(native) / 0.004)
        assert abs(int(pixels[r, c]) - expected) <= 1
    colour = get(api, doc["layers"]["probability"])
    assert colour.content_type == "image/png"
    assert b"gAMA" not in get(api, doc["layers"]["value"]).body
    rgba = np.asarray(Image.open(io.BytesIO(colour.body)))
    assert rgba.shape == (doc["height"], doc["width"], 4)
    assert (rgba[..., 3][pixels == 255] == 0).all()  # missing and outside: transparent
    assert (rgba[..., 3][(pixels < 25)] == 0).all()  # below 10 %: transparent
    assert (rgba[..., 3][(pixels >= 25) & (pixels != 255)] == 140).all()
    assert get(api, f"{base}/map/ir.png").status == 404  # written without an underlay
    moved = body(get(api, f"/v1/grids/{grid_id}/map.json?parallax_km=9"))
    assert moved["parallax_km"] == 9.0
    assert moved["bounds"] != doc["bounds"]
    assert moved["layers"]["value"] == f"{base}/map/value.png?parallax_km=9"


def test_the_ir_layer_of_a_grid_stored_with_its_underlay(tmp_path: Path) -> None:
    store = FileGridStore(tmp_path / "grids")
    meta = GridMeta("G19", "M1", T0, T0 + timedelta(minutes=30), "lightning", 1, "frame.nc")
    kelvin = np.full(SHAPE, 300.0, np.float32)
    kelvin[20:40, 30:50] = 200.0  # a cold cloud
    kelvin[:3, :5] = np.nan
    store.put(disc(0.9), grid(), meta, underlay=kelvin)
    api = GridApi(store)
    doc = body(get(api, f"/v1/grids/{meta.grid_id}/map.json"))
    assert doc["layers"]["ir"] == f"/v1/grids/{meta.grid_id}/map/ir.png"
    ir = get(api, doc["layers"]["ir"])
    assert ir.status == 200
    assert ir.content_type == "image/png"
    image = Image.open(io.BytesIO(ir.body))
    assert image.mode == "LA"
    grey, alpha = np.moveaxis(np.asarray(image), -1, 0)
    # 300 K and 200 K (stored as 200.25 K: 0.75 K steps from 150 K) as (320 - T) / 140 * 255
    assert set(np.unique(grey[alpha == 255]).tolist()) == {36, 218}
    assert (alpha == 0).any()  # outside the grid and where the underlay is missing


def test_the_latlon_netcdf_and_the_cog_are_served(store: FileGridStore) -> None:
    from rasterio.io import MemoryFile

    api = GridApi(store)
    grid_id = "G19_M1_20240615T201024Z_lightning-v1"
    tif = get(api, f"/v1/grids/{grid_id}/latlon.tif?parallax_km=9")
    assert tif.status == 200
    assert tif.content_type.startswith("image/tiff")
    assert f'filename="{grid_id}_parallax9km.tif"' in tif.headers["Content-Disposition"]
    with MemoryFile(tif.body) as memory, memory.open() as ds:
        assert ds.crs.to_epsg() == 4326
        assert ds.tags()["GRID_ID"] == grid_id
        assert ds.tags()["PARALLAX_CORRECTION_KM"] == "9"
    nc = get(api, f"/v1/grids/{grid_id}/latlon.nc")
    assert nc.status == 200
    assert nc.content_type == "application/x-netcdf"
    import netCDF4

    with netCDF4.Dataset("mem.nc", memory=nc.body) as ds:
        assert ds.grid_id == grid_id
        assert float(ds.parallax_correction_km) == 0.0
        assert float(np.nanmax(ds["probability"][:].filled(np.nan))) == pytest.approx(0.9)
    assert api.index_maps.misses == 2  # lat/lon with and without parallax; a second request reuses them
    get(api, "/v1/grids/G19_M1_20240615T200524Z_lightning-v1/latlon.nc")
    assert api.index_maps.misses == 2


def test_the_georeferenced_routes_have_bounded_route_names() -> None:
    from serve.api.grids import route_name

    base = "/v1/grids/G19_M1_20240615T201024Z_lightning-v1"
    assert [route_name(base + s) for s in ("/latlon.nc", ".nc", "/latlon.tif", "/map.json", "/map/probability.png",
                                           "/map/value.png", "/map/ir.png", ".png")] == [
        "latlon", "netcdf", "cog", "map", "map_probability", "map_value", "map_ir", "png"]  # fmt: skip
