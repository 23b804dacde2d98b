"""``ltgcast run`` end to end: simulator files dropped into a spool become grids in the file store and in a real
Redis, served by the HTTP API (latest, contours, points, metrics) and shown by the viewer in headless Chromium;
and hot-swap while frames flow."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from foundation.clock import wait_until
from ingest.handoff import HANDOFF
from ingest.synthetic import ScenarioConfig, simulate
from ltgcast.cli import main
from ltgcast.latency import deliver
from ltgcast.service import Service, ServiceSettings
from serve.scoring.settings import TFServingSettings
from tests.support.models import served_version

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODELS = ROOT / "models" / "repository"
SERVED = served_version()  # the committed default
START = datetime(2024, 6, 15, 20, 0, tzinfo=UTC)


def settings(tmp: Path, spool: Path, **changes: Any) -> ServiceSettings:
    """The service on a spool with a free port, replays allowed (no age limit), hot-swap off unless changed."""
    base = ServiceSettings().replaced(source=f"dir:{spool}?settle_s=0.2", store=tmp / "grids", state=tmp / "state",
                                      model_base=DEFAULT_MODELS, http=("127.0.0.1", 0), watch=False,
                                      poll_interval_s=0.2, glm_deadline_s=5.0, max_age_s=0.0)  # fmt: skip
    return base.replaced(**changes)


def drop(paths: list[Path], spool: Path) -> None:
    for path in paths:
        deliver(path, spool)


def http(service: Service, target: str) -> Any:
    host, port = service.http.address
    with urllib.request.urlopen(f"http://{host}:{port}{target}", timeout=30) as reply:
        body = reply.read()
    return json.loads(body) if reply.headers.get_content_type().endswith("json") else body


def latest_id(service: Service, sector: str = "M1") -> str | None:
    try:
        return str(http(service, f"/v1/grids/latest?sector={sector}")["grid_id"])
    except urllib.error.HTTPError:
        return None


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return simulate(ScenarioConfig(out=tmp_path_factory.mktemp("sim"), sector="M1", start=START, minutes=20, seed=3))


def abi(paths: list[Path]) -> list[Path]:
    return sorted(p for p in paths if "_ABI-" in p.name)


def glm(paths: list[Path]) -> list[Path]:
    return sorted(p for p in paths if "_GLM-" in p.name)


def handoff_counts() -> dict[str, float]:
    """``ltgcast_decode_handoff_total`` by outcome (the registry is the process's: compare before and after)."""
    return {k: HANDOFF.labels(k)._value.get() for k in ("taken", "read", "dropped")}


@pytest.fixture(scope="module")
def running(scenario: list[Path], tmp_path_factory: pytest.TempPathFactory, redis_address: str) -> Iterator[Service]:
    """The service on a spool with a Redis sink; the last 4 frames of the scenario (with all GLM) dropped in."""
    tmp = tmp_path_factory.mktemp("run")
    spool = tmp / "spool"
    spool.mkdir()
    service = Service(settings(tmp, spool, redis=f"redis://{redis_address}/0", admin_token="t0ken")).start()
    before = handoff_counts()
    try:
        drop(glm(scenario), spool)
        drop(abi(scenario)[-4:], spool)
        wait_until(lambda: len(service.worker.grids) >= 4, "four grids", limit_s=120.0)
        service.handoff_delta = {k: v - before[k] for k, v in handoff_counts().items()}  # type: ignore[attr-defined]
        yield service
    finally:
        service.stop()


@pytest.mark.slow
@pytest.mark.redis
def test_frames_in_the_spool_become_grids_in_the_file_store_and_redis(running: Service, scenario: list[Path],
                                                                      redis_address: str) -> None:  # fmt: skip
    from serve.stores.redis_grids import RedisGridStore, RedisSettings

    assert running.worker.outcomes["scored"] == 4
    assert running.worker.outcomes["failed"] == 0
    # One decode per file: the worker took every file it needed from the daemon's check, read none again.
    delta = running.handoff_delta  # type: ignore[attr-defined]
    waiting = len(running.handoff) if running.handoff is not None else 0
    assert (delta["read"], delta["dropped"]) == (0, 0)
    assert delta["taken"] + waiting == len(glm(scenario)) + 4
    assert delta["taken"] >= 4 + 15 * 3  # the 4 frames, and at least the 15 minutes of granules before the first
    last = abi(scenario)[-1].name
    grids = running.store.grids("M1")
    assert len(grids) == 4
    newest = http(running, "/v1/grids/latest?sector=M1")
    assert newest["grid_id"] == grids[-1].grid_id
    assert newest["input_abi_file"] == last
    assert newest["glm_granules_missing"] == 0
    assert newest["model_name"] == "lightning"
    assert newest["model_version"] == SERVED
    store = RedisGridStore(RedisSettings(address=f"redis://{redis_address}/0"))
    assert store.latest("M1") == newest["grid_id"]
    got = store.get(newest["grid_id"])
    assert got is not None
    nc = http(running, newest["links"]["netcdf"])
    assert nc[:4] == b"\x89HDF"
    from serve.stores.gridfile import read_grid

    on_disk, _ = read_grid(grids[-1].path)
    np.testing.assert_allclose(got.probability, on_disk, atol=0.006, equal_nan=True)
    store.close()


@pytest.mark.slow
@pytest.mark.redis
def test_contours_points_and_metrics_are_served(running: Service) -> None:
    newest = http(running, "/v1/grids/latest?sector=M1")
    contours = http(running, newest["links"]["contours"] + "?levels=0.1,0.5")
    assert [f["properties"]["level"] for f in contours["features"]] == [0.1, 0.5]
    from serve.stores.gridfile import read_grid

    stored = running.store.get(newest["grid_id"])
    assert stored is not None
    probability, _ = read_grid(stored.path)
    row, col = np.unravel_index(np.nanargmax(probability), probability.shape)
    lon, lat = (float(a[row, col]) for a in stored_grid_lonlat(stored.path))
    series = http(running, f"/v1/points?lat={lat:.5f}&lon={lon:.5f}&hours=1")["series"]
    assert len(series) == 4
    assert series[-1]["probability"] == pytest.approx(float(probability[row, col]), abs=0.006)
    text = http(running, "/metrics").decode()
    assert 'ltgcast_frames_total{reason="scored",sector="M1"} ' in text
    assert 'ltgcast_input_nan_fraction{band="13",reason="all",satellite="G19",sector="M1"} 0.0' in text
    assert "ltgcast_stage_latency_seconds_count" in text
    assert "ltgcast_grid_latency_seconds_count" in text
    assert http(running, "/readyz")["ready"] is True


def stored_grid_lonlat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from serve.stores.gridfile import read_geometry

    return read_geometry(path).lonlat()


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.browser
def test_the_viewer_shows_the_latest_grid_in_chromium(running: Service) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.fail("Debian chromium and chromedriver are needed: deploy/local/services.sh browser installs them")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    host, port = running.http.address
    newest = http(running, "/v1/grids/latest?sector=M1")
    browser = webdriver.Chrome(service=DriverService(executable_path=driver_path), options=options)
    try:
        browser.get(f"http://{host}:{port}/")  # no sector named: it opens on the one with grids
        WebDriverWait(browser, 60).until(
            lambda b: b.execute_script(
                "const d = document.body.dataset; return d.state !== 'loading' && d.basemap === 'loaded'"
            )
        )
        body = browser.find_element(By.TAG_NAME, "body")
        assert browser.find_element(By.ID, "error").text == ""
        assert browser.find_element(By.ID, "sector").get_attribute("value") == "M1"
        assert body.get_attribute("data-grid-id") == newest["grid_id"]
        assert body.get_attribute("data-frames") == "4"
        assert body.get_attribute("data-underlay") == "loaded"  # the scan's infrared image under the field
        assert int(body.get_attribute("data-contour-rings") or 0) > 0
        assert int(body.get_attribute("data-flashes") or 0) > 0
        assert browser.find_element(By.ID, "model").text == f"lightning v{SERVED}"
        slider = browser.find_element(By.ID, "slider")
        browser.execute_script("arguments[0].value = 0; arguments[0].dispatchEvent(new Event('input'))", slider)
        first = running.store.grids("M1")[0].grid_id
        WebDriverWait(browser, 30).until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-grid-id")
                                         == first)  # fmt: skip
        browser.find_element(By.CSS_SELECTOR, "#point-form button").click()
        WebDriverWait(browser, 30).until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-chart"))
        assert int(body.get_attribute("data-points") or 0) > 0
        shots = Path(__file__).resolve().parents[2] / "var" / "test-artifacts" / "viewer"
        shots.mkdir(parents=True, exist_ok=True)  # the simulated storm as the service made it, for a person to look at
        browser.save_screenshot(str(shots / "service-m1.png"))
        browser.get(f"http://{host}:{port}/docs")  # the API's docs render offline, every operation listed
        WebDriverWait(browser, 30).until(lambda b: len(b.find_elements(By.CSS_SELECTOR, ".opblock-summary")) >= 12
                                         or "Unable to render" in b.page_source)  # fmt: skip
        assert "Unable to render" not in browser.page_source
        assert "/v1/points" in browser.find_element(By.TAG_NAME, "body").text
    finally:
        browser.quit()


