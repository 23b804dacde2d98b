import json
from datetime import UTC, datetime, timedelta

import netCDF4
import numpy as np
import pytest

from ingest.abi import AbiImage
from ingest.filenames import parse_filename
from ingest.geometry import LIGHTNING_ELLIPSOID
from ingest.glm import GlmGranule
from ingest.readers import read_product
from ingest.synthetic import ScenarioConfig, simulate

START = datetime(2024, 6, 15, 18, 0, tzinfo=UTC)


def _truth(directory):
    return [json.loads(line) for line in (directory / "truth.jsonl").read_text().splitlines()]


def test_mesoscale_cadence_and_names(meso_scenario):
    abi = sorted(meso_scenario.glob("OR_ABI-L1b-RadM1-M6C13_G19_*.nc"))
    glm = sorted(meso_scenario.glob("OR_GLM-L2-LCFA_G19_*.nc"))
    assert len(abi) == 30
    assert len(glm) == 90
    starts = [parse_filename(p).scan_start for p in abi]
    assert all(b - a == timedelta(minutes=1) for a, b in zip(starts, starts[1:], strict=False))
    glm_starts = [parse_filename(p).scan_start for p in glm]
    assert glm_starts[0] == START
    assert all(b - a == timedelta(seconds=20) for a, b in zip(glm_starts, glm_starts[1:], strict=False))


def test_frames_show_the_cells_the_truth_file_describes(meso_scenario):
    truth = _truth(meso_scenario)
    checked = matched = 0
    for frame in truth[::6]:
        image = read_product(meso_scenario / frame["frame"])
        assert isinstance(image, AbiImage)
        for cell in frame["cells"]:
            r, c = round(cell["row"]), round(cell["col"])
            if 3 <= r < 497 and 3 <= c < 497 and cell["radius_px"] >= 4:
                core = float(np.nanmin(image.values[r - 2 : r + 3, c - 2 : c + 3]))
                # never warmer than the cell's top (packing steps and 0.3 K noise aside); colder
                # only where an anvil, cirrus or another cell overlaps it
                assert core <= cell["core_bt"] + 1.5
                checked += 1
                matched += abs(core - cell["core_bt"]) < 2.0
    assert checked >= 10
    assert matched / checked > 0.75


def test_tops_cool_for_ten_to_thirty_minutes_before_the_first_flash(meso_scenario):
    history: dict[int, list[tuple[float, float, float]]] = {}
    for frame in _truth(meso_scenario):
        for cell in frame["cells"]:
            history.setdefault(cell["id"], []).append((cell["age_min"], cell["core_bt"], cell["flash_rate_per_min"]))
    onsets = 0
    for states in history.values():
        first_flash = next((i for i, s in enumerate(states) if s[2] > 0), None)
        if first_flash is None or first_flash < 10 or states[0][0] > 1.5:
            continue  # only cells seen from birth to first flash
        onsets += 1
        age_at_flash = states[first_flash][0]
        assert 10.0 <= age_at_flash <= 31.5
        temps = [s[1] for s in states[: first_flash + 1]]
        assert all(b <= a + 0.01 for a, b in zip(temps, temps[1:], strict=False))  # cooling all the way
        assert temps[0] - temps[-1] > 20.0
    assert onsets >= 2


def test_glm_flashes_land_on_electrified_cells_through_the_lightning_ellipsoid(meso_scenario):
    truth = {frame["scan_start"][:16]: frame for frame in _truth(meso_scenario)}
    grid = read_product(meso_scenario / next(iter(truth.values()))["frame"]).grid
    near = total = 0
    for path in sorted(meso_scenario.glob("OR_GLM-*.nc"))[::9]:
        granule = read_product(path)
        assert isinstance(granule, GlmGranule)
        frame = truth[granule.scan_start.isoformat()[:16]]
        rows, cols = grid.rowcol(granule.flashes.lat, granule.flashes.lon, ellipsoid=LIGHTNING_ELLIPSOID)
        cells = [c for c in frame["cells"] if c["flash_rate_per_min"] > 0]
        for r, c in zip(rows, cols, strict=True):
            total += 1
            distance = min(np.hypot(r - x["row"], c - x["col"]) / x["radius_px"] for x in cells)
            near += distance < 3.0
    assert total > 50
    assert near / total > 0.95


