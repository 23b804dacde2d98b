"""Real GLM granules gridded onto the real CONUS ABI grid (../shared/data/goes16).

The expected pixel of every flash is computed here independently of
``ingest.geometry``: a pyproj ``geos`` CRS built in the test from the file's
projection attributes, on GLM's lightning ellipsoid (GRS80 + 14 km / + 6 km),
with ``sweep=x``; scan angle = metres / perspective height.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyproj
import pytest

from featurize.glm_grid import flash_count_grid, flash_pixels
from ingest.abi import AbiImage
from ingest.glm import GlmGranule
from ingest.readers import read_product

pytestmark = pytest.mark.realdata

GRS80_A, GRS80_B = 6378137.0, 6356752.31414


def expected_pixels(image: AbiImage, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    proj = image.grid.projection
    a, b = GRS80_A + 14_000.0, GRS80_B + 6_000.0
    h = proj.height + GRS80_A - a  # the same satellite, above the raised equator
    geos = pyproj.CRS.from_proj4(f"+proj=geos +lon_0={proj.lon_0} +h={h} +a={a} +b={b} +sweep=x +units=m +no_defs")
    geodetic = pyproj.CRS.from_proj4(f"+proj=longlat +a={a} +b={b} +no_defs")
    x_m, y_m = pyproj.Transformer.from_crs(geodetic, geos, always_xy=True).transform(lon, lat)
    x, y = np.asarray(x_m) / h, np.asarray(y_m) / h
    grid = image.grid
    cols = np.floor((x - grid.x[0]) / (grid.x[1] - grid.x[0]) + 0.5)
    rows = np.floor((y - grid.y[0]) / (grid.y[1] - grid.y[0]) + 0.5)
    return rows, cols


def test_real_flashes_land_on_the_pixels_under_them(real_data: Path) -> None:
    (conus,) = sorted((real_data / "abi").glob("OR_ABI-L1b-RadC-*.nc"))
    image = read_product(conus)
    assert isinstance(image, AbiImage)
    height, width = image.grid.shape
    landed = 0
    for path in sorted((real_data / "glm").glob("OR_GLM-L2-LCFA_G16_*.nc")):
        granule = read_product(path)
        assert isinstance(granule, GlmGranule)
        flashes = granule.flashes
        pixels = flash_pixels(image.grid, flashes.lat, flashes.lon)
        assert pixels.rows.size + pixels.outside == len(flashes)
        rows, cols = expected_pixels(image, flashes.lat.astype(np.float64), flashes.lon.astype(np.float64))
        with np.errstate(invalid="ignore"):
            on_grid = np.isfinite(rows) & (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
        assert pixels.index.tolist() == np.flatnonzero(on_grid).tolist(), path.name
        assert pixels.rows.tolist() == rows[on_grid].astype(int).tolist(), path.name
        assert pixels.cols.tolist() == cols[on_grid].astype(int).tolist(), path.name
        counts = flash_count_grid(pixels.rows, pixels.cols, image.grid.shape)
        assert counts.sum() == pixels.rows.size
        landed += pixels.rows.size
    assert landed > 500  # the 2018-2023 GOES-East granules put hundreds of flashes over this CONUS grid