@pytest.mark.slow
def test_hot_swap_while_frames_flow_and_a_nan_version_is_refused(scenario: list[Path], tmp_path: Path) -> None:
    from models.repository import ModelRepository
    from tests.support.models import export_test_model

    base = tmp_path / "repo"
    shutil.copytree(DEFAULT_MODELS, base)
    repo = ModelRepository(base)
    old = repo.current("lightning")  # the committed default, whatever its version
    assert old is not None
    new, bad = max(repo.versions("lightning")) + 1, max(repo.versions("lightning")) + 2
    spool = tmp_path / "spool"
    spool.mkdir()
    service = Service(
        settings(tmp_path, spool, model_base=base, watch=True, interval_s=0.2, admin_token="adm1n")
    ).start()
    frames = abi(scenario)
    try:
        drop(glm(scenario), spool)
        drop(frames[-8:-5], spool)
        wait_until(lambda: len(service.worker.grids) >= 3, "three grids from the default version", limit_s=120.0)
        assert export_test_model(repo, tmp_path / "v2", seed=21, behaved=True) == new  # appears while the service runs
        drop(frames[-5:-3], spool)  # frames keep flowing while version 2 is vetted
        wait_until(lambda: service.models.current().stable.version == new, "the swap to the new version", limit_s=120.0)
        drop(frames[-3:-1], spool)
        wait_until(lambda: len(service.worker.grids) >= 7, "seven grids", limit_s=120.0)
        assert export_test_model(repo, tmp_path / "v3", seed=22, scale=float("nan")) == bad
        wait_until(
            lambda: str(bad) in service.models.status()["rejected"], "the rejection of the NaN version", limit_s=120.0
        )
        drop(frames[-1:], spool)
        wait_until(lambda: len(service.worker.grids) >= 8, "eight grids", limit_s=120.0)
        rolled = cli_on_service(service, "adm1n", ["rollback"])  # `ltgcast models rollback --service URL`
        on_service = service.models.current().stable.version
    finally:
        service.stop()
    assert (rolled["outcome"], rolled["stable"]) == ("rolled_back", old)
    assert on_service == repo.current("lightning") == old
    assert service.worker.outcomes["failed"] == 0
    versions = [g.model_version for g in sorted(service.worker.grids, key=lambda g: g.scan_start)]
    assert versions[:3] == [old, old, old]
    assert versions[-3:] == [new, new, new]  # after the swap, and still after the NaN version was refused
    assert versions == sorted(versions)  # one swap, between two frames: never back and forth
    assert set(versions) == {old, new}
    reasons = service.models.status()["rejected"][str(bad)]
    assert any("finite" in r for r in reasons)
    from serve.stores.gridfile import read_grid

    for stored in service.store.grids("M1"):  # every grid says which version made it, and is a real field
        probability, attrs = read_grid(stored.path)
        assert int(attrs["model_version"]) == stored.version
        assert np.isfinite(probability).any()


