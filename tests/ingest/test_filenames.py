from datetime import UTC, datetime

import pytest

from foundation.errors import FilenameError
from ingest.filenames import abi_filename, format_goes_time, glm_filename, parse_filename, parse_goes_time


def test_abi_l1b_conus_name_parses_every_field():
    name = parse_filename("/data/OR_ABI-L1b-RadC-M6C13_G16_s20241671801178_e20241671803563_c20241671804099.nc")
    assert name.family == "ABI-L1b-Rad"
    assert name.product == "ABI-L1b-RadC"
    assert (name.satellite, name.sector, name.mode, name.band) == ("G16", "C", 6, 13)
    assert name.scan_start == datetime(2024, 6, 15, 18, 1, 17, 800000, tzinfo=UTC)
    assert name.scan_end == datetime(2024, 6, 15, 18, 3, 56, 300000, tzinfo=UTC)
    assert name.created == datetime(2024, 6, 15, 18, 4, 9, 900000, tzinfo=UTC)


def test_cmip_mesoscale_name_keeps_the_sector_number_and_folder_name():
    name = parse_filename("OR_ABI-L2-CMIPM1-M3C01_G16_s20171931811268_e20171931811326_c20171931811382.nc")
    assert (name.family, name.sector, name.product, name.band, name.mode) == ("ABI-L2-CMIP", "M1", "ABI-L2-CMIPM", 1, 3)


def test_glm_name_has_no_sector_band_or_mode_and_spans_new_year():
    name = parse_filename("OR_GLM-L2-LCFA_G16_s20203662359400_e20210010000004_c20210010000030.nc")
    assert (name.family, name.sector, name.band, name.mode) == ("GLM-L2-LCFA", None, None, None)
    assert name.scan_start == datetime(2020, 12, 31, 23, 59, 40, tzinfo=UTC)
    assert name.scan_end == datetime(2021, 1, 1, 0, 0, 0, 400000, tzinfo=UTC)


@pytest.mark.parametrize(
    "bad",
    [
        "OR_ABI-L1b-RadX-M6C13_G16_s20241671801178_e20241671803563_c20241671804099.nc",  # unknown sector
        "OR_ABI-L1b-RadC-M6C13_G16_s2024167180117_e20241671803563_c20241671804099.nc",  # short stamp
        "OR_GLM-L2-LCFA_G16_s20243671801178_e20241671803563_c20241671804099.nc",  # day 367
        "goes16_band13.nc",
        "OR_ABI-L1b-RadC-M6C13_G16_s20241671801178_e20241671803563_c20241671804099.nc.part",
    ],
)
def test_malformed_names_are_rejected_showing_the_expected_patterns(bad):
    with pytest.raises(FilenameError) as info:
        parse_filename(bad)
    message = str(info.value)
    assert bad in message
    assert "OR_ABI-L1b-Rad{C|F|M1|M2}" in message or "bad time" in message


def test_time_stamp_round_trip_is_exact_to_tenths():
    when = datetime(2025, 4, 7, 13, 0, 20, 400000, tzinfo=UTC)
    assert format_goes_time(when) == "20250971300204"
    assert parse_goes_time(format_goes_time(when)) == when


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        format_goes_time(datetime(2025, 1, 1))  # noqa: DTZ001


def test_builders_produce_names_the_parser_accepts():
    start = datetime(2024, 6, 15, 18, 0, 24, 500000, tzinfo=UTC)
    abi = abi_filename(sector="M1", mode=6, band=13, satellite="G19", scan_start=start, scan_end=start, created=start)
    glm = glm_filename(satellite="G19", scan_start=start, scan_end=start, created=start)
    assert abi == "OR_ABI-L1b-RadM1-M6C13_G19_s20241671800245_e20241671800245_c20241671800245.nc"
    assert parse_filename(glm).scan_start == start
