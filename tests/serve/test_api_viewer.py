"""What the viewer asks the API for beyond the grids: the sectors to open on, the newest grid of any sector,
its npm files, and the flashes near a point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from serve.api.grids import GridApi, vendor_files
from serve.stores.files import FileGridStore
from tests.serve.test_api import T0, get, put, seeded_store


@pytest.fixture
def store(tmp_path: Path) -> FileGridStore:
    return seeded_store(tmp_path / "grids")


def test_sectors_name_each_newest_grid_the_server_clock_and_the_sector_to_open_on(store: FileGridStore) -> None:
    put(store, -60, 0.5, sector="C")  # CONUS has an older grid than M1's newest
    doc = json.loads(get(GridApi(store, now=lambda: T0), "/v1/sectors").body)
    assert doc["default"] == "M1"
    by_sector = {s["sector"]: s["latest"] for s in doc["sectors"]}
    assert list(by_sector) == ["M1", "M2", "C", "F"]
    assert by_sector["M1"]["grid_id"] == "G19_M1_20240615T201024Z_lightning-v1"
    assert by_sector["C"]["scan_start"] == "2024-06-15T19:00:24.000Z"
    assert by_sector["M2"] is None
    assert by_sector["F"] is None
    assert doc["now"] == "2024-06-15T20:00:24.000Z"


def test_latest_without_a_sector_is_the_newest_of_any_sector(store: FileGridStore, tmp_path: Path) -> None:
    api = GridApi(store)
    assert json.loads(get(api, "/v1/grids/latest").body)["sector"] == "M1"
    put(store, 20, 0.5, sector="C")  # now CONUS is newest
    assert json.loads(get(api, "/v1/grids/latest").body)["grid_id"] == "G19_C_20240615T202024Z_lightning-v1"
    put(store, 20, 0.5, sector="M2")  # a tie: the finer sector wins
    assert json.loads(get(api, "/v1/grids/latest").body)["sector"] == "M2"
    empty = get(GridApi(FileGridStore(tmp_path / "empty")), "/v1/grids/latest")
    assert empty.status == 404
    assert "no grid of any sector yet" in json.loads(empty.body)["error"]


def test_the_viewer_files_from_npm_are_served_and_nothing_else(store: FileGridStore) -> None:
    api = GridApi(store)
    files = vendor_files()
    assert {"leaflet.js", "states-10m.json"} <= set(files), "run make install (npm ci and the viewer build)"
    js = get(api, "/static/vendor/leaflet.js")
    assert js.status == 200
    assert js.content_type.startswith("text/javascript")
    assert b"Leaflet" in js.body[:400]
    assert get(api, "/static/vendor/images/layers.png").content_type == "image/png"
    for bad in (
        "/static/vendor/../api.py",
        "/static/vendor/%2e%2e/api.py",
        "/static/vendor/package.json",
        "/static/vendor/.built-0",
        "/static/vendor/nope.js",
    ):
        answer = get(api, bad)
        assert answer.status == 404, bad
        assert "no viewer file" in json.loads(answer.body)["error"]
    page = get(api, "/").body.decode()
    for name in ("leaflet.js", "leaflet.css", "topojson-client.min.js", "uPlot.iife.min.js"):
        assert f"/static/vendor/{name}" in page
        assert name in files


def test_without_the_built_packages_the_answer_says_how_to_build_them(
    store: FileGridStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("serve.api.grids.vendor_files", dict)
    answer = get(GridApi(store), "/static/vendor/leaflet.js")
    assert answer.status == 404
    assert "run make install" in json.loads(answer.body)["error"]


def test_a_point_series_lists_the_flashes_within_its_radius_once(store: FileGridStore) -> None:
    api = GridApi(store)
    series = json.loads(get(api, "/v1/points?lat=35&lon=-97&hours=3").body)
    assert "flashes" not in series  # only when asked
    grid_id = "G19_M1_20240615T201024Z_lightning-v1"
    flashes = json.loads(get(api, f"/v1/grids/{grid_id}/flashes.geojson").body)["features"]
    lon, lat = flashes[0]["geometry"]["coordinates"]  # the test grids' flashes: one at pixel (30, 40), one 0.05° E
    # each of the three grids keeps two flashes at its own scan time: one at the point, one 0.05° (4.6 km) east
    doc = json.loads(get(api, f"/v1/points?lat={lat}&lon={lon}&hours=3&flash_radius_km=2").body)
    assert doc["flashes"]["radius_km"] == 2.0
    assert doc["flashes"]["count"] == 3  # the one at the point, of each grid
    put(store, 10, 0.5, version=2)  # a second model's grid of the newest scan holds the same flashes: merged
    again = json.loads(get(api, f"/v1/points?lat={lat}&lon={lon}&hours=3&flash_radius_km=2").body)
    assert (len(again["series"]), again["flashes"]["count"]) == (4, 3)
    wide = json.loads(get(api, f"/v1/points?lat={lat}&lon={lon}&hours=3&flash_radius_km=10").body)
    assert wide["flashes"]["count"] == 6
    assert all(t.endswith("Z") for t in wide["flashes"]["times"])
    bad = get(api, f"/v1/points?lat={lat}&lon={lon}&flash_radius_km=500")
    assert bad.status == 400
    assert "flash_radius_km" in json.loads(bad.body)["error"]