def test_same_seed_same_data_other_seed_other_weather(tmp_path):
    def run(seed, out):
        return simulate(ScenarioConfig(out=tmp_path / out, sector="M1", start=START, minutes=3, seed=seed))

    a, b, c = run(7, "a"), run(7, "b"), run(8, "c")
    assert [p.name for p in a] == [p.name for p in b]
    for pa, pb in zip(a, b, strict=True):
        with netCDF4.Dataset(pa) as da, netCDF4.Dataset(pb) as db:
            for name in ("Rad", "flash_lat", "event_energy", "id"):
                if name in da.variables:
                    np.testing.assert_array_equal(da[name][...], db[name][...])
            assert da.id == db.id
    first_a = read_product(a[[i for i, p in enumerate(a) if "ABI" in p.name][0]])
    first_c = read_product(c[[i for i, p in enumerate(c) if "ABI" in p.name][0]])
    assert isinstance(first_a, AbiImage)
    assert isinstance(first_c, AbiImage)
    assert not np.allclose(first_a.values, first_c.values, equal_nan=True)


def test_conus_sector_is_noaa_sized_and_includes_the_limb_corner(tmp_path):
    paths = simulate(ScenarioConfig(out=tmp_path, sector="C", start=START, minutes=10, seed=3, glm=False))
    assert [p.name[:27] for p in paths] == ["OR_ABI-L1b-RadC-M6C13_G19_s"] * 2
    image = read_product(paths[0])
    assert isinstance(image, AbiImage)
    assert image.values.shape == (1500, 2500)
    assert image.name.scan_start == datetime(2024, 6, 15, 18, 1, 17, 800000, tzinfo=UTC)
    assert image.accounting.space > 0
    assert np.isnan(image.values[0, 0])
    assert 180 < float(np.nanmin(image.values)) < 240 < 290 < float(np.nanmax(image.values)) < 315


@pytest.mark.slow
def test_full_disk_frame_has_space_beyond_the_limb(tmp_path):
    paths = simulate(ScenarioConfig(out=tmp_path, sector="F", start=START, minutes=10, seed=4, glm=False))
    assert len(paths) == 1
    image = read_product(paths[0])
    assert isinstance(image, AbiImage)
    assert image.values.shape == (5424, 5424)
    assert image.scene == "Full Disk"
    # the disk covers pi/4 of the square, less the flattening
    assert 0.75 < image.accounting.earth / image.values.size < 0.80
    assert np.isnan(image.values[0, 0])
    assert np.isfinite(image.values[2712, 2712])


def _layout(path):
    with netCDF4.Dataset(path) as ds:
        return {
            name: (var.dtype.str, var.dimensions, sorted(var.ncattrs())) for name, var in ds.variables.items()
        }, sorted(ds.ncattrs())


@pytest.mark.realdata
def test_synthetic_files_have_the_layout_of_real_noaa_files(meso_scenario, real_data):
    abi_real = real_data / "abi" / "OR_ABI-L1b-RadC-M3C08_G16_s20171921817189_e20171921819562_c20171921820002.nc"
    glm_real = real_data / "glm" / "OR_GLM-L2-LCFA_G19_s20250971300200_e20250971300400_c20250971300420.nc"
    assert _layout(next(meso_scenario.glob("OR_ABI-*.nc"))) == _layout(abi_real)
    assert _layout(next(meso_scenario.glob("OR_GLM-*.nc"))) == _layout(glm_real)


def test_satpy_abi_l1b_reader_reads_the_intended_values(meso_scenario):
    satpy = pytest.importorskip("satpy", reason="satpy is installed by the dev extra")
    path = sorted(meso_scenario.glob("OR_ABI-*.nc"))[5]
    scene = satpy.Scene(reader="abi_l1b", filenames=[str(path)])
    scene.load(["C13"])
    ours = read_product(path)
    assert isinstance(ours, AbiImage)
    theirs = scene["C13"]
    assert theirs.attrs["units"] == "K"
    np.testing.assert_allclose(theirs.values, ours.values, atol=1e-3)
    lons, lats = theirs.attrs["area"].get_lonlats()
    lon, lat = ours.grid.lonlat()
    np.testing.assert_allclose(lons, lon, atol=1e-4)
    np.testing.assert_allclose(lats, lat, atol=1e-4)
