import numpy as np
import pytest

from ingest.geometry import GRS80, LIGHTNING_ELLIPSOID, FixedGrid, GeosProjection

EAST = GeosProjection(lon_0=-75.0, height=35786023.0)


def test_product_user_guide_example_forward():
    # GOES-R PUG vol. 3, 4.2.8: 33.846162 N, 84.690932 W seen from 75 W is x = -0.024052, y = 0.095340 rad
    x, y = EAST.scan_angles(33.846162, -84.690932)
    assert float(x) == pytest.approx(-0.024052, abs=1e-6)
    assert float(y) == pytest.approx(0.095340, abs=1e-6)


def test_product_user_guide_example_inverse():
    lon, lat = EAST.lonlat(-0.024052, 0.095340)
    assert float(lat) == pytest.approx(33.846162, abs=1e-5)
    assert float(lon) == pytest.approx(-84.690932, abs=1e-5)


def test_points_the_satellite_cannot_see_are_nan():
    x, y = EAST.scan_angles(0.0, 60.0)  # Indian Ocean
    assert np.isnan(x)
    assert np.isnan(y)
    lon, lat = EAST.lonlat(0.2, 0.0)  # beyond the limb
    assert np.isnan(lon)
    assert np.isnan(lat)


def test_sweep_y_would_misplace_conus_pixels_by_kilometres():
    wrong = GeosProjection(lon_0=-75.0, height=35786023.0, sweep="y")
    x, y = 0.05, 0.12  # a northern CONUS pixel
    lon_x, lat_x = EAST.lonlat(x, y)
    lon_y, lat_y = wrong.lonlat(x, y)
    km = 111.2 * np.hypot(float(lat_x - lat_y), float(lon_x - lon_y) * np.cos(np.radians(float(lat_x))))
    assert km > 10.0


def test_earth_disk_mask_analytic_matches_pyproj_visibility():
    grid = FixedGrid(EAST, np.linspace(-0.16, 0.16, 121), np.linspace(0.16, -0.16, 121))
    mask = grid.earth_mask()
    lon, _ = grid.lonlat()
    assert mask[60, 60]
    assert not mask[0, 0]
    # pyproj and the PUG quadratic agree on every pixel (limb pixels included)
    assert np.array_equal(mask, np.isfinite(lon))


def test_rowcol_inverts_pixel_centres():
    grid = FixedGrid(EAST, -0.101332 + 5.6e-5 * np.arange(2500), 0.128212 - 5.6e-5 * np.arange(1500))
    rows, cols = np.array([200, 700, 1499]), np.array([600, 1300, 2499])
    x, y = grid.scan_angles_of(rows, cols)
    lon, lat = EAST.lonlat(x, y)
    back_r, back_c = grid.rowcol(lat, lon)
    np.testing.assert_allclose(back_r, rows, atol=1e-6)
    np.testing.assert_allclose(back_c, cols, atol=1e-6)


def test_lightning_ellipsoid_keeps_the_satellite_in_place_and_removes_parallax():
    lifted = EAST.on_ellipsoid(LIGHTNING_ELLIPSOID)
    assert lifted.satellite_distance == pytest.approx(EAST.satellite_distance)
    grid = FixedGrid(EAST, -0.02 + 5.6e-5 * np.arange(100), 0.11 - 5.6e-5 * np.arange(100))
    # A flash at the cloud top seen along pixel (40, 60): GLM reports where that ray meets the lightning ellipsoid
    x, y = grid.scan_angles_of(40, 60)
    glm_lon, glm_lat = lifted.lonlat(x, y)
    r_ltg, c_ltg = grid.rowcol(glm_lat, glm_lon, ellipsoid=LIGHTNING_ELLIPSOID)
    assert float(r_ltg) == pytest.approx(40, abs=1e-6)
    assert float(c_ltg) == pytest.approx(60, abs=1e-6)
    # Projected on the surface ellipsoid instead, it lands over a pixel away (the parallax error)
    r_sfc, c_sfc = grid.rowcol(glm_lat, glm_lon, ellipsoid=GRS80)
    assert np.hypot(float(r_sfc) - 40, float(c_sfc) - 60) > 1.0  # 1.38 px here, at 39.5 N


def test_goes_east_conus_top_left_corner_is_beyond_the_limb():
    grid = FixedGrid(EAST, -0.101332 + 5.6e-5 * np.arange(2500), 0.128212 - 5.6e-5 * np.arange(1500))
    mask = grid.earth_mask()
    assert not mask[0, 0]
    assert mask[-1, -1]
    assert 0 < (~mask).sum() < 0.02 * mask.size  # 1.26 % of the sector is space


def test_irregular_axes_are_refused():
    with pytest.raises(ValueError, match="not regularly spaced"):
        FixedGrid(EAST, np.array([0.0, 1e-4, 3e-4]), np.array([0.1, 0.09]))
