import math

import numpy as np
import pytest

from foundation.errors import FilenameError, FrameDecodeError
from ingest.abi import (
    PLANCK_VARIABLES,
    AbiL1bRadReader,
    brightness_temperature,
    radiance_from_brightness_temperature,
)
from ingest.readers import read_product
from ingest.synthetic import BAND13
from tests.support.goesfiles import write_abi_l1b

K = tuple(BAND13[name] for name in PLANCK_VARIABLES)


def test_planck_known_answers_by_hand():
    # T = (fk2 / ln(fk1 / L + 1) - bc1) / bc2, evaluated with scalar math for three radiances
    for radiance in (5.0, 60.0, 105.09039307853406):
        by_hand = (K[1] / math.log(K[0] / radiance + 1.0) - K[2]) / K[3]
        assert brightness_temperature(np.array([radiance]), *K)[0] == pytest.approx(by_hand, abs=1e-9)
    # 105.0904 is the band-13 Planck radiance of a 300 K black body: B = fk1 / (exp(fk2 / 300) - 1)
    assert brightness_temperature(np.array([105.09039307853406]), *K)[0] == pytest.approx(300.0, abs=0.01)


def test_planck_inverse_round_trips_and_nonpositive_radiance_is_nan():
    bt = np.array([190.0, 230.0, 300.0, 330.0])
    np.testing.assert_allclose(brightness_temperature(radiance_from_brightness_temperature(bt, *K), *K), bt)
    assert np.isnan(brightness_temperature(np.array([0.0, -0.5]), *K)).all()


def _scene():
    bt = np.full((4, 6), 280.0)
    bt[1, 2] = 210.0
    return radiance_from_brightness_temperature(bt, *K)


def test_reader_calibrates_with_the_files_own_constants(tmp_path):
    image = read_product(write_abi_l1b(tmp_path, _scene()))
    assert image.values.dtype == np.float32
    assert image.units == "K"
    assert image.quantity == "brightness_temperature"
    # 12-bit counts of 0.153 radiance units: a few tenths of a kelvin at 210 K
    assert image.values[1, 2] == pytest.approx(210.0, abs=0.3)
    assert image.values[0, 0] == pytest.approx(280.0, abs=0.1)
    assert image.valid_fraction == 1.0


def test_fill_bad_dqf_and_space_become_nan_and_are_counted_apart(tmp_path):
    radiance = _scene()
    radiance[0, 0] = np.nan  # written as _FillValue 4095
    dqf = np.zeros(radiance.shape, np.int8)
    dqf[2, 3] = 2  # out_of_range_pixel_qf
    dqf[3, 4] = 1  # conditionally usable: kept
    # columns from x = 0.1516 rad cross the limb at the equator (about 0.1519 rad)
    image = read_product(write_abi_l1b(tmp_path, radiance, dqf=dqf, x0=0.1516, y0=0.0))
    space = ~image.grid.earth_mask()
    assert space.any()
    assert not space[:, 0].any()
    acc = image.accounting
    assert acc.fill == 1
    assert acc.bad_dqf == (0 if space[2, 3] else 1)
    assert acc.space == int(space.sum())
    assert acc.valid + acc.fill + acc.bad_dqf + acc.nonphysical + acc.space == radiance.size
    assert np.isnan(image.values[0, 0])
    assert np.isnan(image.values[2, 3])
    assert np.isnan(image.values[space]).all()
    assert np.isfinite(image.values[3, 0])
    assert not isinstance(image.values, np.ma.MaskedArray)


def test_reflective_band_uses_kappa0(tmp_path):
    radiance = np.full((3, 3), 200.0)
    image = read_product(write_abi_l1b(tmp_path, radiance, band=2, kappa0=0.002, platform="G18", lon_0=-137.0))
    assert image.quantity == "reflectance_factor"
    # counts of 0.153 radiance units → reflectance within 0.0002
    np.testing.assert_allclose(image.values, 0.4, atol=2e-4)
    assert image.grid.projection.lon_0 == -137.0


def test_a_file_whose_band_differs_from_its_name_is_refused(tmp_path):
    # The seed model read a visible band by accident: the reader checks band_id against the name.
    path = write_abi_l1b(tmp_path, _scene(), band=13, band_id=2)
    with pytest.raises(FrameDecodeError, match="file name says band 13, band_id says 2"):
        read_product(path)


def test_missing_variable_is_named(tmp_path):
    path = write_abi_l1b(tmp_path, _scene(), drop=("planck_fk2",))
    with pytest.raises(FrameDecodeError, match="missing variable 'planck_fk2'"):
        read_product(path)


def test_not_netcdf_and_truncated_files_are_frame_decode_errors(tmp_path):
    good = write_abi_l1b(tmp_path, _scene())
    truncated = tmp_path / "cut" / good.name
    truncated.parent.mkdir()
    truncated.write_bytes(good.read_bytes()[:5000])
    text = tmp_path / "txt" / good.name
    text.parent.mkdir()
    text.write_text("not a netcdf file")
    for bad in (truncated, text):
        with pytest.raises(FrameDecodeError, match="cannot open as NetCDF-4|truncated"):
            AbiL1bRadReader().read(bad)


def test_unknown_name_is_refused_before_opening(tmp_path):
    path = tmp_path / "band13.nc"
    path.write_bytes(b"")
    with pytest.raises(FilenameError, match="expected one of"):
        read_product(path)


def test_a_block_whose_corners_see_the_earth_sees_it_everywhere() -> None:
    """The reader skips the limb test for blocks whose four corners are on the disk (every CONUS and meso frame)."""
    from ingest.abi import _all_on_disk
    from ingest.geometry import FixedGrid, GeosProjection

    projection = GeosProjection(lon_0=-75.0, height=35786023.0)
    rng = np.random.default_rng(7)
    step = 56e-6  # 2 km
    agree = {True: 0, False: 0}
    for _ in range(400):  # rectangles all over the full disk (±0.1519 rad), many across the limb
        x0, y0 = rng.uniform(-0.155, 0.14, 2)
        cols, rows = rng.integers(2, 600, 2)
        grid = FixedGrid(projection, x0 + step * np.arange(cols), y0 - step * np.arange(rows))
        every = bool(projection.on_disk(grid.x[np.newaxis, :], grid.y[:, np.newaxis]).all())
        assert _all_on_disk(grid) == every, (x0, y0, cols, rows)
        agree[every] += 1
    assert min(agree.values()) > 50  # both answers were tried many times
