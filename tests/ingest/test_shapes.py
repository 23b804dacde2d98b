"""F2: a small file cannot make a reader allocate more than the product it claims to be.

Declared dimensions are checked against the product's known shapes before any array is read, and a refusal
names the expected and the declared shape. The reads that could allocate without bound run in a subprocess
whose address space is capped (``RLIMIT_AS``), so a reader that does allocate fails fast instead of swapping.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import pytest

import ingest
from foundation.errors import FrameDecodeError
from ingest.filenames import abi_filename, glm_filename
from ingest.formats import load_template, write_product
from ingest.glm import TIME_OFFSET_VARIABLES
from ingest.readers import read_product
from ingest.synthetic import J2000
from tests.support.goesfiles import START, write_abi_l1b, write_glm

#: The address space a capped subprocess gets: far below what a declared 100000 x 100000 image would need.
CAP_BYTES = 1536 * 2**20

#: Reads one file in a fresh interpreter under the cap; prints how it ended as one JSON line.
_READ_CAPPED = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[2]), int(sys.argv[2])))
from foundation.errors import FrameDecodeError
from ingest.readers import read_product
try:
    read_product(sys.argv[1])
    outcome = {"kind": "accepted"}
except FrameDecodeError as exc:
    outcome = {"kind": "refused", "stage": getattr(exc, "stage", None), "reason": exc.reason}
except BaseException as exc:
    outcome = {"kind": type(exc).__name__, "reason": str(exc)[:200]}
sys.stdout.write(json.dumps(outcome) + "\\n")
"""

#: Measures the resident memory one read adds (peak after minus resident before), in MiB.
_READ_MEASURED = """
import json, sys
from ingest.readers import read_product
def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
open("/proc/self/clear_refs", "w").write("5")
before = status("VmRSS")
image = read_product(sys.argv[1])
sys.stdout.write(json.dumps({"added_mib": status("VmHWM") - before, "pixels": int(image.values.size)}) + "\\n")
"""


