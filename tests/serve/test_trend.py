"""Temporal models (``ir_trend``): the previous-frame cache and its policy, the worker (stable, shadow, after a
restart), ``ltgcast nowcast --previous``, the gate and the TF Serving path with a 3-channel model."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY

from featurize.channels import ir_trend_channel
from featurize.examples import Flashes
from ingest.abi import AbiImage
from ingest.bus import InProcessBus
from ingest.events import DEADLETTER_TOPIC, FrameEvent
from ingest.filenames import parse_filename
from ingest.glm import GlmGranule
from ingest.readers import read_product
from ingest.synthetic import ScenarioConfig, simulate
from serve.scoring import EmbeddedScorer
from serve.scoring.hotswap import ServingModels
from serve.stores.files import FileGridStore
from serve.stores.gridfile import read_grid
from serve.worker.loop import NowcastWorker
from serve.worker.nowcast import nowcast_frame, previous_problem
from serve.worker.settings import WorkerSettings
from serve.worker.trend import FrameCache, PreviousFrames
from tests.support.clock import FakeClock
from tests.support.frames import publish_frames
from tests.support.goesfiles import write_abi_l1b
from tests.support.models import trend_repository

START = datetime(2024, 6, 15, 20, 0, tzinfo=UTC)
T0 = datetime(2024, 6, 15, 18, 0, 17, 800000, tzinfo=UTC)


def missing_count(reason: str, sector: str = "M1") -> float:
    return REGISTRY.get_sample_value("ltgcast_trend_missing_total", {"sector": sector, "reason": reason}) or 0.0


# -- the cache and its policy, on small real files --------------------------------------------------------------


def small_frame(folder: Path, start: datetime, radiance: float = 60.0, *, x0: float = -0.02,
                shape: tuple[int, int] = (6, 8)) -> tuple[Path, AbiImage]:  # fmt: skip
    """A tiny band-13 M1 frame scanned at ``start`` (its own folder: names may repeat across tests)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = write_abi_l1b(folder, np.full(shape, radiance), sector="M1", platform="G19", start=start, x0=x0)
    image = read_product(path)
    assert isinstance(image, AbiImage)
    return path, image


def event_of(path: Path) -> FrameEvent:
    return FrameEvent.of(parse_filename(path), uri=str(path), source_uri=str(path), size=path.stat().st_size,
                         ingest_time=T0)  # fmt: skip


def test_the_frame_fifteen_minutes_before_is_found_within_90_s_nearest_first(tmp_path: Path) -> None:
    frames = PreviousFrames(read_product)
    _, early = small_frame(tmp_path / "a", T0, 60.0)
    _, near = small_frame(tmp_path / "b", T0 + timedelta(seconds=50), 62.0)
    frames.keep(early)
    frames.keep(near)
    _, now = small_frame(tmp_path / "c", T0 + timedelta(minutes=15, seconds=40), 64.0)
    found = frames.find(now, 900.0)
    assert found.found
    assert found.name == near.name.name
    np.testing.assert_array_equal(found.values, near.values)
    assert found.provenance() == {"trend": "ok", "trend_from": near.name.name}
    _, late = small_frame(tmp_path / "d", T0 + timedelta(minutes=17, seconds=30), 64.0)  # 100 s past the newer one
    lost = frames.find(late, 900.0)
    assert (lost.found, lost.missing) == (False, "no_frame")
    assert lost.provenance() == {"trend": "missing", "trend_missing": "no_frame"}
    assert frames.reads == 0


def test_a_frame_on_another_grid_is_no_predecessor(tmp_path: Path) -> None:
    frames = PreviousFrames(read_product)
    _, before = small_frame(tmp_path / "a", T0, x0=-0.03)  # the mesoscale sector pointed elsewhere
    frames.keep(before)
    _, now = small_frame(tmp_path / "b", T0 + timedelta(minutes=15))
    assert frames.find(now, 900.0).missing == "moved"
    _, bigger = small_frame(tmp_path / "c", T0 + timedelta(minutes=15), shape=(6, 9))
    assert frames.find(bigger, 900.0).missing == "moved"
    assert "another grid" in str(previous_problem(now, before, 15.0))


