"""Forecaster outputs: GeoJSON contours, the PNG overlay, point time series, and the flashes in a grid file."""

from __future__ import annotations

import io
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import netCDF4
import numpy as np
import pytest
import shapely.validation
import xarray as xr
from numpy.typing import NDArray
from PIL import Image
from shapely.geometry import LinearRing, MultiPolygon, Polygon

from featurize.examples import Flashes
from ingest.geometry import FixedGrid, GeosProjection
from ingest.ncio import NETCDF_LOCK
from ingest.synthetic import FD_EDGE, FD_SIZE, FD_STEP, ScenarioConfig, sector_grid
from serve.products.outputs import contours, nearest_pixel, overlay_png, point_series
from serve.stores.files import FileGridStore
from serve.stores.gridfile import (
    GridFile,
    GridMeta,
    read_attributes,
    read_flashes,
    read_geometry,
    read_grid,
    read_point,
    write_grid,
)

START = datetime(2024, 6, 15, 20, 0, tzinfo=UTC)


def meso_grid() -> FixedGrid:
    """The real 500 x 500 mesoscale sector of the scenario writer (GOES-East, centred on 35 N 97.5 W)."""
    return sector_grid(ScenarioConfig(out=Path("unused"), sector="M1", start=START, minutes=1, seed=0))


def block(grid: FixedGrid, rows: slice, cols: slice) -> FixedGrid:
    return FixedGrid(grid.projection, grid.x[cols], grid.y[rows])


