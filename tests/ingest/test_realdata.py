"""Every real NOAA sample in ../shared/data/goes16 reads without error, with the documented quirks."""

from pathlib import Path

import numpy as np
import pytest

from ingest.abi import AbiImage
from ingest.glm import WINDOW_MARGIN_S, GlmGranule
from ingest.readers import read_product
from tests.conftest import REAL_DATA

pytestmark = pytest.mark.realdata

FILES = sorted(p.name for p in REAL_DATA.glob("*/*.nc")) if REAL_DATA.is_dir() else []


def _path(root: Path, name: str) -> Path:
    return next(root.glob(f"*/{name}"))


def test_the_sample_folder_holds_abi_and_glm_files(real_data):
    assert len(list(real_data.glob("abi/*.nc"))) >= 5
    assert len(list(real_data.glob("glm/*.nc"))) >= 16


@pytest.mark.parametrize("name", FILES)
def test_every_sample_reads(real_data, name):
    product = read_product(_path(real_data, name))
    if isinstance(product, AbiImage):
        assert product.values.dtype == np.float32
        assert not isinstance(product.values, np.ma.MaskedArray)
        assert 0.99 < product.valid_fraction <= 1.0
        assert product.accounting.valid == int(np.isfinite(product.values).sum())
    else:
        assert isinstance(product, GlmGranule)
        assert np.isfinite(product.flashes.lat).all()
        assert (np.abs(product.flashes.lon) <= 180).all()


@pytest.mark.parametrize("name", [n for n in FILES if n.startswith("OR_GLM")])
def test_flash_times_fall_in_the_scan_window(real_data, name):
    """Every time lies in [start - 2 s, end].

    LCFA clusters events across the granule boundary, so the first events of a few
    flashes precede the nominal start (by at most 1.73 s in these samples; a few such
    flashes even end up to 0.46 s before it). Nothing is later than the end. The 2 s
    bound is tighter than the decoder's own window (``WINDOW_MARGIN_S``), so a wrong
    signedness or unit cannot pass.
    """
    granule = read_product(_path(real_data, name))
    assert isinstance(granule, GlmGranule)
    assert WINDOW_MARGIN_S[0] > 2.0
    low = granule.scan_start.timestamp() - 2.0
    high = granule.scan_end.timestamp() + 1e-3
    for times in (granule.flashes.time, granule.flashes.time_last, granule.events.time, granule.groups.time):
        assert ((times >= low) & (times <= high)).all()
    assert (granule.flashes.time_last >= granule.flashes.time).all()


def test_both_time_encodings_are_present_and_decode(real_data):
    ms = read_product(_path(real_data, "OR_GLM-L2-LCFA_G16_s20181830433000_e20181830433200_c20181830433231.nc"))
    s = read_product(_path(real_data, "OR_GLM-L2-LCFA_G19_s20250971300200_e20250971300400_c20250971300420.nc"))
    assert isinstance(ms, GlmGranule)
    assert isinstance(s, GlmGranule)
    assert len(ms.flashes) == 302
    assert len(s.flashes) == 115


def test_the_empty_granule_gives_zero_flashes(real_data):
    granule = read_product(_path(real_data, "OR_GLM-L2-LCFA_G17_s20200160612000_e20200160612110_c20200160612335.nc"))
    assert isinstance(granule, GlmGranule)
    assert (len(granule.flashes), len(granule.groups), len(granule.events)) == (0, 0, 0)


def test_counts_that_disagree_with_dimensions_trust_the_dimensions(real_data):
    granule = read_product(_path(real_data, "OR_GLM-L2-LCFA_G16_s20210820633400_e20210820634005_c20210820634025.nc"))
    assert isinstance(granule, GlmGranule)
    assert (len(granule.flashes), len(granule.events)) == (125, 7258)
    assert granule.count_mismatches == {"flash_count": (133, 125), "event_count": (7294, 7258)}


def test_misdeclared_unsigned_offsets_in_real_files_are_corrected(real_data):
    for name in (
        "OR_GLM-L2-LCFA_G16_s20182901026200_e20182901026400_c20182901026423.nc",  # packed unsigned, undeclared
        "OR_GLM-L2-LCFA_G17_s20182831047000_e20182831047200_c20182831047223.nc",  # signed, declared unsigned
    ):
        granule = read_product(_path(real_data, name))
        assert isinstance(granule, GlmGranule)
        assert len(granule.decode_notes) == 4


def test_the_l1b_band8_sample_matches_its_manifest(real_data):
    image = read_product(
        _path(real_data, "OR_ABI-L1b-RadC-M3C08_G16_s20171921817189_e20171921819562_c20171921820002.nc")
    )
    assert isinstance(image, AbiImage)
    assert image.values.shape == (1500, 2500)
    assert image.grid.projection.lon_0 == -89.5
    assert float(np.nanmin(image.values)) == pytest.approx(198.7, abs=0.1)
    assert float(np.nanmax(image.values)) == pytest.approx(253.1, abs=0.1)
    # densest deep convection near 35-40 N, 90 W, as the manifest says
    lon, lat = image.grid.lonlat()
    cold = image.values < 215
    assert 0.005 < cold.mean() < 0.015
    assert ((lat[cold] > 14) & (lat[cold] < 53)).all()


def test_cmip_bad_dqf_pixels_are_nan(real_data):
    image = read_product(
        _path(real_data, "OR_ABI-L2-CMIPM1-M3C01_G16_s20171931811268_e20171931811326_c20171931811382.nc")
    )
    assert isinstance(image, AbiImage)
    assert image.dqf_counts == {0: 998041, 2: 1959}
    assert image.accounting.bad_dqf == 1959
    assert image.quantity == "reflectance_factor"
