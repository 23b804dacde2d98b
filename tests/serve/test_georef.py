"""Georeferenced products: parallax correction, index maps, the lat/lon NetCDF, the COG and the Web Mercator layers."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import netCDF4
import numpy as np
import pyproj
import pytest
from numpy.typing import NDArray
from PIL import Image

from ingest.geometry import FixedGrid, GeosProjection
from ingest.synthetic import ScenarioConfig, sector_grid
from serve.products import georef
from serve.stores.gridfile import GridFile, GridMeta, pack_underlay, read_underlay, write_grid

START = datetime(2024, 6, 15, 20, 0, tzinfo=UTC)
EAST = GeosProjection(lon_0=-75.2, height=35786023.0)
GEOD = pyproj.Geod(ellps="GRS80")
TO_MERCATOR = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
ATTRS = {"grid_id": "G16_M1_20240615T200000Z_lightning-v2", "valid_time": "2024-06-15T20:30:00.000Z",
         "forecast_reference_time": "2024-06-15T20:00:00.000Z", "model_name": "lightning", "model_version": 2,
         "platform": "G16", "scene_id": "M1"}  # fmt: skip


def meso_grid() -> FixedGrid:
    """The scenario writer's 500 x 500 mesoscale sector (GOES-East, centred on 35 N 97.5 W)."""
    return sector_grid(ScenarioConfig(out=Path("unused"), sector="M1", start=START, minutes=1, seed=0))


