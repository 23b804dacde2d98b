from datetime import UTC, datetime

import numpy as np
import pytest

from ingest.glm import GlmLcfaReader, wrap_longitude
from ingest.readers import read_product
from tests.support.goesfiles import write_glm

START = datetime(2024, 6, 15, 18, 2, tzinfo=UTC)
LAT, LON, OFFSETS = [35.0, 36.5, 20.0], [-97.0, -96.2, -80.0], [0.5, 10.25, 19.75]


@pytest.mark.parametrize("encoding", ["2018", "2020"])
def test_both_time_encodings_decode_to_the_same_instants(tmp_path, encoding):
    granule = read_product(write_glm(tmp_path, lat=LAT, lon=LON, offsets_s=OFFSETS, encoding=encoding))
    expected = START.timestamp() + np.array(OFFSETS)
    # 2018: 2 ms steps; 2020+: 3.8e-4 s steps
    np.testing.assert_allclose(granule.flashes.time, expected, atol=2e-3)
    np.testing.assert_allclose(granule.events.time, expected, atol=2e-3)
    assert granule.decode_notes == ()


@pytest.mark.parametrize("encoding", ["2018", "2020"])
def test_positions_energies_and_areas_in_physical_units(tmp_path, encoding):
    granule = read_product(
        write_glm(tmp_path, lat=LAT, lon=LON, offsets_s=OFFSETS, encoding=encoding, area_km2=500.0, energy_j=4e-14)
    )
    flashes = granule.flashes
    np.testing.assert_allclose(flashes.lat, LAT, atol=1e-5)
    np.testing.assert_allclose(flashes.lon, LON, atol=1e-5)
    np.testing.assert_allclose(granule.events.lat, LAT, atol=0.0011)  # packed at 0.00203 degrees
    np.testing.assert_allclose(flashes.area, 500.0, rtol=1e-3)  # km2 whatever the file's units
    np.testing.assert_allclose(flashes.energy, 4e-14, atol=1e-15)  # packed in steps of ~1e-15 J
    assert flashes.quality_flag.tolist() == [0, 0, 0]
    assert granule.groups.parent_flash_id.tolist() == flashes.id.tolist()


def test_missing_unsigned_declaration_is_detected_by_the_granule_window(tmp_path):
    # As in real October-2018 files: unsigned packing without _Unsigned; 19.75 s would read as -5.3 s... -17 s
    path = write_glm(tmp_path, lat=LAT, lon=LON, offsets_s=OFFSETS, unsigned_attr="drop")
    granule = read_product(path)
    np.testing.assert_allclose(granule.flashes.time, START.timestamp() + np.array(OFFSETS), atol=1e-3)
    assert any("flash_time_offset_of_first_event" in note for note in granule.decode_notes)


def test_wrong_unsigned_declaration_on_signed_milliseconds_is_corrected(tmp_path):
    # As in a real GOES-17 check-out file: _Unsigned="true" on signed ms offsets; -0.3 s would read as +130 s
    offsets = [-0.3, 5.0, 12.0]
    path = write_glm(tmp_path, lat=LAT, lon=LON, offsets_s=offsets, encoding="2018", unsigned_attr="add")
    granule = read_product(path)
    np.testing.assert_allclose(granule.flashes.time, START.timestamp() + np.array(offsets), atol=2e-3)
    assert granule.decode_notes


def test_empty_granule_gives_empty_tables(tmp_path):
    granule = read_product(write_glm(tmp_path, lat=[], lon=[], offsets_s=[]))
    assert len(granule.flashes) == len(granule.groups) == len(granule.events) == 0
    assert granule.flashes.lat.dtype == np.float32
    assert granule.count_mismatches == {}


def test_count_variable_disagreeing_with_dimension_is_reported_and_dimension_wins(tmp_path):
    granule = read_product(write_glm(tmp_path, lat=LAT, lon=LON, offsets_s=OFFSETS, flash_count=5))
    assert len(granule.flashes) == 3
    assert granule.count_mismatches == {"flash_count": (5, 3)}


def test_longitudes_past_the_antimeridian_are_wrapped(tmp_path):
    assert wrap_longitude(np.array([-186.54, 173.6, -180.0])).tolist() == pytest.approx([173.46, 173.6, -180.0])
    granule = GlmLcfaReader().read(write_glm(tmp_path, lat=[10.0], lon=[-186.0], offsets_s=[1.0], platform="G18"))
    assert granule.flashes.lon[0] == pytest.approx(174.0)