@pytest.mark.slow
@pytest.mark.redis
def test_the_tfserving_backend_gives_the_same_grids_as_embedded(running: Service, scenario: list[Path],
                                                                tmp_path: Path) -> None:  # fmt: skip
    from serve.stores.gridfile import read_grid
    from tests.support.tfs_standin import serve

    standin = serve(DEFAULT_MODELS, 0, 0)  # TF Serving's protocol over gRPC, the committed model behind it
    spool = tmp_path / "spool"
    spool.mkdir()
    remote = Service(
        settings(
            tmp_path, spool, backend="tfserving", tfserving=TFServingSettings(target=f"127.0.0.1:{standin.grpc_port}")
        )
    )
    try:
        remote.start()
        drop(glm(scenario), spool)
        drop(abi(scenario)[-4:], spool)
        wait_until(lambda: len(remote.worker.grids) >= 4, "four grids scored through TF Serving", limit_s=120.0)
    finally:
        remote.stop()
        standin.stop()
    assert remote.worker.outcomes["failed"] == 0
    local, served = running.store.grids("M1"), remote.store.grids("M1")
    assert [g.grid_id for g in served] == [g.grid_id for g in local]  # same frames, same model name and version
    for a, b in zip(local, served, strict=True):
        same_stored_grid(read_grid(a.path)[0], read_grid(b.path)[0])