def limb_grid() -> FixedGrid:
    """100 x 100 full-disk pixels on the equator at the eastern limb: a third of them are space."""
    projection = GeosProjection(lon_0=-75.0, height=35786023.0)
    cols = np.arange(FD_SIZE - 100, FD_SIZE)
    rows = np.arange(FD_SIZE // 2 - 50, FD_SIZE // 2 + 50)
    return FixedGrid(projection, -FD_EDGE + FD_STEP * cols, FD_EDGE - FD_STEP * rows)


def pixel_positions(grid: FixedGrid, line: list[list[float]]) -> NDArray[np.float64]:
    """GeoJSON [lon, lat] vertices back to fractional (row, col) through the grid's own inverse."""
    lonlat = np.asarray(line, np.float64)
    row, col = grid.rowcol(lonlat[:, 1], lonlat[:, 0])
    return np.column_stack([row, col])


def by_level(collection: dict) -> dict[float, dict]:
    return {f["properties"]["level"]: f for f in collection["features"]}


def inside(point: NDArray[np.float64], polygon: NDArray[np.float64]) -> bool:
    """Even-odd ray casting."""
    y, x = point
    ys, xs = polygon[:, 0], polygon[:, 1]
    ys2, xs2 = np.roll(ys, -1), np.roll(xs, -1)
    crosses = (ys > y) != (ys2 > y)
    at = xs + (y - ys) * (xs2 - xs) / np.where(ys2 == ys, 1.0, ys2 - ys)
    return bool(np.sum(crosses & (x < at)) % 2)


def signed_area(line: list[list[float]]) -> float:
    xy = np.asarray(line)
    return 0.5 * float(np.sum(xy[:-1, 0] * xy[1:, 1] - xy[1:, 0] * xy[:-1, 1]))


# --- contours -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def disc() -> tuple[FixedGrid, NDArray[np.float32], tuple[float, float]]:
    """0.6 within 40 px of a centre, falling linearly to 0 at 52 px: 50 % at 42 px, 25 % at 47, 10 % at 50."""
    grid = meso_grid()
    centre = (250.3, 240.7)
    rows, cols = np.mgrid[0 : grid.shape[0], 0 : grid.shape[1]]
    distance = np.hypot(rows - centre[0], cols - centre[1])
    p = (0.6 * np.clip((52.0 - distance) / 12.0, 0.0, 1.0)).astype(np.float32)
    return grid, p, centre


def polygons_of(feature: dict) -> list[Polygon]:
    """The shapely polygons of a MultiPolygon Feature, checked for RFC 7946 structure on the way."""
    geometry = feature["geometry"]
    assert geometry["type"] == "MultiPolygon"
    polygons = []
    for rings in geometry["coordinates"]:
        for ring in rings:
            assert len(ring) >= 4  # RFC 7946: a linear ring has at least four positions ...
            assert ring[0] == ring[-1]  # ... and is closed
        polygon = Polygon(rings[0], rings[1:])
        assert polygon.is_valid, shapely.validation.explain_validity(polygon)
        assert polygon.area > 0
        assert LinearRing(rings[0]).is_ccw  # exterior anticlockwise
        assert not any(LinearRing(hole).is_ccw for hole in rings[1:])  # holes clockwise
        polygons.append(polygon)
    assert MultiPolygon(polygons).is_valid
    return polygons


def test_a_disc_gives_one_polygon_per_level_at_its_radius(
    disc: tuple[FixedGrid, NDArray[np.float32], tuple[float, float]],
) -> None:
    grid, p, centre = disc
    centre_lon, centre_lat = (float(v) for v in grid.projection.lonlat(*grid.scan_angles_of(*centre)))
    assert (centre_lon, centre_lat) == pytest.approx((-97.75, 35.0), abs=0.01)
    collection = contours(p, grid, properties={"grid_id": "G16_M1_x", "sector": "M1"})
    json.dumps(collection, allow_nan=False)  # plain JSON, no NaN
    assert collection["type"] == "FeatureCollection"
    features = by_level(collection)
    assert sorted(features) == [0.10, 0.25, 0.50]  # nowhere 75 %
    shapes = {}
    for level, radius in ((0.10, 50.0), (0.25, 47.0), (0.50, 42.0)):
        feature = features[level]
        assert feature["properties"] == {"level": level, "percent": pytest.approx(level * 100), "parallax_km": 0.0,
                                         "grid_id": "G16_M1_x", "sector": "M1"}  # fmt: skip
        (polygon,) = polygons_of(feature)
        assert not polygon.interiors
        ring = feature["geometry"]["coordinates"][0][0]
        assert len(ring) > 100
        lonlat = np.asarray(ring)
        assert np.all(np.abs(lonlat[:, 0] - centre_lon) < 3.0)  # [lon, lat], not [lat, lon]
        assert np.all(np.abs(lonlat[:, 1] - centre_lat) < 2.0)
        assert np.all(lonlat == np.round(lonlat, 5))
        rowcol = pixel_positions(grid, ring)
        np.testing.assert_allclose(np.hypot(rowcol[:, 0] - centre[0], rowcol[:, 1] - centre[1]), radius, atol=0.01)
        assert signed_area(ring) > 0  # anticlockwise on the map round the high ground
        shapes[level] = polygon
    # Levels nest: each higher level's region lies inside the lower one's (to the rounding).
    assert shapes[0.50].difference(shapes[0.25]).area < 1e-9
    assert shapes[0.25].difference(shapes[0.10]).area < 1e-9
    assert shapes[0.10].area > shapes[0.25].area > shapes[0.50].area


def test_levels_choose_the_features(disc: tuple[FixedGrid, NDArray[np.float32], tuple[float, float]]) -> None:
    grid, p, _ = disc
    features = contours(p, grid, levels=[0.55, 0.3])["features"]
    assert [f["properties"]["level"] for f in features] == [0.3, 0.55]  # ascending
    assert contours(np.zeros_like(p), grid)["features"] == []


@pytest.mark.parametrize(
    ("levels", "message"),
    [
        ((), "expected 1 to 10 contour levels; found 0"),
        (tuple(np.linspace(0.05, 0.95, 11)), "expected 1 to 10 contour levels; found 11"),
        ((0.1, 0.0), "strictly between 0 and 1; found 0.0"),
        ((1.0,), "strictly between 0 and 1; found 1.0"),
        ((-0.2,), "strictly between 0 and 1; found -0.2"),
        ((float("nan"),), "strictly between 0 and 1; found nan"),
        ((0.5, 0.5), "must be distinct"),
    ],
)
def test_bad_levels_are_refused(levels: tuple[float, ...], message: str) -> None:
    grid = block(meso_grid(), slice(0, 4), slice(0, 5))
    with pytest.raises(ValueError, match=message):
        contours(np.zeros((4, 5), np.float32), grid, levels)


def test_a_field_that_is_not_the_grid_and_bad_options_are_refused() -> None:
    grid = block(meso_grid(), slice(0, 4), slice(0, 5))
    with pytest.raises(ValueError, match=r"probability shape \(5, 4\) does not match the grid \(4, 5\)"):
        contours(np.zeros((5, 4), np.float32), grid)
    with pytest.raises(ValueError, match="crs must be lonlat or pixel; found 'utm'"):
        contours(np.ones((4, 5), np.float32), grid, crs="utm")
    with pytest.raises(ValueError, match="geometry must be polygons or lines; found 'points'"):
        contours(np.ones((4, 5), np.float32), grid, geometry="points")


def test_an_annulus_round_a_low_centre_is_a_polygon_with_a_hole() -> None:
    grid = block(meso_grid(), slice(100, 160), slice(100, 160))
    rows, cols = np.mgrid[0:60, 0:60]
    r = np.hypot(rows - 29.6, cols - 30.2)
    p = np.clip(1.0 - np.abs(r - 15.0) / 8.0, 0.0, 1.0).astype(np.float32)  # 1 on a circle of 15 px, 0 inside 7 px
    for crs in ("lonlat", "pixel"):
        feature = by_level(contours(p, grid, levels=[0.5], crs=crs))[0.5]
        (polygon,) = polygons_of(feature)
        (hole,) = polygon.interiors
        outer_r, hole_r = (np.hypot(*(np.asarray(ring.coords) - polygon.centroid.coords[0]).T) for ring in
                           (polygon.exterior, hole))  # fmt: skip
        if crs == "pixel":  # [column, row]: p = 0.5 at 15 ± 4 px from the centre
            np.testing.assert_allclose(outer_r, 19.0, atol=0.1)
            np.testing.assert_allclose(hole_r, 11.0, atol=0.1)
    lines = by_level(contours(p, grid, levels=[0.5], geometry="lines"))[0.5]["geometry"]
    assert lines["type"] == "MultiLineString"
    assert len(lines["coordinates"]) == 2  # the outline and the hole's outline, closed
    assert all(line[0] == line[-1] for line in lines["coordinates"])


def test_missing_pixels_are_masked_and_leave_a_hole() -> None:
    p = np.zeros((12, 12), np.float32)
    p[2:10, 2:10] = 0.8
    p[5, 5] = np.nan
    grid = block(meso_grid(), slice(100, 112), slice(100, 112))
    feature = by_level(contours(p, grid, levels=[0.5], crs="pixel"))[0.5]
    (polygon,) = polygons_of(feature)
    (hole,) = polygon.interiors  # the cells touching the missing pixel, up to its neighbours' centres
    assert sorted(set(hole.coords)) == [(4.0, 5.0), (5.0, 4.0), (5.0, 6.0), (6.0, 5.0)]
    col, row = np.asarray(polygon.exterior.coords).T
    assert row.min() == pytest.approx(2 - 0.375, abs=0.005)  # 0.8 → 0 crosses 0.5 at 3/8 (to 0.01 px)
    assert contours(np.full((12, 12), np.nan, np.float32), grid)["features"] == []


def test_a_field_reaching_the_grid_edge_stops_at_the_outer_pixel_centres() -> None:
    grid = block(meso_grid(), slice(0, 3), slice(0, 4))
    feature = by_level(contours(np.full((3, 4), 0.8, np.float32), grid, levels=[0.5], crs="pixel"))[0.5]
    (polygon,) = polygons_of(feature)
    assert polygon.bounds == (0.0, 0.0, 3.0, 2.0)


def test_saddles_give_valid_polygons_at_every_level() -> None:
    p = np.zeros((6, 6), np.float32)
    p[2:4, 2:4] = [[0.9, 0.3], [0.3, 0.9]]  # two peaks on one diagonal
    grid = block(meso_grid(), slice(100, 106), slice(100, 106))
    collection = contours(p, grid)
    assert sorted(by_level(collection)) == [0.10, 0.25, 0.50, 0.75]
    counts = {level: len(polygons_of(f)) for level, f in by_level(collection).items()}
    assert counts[0.10] == 1
    assert counts[0.75] == 2  # the peaks stay apart above the saddle's value


def test_a_noisy_field_with_gaps_gives_only_valid_rfc7946_polygons() -> None:
    from scipy import ndimage

    grid = meso_grid()
    rng = np.random.default_rng(3)
    z = ndimage.gaussian_filter(rng.normal(size=grid.shape), 4)
    p = ((z - z.min()) / (z.max() - z.min())).astype(np.float32)
    p[rng.random(grid.shape) < 0.002] = np.nan  # scattered missing pixels
    p[200:230, 100:300] = np.nan  # and a missing stripe
    collection = contours(p, grid)
    json.dumps(collection, allow_nan=False)
    holes = 0
    for feature in collection["features"]:
        for polygon in polygons_of(feature):
            holes += len(polygon.interiors)
            assert np.all(np.asarray(polygon.exterior.coords) == np.round(polygon.exterior.coords, 5))
    assert len(collection["features"]) == 4
    assert holes > 10


def test_space_pixels_are_masked_so_no_vertex_leaves_the_earth() -> None:
    grid = limb_grid()
    disk = grid.earth_mask()
    assert 0 < disk.sum() < disk.size
    everywhere = np.full(grid.shape, 0.8, np.float32)  # values even in space: the polygon must stop at the limb
    collection = contours(everywhere, grid)
    json.dumps(collection, allow_nan=False)
    (polygon,) = polygons_of(by_level(collection)[0.50])
    assert np.isfinite(pixel_positions(grid, polygon.exterior.coords)).all()


def test_parallax_moves_contours_towards_the_sub_satellite_point(
    disc: tuple[FixedGrid, NDArray[np.float32], tuple[float, float]],
) -> None:
    grid, p, _ = disc
    plain = polygons_of(by_level(contours(p, grid, levels=[0.5]))[0.5])[0]
    moved = polygons_of(by_level(contours(p, grid, levels=[0.5], parallax_km=9.0))[0.5])[0]
    (dlon, dlat) = np.subtract(moved.centroid.coords[0], plain.centroid.coords[0])
    assert dlon > 0.02  # east, towards -75.2 ...
    assert dlat < -0.02  # ... and south, towards the equator


# --- overlay ------------------------------------------------------------------------------------------------


def decode(png: bytes) -> NDArray[np.uint8]:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    assert image.mode == "RGBA"
    return np.asarray(image)


def test_the_overlay_colours_bands_and_leaves_low_and_missing_transparent() -> None:
    p = np.zeros((200, 300), np.float32)
    bands = {0.03: 20, 0.07: 40, 0.10: 60, 0.3: 80, 0.6: 100, 0.8: 120}
    for value, col in bands.items():
        p[10:30, col : col + 10] = value
    p[10:30, 150:160] = np.nan
    rgba = decode(overlay_png(p, legend=False))
    assert rgba.shape == (200, 300, 4)
    colour = {value: tuple(rgba[20, col + 5]) for value, col in bands.items()}
    assert colour[0.03][3] == 0
    assert rgba[20, 155, 3] == 0  # NaN
    assert rgba[150, 100, 3] == 0  # row 0 is the top: the bottom of the image is empty
    assert colour[0.8][3] == 255  # fully opaque at 75 % and above
    alphas = [colour[v][3] for v in (0.07, 0.10, 0.3, 0.6, 0.8)]
    assert alphas == sorted(alphas)
    assert alphas[0] > 0
    assert len({colour[v][:3] for v in (0.07, 0.10, 0.3, 0.6, 0.8)}) == 5  # five distinct bands
    assert tuple(rgba[25, 125]) == colour[0.8]  # one colour across a band
    packed = np.full((4, 4), np.float32(10) * np.float32(0.01))  # 10 % read back from uint8 percent
    assert tuple(decode(overlay_png(packed, legend=False))[0, 0]) == colour[0.10]


def test_the_legend_sits_in_the_bottom_left_corner_in_the_band_colours() -> None:
    p = np.zeros((200, 300), np.float32)
    p[10:30, 250:260] = 0.8
    plain = decode(overlay_png(p, legend=False))
    with_legend = decode(overlay_png(p))
    changed = np.any(plain != with_legend, axis=2)
    rows, cols = np.nonzero(changed)
    assert rows.size > 500
    assert (rows.max(), cols.min()) == (191, 8)  # 8 px from the bottom-left corner
    assert rows.min() > 50
    assert cols.max() < 150
    opaque = with_legend[changed]
    assert opaque[:, 3].min() > 0
    assert {tuple(plain[20, 255, :3])} <= {tuple(c[:3]) for c in opaque}  # the 75 % swatch
    assert overlay_png(p) == overlay_png(p)  # deterministic
    tiny = decode(overlay_png(np.zeros((4, 6), np.float32)))  # no room for a legend: none
    assert tiny.shape == (4, 6, 4)
    assert tiny[..., 3].max() == 0


def test_the_overlay_refuses_what_is_not_a_grid() -> None:
    with pytest.raises(ValueError, match=r"2-D \[H, W\] array; found shape \(5,\)"):
        overlay_png(np.zeros(5, np.float32))


# --- point series -------------------------------------------------------------------------------------------


def grid_meta(sector: str, minute: int, version: int = 1) -> GridMeta:
    scan = START + timedelta(minutes=minute, seconds=24)
    return GridMeta("G19", sector, scan, scan + timedelta(minutes=30), "lightning", version, f"frame{minute}.nc")


@pytest.fixture
def series_store(tmp_path: Path) -> tuple[FileGridStore, FixedGrid, float, float]:
    """M1 grids at minutes 1, 2, 3 (written out of order) with known values at pixel (30, 40), and others."""
    grid = block(meso_grid(), slice(200, 260), slice(200, 280))
    store = FileGridStore(tmp_path)
    for minute, value in ((3, np.nan), (1, 0.11), (2, 0.52)):
        p = np.full(grid.shape, 0.9, np.float32)  # every other pixel: a nearest-pixel slip would show
        p[30, 40] = value
        store.put(p, grid, grid_meta("M1", minute))
    store.put(np.full(grid.shape, 0.4, np.float32), grid, grid_meta("M1", 30))  # after the window
    elsewhere = block(meso_grid(), slice(0, 20), slice(0, 20))  # a C grid that does not reach the point
    store.put(np.full(elsewhere.shape, 0.7, np.float32), elsewhere, grid_meta("C", 2))
    p = np.full(grid.shape, 0.9, np.float32)
    p[30, 40] = 0.123456
    store.put(p, grid, grid_meta("M2", 2, version=4), encoding="float32")
    x, y = grid.scan_angles_of(30.3, 39.7)  # nearer (30, 40) than any other pixel centre
    lon, lat = grid.projection.lonlat(x, y)
    return store, grid, float(lat), float(lon)


def test_a_point_series_reads_the_nearest_pixel_of_each_grid_in_time_order(
    series_store: tuple[FileGridStore, FixedGrid, float, float],
) -> None:
    store, grid, lat, lon = series_store
    assert nearest_pixel(grid, lat, lon) == (30, 40)
    result = point_series(store, lat, lon, since=START, until=START + timedelta(minutes=10))
    json.dumps(result, allow_nan=False)
    assert (result["lat"], result["lon"]) == (lat, lon)
    assert result["since"] == "2024-06-15T20:00:00.000Z"
    series = result["series"]
    assert [(e["sector"], e["probability"]) for e in series] == [
        ("M1", 0.11),
        ("M1", 0.52),
        ("M2", 0.123456),
        ("M1", None),  # missing pixel: no value, not 0
    ]
    first = series[0]
    assert first["grid_id"] == "G19_M1_20240615T200124Z_lightning-v1"
    assert first["scan_start"] == "2024-06-15T20:01:24.000Z"
    assert first["valid_time"] == "2024-06-15T20:31:24.000Z"
    assert (first["model_name"], first["model_version"], first["row"], first["col"]) == ("lightning", 1, 30, 40)
    assert series[2]["model_version"] == 4
    only_m1 = point_series(store, lat, lon, since=START + timedelta(minutes=2), sectors=["M1"])["series"]
    assert [e["scan_start"][11:19] for e in only_m1] == ["20:02:24", "20:03:24", "20:30:24"]


def test_a_point_no_grid_covers_gives_an_empty_series(
    series_store: tuple[FileGridStore, FixedGrid, float, float],
) -> None:
    store, _, _, _ = series_store
    assert point_series(store, 10.0, 10.0, since=START)["series"] == []  # Africa: off the GOES-East blocks
    assert point_series(store, 35.0, 120.0, since=START)["series"] == []  # China: off the disk
    assert point_series(FileGridStore(store.root / "empty"), 35.0, -97.5, since=START)["series"] == []


@pytest.mark.parametrize(
    ("lat", "lon", "message"),
    [
        (91.0, 0.0, r"lat must be in \[-90, 90\] degrees north; found 91.0"),
        (float("nan"), 0.0, "lat must be in"),
        (0.0, -180.5, r"lon must be in \[-180, 180\] degrees east; found -180.5"),
        (0.0, 360.0, "lon must be in"),
    ],
)
def test_a_point_series_refuses_bad_coordinates(tmp_path: Path, lat: float, lon: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        point_series(FileGridStore(tmp_path), lat, lon, since=START)


def test_a_point_series_refuses_naive_times_and_unknown_sectors(tmp_path: Path) -> None:
    store = FileGridStore(tmp_path)
    with pytest.raises(ValueError, match="since must be a timezone-aware datetime"):
        point_series(store, 35.0, -97.5, since=datetime(2024, 6, 15))  # noqa: DTZ001
    with pytest.raises(ValueError, match="until must not be before since"):
        point_series(store, 35.0, -97.5, since=START, until=START - timedelta(seconds=1))
    with pytest.raises(ValueError, match=r"unknown sector\(s\) \['M3'\]; valid: C, F, M1, M2"):
        point_series(store, 35.0, -97.5, since=START, sectors=["M1", "M3"])


# --- the grid file: geometry, one pixel, flashes ------------------------------------------------------------


def test_geometry_and_single_pixels_read_back(tmp_path: Path) -> None:
    grid = block(meso_grid(), slice(10, 40), slice(20, 70))
    p = np.linspace(0, 1, 30 * 50, dtype=np.float32).reshape(30, 50)
    p[3, 4] = np.nan
    path = write_grid(tmp_path / "g.nc", p, grid, grid_meta("M1", 1))
    back = read_geometry(path)
    np.testing.assert_array_equal(back.x, grid.x)
    np.testing.assert_array_equal(back.y, grid.y)
    assert back.projection == grid.projection
    assert read_point(path, 7, 9) == pytest.approx(round(float(p[7, 9]), 2))
    assert read_point(path, 7, 9) == pytest.approx(float(read_grid(path)[0][7, 9]))
    assert read_point(path, 3, 4) is None
    with pytest.raises(IndexError, match="outside the 30 x 50 grid"):
        read_point(path, 30, 0)


def test_flashes_round_trip_through_the_grid_file(tmp_path: Path) -> None:
    grid = block(meso_grid(), slice(0, 8), slice(0, 10))
    lat = np.array([35.12345678, 34.5, 36.25])
    lon = np.array([-97.5, -98.123456789, -96.0])
    when = START.timestamp() + np.array([-900.25, -60.5, -1.0])
    path = write_grid(tmp_path / "f.nc", np.zeros(grid.shape, np.float32), grid, grid_meta("M1", 1),
                      flashes=SimpleNamespace(lat=lat, lon=lon, time=when))  # fmt: skip
    back = read_flashes(path)
    assert set(back) == {"lat", "lon", "time"}
    for key, values in (("lat", lat), ("lon", lon), ("time", when)):
        assert back[key].dtype == np.float64
        np.testing.assert_array_equal(back[key], values)
    with netCDF4.Dataset(path) as ds:
        assert ds.getncattr("input_glm_flashes") == 3
        assert ds["flash_lat"].units == "degrees_north"
        assert ds["flash_lon"].standard_name == "longitude"
        assert ds["flash_time"].units == "seconds since 1970-01-01 00:00:00"
    with xr.open_dataset(path) as ds:  # CF-decoded: times become datetimes, lat/lon its coordinates
        assert ds.sizes["flash"] == 3
        first = ds["flash_time"].values[0] - np.datetime64("2024-06-15T19:44:59.750", "ns")
        assert abs(first) < np.timedelta64(1, "us")
        assert "flash_lat" in ds["flash_time"].coords
        assert ds["probability"].shape == grid.shape
    glm = Flashes(lat.astype(np.float32), lon.astype(np.float32), when)  # GLM's own float32 positions
    again = write_grid(tmp_path / "g.nc", np.zeros(grid.shape, np.float32), grid, grid_meta("M1", 1), flashes=glm)
    np.testing.assert_array_equal(read_flashes(again)["lat"], lat.astype(np.float32).astype(np.float64))


def test_no_flashes_and_empty_flashes_read_as_empty(tmp_path: Path) -> None:
    grid = block(meso_grid(), slice(0, 8), slice(0, 10))
    zeros = np.zeros(grid.shape, np.float32)
    none = write_grid(tmp_path / "none.nc", zeros, grid, grid_meta("M1", 1))
    empty = write_grid(tmp_path / "empty.nc", zeros, grid, grid_meta("M1", 1),
                       flashes=Flashes(np.zeros(0, np.float32), np.zeros(0, np.float32), np.zeros(0)))  # fmt: skip
    for path in (none, empty):
        back = read_flashes(path)
        assert all(values.shape == (0,) and values.dtype == np.float64 for values in back.values())
        with xr.open_dataset(path) as ds:
            assert float(ds["probability"].max()) == 0.0
    with netCDF4.Dataset(none) as ds:
        assert "flash" not in ds.dimensions  # an older-style file
    with netCDF4.Dataset(empty) as ds:
        assert ds.getncattr("input_glm_flashes") == 0
        assert len(ds.dimensions["flash"]) == 0


def test_flash_arrays_of_different_lengths_are_refused(tmp_path: Path) -> None:
    grid = block(meso_grid(), slice(0, 8), slice(0, 10))
    ragged = SimpleNamespace(lat=np.zeros(2), lon=np.zeros(3), time=np.zeros(3))
    with pytest.raises(ValueError, match="flash lat, lon and time must have equal lengths"):
        write_grid(tmp_path / "r.nc", np.zeros(grid.shape, np.float32), grid, grid_meta("M1", 1), flashes=ragged)
    assert not (tmp_path / "r.nc").exists()


def test_the_store_keeps_flashes_given_as_a_mapping_and_attributes_read_without_the_grid(tmp_path: Path) -> None:
    grid = block(meso_grid(), slice(0, 8), slice(0, 10))
    first = write_grid(tmp_path / "a.nc", np.zeros(grid.shape, np.float32), grid, grid_meta("M1", 1),
                       flashes={"lat": [35.0], "lon": [-97.0], "time": [START.timestamp()]})  # fmt: skip
    stored = FileGridStore(tmp_path / "store").put(np.zeros(grid.shape, np.float32), grid, grid_meta("M1", 1),
                                                   flashes=read_flashes(first))  # fmt: skip
    assert read_flashes(stored.path)["lon"].tolist() == [-97.0]
    attrs = read_attributes(stored.path)
    assert attrs["valid_time"] == "2024-06-15T20:31:24.000Z"
    assert attrs["forecast_reference_time"] == "2024-06-15T20:01:24.000Z"
    assert attrs["shape"] == [8, 10]
    assert (attrs["model_version"], attrs["input_glm_flashes"], attrs["grid_id"]) == (1, 1, stored.grid_id)
    assert type(attrs["model_version"]) is int  # plain Python, ready for JSON
    json.dumps(attrs)


def test_an_open_grid_file_holds_the_netcdf_lock_and_gives_it_back(tmp_path: Path) -> None:
    def other_thread_gets_the_lock() -> bool:
        got: list[bool] = []

        def attempt() -> None:
            got.append(NETCDF_LOCK.acquire(blocking=False))
            if got[-1]:
                NETCDF_LOCK.release()

        thread = threading.Thread(target=attempt)
        thread.start()
        thread.join()
        return got[0]

    grid = block(meso_grid(), slice(0, 8), slice(0, 10))
    path = write_grid(tmp_path / "g.nc", np.zeros(grid.shape, np.float32), grid, grid_meta("M1", 1))
    with GridFile(path) as grid_file:
        assert grid_file.point(0, 0) == 0.0
        assert not other_thread_gets_the_lock()  # HDF5 is not thread-safe
    assert other_thread_gets_the_lock()
    with pytest.raises(OSError, match="absent"):
        GridFile(tmp_path / "absent.nc")
    assert other_thread_gets_the_lock()
