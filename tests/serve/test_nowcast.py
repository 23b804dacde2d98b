"""One frame to one CF NetCDF grid: the grid mapping, packing, missing pixels, the band check, the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import xarray as xr
from pyproj import CRS, Transformer

from featurize.examples import Flashes
from ingest.abi import AbiImage
from ingest.readers import read_product
from ingest.synthetic import ScenarioConfig, simulate
from ltgcast.cli import main
from serve.scoring import EmbeddedScorer
from serve.stores.gridfile import GridMeta, read_grid, write_grid
from serve.worker.nowcast import nowcast_frame


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("sim")
    start = datetime(2024, 6, 15, 20, 0, tzinfo=UTC)
    return simulate(ScenarioConfig(out=out, sector="M1", start=start, minutes=16, seed=4))


def last_frame(paths: list[Path]) -> AbiImage:
    image = read_product(sorted(p for p in paths if "_ABI-" in p.name)[-1])
    assert isinstance(image, AbiImage)
    return image


def no_flashes() -> Flashes:
    return Flashes(np.zeros(0, np.float32), np.zeros(0, np.float32), np.zeros(0, np.float64))


def test_a_grid_file_is_cf_geostationary_and_round_trips(scenario: list[Path], tmp_path: Path) -> None:
    image = last_frame(scenario)
    p = np.random.default_rng(0).uniform(0, 1, image.grid.shape).astype(np.float32)
    p[:5, :7] = np.nan
    meta = GridMeta("G19", "M1", image.scan_start, image.scan_start + timedelta(minutes=30), "lightning", 3,
                    image.name.name, ("a.nc", "b.nc"), glm_missing=1)  # fmt: skip
    path = write_grid(tmp_path / "g.nc", p, image.grid, meta)
    back, attrs = read_grid(path)
    assert np.isnan(back[:5, :7]).all()
    ok = np.isfinite(p)
    assert np.max(np.abs(back[ok] - p[ok])) <= 0.005 + 1e-6  # packed to whole percent
    assert attrs["Conventions"] == "CF-1.8"
    assert (attrs["model_version"], attrs["input_glm_granules_used"], attrs["input_glm_granules_missing"]) == (3, 2, 1)
    assert attrs["grid_id"] == f"G19_M1_{image.scan_start:%Y%m%dT%H%M%S}Z_lightning-v3"
    with netCDF4.Dataset(path) as ds:
        assert ds["probability"].dtype == np.uint8
        crs = CRS.from_cf(ds["goes_imager_projection"].__dict__)
    assert "Sweep X" in crs.coordinate_operation.method_name  # the seed regridded without sweep='x'
    to_lonlat = Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True)
    height = image.grid.projection.height
    row, col = 250, 300
    lon, lat = to_lonlat.transform(image.grid.x[col] * height, image.grid.y[row] * height)
    want_lon, want_lat = image.grid.lonlat()
    assert (lon, lat) == pytest.approx((want_lon[row, col], want_lat[row, col]), abs=1e-6)
    with xr.open_dataset(path) as ds:  # xarray decodes packing, fill and CF times on its own
        assert ds["probability"].attrs["grid_mapping"] == "goes_imager_projection"
        assert float(ds["probability"].max()) <= 1.0
        assert ds["time"].values == np.datetime64(meta.valid_time.replace(tzinfo=None), "ns")
        np.testing.assert_allclose(ds["x"].values, image.grid.x)


def test_no_ir_means_no_probability_not_zero(scenario: list[Path], model_base: Path) -> None:
    image = last_frame(scenario)
    values = image.values.copy()
    values[10:20, 10:20] = np.nan
    hole = AbiImage(**{**image.__dict__, "values": values})
    result = nowcast_frame(hole, no_flashes(), EmbeddedScorer(model_base / "lightning" / "1"))
    assert np.isnan(result.probability[10:20, 10:20]).all()
    assert np.isfinite(result.probability[30:, 30:]).all()
    assert result.filled["ir"] == pytest.approx(100 / values.size)


def test_a_visible_band_is_refused(scenario: list[Path], model_base: Path) -> None:
    image = last_frame(scenario)
    visible = AbiImage(**{**image.__dict__, "band": 2})
    with pytest.raises(ValueError, match="expected ABI band 13 .* found band 2"):
        nowcast_frame(visible, no_flashes(), EmbeddedScorer(model_base / "lightning" / "1"))


def test_nowcast_command_scores_a_frame_with_its_glm(
    scenario: list[Path], model_base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = sorted(p for p in scenario if "_ABI-" in p.name)[-1]
    glm = [str(p) for p in scenario if "_GLM-" in p.name]
    out = tmp_path / "grid.nc"
    assert main(["nowcast", "--ir", str(frame), "--glm", *glm, "--out", str(out), "--model-base", str(model_base)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["flashes"] > 0
    assert summary["shape"] == [500, 500]
    grid, attrs = read_grid(out)
    assert attrs["input_abi_file"] == frame.name
    assert attrs["input_glm_granules_used"] == len(glm)
    assert np.nanmax(grid) == pytest.approx(summary["max_probability"], abs=0.005)
    tiled = tmp_path / "tiled.nc"
    args = ["nowcast", "--ir", str(frame), "--glm", *glm, "--out", str(tiled), "--model-base", str(model_base)]
    assert main([*args, "--tile", "128"]) == 0
    np.testing.assert_allclose(read_grid(tiled)[0], grid, atol=0.0101)  # equal to 1e-6 before packing to percent
    assert main(["nowcast", "--ir", glm[0], "--out", str(out), "--model-base", str(model_base)]) == 2
    assert "is not an ABI" in capsys.readouterr().err
    assert main(["nowcast", "--ir", str(frame), "--out", str(out), "--model-base", str(tmp_path / "empty")]) == 2
    assert "no served version of 'lightning'" in capsys.readouterr().err