def same_stored_grid(embedded: np.ndarray, tensorflow: np.ndarray) -> None:
    """Grids stored as uint8 (steps of 0.01) by the embedded scorer and by TensorFlow: equal but for rare pixels.

    Those lie within the scorers' difference (at most 1e-5, serve.scoring.onnx) of a rounding boundary.
    """
    np.testing.assert_array_equal(np.isnan(embedded), np.isnan(tensorflow))
    differ = ~np.isnan(embedded) & (embedded != tensorflow)
    np.testing.assert_allclose(embedded[differ], tensorflow[differ], atol=0.0100001, rtol=0)  # one step at most
    assert differ.sum() <= max(2, embedded.size // 10_000), int(differ.sum())


def cli_on_service(service: Service, token: str, argv: list[str]) -> Any:
    """``ltgcast models ARGV --service URL`` with the token in the environment: its JSON answer, or its exit status."""
    host, port = service.http.address
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out):
        patch.setenv("LTGCAST_ADMIN_TOKEN", token)
        status = main(["models", *argv, "--service", f"http://{host}:{port}"])
    return json.loads(out.getvalue()) if status == 0 else status


@pytest.mark.slow
@pytest.mark.redis
def test_the_admin_endpoint_refuses_a_bad_token_and_an_unknown_version(running: Service, capsys: Any) -> None:
    assert cli_on_service(running, "wrong", ["promote", "--version", "1"]) == 1
    assert "refused promote (HTTP 401)" in capsys.readouterr().err
    assert cli_on_service(running, "t0ken", ["promote", "--version", "7"]) == 1
    assert "(HTTP 409)" in capsys.readouterr().err
    assert running.models.current().stable.version == SERVED


# -- a temporal model (ir_trend) served end to end ---------------------------------------------------------------

TREND_SOURCE = "sim:?sector=M1&start=2024-06-15T20:00Z&minutes=17&seed=6"  # frames 14-16 have a predecessor


def run_until_idle(tmp: Path, **changes: Any) -> Service:
    """``ltgcast run`` on the simulated replay until it has scored everything and stopped by itself."""
    spool = tmp / "spool"
    spool.mkdir()
    service = Service(settings(tmp, spool, source=TREND_SOURCE, exit_when_idle=True, glm_deadline_s=0.5,
                               **changes)).start()  # fmt: skip
    try:
        wait_until(service.stop_event.is_set, "the replay to be scored", limit_s=300)
    finally:
        service.stop()
    return service


