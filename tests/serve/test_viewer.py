"""The forecaster's viewer in headless Chromium, as a person uses it: the map, the underlay, contours, flashes,
the animation, the hover readout, a point's chart, the stale-feed banner and the GLM warning.

The grids are written straight into a store (a storm of three cells crossing the demo's mesoscale sector over
six minutes, with the infrared image of each scan and the flashes around the cells), so the pictures are the
same on every run. Screenshots are saved under ``var/test-artifacts/viewer/`` and compared with the baselines in
``tests/serve/baselines/`` at a tolerance (a map that goes blank, loses its underlay or its contours fails);
``LTGCAST_UPDATE_BASELINES=1`` rewrites the baselines after a change a person has looked at.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ingest.geometry import LIGHTNING_ELLIPSOID, FixedGrid
from ingest.synthetic import ScenarioConfig, sector_grid
from serve.alerts.sites import default_sites_path, load_sites
from serve.alerts.states import AlertRunner, SiteAlerts
from serve.api.grids import GridApi
from serve.api.settings import ApiSettings
from serve.api.web import HttpService
from serve.stores.files import FileGridStore
from serve.stores.gridfile import GridMeta

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
BASELINES = Path(__file__).parent / "baselines"
ARTIFACTS = ROOT / "var" / "test-artifacts" / "viewer"
WINDOW = (1400, 900)
FRAMES = 6
#: The storm's cells: (lat, lon at the first scan, peak probability, radius px); they move east 1 px a minute.
CELLS = ((35.45, -97.9, 0.93, 26.0), (34.55, -97.0, 0.62, 18.0), (35.6, -96.6, 0.35, 14.0))


def storm(grid: FixedGrid, minute: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], list[tuple]]:
    """Probability, infrared brightness temperature (K) and flashes of one scan, and where the cells are."""
    rows, cols = grid.shape
    rr, cc = np.mgrid[:rows, :cols].astype(np.float32)
    p = np.zeros(grid.shape, np.float32)
    bt = np.full(grid.shape, 288.0, np.float32)
    rng = np.random.default_rng(7)
    texture = rng.normal(0.0, 1.0, (rows // 25 + 2, cols // 25 + 2)).astype(np.float32)
    bt += 6.0 * np.kron(texture, np.ones((25, 25), np.float32))[:rows, :cols]  # blocky cirrus, same every run
    lats, lons, times, where = [], [], [], []
    flash_rng = np.random.default_rng(minute)
    for lat, lon, peak, radius in CELLS:
        row, col = (float(v) for v in grid.rowcol(lat, lon))
        col += minute
        where.append((row, col, peak))
        d2 = (rr - row) ** 2 + (cc - col) ** 2
        p = np.maximum(p, peak * np.exp(-d2 / (2 * radius**2)))
        bt = np.minimum(bt, 205.0 + (288.0 - 205.0) * (1 - np.exp(-d2 / (2 * (1.6 * radius) ** 2))))
        n = int(40 * peak)
        fr = row + flash_rng.normal(0, radius / 3, n)
        fc = col + flash_rng.normal(0, radius / 3, n)
        x, y = grid.scan_angles_of(fr, fc)
        flon, flat = grid.projection.on_ellipsoid(LIGHTNING_ELLIPSOID).lonlat(x, y)
        lats.append(flat)
        lons.append(flon)
        times.append(np.full(n, 0.0))
    ring = (rr - 250) ** 2 + (cc - 120 - minute) ** 2  # an annulus: a contour with a hole
    p = np.maximum(p, np.where((ring > 15**2) & (ring < 30**2), 0.55, 0.0).astype(np.float32))
    p[:40, :60] = np.nan  # missing input in a corner
    bt[:40, :60] = np.nan
    flashes = {"lat": np.concatenate(lats), "lon": np.concatenate(lons), "time": np.concatenate(times)}
    return p.astype(np.float32), bt, flashes, where


def write_storm(store: FileGridStore, now: datetime) -> list[str]:
    """Six M1 grids a minute apart ending two minutes before ``now`` (the newest missing 17 of 46 GLM granules),
    and one CONUS-less M2 grid two years old (a sector whose feed stopped)."""
    grid = sector_grid(ScenarioConfig(Path("."), "M1", now, 1, 0))
    newest = (now - timedelta(minutes=2, seconds=30)).replace(microsecond=0)
    ids = []
    for minute in range(FRAMES):
        scan = newest - timedelta(minutes=FRAMES - 1 - minute)
        p, bt, flashes, _ = storm(grid, minute)
        flashes["time"] = flashes["time"] + (scan - timedelta(minutes=5)).timestamp()
        missing = 17 if minute == FRAMES - 1 else 0
        meta = GridMeta("G19", "M1", scan, scan + timedelta(minutes=30), "lightning", 2, f"frame{minute}.nc",
                        glm_files=tuple(f"g{i}.nc" for i in range(46 - missing)), glm_missing=missing)  # fmt: skip
        store.put(p, grid, meta, flashes=flashes, underlay=bt)
        ids.append(meta.grid_id)
    old = datetime(2024, 6, 15, 18, 0, 24, tzinfo=UTC)
    m2 = sector_grid(ScenarioConfig(Path("."), "M2", now, 1, 0, meso_center=(39.0, -90.0)))
    p, bt, flashes, _ = storm(m2, 0)
    meta = GridMeta("G19", "M2", old, old + timedelta(minutes=30), "lightning", 2, "old.nc", glm_files=("g.nc",))
    store.put(np.zeros_like(p), m2, meta, flashes={k: v[:0] for k, v in flashes.items()}, underlay=bt)
    return ids


@pytest.fixture(scope="module")
def viewer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    store = FileGridStore(tmp_path_factory.mktemp("viewer") / "grids")
    ids = write_storm(store, datetime.now(UTC))
    alerts = AlertRunner(SiteAlerts(store, load_sites(default_sites_path())))  # the packaged airports
    service = HttpService(GridApi(store, ApiSettings(), alerts=alerts), "127.0.0.1", 0).start()
    host, port = service.address
    try:
        yield {"store": store, "ids": ids, "url": f"http://{host}:{port}"}
    finally:
        service.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.fail("Debian chromium and chromedriver are needed: deploy/local/services.sh browser installs them")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--force-device-scale-factor=1",
        "--hide-scrollbars",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=DriverService(executable_path=driver_path), options=options)
    driver.set_window_size(*WINDOW)
    try:
        yield driver
    finally:
        driver.quit()


def data(driver: Any, name: str) -> str:
    return driver.execute_script(f"return document.body.dataset[{name!r}] || ''")


def wait(driver: Any, condition: Any, what: str, timeout: float = 60.0) -> None:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: condition(d))
    except TimeoutException:
        state = driver.execute_script("return JSON.stringify(document.body.dataset)")
        logs = driver.get_log("browser") if hasattr(driver, "get_log") else []
        pytest.fail(f"the viewer never showed {what}; body data: {state}; console: {logs[-5:]}")


def open_ready(driver: Any, url: str) -> None:
    driver.get(url)
    wait(driver, lambda d: data(d, "state") in ("ready", "empty", "error") and data(d, "basemap") == "loaded",
         "a grid on its basemap")  # fmt: skip
    assert data(driver, "state") == "ready", driver.execute_script("return document.body.dataset.error")
    driver.execute_script("document.body.classList.add('settled')")


def api(viewer: dict[str, Any], path: str) -> Any:
    with urllib.request.urlopen(viewer["url"] + path, timeout=30) as reply:
        return json.loads(reply.read())


def shot(driver: Any, name: str) -> np.ndarray:
    """Save a screenshot as an artefact and compare it with its baseline (rewritten only when asked)."""
    from PIL import Image

    png = driver.get_screenshot_as_png()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"{name}.png").write_bytes(png)
    now = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), np.float32)
    baseline = BASELINES / f"{name}.png"
    if os.environ.get("LTGCAST_UPDATE_BASELINES") == "1":
        BASELINES.mkdir(exist_ok=True)
        baseline.write_bytes(png)
    assert baseline.is_file(), (
        f"no baseline {baseline}: look at {ARTIFACTS / name}.png, then LTGCAST_UPDATE_BASELINES=1"
    )
    then = np.asarray(Image.open(baseline).convert("RGB"), np.float32)
    assert now.shape == then.shape, f"{name}: screenshot {now.shape} vs baseline {then.shape}"
    differs = blocks_differing(now, then)
    assert differs < 0.03, (f"{name}: {differs:.1%} of the 16-px blocks differ from the baseline (tolerance 3 %); "
                            f"compare {ARTIFACTS / name}.png with {baseline}")  # fmt: skip
    return now


def blocks_differing(a: np.ndarray, b: np.ndarray, block: int = 16, tolerance: float = 24.0) -> float:
    """The share of ``block``-px squares whose mean colour differs by more than ``tolerance`` (of 255)."""
    h, w = (a.shape[0] // block) * block, (a.shape[1] // block) * block

    def means(img: np.ndarray) -> np.ndarray:
        return img[:h, :w].reshape(h // block, block, w // block, block, 3).mean(axis=(1, 3))

    return float((np.abs(means(a) - means(b)).max(axis=2) > tolerance).mean())


def test_blank_or_shifted_pictures_fail_the_comparison() -> None:
    rng = np.random.default_rng(0)
    picture = rng.integers(0, 255, (900, 1400, 3)).astype(np.float32)
    picture = np.kron(picture[::50, ::50], np.ones((50, 50, 1)))[:900, :1400]  # 50-px patches
    assert blocks_differing(picture, picture) == 0.0
    assert blocks_differing(picture, np.full_like(picture, 40.0)) > 0.5  # the map went blank
    assert blocks_differing(picture, np.roll(picture, 60, axis=1)) > 0.3  # everything moved
    clock = picture.copy()
    clock[10:26, 1200:1300] = 255.0  # a clock's text changed
    assert blocks_differing(picture, clock) < 0.03


def test_the_viewer_opens_on_the_sector_with_data_with_its_map_underlay_contours_and_flashes(
    viewer: dict[str, Any], browser: Any
) -> None:
    open_ready(browser, viewer["url"] + "/")
    from selenium.webdriver.common.by import By

    assert browser.find_element(By.ID, "sector").get_attribute("value") == "M1"  # not CONUS, which has no data
    assert data(browser, "gridId") == viewer["ids"][-1]
    assert data(browser, "frames") == str(FRAMES)
    assert data(browser, "underlay") == "loaded"
    assert int(data(browser, "contourRings")) >= 5
    assert int(data(browser, "flashes")) == sum(int(40 * c[2]) for c in CELLS)
    assert data(browser, "stale") == "0"
    assert data(browser, "glmWarning") == "1"
    warning = browser.find_element(By.ID, "glm-warning")
    assert warning.is_displayed()
    assert "17 of 46 GLM granules missing" in warning.text
    assert browser.find_element(By.ID, "scan").text.endswith(" UTC")
    assert "." not in browser.find_element(By.ID, "scan").text  # no milliseconds
    assert browser.find_element(By.ID, "age").text in ("2 min old", "3 min old")  # 2.5 min before the fixture
    # the basemap, the underlay and the field are all drawn: Leaflet's panes hold a canvas and the images
    drawn = browser.execute_script("""
        const images = [...document.querySelectorAll('.leaflet-image-layer')];
        return {images: images.filter((i) => i.complete && i.naturalWidth > 0).length,
                canvases: document.querySelectorAll('.leaflet-pane canvas').length,
                cities: document.querySelectorAll('.leaflet-tooltip.city').length};""")
    assert (drawn["images"], drawn["canvases"] >= 4, drawn["cities"] >= 3) == (2, True, True), drawn
    wait(browser, lambda d: data(d, "sites") != "", "the sites' alert states")
    answered = {s["id"]: s for s in api(viewer, "/v1/alerts")["sites"]}
    assert data(browser, "sites") == str(len(answered)) == str(len(load_sites(default_sites_path())))
    rows = browser.find_elements(By.CSS_SELECTOR, "#sites li")
    assert [r.get_attribute("data-state") for r in rows][:1] == ["alert"]  # the sites in alert come first
    for row in rows:
        assert row.get_attribute("data-state") == answered[row.get_attribute("data-site")]["state"].lower()
    shot(browser, "viewer-m1")


def test_the_animation_steps_through_the_last_hour_and_the_slider_picks_a_scan(
    viewer: dict[str, Any], browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    open_ready(browser, viewer["url"] + "/?sector=M1")
    browser.find_element(By.ID, "play").click()
    seen = set()
    wait(browser, lambda d: seen.add(data(d, "gridId")) or len(seen) >= 3, "three frames of the loop")
    browser.find_element(By.ID, "play").click()  # pause
    assert browser.find_element(By.ID, "play").text == "▶"
    slider = browser.find_element(By.ID, "slider")
    browser.execute_script("arguments[0].value = 0; arguments[0].dispatchEvent(new Event('input'))", slider)
    wait(browser, lambda d: data(d, "gridId") == viewer["ids"][0], "the first scan after the slider moved")
    assert browser.find_element(By.ID, "frame-count").text == f"1 / {FRAMES}"
    assert not browser.find_element(By.ID, "live").is_selected()


def test_hovering_reads_the_probability_and_a_click_charts_the_point_with_nearby_flashes(
    viewer: dict[str, Any], browser: Any
) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    open_ready(browser, viewer["url"] + "/?sector=M1")
    store: FileGridStore = viewer["store"]
    newest = store.get(viewer["ids"][-1])
    assert newest is not None
    grid = sector_grid(ScenarioConfig(Path("."), "M1", datetime.now(UTC), 1, 0))
    row, col, peak = storm(grid, FRAMES - 1)[3][0]
    x, y = grid.scan_angles_of(row, col)
    lon, lat = (float(v) for v in grid.projection.lonlat(x, y))
    element = browser.find_element(By.ID, "map")
    size = element.size

    tries = [0]

    def aim(driver: Any, nudge: int = 0) -> None:
        where = driver.execute_script(f"const p = map.latLngToContainerPoint([{lat}, {lon}]); return [p.x, p.y];")
        ActionChains(driver).move_to_element_with_offset(element, where[0] - size["width"] / 2 + nudge,
                                                         where[1] - size["height"] / 2).perform()  # fmt: skip

    def pointed(driver: Any) -> bool:
        # where the storm is now: the map may still be animating its first fit, so aim again at every try (a pixel
        # apart each time, so that every try is a mousemove)
        tries[0] += 1
        aim(driver, tries[0] % 2)
        return data(driver, "hover") != ""

    wait(browser, pointed, "a probability under the pointer")
    aim(browser)  # exactly on the storm's pixel: the click below charts this point
    expected = api(viewer, f"/v1/points?lat={lat:.4f}&lon={lon:.4f}&hours=0&sectors=M1")["series"][-1]["probability"]
    assert abs(int(data(browser, "hover")) - round(expected * 100)) <= 2
    assert round(expected * 100) >= round(peak * 100) - 3
    assert "P " in browser.find_element(By.ID, "readout").text
    ActionChains(browser).click().perform()
    wait(browser, lambda d: data(d, "chart") == "drawn", "the point's chart")
    assert data(browser, "points") == str(FRAMES)
    note = browser.find_element(By.ID, "point-note").text
    flashes = api(viewer, f"/v1/points?lat={lat:.4f}&lon={lon:.4f}&hours=3&sectors=M1&flash_radius_km=20")
    assert flashes["flashes"]["count"] > 0
    assert f"{flashes['flashes']['count']} GLM flashes within 20" in note
    assert browser.execute_script("return document.querySelectorAll('#chart canvas').length") >= 1
    shot(browser, "viewer-point")


def test_a_sector_whose_feed_stopped_shows_the_stale_banner(viewer: dict[str, Any], browser: Any) -> None:
    from selenium.webdriver.common.by import By

    open_ready(browser, viewer["url"] + "/?sector=M2")
    assert data(browser, "stale") == "1"
    banner = browser.find_element(By.ID, "stale")
    assert banner.is_displayed()
    assert "Stale feed" in banner.text
    assert "2024-06-15 18:00 UTC" in banner.text
    assert browser.find_element(By.ID, "age").get_attribute("class") == "age stale"
    shot(browser, "viewer-stale")