def _run(code: str, *args: str) -> dict[str, Any]:
    """Run ``code`` with the ltgcast this test imported (not whatever is installed) and parse its JSON line."""
    root = Path(ingest.__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=root, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.stdout.strip(), done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _abi_declaring(directory: Path, rows: int, cols: int, *, sector: str = "M1", band: int = 13) -> Path:
    """An ABI L1b file declaring ``rows x cols`` pixels with none of them written (so the file stays small)."""
    end = START + timedelta(seconds=30)
    path = directory / abi_filename(
        sector=sector, mode=6, band=band, satellite="G16", scan_start=START, scan_end=end, created=end
    )
    write_product(
        path,
        load_template("abi_l1b_rad"),
        dimensions={"y": rows, "x": cols},
        global_attrs={"platform_ID": "G16", "dataset_name": path.name},
        values={"band_id": [band], "t": (START - J2000).total_seconds() + 10.0},
    )
    return path


def _glm_declaring(directory: Path, flashes: int, groups: int, events: int) -> Path:
    """A GLM granule declaring these counts with none of the per-flash/group/event values written."""
    start = START.replace(second=0, microsecond=0)
    end = start + timedelta(seconds=20)
    path = directory / glm_filename(satellite="G16", scan_start=start, scan_end=end, created=end)
    write_product(
        path,
        load_template("glm_l2_lcfa"),
        dimensions={"number_of_flashes": flashes, "number_of_groups": groups, "number_of_events": events},
        global_attrs={"platform_ID": "G16", "dataset_name": path.name},
        values={"product_time": (start - J2000).total_seconds()},
        attrs={name: {"units": f"seconds since {start:%Y-%m-%d %H:%M:%S}.000"} for name in TIME_OFFSET_VARIABLES},
    )
    return path


def _stage(exc: FrameDecodeError) -> str | None:
    return getattr(exc, "stage", None)


def test_a_small_file_declaring_a_huge_image_is_refused_before_anything_is_read(tmp_path):
    path = _abi_declaring(tmp_path, 100_000, 100_000)
    assert path.stat().st_size < 1_000_000  # the attack: under a megabyte on disk, 18.6 GiB of int16 declared
    outcome = _run(_READ_CAPPED, str(path), str(CAP_BYTES))
    assert outcome["kind"] == "refused", outcome
    assert outcome["stage"] == "shape"
    assert "(100000, 100000)" in outcome["reason"]
    assert "(500, 500)" in outcome["reason"]  # expected: a mesoscale 2-km frame


def test_a_granule_declaring_a_billion_events_is_refused_before_anything_is_read(tmp_path):
    path = _glm_declaring(tmp_path, 10, 10, 1_000_000_000)
    outcome = _run(_READ_CAPPED, str(path), str(CAP_BYTES))
    assert outcome["kind"] == "refused", outcome
    assert outcome["stage"] == "shape"
    assert "1000000000 events" in outcome["reason"]
    assert "630000" in outcome["reason"]


@pytest.mark.parametrize(
    ("sector", "band", "rows", "cols", "limit"),
    [
        ("M1", 13, 501, 500, "(500, 500)"),
        ("M2", 1, 20, 1001, "(1000, 1000)"),  # a 1-km band: twice the 2-km shape
        ("M1", 2, 2001, 20, "(2000, 2000)"),  # the 0.5-km band: four times
        ("C", 13, 1501, 20, "(1500, 2500)"),
        ("F", 13, 20, 5425, "(5424, 5424)"),
        ("F", 13, 1, 20, "(5424, 5424)"),  # a fixed grid needs at least 2 x 2 pixels
    ],
)
def test_an_image_larger_than_its_sector_at_its_band_resolution_is_refused(tmp_path, sector, band, rows, cols, limit):
    path = _abi_declaring(tmp_path, rows, cols, sector=sector, band=band)
    with pytest.raises(FrameDecodeError) as caught:
        read_product(path)
    assert _stage(caught.value) == "shape"
    assert f"declares shape ({rows}, {cols})" in caught.value.reason
    assert f"expected at most {limit}" in caught.value.reason


def test_the_known_shapes_are_the_pugs():
    from ingest.abi import band_resolution_km, sector_shape

    assert [sector_shape(s, 13) for s in ("F", "C", "M1", "M2")] == [(5424, 5424), (1500, 2500), (500, 500), (500, 500)]
    assert [band_resolution_km(b) for b in range(1, 17)] == [1.0, 0.5, 1.0, 2.0, 1.0] + [2.0] * 11
    assert sector_shape("F", 2) == (21696, 21696)
    assert sector_shape("C", 1) == (3000, 5000)
    assert sector_shape("M1", 2) == (2000, 2000)


def test_a_coordinate_that_does_not_match_the_image_is_refused(tmp_path):
    template = load_template("abi_l1b_rad")
    variables = [dict(v, dimensions=["band"]) if v["name"] == "x" else v for v in template["variables"]]
    end = START + timedelta(seconds=30)
    path = tmp_path / abi_filename(sector="M1", mode=6, band=13, satellite="G16", scan_start=START, scan_end=end,
                                   created=end)  # fmt: skip
    write_product(path, {**template, "variables": variables}, dimensions={"y": 4, "x": 5},
                  global_attrs={"platform_ID": "G16"}, values={"band_id": [13]})  # fmt: skip
    with pytest.raises(FrameDecodeError) as caught:
        read_product(path)
    assert _stage(caught.value) == "shape"
    assert "variable 'x' declares shape (1,); expected (5,)" in caught.value.reason


@pytest.mark.parametrize(
    ("flashes", "groups", "events"),
    [(0, 0, 630_001), (5, 4, 10), (3, 12, 11)],
    ids=["over-noaa-bound", "flashes-over-groups", "groups-over-events"],
)
def test_glm_counts_outside_their_bounds_are_refused(tmp_path, flashes, groups, events):
    path = _glm_declaring(tmp_path, flashes, groups, events)
    with pytest.raises(FrameDecodeError) as caught:
        read_product(path)
    assert _stage(caught.value) == "shape"
    assert f"declares {flashes} flashes, {groups} groups and {events} events" in caught.value.reason
    assert "expected flashes <= groups <= events <= 630000" in caught.value.reason


def test_a_glm_variable_on_the_wrong_dimension_is_refused(tmp_path):
    path = write_glm(tmp_path, lat=[35.0, 36.0], lon=[-97.0, -96.0], offsets_s=[1.0, 2.0])
    with netCDF4.Dataset(path, "a") as ds:  # a flash variable over another dimension, as a mutated file has it
        ds.createDimension("other", 7)
        ds.renameVariable("flash_lat", "flash_lat_old")
        ds.createVariable("flash_lat", "f4", ("other",))[...] = np.zeros(7, np.float32)
    with pytest.raises(FrameDecodeError) as caught:
        read_product(path)
    assert _stage(caught.value) == "shape"
    assert "variable 'flash_lat' declares shape (7,); expected (2,) for number_of_flashes = 2" in caught.value.reason


def test_reading_a_conus_frame_stays_within_the_memory_budget(tmp_path):
    """Budget: the float32 image plus the working set of one block of rows (see ingest.abi, "Memory").

    A block is 2**21 pixels at about 72 bytes each, plus 24 MiB of slack: 168 MiB beside the image.
    """
    rng = np.random.default_rng(0)
    path = write_abi_l1b(tmp_path, rng.uniform(20.0, 120.0, (1500, 2500)))
    measured = _run(_READ_MEASURED, str(path))
    pixels = measured["pixels"]
    budget_mib = 4 * pixels / 2**20 + 168
    assert pixels == 1500 * 2500
    assert measured["added_mib"] <= budget_mib, measured  # reading it whole in float64 took 224 MiB


@pytest.mark.realdata
def test_every_real_abi_sample_is_a_whole_sector_at_its_band_resolution(real_data):
    from ingest.abi import sector_shape

    for path in sorted(real_data.glob("abi/*.nc")):
        image = read_product(path)
        assert image.values.shape == sector_shape(image.name.sector, image.band), path.name