@pytest.fixture(scope="module")
def trend_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Service, Path]:
    from tests.support.models import trend_repository

    base = trend_repository(tmp_path_factory)
    return run_until_idle(tmp_path_factory.mktemp("trend-run"), model_base=base), base


def provenance(path: Path) -> dict[str, Any]:
    from serve.stores.gridfile import read_grid

    return dict(json.loads(read_grid(path)[1]["provenance"]))


@pytest.mark.slow
def test_a_temporal_model_is_served_with_its_trend_and_no_frame_dead_lettered(trend_run: tuple[Service, Path]) -> None:
    from featurize.examples import Flashes
    from ingest.abi import AbiImage
    from ingest.events import DEADLETTER_TOPIC
    from ingest.glm import GlmGranule
    from ingest.readers import read_product
    from serve.scoring import EmbeddedScorer
    from serve.stores.gridfile import read_grid
    from serve.worker.nowcast import nowcast_frame

    service, base = trend_run
    outcomes = service.worker.outcomes  # frames 0-13 wait for their GLM deadline: some may be scored after later ones
    assert outcomes["scored"] + outcomes["scored_out_of_order"] == 17
    assert (outcomes["failed"], service.worker_errors) == (0, 0)
    assert service.bus.messages(DEADLETTER_TOPIC) == []
    grids = service.store.grids("M1")
    trends = [provenance(g.path) for g in grids]
    assert [t["trend"] for t in trends] == ["missing"] * 14 + ["ok"] * 3  # a new in-process bus: no frame before
    files = sorted((service.settings.state / "cache" / "sim").glob("*/*.nc"))
    frames = [p for p in files if "_ABI-" in p.name]
    assert [t["trend_from"] for t in trends[14:]] == [frames[0].name, frames[0].name, frames[1].name]
    scorer = EmbeddedScorer(base / "lightning" / "1")
    flashes = Flashes.concat([g.flashes for p in files if "_GLM-" in p.name
                              if isinstance(g := read_product(p), GlmGranule)])  # fmt: skip
    for k, before in ((15, 0), (16, 1)):
        now, previous = read_product(frames[k]), read_product(frames[before])
        assert isinstance(now, AbiImage)
        assert isinstance(previous, AbiImage)
        with_trend = nowcast_frame(now, flashes, scorer, previous.values)
        assert float(np.nanmax(np.abs(with_trend.channels["ir_trend"]))) > 0.5  # the tops cooled and warmed
        stored, _ = read_grid(grids[k].path)
        np.testing.assert_allclose(stored, with_trend.probability, atol=0.006, equal_nan=True)
        without = nowcast_frame(now, flashes, scorer, now.values).probability  # what a missing trend gives
        assert float(np.nanmax(np.abs(stored - without))) > 0.01


@pytest.mark.slow
def test_a_temporal_model_through_tfserving_gives_the_embedded_grids(trend_run: tuple[Service, Path],
                                                                    tmp_path: Path) -> None:  # fmt: skip
    from ingest.events import DEADLETTER_TOPIC
    from serve.stores.gridfile import read_grid
    from tests.support.tfs_standin import serve

    local, base = trend_run
    standin = serve(base, 0, 0)  # TF Serving's protocol over gRPC, the 3-channel model behind it
    try:
        remote = run_until_idle(tmp_path, model_base=base, backend="tfserving",
                                tfserving=TFServingSettings(target=f"127.0.0.1:{standin.grpc_port}"))  # fmt: skip
    finally:
        standin.stop()
    outcomes = remote.worker.outcomes
    assert (outcomes["scored"] + outcomes["scored_out_of_order"], outcomes["failed"]) == (17, 0)
    assert remote.bus.messages(DEADLETTER_TOPIC) == []
    served, embedded = remote.store.grids("M1"), local.store.grids("M1")
    assert [g.grid_id for g in served] == [g.grid_id for g in embedded]
    assert [provenance(g.path)["trend"] for g in served] == ["missing"] * 14 + ["ok"] * 3
    for a, b in zip(embedded, served, strict=True):
        np.testing.assert_array_equal(read_grid(a.path)[0], read_grid(b.path)[0])
