"""Real GLM granules gridded onto the real CONUS ABI grid (../shared/data/goes16)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from featurize.glm_grid import flash_count_grid, flash_pixels
from ingest.abi import AbiImage
from ingest.geometry import LIGHTNING_ELLIPSOID
from ingest.glm import GlmGranule
from ingest.readers import read_product

pytestmark = pytest.mark.realdata


def great_circle_km(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    p1, p2, dl = np.radians(lat1), np.radians(lat2), np.radians(lon2 - lon1)
    h = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * 6371.0 * np.arcsin(np.sqrt(h))


def test_real_flashes_land_on_the_pixels_under_them(real_data: Path) -> None:
    (conus,) = sorted((real_data / "abi").glob("OR_ABI-L1b-RadC-*.nc"))
    image = read_product(conus)
    assert isinstance(image, AbiImage)
    grid = image.grid
    landed = 0
    for path in sorted((real_data / "glm").glob("OR_GLM-L2-LCFA_G16_*.nc")):
        granule = read_product(path)
        assert isinstance(granule, GlmGranule)
        flashes = granule.flashes
        pixels = flash_pixels(grid, flashes.lat, flashes.lon)
        assert pixels.rows.size + pixels.outside == len(flashes)
        if pixels.rows.size == 0:
            continue
        # The centre of each flash's pixel, seen on the lightning ellipsoid, is where the flash was navigated.
        x, y = grid.scan_angles_of(pixels.rows, pixels.cols)
        lon, lat = grid.projection.on_ellipsoid(LIGHTNING_ELLIPSOID).lonlat(x, y)
        distance = great_circle_km(flashes.lat[pixels.index], flashes.lon[pixels.index], lat, lon)
        assert distance.max() < 3.0, path.name  # within half a CONUS pixel (2 km at nadir, ~4 km at the edge)
        assert np.median(distance) < 1.5, path.name
        counts = flash_count_grid(pixels.rows, pixels.cols, grid.shape)
        assert counts.sum() == pixels.rows.size
        landed += pixels.rows.size
        # Flashes that missed the grid are outside the CONUS footprint, not lost inside it.
        missed = np.setdiff1d(np.arange(len(flashes)), pixels.index)
        rows, cols = grid.rowcol(flashes.lat[missed], flashes.lon[missed], LIGHTNING_ELLIPSOID)
        with np.errstate(invalid="ignore"):
            inside = (rows > -0.5) & (rows < grid.shape[0] - 0.5) & (cols > -0.5) & (cols < grid.shape[1] - 0.5)
        assert not inside.any()
    assert landed > 500  # the 2018-2023 GOES-East granules put hundreds of flashes over CONUS