def test_a_predecessor_this_worker_never_read_is_read_from_the_file_its_event_names(tmp_path: Path) -> None:
    frames = PreviousFrames(read_product)
    path, before = small_frame(tmp_path / "a", T0, 60.0)
    frames.index.add(event_of(path))  # another worker scored it (another partition), or before a restart
    _, now = small_frame(tmp_path / "b", T0 + timedelta(minutes=15), 66.0)
    found = frames.find(now, 900.0)
    assert found.found
    assert found.name == before.name.name
    assert frames.reads == 1
    assert float(np.nanmax(np.abs(ir_trend_channel(now.values, found.values)))) > 0  # the tops changed
    frames.keep(now)
    assert len(frames.cache) == 2  # the predecessor read is kept too
    assert frames.find(now, 900.0).found
    assert frames.reads == 1

    copies = PreviousFrames(read_product)
    bogus = FrameEvent.from_json(event_of(path).to_json().replace(str(path).encode(), str(tmp_path / "x.nc").encode()))
    copies.index.add(bogus)  # its name, a file that is not there: the real copy is read next
    copies.index.add(event_of(path))
    assert copies.find(now, 900.0).found
    assert copies.reads == 2

    gone = PreviousFrames(read_product)
    path, _ = small_frame(tmp_path / "c", T0 + timedelta(minutes=1))
    gone.index.add(event_of(path))
    path.unlink()  # pruned from the shared volume
    _, later = small_frame(tmp_path / "d", T0 + timedelta(minutes=16))
    assert gone.find(later, 900.0).missing == "unreadable"


def test_the_cache_keeps_20_minutes_behind_the_newest_scan_and_its_byte_bound(tmp_path: Path) -> None:
    images = [small_frame(tmp_path / str(k), T0 + timedelta(minutes=k))[1] for k in range(0, 26, 5)]
    one = int(images[0].values.nbytes)
    cache = FrameCache(max_bytes=100 * one)
    for image in images:  # 0, 5, ..., 25 minutes
        cache.put(("G19", "M1"), image)
    assert cache.names() == {i.name.name for i in images[1:]}  # the first, 25 min behind the newest, is gone
    cache.put(("G19", "M2"), images[2])  # another sector: kept while within 20 min of the newest scan of any
    assert len(cache) == 6
    cache.put(("G19", "M2"), images[0])  # 25 min behind the newest M1 scan: a sector no longer fed keeps nothing
    assert len(cache) == 6
    late = small_frame(tmp_path / "late", T0 + timedelta(minutes=45))[1]
    cache.put(("G19", "M1"), late)  # M2's last frame (10 min) is now 35 min behind: gone without the byte cap
    assert images[2].name.name not in cache.names()
    small = FrameCache(max_bytes=3 * one)
    for image in images:
        small.put(("G19", "M1"), image)
    assert small.nbytes <= 3 * one
    assert len(small) == 3
    assert small.names() == {i.name.name for i in images[-3:]}  # the oldest go first
    with pytest.raises(ValueError, match="read-only"):
        next(iter(small.candidates(("G19", "M1"), images[-1].scan_start, 1.0))).values[0, 0] = 0.0
    small.clear()
    assert (len(small), small.nbytes) == (0, 0)


# -- the worker, on a simulated mesoscale sector -----------------------------------------------------------------


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """17 minutes of M1: frames 14, 15 and 16 have a predecessor (frames 0, 0 and 1: 15 min ± 90 s, the nearest)."""
    return simulate(ScenarioConfig(out=tmp_path_factory.mktemp("trend-sim"), sector="M1", start=START, minutes=17,
                                   seed=6))  # fmt: skip


@pytest.fixture(scope="module")
def trend_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trend_repository(tmp_path_factory)


def abi(paths: list[Path]) -> list[Path]:
    return sorted(p for p in paths if "_ABI-" in p.name)