@pytest.fixture(scope="module")
def blocks() -> tuple[FixedGrid, NDArray[np.float32]]:
    """Whole-percent probabilities constant on 10 x 10 pixel blocks, each block its own value; a missing corner."""
    grid = meso_grid()
    rows, cols = np.mgrid[0 : grid.shape[0], 0 : grid.shape[1]]
    p = (((rows // 10) * 7 + (cols // 10) * 13) % 101 / 100).astype(np.float32)
    p[:40, :40] = np.nan
    return grid, p


def block_centre(grid: FixedGrid, row: int, col: int) -> tuple[float, float]:
    """Lon, lat of the centre of the 10 x 10 block whose north-west pixel is (row, col)."""
    lon, lat = grid.projection.lonlat(*grid.scan_angles_of(row + 4.5, col + 4.5))
    return float(lon), float(lat)


# --- parallax ------------------------------------------------------------------------------------------------------


def zenith_deg(projection: GeosProjection, lat: float, lon: float) -> float:
    """The satellite's local zenith angle at a ground point, from ECEF vectors."""
    ecef = pyproj.Transformer.from_crs("EPSG:4326", {"proj": "geocent", "ellps": "GRS80"}, always_xy=True)
    ground = np.array(ecef.transform(lon, lat, 0.0))
    lam0 = np.radians(projection.lon_0)
    satellite = projection.satellite_distance * np.array([np.cos(lam0), np.sin(lam0), 0.0])
    phi, lam = np.radians(lat), np.radians(lon)
    normal = np.array([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)])
    look = satellite - ground
    return float(np.degrees(np.arccos(normal @ look / np.linalg.norm(look))))


def test_parallax_moves_a_slanted_view_towards_the_sub_satellite_point_by_h_tan_zenith() -> None:
    x, y = EAST.scan_angles(45.0, -100.0)
    lon, lat = (float(v) for v in georef.cloud_top_projection(EAST, 9.0).lonlat(x, y))
    _, _, shift_m = GEOD.inv(-100.0, 45.0, lon, lat)
    zenith = zenith_deg(EAST, 45.0, -100.0)
    assert 55 < zenith < 75
    assert shift_m == pytest.approx(9000.0 * np.tan(np.radians(zenith)), rel=0.03)
    before = GEOD.inv(-100.0, 45.0, EAST.lon_0, 0.0)[2]
    after = GEOD.inv(lon, lat, EAST.lon_0, 0.0)[2]
    assert after == pytest.approx(before - shift_m, abs=0.05 * shift_m)  # straight towards it


def test_parallax_is_nil_below_the_satellite_and_zero_height_is_the_identity() -> None:
    lon, lat = georef.cloud_top_projection(EAST, 9.0).lonlat(0.0, 0.0)
    assert GEOD.inv(EAST.lon_0, 0.0, float(lon), float(lat))[2] < 1.0
    assert georef.cloud_top_projection(EAST, 0.0) is EAST
    grid = meso_grid()
    maps = [georef.build_index_map(grid, "latlon", h) for h in (0.0, 9.0)]
    assert not np.array_equal(maps[0].index, maps[1].index)
    with pytest.raises(ValueError, match=r"parallax_km must be a cloud-top height in \[0, 20\] km; found 21.0"):
        georef.cloud_top_projection(EAST, 21.0)


# --- index maps ----------------------------------------------------------------------------------------------------


def test_the_closed_form_scan_angles_agree_with_pyproj() -> None:
    lat, lon = np.linspace(-80, 80, 81), np.linspace(-170, 20, 96)
    for projection in (EAST, georef.cloud_top_projection(EAST, 12.0)):
        x, y = georef.scan_angles_separable(projection, lat, lon)
        lon2, lat2 = np.meshgrid(lon, lat)
        xp, yp = projection.scan_angles(lat2, lon2)
        both = np.isfinite(x) & np.isfinite(xp)
        assert both.sum() > 3000
        np.testing.assert_allclose(x[both], xp[both], atol=1e-12)
        np.testing.assert_allclose(y[both], yp[both], atol=1e-12)
        # pyproj's visibility test is a hair stricter: they differ only on grazing lines of sight at the limb.
        differ = np.isnan(x) != np.isnan(xp)
        assert differ.sum() < 0.01 * differ.size
        assert all(zenith_deg(EAST, a, o) > 80 for a, o in zip(lat2[differ], lon2[differ], strict=True))


def test_index_maps_are_cached_by_geometry_and_parallax_in_a_bounded_lru() -> None:
    grid = meso_grid()
    maps = georef.IndexMaps(entries=2)
    first = maps.get(grid, "latlon")
    same = FixedGrid(grid.projection, grid.x.copy(), grid.y.copy())  # equal geometry, other arrays
    assert maps.get(same, "latlon") is first
    assert maps.misses == 1
    maps.get(grid, "latlon", 9.0)
    maps.get(grid, "mercator")
    assert maps.misses == 3
    assert maps.get(grid, "latlon") is not first  # evicted: two entries at most
    moved = FixedGrid(grid.projection, grid.x + grid.dx, grid.y)  # a mesoscale sector that moved
    assert georef.geometry_key(moved) != georef.geometry_key(grid)


def test_the_latlon_raster_keeps_native_values_where_they_are(blocks: tuple[FixedGrid, NDArray[np.float32]]) -> None:
    grid, p = blocks
    index_map = georef.build_index_map(grid, "latlon")
    raster = index_map.raster
    assert raster.crs == "EPSG:4326"
    # About the native pixel size at the centre: 2 km is 0.018 degrees of latitude, 0.022 of longitude at 35 N.
    assert raster.dx == pytest.approx(0.026, rel=0.25)
    assert -raster.dy == pytest.approx(0.021, rel=0.25)
    sampled = index_map.sample(p)
    for row, col in ((250, 250), (100, 400), (400, 60), (480, 480)):
        lon, lat = block_centre(grid, row, col)
        r, c = int((lat - raster.y0) // raster.dy), int((lon - raster.x0) // raster.dx)
        assert sampled[r, c] == p[row + 4, col + 4]
    lon, lat = block_centre(grid, 10, 10)
    r, c = int((lat - raster.y0) // raster.dy), int((lon - raster.x0) // raster.dx)
    assert np.isnan(sampled[r, c])  # missing stays missing
    assert np.isnan(sampled[0, 0])
    assert np.isnan(sampled[-1, -1])


# --- files ---------------------------------------------------------------------------------------------------------


def test_the_cog_reads_back_in_epsg_4326_with_the_native_values(
    blocks: tuple[FixedGrid, NDArray[np.float32]], tmp_path: Path
) -> None:
    from rasterio.io import MemoryFile

    grid, p = blocks
    index_map = georef.build_index_map(grid, "latlon", 9.0)
    data = georef.cog(p, index_map, ATTRS)
    with MemoryFile(data) as memory, memory.open() as ds:
        assert ds.driver == "GTiff"
        assert ds.crs.to_epsg() == 4326
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert ds.dtypes == ("float32",)
        assert np.isnan(ds.nodata)
        assert ds.tags()["VALID_TIME"] == ATTRS["valid_time"]
        assert ds.tags()["PARALLAX_CORRECTION_KM"] == "9"
        west, south, east, north = index_map.raster.bounds_lonlat()
        assert tuple(ds.bounds) == pytest.approx((west, south, east, north), abs=1e-9)
        band = ds.read(1)
        top = georef.cloud_top_projection(grid.projection, 9.0)  # the corrected native position of the block
        for row, col in ((250, 250), (100, 400)):
            lon, lat = top.lonlat(*grid.scan_angles_of(row + 4.5, col + 4.5))
            r, c = ds.index(float(lon), float(lat))
            assert band[r, c] == p[row + 4, col + 4]
    path = tmp_path / "p.tif"
    path.write_bytes(data)
    rio = Path(sys.executable).parent / "rio"  # rasterio's CLI (gdal-bin's gdalinfo is not installed here)
    info = json.loads(subprocess.run([str(rio), "info", str(path)], capture_output=True, check=True, text=True).stdout)
    assert info["crs"] == "EPSG:4326"
    assert info["driver"] == "GTiff"
    assert info["dtype"] == "float32"
    assert info["bounds"] == pytest.approx([west, south, east, north], abs=1e-9)


def test_the_latlon_netcdf_is_cf_with_1d_coordinates(blocks: tuple[FixedGrid, NDArray[np.float32]]) -> None:
    grid, p = blocks
    index_map = georef.build_index_map(grid, "latlon")
    data = georef.latlon_netcdf(p, index_map, ATTRS)
    with netCDF4.Dataset("mem.nc", memory=data) as ds:
        assert ds.Conventions == "CF-1.8"
        assert (ds.grid_id, ds.model_version, float(ds.parallax_correction_km)) == (ATTRS["grid_id"], 2, 0.0)
        lat, lon = ds["lat"][:], ds["lon"][:]
        assert lat.ndim == lon.ndim == 1
        assert ds["lat"].units == "degrees_north"
        assert ds["lon"].units == "degrees_east"
        assert ds["probability"].grid_mapping == "crs"
        assert ds["crs"].grid_mapping_name == "latitude_longitude"
        assert datetime.fromtimestamp(float(ds["time"][...]), UTC) == START + timedelta(minutes=30)
        values = ds["probability"][:].filled(np.nan)
        lon0, lat0 = block_centre(grid, 300, 200)
        r, c = int(np.argmin(np.abs(lat - lat0))), int(np.argmin(np.abs(lon - lon0)))
        assert values[r, c] == p[304, 204]
        assert np.isnan(values[0, 0])


def test_an_underlay_is_stored_packed_and_old_files_have_none(tmp_path: Path) -> None:
    grid = FixedGrid(EAST, np.arange(4) * 56e-6, 0.1 - np.arange(3) * 56e-6)
    kelvin = np.array([[150.0, 200.0, 250.0, 300.0], [340.5, 100.0, 400.0, np.nan], [210.3, 210.4, 210.5, 210.6]])
    meta = GridMeta("G16", "M1", START, START + timedelta(minutes=30), "lightning", 2, "f.nc")
    p = np.zeros((3, 4), np.float32)
    with_ir = write_grid(tmp_path / "a.nc", p, grid, meta, underlay=kelvin)
    back = read_underlay(with_ir)
    assert back is not None
    np.testing.assert_allclose(back[0], kelvin[0], atol=0.375)
    assert back[1, :3].tolist() == [340.5, 150.0, 340.5]  # clipped to the packed range
    assert np.isnan(back[1, 3])
    assert np.abs(back[2] - kelvin[2]).max() <= 0.375 + 1e-4
    with netCDF4.Dataset(with_ir) as ds:
        var = ds["underlay"]
        assert (var.dtype, var.standard_name, var.units, var._FillValue) == (np.uint8, "toa_brightness_temperature",
                                                                              "K", 255)  # fmt: skip
        assert var.filters()["complevel"] == 1
    without = write_grid(tmp_path / "b.nc", p, grid, meta)
    assert read_underlay(without) is None
    with GridFile(without) as grid_file:
        assert not grid_file.has_underlay()
    assert pack_underlay(np.array([np.nan])).tolist() == [255]
    with pytest.raises(ValueError, match=r"underlay shape \(2, 2\) does not match the grid \(3, 4\)"):
        write_grid(tmp_path / "c.nc", p, grid, meta, underlay=np.zeros((2, 2)))


# --- Web Mercator --------------------------------------------------------------------------------------------------


def test_the_mercator_raster_bounds_are_exact_and_a_value_pixel_reads_back(
    blocks: tuple[FixedGrid, NDArray[np.float32]],
) -> None:
    grid, p = blocks
    index_map = georef.build_index_map(grid, "mercator")
    raster = index_map.raster
    west, south, east, north = raster.bounds_lonlat()
    x0, y0 = TO_MERCATOR.transform(west, north)
    x1, y1 = TO_MERCATOR.transform(east, south)
    assert (x0, y0) == pytest.approx((raster.x0, raster.y0), abs=1e-3)  # pyproj puts the edges where we say
    assert (x1 - x0) / raster.width == pytest.approx(raster.dx, rel=1e-9)
    assert (y0 - y1) / raster.height == pytest.approx(-raster.dy, rel=1e-9)
    # Square pixels of the native pixel's size at the sector centre (about 2.3 x 2.8 km there), in Mercator metres.
    lon, lat = grid.projection.lonlat(*grid.scan_angles_of(np.array([249, 249, 250]), np.array([249, 250, 249])))
    east_west, north_south = GEOD.inv(lon[0], lat[0], lon[1], lat[1])[2], GEOD.inv(lon[0], lat[0], lon[2], lat[2])[2]
    assert raster.dx == pytest.approx(np.sqrt(east_west * north_south) / np.cos(np.radians(lat[0])), rel=0.02)
    value = Image.open(io.BytesIO(georef.map_layer("value", p, index_map)))
    assert value.mode == "L"
    assert value.size == (raster.width, raster.height)
    pixels = np.asarray(value)
    for row, col in ((250, 250), (100, 400), (10, 10)):
        lon, lat = block_centre(grid, row, col)
        mx, my = TO_MERCATOR.transform(lon, lat)
        r, c = int((my - raster.y0) // raster.dy), int((mx - raster.x0) // raster.dx)
        native = p[row + 4, col + 4]
        expected = 255 if np.isnan(native) else round(float(native) / 0.004)
        assert abs(int(pixels[r, c]) - expected) <= 1
    assert pixels[0, 0] == 255


def test_map_pngs_carry_no_colour_management_and_are_transparent_where_missing() -> None:
    grid = FixedGrid(EAST, np.arange(40) * 56e-6, 0.1 - np.arange(30) * 56e-6)
    p = np.full(grid.shape, 0.05, np.float32)
    p[:, 10:20], p[:, 20:30], p[:, 30:] = 0.3, 0.6, 0.9
    p[:10] = np.nan
    index_map = georef.build_index_map(grid, "mercator")
    data = {layer: georef.map_layer(layer, 200 + 100 * p if layer == "ir" else p, index_map)
            for layer in georef.MAP_LAYERS}  # fmt: skip
    for layer, png in data.items():
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        for chunk in (b"gAMA", b"sRGB", b"iCCP", b"cHRM"):
            assert chunk not in png, (layer, chunk)
    rgba = np.asarray(Image.open(io.BytesIO(data["probability"])))
    grey = np.asarray(Image.open(io.BytesIO(data["ir"])))
    assert Image.open(io.BytesIO(data["ir"])).mode == "LA"
    values = index_map.sample(p)
    missing = np.isnan(values)
    assert missing.any()
    assert (~missing).any()
    assert (rgba[..., 3][missing] == 0).all()
    assert (grey[..., 1][missing] == 0).all()
    assert (rgba[..., 3][values < 0.1] == 0).all()  # below 10 %: transparent
    colours = {round(float(v), 2): tuple(rgba[values == v][0]) for v in (0.3, 0.6, 0.9)}
    assert colours == {0.3: (0, 229, 255, 140), 0.6: (0, 200, 0, 140), 0.9: (160, 32, 240, 140)}
    kelvin = index_map.sample(200 + 100 * p)
    np.testing.assert_array_equal(grey[..., 0][~missing], np.rint((320 - kelvin[~missing]) / 140 * 255))


def test_the_map_document_follows_the_viewer_contract(blocks: tuple[FixedGrid, NDArray[np.float32]]) -> None:
    grid, _ = blocks
    index_map = georef.build_index_map(grid, "mercator", 9.0)
    doc = georef.map_document(index_map, "/v1/grids/X", ATTRS, has_ir=False)
    west, south, east, north = index_map.raster.bounds_lonlat()
    assert doc == {
        "grid_id": ATTRS["grid_id"], "crs": "EPSG:3857", "bounds": [[south, west], [north, east]],
        "width": index_map.raster.width, "height": index_map.raster.height, "value_scale": 0.004,
        "value_missing": 255, "parallax_km": 9.0, "valid_time": ATTRS["valid_time"],
        "scan_start": ATTRS["forecast_reference_time"],
        "layers": {"probability": "/v1/grids/X/map/probability.png?parallax_km=9",
                   "value": "/v1/grids/X/map/value.png?parallax_km=9", "ir": None},
    }  # fmt: skip
    assert max(doc["width"], doc["height"]) <= georef.MAX_MAP_SIDE
    assert -80 <= south < north <= 80


def test_a_full_disk_raster_is_capped_and_mercator_stops_at_80_degrees() -> None:
    full_disk = sector_grid(ScenarioConfig(out=Path("unused"), sector="F", start=START, minutes=1, seed=0))
    mercator = georef.target_raster(full_disk, "mercator")
    assert max(mercator.width, mercator.height) <= georef.MAX_MAP_SIDE
    west, south, east, north = mercator.bounds_lonlat()
    assert south == pytest.approx(-80.0)
    assert north == pytest.approx(80.0)
    assert -160 < west < -150
    assert 0 < east < 10
    latlon = georef.target_raster(full_disk, "latlon")
    assert max(latlon.width, latlon.height) <= georef.MAX_LATLON_SIDE


# --- read by GDAL's own command-line tool (Debian gdal-bin, not the GDAL inside rasterio's wheel) -------------------


def gdalinfo(target: str) -> dict:
    """``gdalinfo -json`` of a file or subdataset (``deploy/local/services.sh tools`` installs gdal-bin)."""
    import shutil

    tool = shutil.which("gdalinfo")
    if tool is None:
        pytest.fail("gdalinfo (Debian gdal-bin) is needed: deploy/local/services.sh tools installs it")
    done = subprocess.run([tool, "-json", target], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_gdalinfo_reads_the_cog_in_epsg_4326_with_its_bounds_and_tags(
    blocks: tuple[FixedGrid, NDArray[np.float32]], tmp_path: Path
) -> None:
    grid, p = blocks
    index_map = georef.build_index_map(grid, "latlon", 9.0)
    path = tmp_path / "p.tif"
    path.write_bytes(georef.cog(p, index_map, ATTRS))
    info = gdalinfo(str(path))
    assert info["driverShortName"] == "GTiff"
    assert info["metadata"]["IMAGE_STRUCTURE"]["LAYOUT"] == "COG"
    assert 'ID["EPSG",4326]' in info["coordinateSystem"]["wkt"]
    assert [b["type"] for b in info["bands"]] == ["Float32"]
    assert info["metadata"][""]["VALID_TIME"] == ATTRS["valid_time"]
    west, south, east, north = index_map.raster.bounds_lonlat()
    corners = info["cornerCoordinates"]
    assert corners["upperLeft"] == pytest.approx([west, north], abs=1e-7)
    assert corners["lowerRight"] == pytest.approx([east, south], abs=1e-7)
    assert len(info["bands"][0].get("overviews", [])) >= 1 or max(info["size"]) <= 512  # tiled with overviews


def test_gdalinfo_reads_the_latlon_netcdf_and_the_native_grid_in_their_crs(
    blocks: tuple[FixedGrid, NDArray[np.float32]], tmp_path: Path
) -> None:
    grid, p = blocks
    index_map = georef.build_index_map(grid, "latlon")
    latlon = tmp_path / "latlon.nc"
    latlon.write_bytes(georef.latlon_netcdf(p, index_map, ATTRS))
    info = gdalinfo(f'NETCDF:"{latlon}":probability')
    assert "GEOGCRS" in info["coordinateSystem"]["wkt"]
    assert "Geostationary" not in info["coordinateSystem"]["wkt"]
    with netCDF4.Dataset(latlon) as ds:
        lat, lon = ds["lat"][:], ds["lon"][:]
    origin_x, step_x, _, origin_y, _, step_y = info["geoTransform"]
    assert origin_x == pytest.approx(lon[0] - (lon[1] - lon[0]) / 2, abs=1e-6)
    assert step_x == pytest.approx(lon[1] - lon[0], rel=1e-6)
    assert abs(step_y) == pytest.approx(abs(lat[1] - lat[0]), rel=1e-6)
    native = tmp_path / "native.nc"
    meta = GridMeta("G16", "M1", START, START + timedelta(minutes=30), "lightning", 2, "abi.nc")
    write_grid(native, p, grid, meta)
    info = gdalinfo(f'NETCDF:"{native}":probability')
    wkt = info["coordinateSystem"]["wkt"]  # GOES-R's sweep is x (the old predictor's 28-km mistake was y)
    assert 'METHOD["Geostationary Satellite (Sweep X)"]' in wkt
    assert "35786023" in wkt
    step = float(grid.x[1] - grid.x[0]) * EAST.height  # scan-angle radians to projection metres
    assert info["geoTransform"][1] == pytest.approx(step, rel=1e-9)
    assert info["geoTransform"][0] == pytest.approx((float(grid.x[0]) * EAST.height) - step / 2, rel=1e-9)
