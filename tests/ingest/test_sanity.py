"""F8: bad data is refused or dropped, never published.

An ABI frame with too few valid earth pixels is refused at stage ``empty``; a granule or frame whose clock,
geometry or packing is impossible is refused at stage ``decode``; GLM flashes with impossible positions,
times or energies are dropped and counted while the rest of the granule is kept; the ingest daemon
quarantines each refusal under its own stage.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import netCDF4
import numpy as np
import pytest
from prometheus_client import REGISTRY

from foundation.errors import FrameDecodeError
from ingest.abi import PLANCK_VARIABLES, radiance_from_brightness_temperature
from ingest.bus import InProcessBus
from ingest.checkpoint import Checkpoint
from ingest.daemon import DaemonSettings, IngestDaemon
from ingest.events import DEADLETTER_TOPIC, FRAMES_TOPIC, DeadLetterEvent, FrameEvent
from ingest.filenames import abi_filename
from ingest.formats import load_template, write_product
from ingest.quarantine import Quarantine
from ingest.readers import read_product
from ingest.sources.spool import DirSpool
from ingest.synthetic import BAND13, J2000
from tests.support.clock import FakeClock
from tests.support.goesfiles import START, write_abi_l1b, write_glm

K = tuple(BAND13[name] for name in PLANCK_VARIABLES)
GLM_START = datetime(2024, 6, 15, 18, 2, tzinfo=UTC)
LAT, LON, OFFSETS = [35.0, 36.5, 20.0], [-97.0, -96.2, -80.0], [0.5, 10.25, 19.75]
YEAR_2099 = datetime(2099, 1, 1, tzinfo=UTC)


def _radiance(rows: int = 4, cols: int = 5, bt: float = 280.0) -> np.ndarray:
    return radiance_from_brightness_temperature(np.full((rows, cols), bt), *K)


def _refusal(path: Path, **options: float) -> FrameDecodeError:
    with pytest.raises(FrameDecodeError) as caught:
        read_product(path, **options)
    assert "\n" not in caught.value.reason
    return caught.value


def _dropped(reason: str) -> float:
    return REGISTRY.get_sample_value("ltgcast_glm_flashes_dropped_total", {"reason": reason}) or 0.0


# -- ABI: empty frames -------------------------------------------------------------------------------------------


def test_an_all_fill_frame_is_refused_as_empty_not_published_as_nan(tmp_path):
    error = _refusal(write_abi_l1b(tmp_path, np.full((4, 5), np.nan)))
    assert getattr(error, "stage", None) == "empty"
    assert "0 of 20 earth pixels are valid (0.0%), expected at least 50% (fill 20" in error.reason


def test_a_frame_wholly_beyond_the_limb_is_empty(tmp_path):
    # x = 0.155 rad is past the Earth's limb (about 0.1519 rad): every pixel sees space
    error = _refusal(write_abi_l1b(tmp_path, _radiance(), x0=0.155, y0=0.0))
    assert getattr(error, "stage", None) == "empty"
    assert "0 of 0 earth pixels are valid" in error.reason
    assert "20 in space" in error.reason


def test_bad_dqf_everywhere_is_empty(tmp_path):
    error = _refusal(write_abi_l1b(tmp_path, _radiance(), dqf=np.full((4, 5), 3, np.int8)))
    assert getattr(error, "stage", None) == "empty"
    assert "bad DQF 20" in error.reason


def test_the_least_valid_share_is_a_setting(tmp_path):
    radiance = _radiance()
    radiance.reshape(-1)[:12] = np.nan  # 8 of 20 earth pixels valid: 40 %
    path = write_abi_l1b(tmp_path, radiance)
    error = _refusal(path)
    assert "8 of 20 earth pixels are valid (40.0%), expected at least 50%" in error.reason
    image = read_product(path, min_valid_share=0.3)
    assert image.accounting.valid == 8


# -- ABI: time, geometry and packing --------------------------------------------------------------------------


def _edit(path: Path, name: str, *, value: float | None = None, **attrs: object) -> Path:
    with netCDF4.Dataset(path, "a") as ds:
        ds.set_auto_maskandscale(False)
        for key, attr in attrs.items():
            ds[name].setncattr(key, attr)
        if value is not None:
            ds[name][...] = value
    return path


def test_a_mid_scan_time_outside_the_named_scan_is_refused(tmp_path):
    path = _edit(write_abi_l1b(tmp_path, _radiance()), "t", value=(YEAR_2099 - J2000).total_seconds())
    error = _refusal(path)
    assert getattr(error, "stage", None) == "decode"
    assert "variable 't' (mid-scan) is 2099-01-01T00:00:00.000Z; expected within the scan 2024-06-15T18:01:17.800Z" in (
        error.reason
    )


@pytest.mark.parametrize(
    ("name", "attrs", "expected"),
    [
        ("x", {"scale_factor": np.float32(np.nan)}, "expected a finite non-zero scale_factor"),
        ("x", {"scale_factor": np.float32(1e-3)}, "fixed-grid steps should be +p (x) and -p (y)"),
        ("y", {"scale_factor": np.float32(5.6e-5)}, "fixed-grid steps should be +p (x) and -p (y)"),
        ("x", {"add_offset": np.float32(3.0)}, "fixed-grid x should be finite scan angles within ±0.16 rad"),
        ("goes_imager_projection", {"perspective_point_height": 0.0}, "perspective_point_height should be 3.5786e+07"),
        ("goes_imager_projection", {"semi_major_axis": -1.0}, "semi_major_axis should be 6.37814e+06"),
        ("goes_imager_projection", {"longitude_of_projection_origin": 1000.0}, "longitude_of_projection_origin"),
        ("Rad", {"valid_range": np.array([0.0, np.nan])}, "_FillValue/valid_range do not fit its type int16"),
        ("planck_fk1", {"value": -1.0}, "expected positive planck_fk1, planck_fk2 and planck_bc2"),
    ],
)
def test_impossible_geometry_or_packing_is_refused_naming_it(tmp_path, name, attrs, expected):
    error = _refusal(_edit(write_abi_l1b(tmp_path, _radiance()), name, **attrs))
    assert getattr(error, "stage", None) == "decode"
    assert expected in error.reason


def test_a_data_variable_of_the_wrong_storage_type_is_refused(tmp_path):
    path = write_abi_l1b(tmp_path, _radiance())
    with netCDF4.Dataset(path, "a") as ds:  # band_id stored as float64, as a mutated file had it
        ds.renameVariable("band_id", "band_id_old")
        ds.createVariable("band_id", "f8", ("band",))[...] = [13.0]
    error = _refusal(path)
    assert "variable 'band_id' should be stored as an integer type, found float64" in error.reason


# -- GLM: flashes dropped, granules refused -----------------------------------------------------------------------


def test_flashes_off_the_globe_are_dropped_counted_and_the_rest_kept(tmp_path, caplog):
    path = write_glm(tmp_path, lat=[35.0, np.nan, 95.0, 20.0, 30.0], lon=[-97.0, -96.0, -90.0, 1000.0, -80.0],
                     offsets_s=[1.0, 2.0, 3.0, 4.0, 5.0])  # fmt: skip
    before = _dropped("position")
    with caplog.at_level(logging.WARNING, logger="ingest.glm"):
        granule = read_product(path)
    assert granule.flashes.lat.tolist() == pytest.approx([35.0, 30.0])
    assert granule.flashes.id.tolist() == [1, 5]
    assert granule.flashes_dropped == {"position": 3}
    assert _dropped("position") == before + 3
    assert len(granule.events) == 5  # groups and events are kept as stored
    lines = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].endswith("dropped 3 of 5 flashes (position 3)")


def test_a_flash_outside_its_granule_window_is_dropped(tmp_path):
    # 2018 packing (signed 2 ms steps) can store -30 s and +50 s: before the window's 5.5-s margin and after its end
    path = write_glm(tmp_path, lat=[35.0] * 4, lon=[-97.0] * 4, offsets_s=[1.0, -30.0, 50.0, -5.0], encoding="2018")
    before = _dropped("time")
    granule = read_product(path)
    assert granule.flashes.id.tolist() == [1, 4]  # -5 s: a flash that began before the granule and ended in it
    assert granule.flashes_dropped == {"time": 2}
    assert _dropped("time") == before + 2


def test_no_flash_from_2099_survives_in_a_2024_granule(tmp_path):
    path = write_glm(tmp_path, lat=LAT, lon=LON, offsets_s=OFFSETS)
    shift = (YEAR_2099 - GLM_START).total_seconds()
    with netCDF4.Dataset(path, "a") as ds:  # every first and last event moved 75 years on
        for name in ("flash_time_offset_of_first_event", "flash_time_offset_of_last_event"):
            ds[name].setncattr("add_offset", np.float32(ds[name].add_offset + shift))
    granule = read_product(path)
    assert len(granule.flashes) == 0
    assert granule.flashes_dropped == {"time": 3}
    assert len(granule.events) == 3  # the granule is kept; its events are in the window


@pytest.mark.parametrize(
    ("attrs", "raw"),
    [({}, -1), ({"scale_factor": np.float32(1.0)}, None), ({"add_offset": np.float32(-1e-12)}, None)],
    ids=["fill", "absurdly-large", "negative"],
)
def test_flashes_with_impossible_energies_are_dropped(tmp_path, attrs, raw):
    path = write_glm(tmp_path, lat=LAT, lon=LON, offsets_s=OFFSETS)
    with netCDF4.Dataset(path, "a") as ds:
        ds.set_auto_maskandscale(False)
        for key, value in attrs.items():
            ds["flash_energy"].setncattr(key, value)
        if raw is not None:
            ds["flash_energy"][0] = raw  # the fill value: the first flash has no energy
    before = _dropped("energy")
    granule = read_product(path)
    dropped = 1 if raw is not None else 3
    assert granule.flashes_dropped == {"energy": dropped}
    assert len(granule.flashes) == 3 - dropped
    assert _dropped("energy") == before + dropped


def test_a_sound_granule_loses_nothing(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="ingest.glm"):
        granule = read_product(write_glm(tmp_path, lat=LAT, lon=LON, offsets_s=OFFSETS))
    assert len(granule.flashes) == 3
    assert granule.flashes_dropped == {}
    assert not caplog.records


@pytest.mark.parametrize(
    ("name", "change", "expected"),
    [
        ("product_time", {"value": (YEAR_2099 - J2000).total_seconds()},
         "product_time is 2099-01-01T00:00:00.000Z; expected the granule start 2024-06-15T18:02:00.000Z"),
        ("event_time_offset", {"units": "seconds since 2099-01-01 00:00:00.000"},
         "event_time_offset counts from 2099-01-01T00:00:00.000Z; expected the product_time 2024-06-15T18:02:00.000Z"),
        ("nominal_satellite_subpoint_lon", {"value": 400.0},
         "nominal_satellite_subpoint_lon should be a longitude in [-180, 180], found 400.0"),
        ("flash_lat", {"scale_factor": np.float32(0.0)}, None),  # floats are not unpacked: no refusal
        ("event_energy", {"scale_factor": np.float32(0.0)}, "expected a finite non-zero scale_factor"),
    ],
)  # fmt: skip
def test_a_granule_whose_clock_or_packing_is_impossible_is_refused(tmp_path, name, change, expected):
    path = write_glm(tmp_path, lat=LAT, lon=LON, offsets_s=OFFSETS)
    value = change.pop("value", None)
    _edit(path, name, value=value, **change)
    if expected is None:
        assert len(read_product(path).flashes) == 3
        return
    error = _refusal(path)
    assert getattr(error, "stage", None) == "decode"
    assert expected in error.reason


# -- the daemon quarantines by stage ------------------------------------------------------------------------------


def _oversized_frame(directory: Path, start: datetime) -> Path:
    """A mesoscale band-13 frame declaring 600 x 600 pixels (the sector has 500 x 500), none written: a small file."""
    end = start + timedelta(seconds=30)
    path = directory / abi_filename(sector="M1", mode=6, band=13, satellite="G16", scan_start=start, scan_end=end,
                                    created=end)  # fmt: skip
    write_product(path, load_template("abi_l1b_rad"), dimensions={"y": 600, "x": 600},
                  global_attrs={"platform_ID": "G16", "dataset_name": path.name},
                  values={"band_id": [13], "t": (start - J2000).total_seconds() + 10.0})  # fmt: skip
    return path


def test_the_daemon_quarantines_refusals_under_their_stage(tmp_path):
    spool, state = tmp_path / "spool", tmp_path / "state"
    spool.mkdir()
    empty = write_abi_l1b(spool, np.full((4, 5), np.nan), start=START)
    oversized = _oversized_frame(spool, START + timedelta(minutes=5))
    good = write_abi_l1b(spool, _radiance(), start=START + timedelta(minutes=10))
    clock = FakeClock(datetime(2024, 6, 15, 18, 40, tzinfo=UTC))
    bus = InProcessBus()
    checkpoint = Checkpoint.open(state)
    try:
        daemon = IngestDaemon(DirSpool(spool, clock, settle_s=2.0), bus, checkpoint, Quarantine(state / "quarantine"),
                              clock, settings=DaemonSettings(poll_interval_s=1.0))  # fmt: skip
        daemon.poll_once()
        clock.advance(3)
        daemon.poll_once()
    finally:
        checkpoint.close()
    letters = {d.name: d for d in (DeadLetterEvent.from_json(m.value) for m in bus.messages(DEADLETTER_TOPIC))}
    assert {name: letter.stage for name, letter in letters.items()} == {empty.name: "empty", oversized.name: "shape"}
    assert "declares shape (600, 600)" in letters[oversized.name].reason
    assert [FrameEvent.from_json(m.value).name for m in bus.messages(FRAMES_TOPIC)] == [good.name]
    kept = next((state / "quarantine").rglob(f"{oversized.name}.reason.json"))
    assert json.loads(kept.read_text())["stage"] == "shape"