def glm(paths: list[Path]) -> list[Path]:
    return sorted(p for p in paths if "_GLM-" in p.name)


def announce(bus: InProcessBus, path: Path) -> None:
    publish_frames(bus, [path], START)


def drain(worker: NowcastWorker) -> None:
    while worker.step(timeout_s=0):
        pass


def all_flashes(scenario: list[Path]) -> Flashes:
    granules = [read_product(p) for p in glm(scenario)]
    return Flashes.concat([g.flashes for g in granules if isinstance(g, GlmGranule)])


def image(path: Path) -> AbiImage:
    found = read_product(path)
    assert isinstance(found, AbiImage)
    return found


def provenance(path: Path) -> dict[str, Any]:
    return dict(json.loads(read_grid(path)[1]["provenance"]))


class Slot:
    def __init__(self, models: ServingModels) -> None:
        self.models = models

    def current(self) -> ServingModels:
        return self.models


@pytest.mark.slow
def test_a_temporal_model_gets_the_frame_15_minutes_before_and_scores_every_frame(
    scenario: list[Path], trend_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames = abi(scenario)
    fed = frames[:2] + frames[14:]  # minutes 0, 1, 14, 15 and 16
    bus = InProcessBus()
    for path in glm(scenario) + fed:
        announce(bus, path)
    scorer = EmbeddedScorer(trend_base / "lightning" / "1")
    assert scorer.feature_set.temporal
    assert len(scorer.feature_set.channels) == 3
    store = FileGridStore(tmp_path / "grids")
    no_frame = missing_count("no_frame")
    worker = NowcastWorker(bus, scorer, store, FakeClock(START + timedelta(minutes=18)),
                           WorkerSettings(glm_deadline_s=0, verify=False))  # fmt: skip
    drifting: list[list[str]] = []  # the channels each frame gives the drift monitor
    monkeypatch.setattr(worker.drift, "submit", lambda meta, card, channels, scene: drifting.append(sorted(channels)))
    drain(worker)
    worker.close()
    assert (worker.outcomes["scored"], worker.outcomes["failed"]) == (5, 0)
    assert bus.messages(DEADLETTER_TOPIC) == []
    grids = store.grids("M1")
    trends = [provenance(g.path) for g in grids]
    # 15 min ± 90 s, as in training: frame 14 takes frame 0 (14 min before) as there is no frame 15 min before it
    assert [t["trend"] for t in trends] == ["missing", "missing", "ok", "ok", "ok"]
    assert {t.get("trend_missing") for t in trends[:2]} == {"no_frame"}
    assert [t["trend_from"] for t in trends[2:]] == [frames[0].name, frames[0].name, frames[1].name]
    assert missing_count("no_frame") == no_frame + 2
    assert drifting == [["ir", "ltg"]] * 2 + [["ir", "ir_trend", "ltg"]] * 3  # no field of zeros for the weather
    assert worker.scoring.previous.reads == 0  # the worker read them itself, in scan order
    assert len(worker.scoring.previous.cache) == 5
    flashes = all_flashes(scenario)
    for k in (3, 4):  # minutes 15 and 16: the model on the real trend, which is not "no change" there
        now, before = image(fed[k]), image(frames[k - 3])
        stored, _ = read_grid(grids[k].path)
        with_trend = nowcast_frame(now, flashes, scorer, before.values)
        without = nowcast_frame(now, flashes, scorer, now.values)
        assert float(np.nanmax(np.abs(with_trend.channels["ir_trend"]))) > 0.5
        np.testing.assert_allclose(stored, with_trend.probability, atol=0.006, equal_nan=True)
        assert float(np.nanmax(np.abs(stored - without.probability))) > 0.01
    now = image(fed[1])  # a frame without a predecessor: scored as if nothing changed
    np.testing.assert_allclose(read_grid(grids[1].path)[0], nowcast_frame(now, flashes, scorer, now.values).probability,
                               atol=0.006, equal_nan=True)  # fmt: skip


@pytest.mark.slow
def test_a_restarted_worker_reads_the_predecessors_its_cache_lost(
    scenario: list[Path], trend_base: Path, tmp_path: Path
) -> None:
    """On a bus that remembers (Kafka) the frame events still name the files of the frames before the restart."""
    bus = InProcessBus()
    frames = abi(scenario)
    for path in glm(scenario) + frames[:2]:
        announce(bus, path)
    scorer = EmbeddedScorer(trend_base / "lightning" / "1")
    store, clock = FileGridStore(tmp_path / "grids"), FakeClock(START + timedelta(minutes=18))
    settings = WorkerSettings(glm_deadline_s=0, verify=False)
    first = NowcastWorker(bus, scorer, store, clock, settings)
    drain(first)
    first.close()
    for path in frames[15:]:
        announce(bus, path)
    second = NowcastWorker(bus, scorer, store, clock, settings)  # an empty cache
    drain(second)
    second.close()
    assert (first.outcomes["scored"], second.outcomes["scored"], second.outcomes["failed"]) == (2, 2, 0)
    assert second.scoring.previous.reads == 2
    assert [provenance(g.path).get("trend_from") for g in store.grids("M1")] == [None, None, frames[0].name,
                                                                                 frames[1].name]  # fmt: skip


@pytest.mark.slow
def test_the_shadow_gets_the_previous_frame_whichever_of_the_two_is_temporal(
    scenario: list[Path], trend_base: Path, model_base: Path, tmp_path: Path
) -> None:
    plain = EmbeddedScorer(model_base / "lightning" / "1")
    trend = EmbeddedScorer(trend_base / "lightning" / "1")
    trend.version = 9
    frames = abi(scenario)
    for stable, shadow, folder in ((plain, trend, "a"), (trend, plain, "b")):
        bus = InProcessBus()
        for path in glm(scenario) + frames[:1] + frames[15:16]:
            announce(bus, path)
        store = FileGridStore(tmp_path / folder)
        worker = NowcastWorker(bus, Slot(ServingModels(stable=stable, shadow=shadow)), store,
                               FakeClock(START + timedelta(minutes=18)),
                               WorkerSettings(glm_deadline_s=0, verify=False))  # fmt: skip
        drain(worker)
        worker.close()
        assert (worker.outcomes["scored"], worker.outcomes["failed"]) == (2, 0)
        temporal = worker.shadow_store if shadow is trend else store
        plain_store = store if shadow is trend else worker.shadow_store
        assert [provenance(g.path).get("trend") for g in temporal.grids("M1")] == ["missing", "ok"]
        assert provenance(temporal.grids("M1")[-1].path)["trend_from"] == frames[0].name
        assert [provenance(g.path).get("trend") for g in plain_store.grids("M1")] == [None, None]
        now, before = image(frames[15]), image(frames[0])
        expected = nowcast_frame(now, all_flashes(scenario), trend, before.values).probability
        np.testing.assert_allclose(read_grid(temporal.grids("M1")[-1].path)[0], expected, atol=0.006, equal_nan=True)


# -- ltgcast nowcast --previous, the gate, TF Serving -----------------------------------------------------------


@pytest.mark.slow
def test_nowcast_takes_previous_for_a_temporal_model_goes_on_without_it_and_refuses_a_wrong_one(
    scenario: list[Path], trend_base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ltgcast.cli import main

    frames = abi(scenario)
    base = ["nowcast", "--ir", str(frames[15]), "--glm", *map(str, glm(scenario)), "--model-base", str(trend_base),
            "--encoding", "float32"]  # fmt: skip
    out = tmp_path / "grid.nc"
    assert main([*base, "--previous", str(frames[0]), "--out", str(out)]) == 0
    stored, attrs = read_grid(out)
    assert json.loads(attrs["provenance"])["trend_from"] == frames[0].name
    scorer = EmbeddedScorer(trend_base / "lightning" / "1")
    expected = nowcast_frame(image(frames[15]), all_flashes(scenario), scorer, image(frames[0]).values)
    np.testing.assert_allclose(stored, expected.probability, atol=1e-6, equal_nan=True)
    capsys.readouterr()
    # without --previous: the worker's policy, no change (ir_trend 0), said in the grid and in the summary
    assert main([*base, "--out", str(tmp_path / "none.nc")]) == 0
    assert json.loads(capsys.readouterr().out)["trend"] == "missing"
    unchanged, attrs = read_grid(tmp_path / "none.nc")
    assert json.loads(attrs["provenance"])["trend_missing"] == "not_given"
    same = nowcast_frame(image(frames[15]), all_flashes(scenario), scorer, image(frames[15]).values)
    np.testing.assert_allclose(unchanged, same.probability, atol=1e-6, equal_nan=True)
    # a --previous that is not the frame 15 minutes earlier is refused, naming why
    assert main([*base, "--previous", str(frames[3]), "--out", str(tmp_path / "wrong.nc")]) == 2
    assert "starts 12.0 min before the frame; ir_trend needs 15 min ± 90 s" in capsys.readouterr().err
    assert not (tmp_path / "wrong.nc").exists()


@pytest.mark.slow
def test_a_three_channel_model_passes_the_gate(trend_base: Path) -> None:
    from models.repository import ModelRepository
    from models.validation import validate

    report = validate(ModelRepository(trend_base), "lightning", 1)
    assert report.checks["signatures"] == "ok"  # three channels in, as the card says
    assert 0.0 <= report.checks["golden_range"][0] <= report.checks["golden_range"][1] <= 1.0
    assert report.checks["dense_patch_max_difference"] <= 1e-5
    # the physics contract ran on the trend set's scenes; random weights need not keep it, nothing else failed
    assert len(report.checks["behaviour"]) >= 8
    assert all(problem.startswith("behaviour") for problem in report.problems), report.problems


@pytest.mark.slow
def test_tfserving_scores_a_three_channel_model_as_embedded(trend_base: Path) -> None:
    from serve.scoring import get_scorer
    from serve.scoring.settings import ScorerSettings, TFServingSettings
    from serve.scoring.tfserving import TFServingScorer
    from tests.support.tfs_standin import serve

    rng = np.random.default_rng(4)
    x = np.zeros((90, 131, 3), np.float32)  # ir, ltg (bounded: 0.15 a flash) and ir_trend, in their ranges
    x[..., 0] = rng.uniform(0, 0.6, x.shape[:2])
    x[..., 1] = np.minimum(0.15 * rng.poisson(0.05, x.shape[:2]), 1.0)
    x[..., 2] = rng.uniform(-1, 1, x.shape[:2])
    standin = serve(trend_base, 0, 0)
    try:
        scorer = get_scorer(
            trend_base / "lightning" / "1",
            ScorerSettings(
                backend="tfserving", tile=40, tfserving=TFServingSettings(target=f"127.0.0.1:{standin.grpc_port}")
            ),  # fmt: skip
        )
        assert isinstance(scorer, TFServingScorer)
        assert scorer.feature_set.key == "ir-ltg-trend/2"
        served = scorer.score(x)
        scorer.close()
    finally:
        standin.stop()
    reference = EmbeddedScorer(trend_base / "lightning" / "1", ScorerSettings(tile=40)).score(x)
    np.testing.assert_allclose(served, reference, rtol=0, atol=1e-6)
    flat = x.copy()
    flat[..., 2] = 0.0
    assert float(np.abs(reference - EmbeddedScorer(trend_base / "lightning" / "1").score(flat)).max()) > 0.01


@pytest.mark.slow
def test_the_nowcast_benchmark_gives_a_temporal_model_the_frame_15_minutes_before() -> None:
    from ltgcast.nowcasting import simulated_pair

    now, flashes, before = simulated_pair("M1", 3, 15.0)
    assert previous_problem(now, before, 15.0) is None
    assert now.scan_start - before.scan_start == timedelta(minutes=15)
    assert flashes.time.size > 0
