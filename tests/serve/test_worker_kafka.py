"""Workers against the real Kafka broker: frames shared by load, GLM read whole by each, rebalances and restarts.

Files are announced by the real ingest daemon (a spool folder, a fake clock), as in production; every test has
a Kafka namespace of its own, so its topics hold only its events. The workers' clocks are fake and never reach
the GLM deadline unless a test moves them: a frame is scored only once its lightning context is complete.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from ingest.bus import Bus, get_bus
from ingest.checkpoint import Checkpoint
from ingest.daemon import IngestDaemon
from ingest.events import FRAMES_TOPIC, GRIDS_TOPIC, FrameEvent, GridEvent
from ingest.quarantine import Quarantine
from ingest.sources import FrameFilter
from ingest.sources.spool import DirSpool
from ingest.synthetic import ScenarioConfig, simulate
from monitor.metrics import CONSUMER_LAG
from serve.scoring import EmbeddedScorer
from serve.stores.files import FileGridStore
from serve.worker.loop import NowcastWorker
from serve.worker.settings import WorkerSettings
from tests.support.clock import FakeClock

pytestmark = pytest.mark.kafka

START = datetime(2030, 1, 2, 12, 0, tzinfo=UTC)
NOW = START + timedelta(minutes=30)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """24 minutes of M1: the last 8 frames have their whole 15-minute GLM window."""
    return simulate(ScenarioConfig(out=tmp_path_factory.mktemp("sim"), sector="M1", start=START, minutes=24, seed=8))


@pytest.fixture(scope="module")
def second_sector(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The same minutes of M2 elsewhere on the disk (the satellite's GLM comes with the M1 scenario)."""
    return simulate(ScenarioConfig(out=tmp_path_factory.mktemp("m2"), sector="M2", start=START, minutes=24, seed=9,
                                   meso_center=(41.0, -88.0), glm=False))  # fmt: skip


def frames_of(paths: list[Path], count: int) -> list[Path]:
    return sorted(p for p in paths if "_ABI-" in p.name)[-count:]


def granules_of(paths: list[Path]) -> list[Path]:
    return sorted(p for p in paths if "_GLM-" in p.name)


@pytest.fixture
def bus(kafka_address: str) -> Iterator[Bus]:
    shared = get_bus(f"kafka://{kafka_address}?namespace=test-{uuid.uuid4().hex[:10]}")
    yield shared
    shared.close()


def announce(bus: Bus, paths: list[Path], spool: Path, sectors: tuple[str, ...] = ("M1",)) -> None:
    """Copy ``paths`` into ``spool`` and let the real ingest daemon announce them (two polls 3 s apart)."""
    spool.mkdir(exist_ok=True)
    for path in paths:
        shutil.copy(path, spool / path.name)
    clock = FakeClock(NOW)
    checkpoint = Checkpoint.open(spool.parent / f"state-{spool.name}")
    try:
        daemon = IngestDaemon(DirSpool(spool, clock, settle_s=2.0), bus, checkpoint, Quarantine(spool.parent / "q"),
                              clock, frame_filter=FrameFilter(sectors=sectors, bands=(13,)))  # fmt: skip
        daemon.poll_once()
        clock.advance(3)
        daemon.poll_once()
    finally:
        checkpoint.close()


def worker(bus: Bus, model_base: Path, store: Path, clock: FakeClock | None = None) -> NowcastWorker:
    return NowcastWorker(bus, EmbeddedScorer(model_base / "lightning" / "1"), FileGridStore(store),
                         clock or FakeClock(NOW), WorkerSettings(group="workers", poll_timeout_s=0.2))  # fmt: skip


def run_until(workers: list[NowcastWorker], done: Callable[[], bool], limit_s: float = 180.0) -> None:
    """Step every worker until ``done``; the limit only stops a hang (a loaded CI machine scores an M1 frame in 8 s)."""
    deadline = time.monotonic() + limit_s
    while not done():
        partitions = [sorted(p for _, p in w.assignment) for w in workers]
        assert time.monotonic() < deadline, (
            f"not done within {limit_s} s; per worker: partitions {partitions}, "
            f"frames waiting {[len(w.pending) for w in workers]}, outcomes {[dict(w.outcomes) for w in workers]}"
        )
        for w in workers:
            w.step()


def scored(*workers: NowcastWorker) -> int:
    return sum(w.outcomes["scored"] + w.outcomes["scored_out_of_order"] for w in workers)


def grid_events(bus: Bus) -> list[GridEvent]:
    reader = bus.broadcast(GRIDS_TOPIC, lookback_s=None)
    events: list[GridEvent] = []
    deadline = time.monotonic() + 10
    while not reader.caught_up() and time.monotonic() < deadline:
        events += [GridEvent.from_json(m.value) for m in reader.poll(0.5)]
    reader.close()
    return events


def test_three_workers_share_two_sectors_and_each_has_all_the_lightning(
    bus: Bus, model_base: Path, scenario: list[Path], second_sector: list[Path], tmp_path: Path
) -> None:
    frames = frames_of(scenario, 8) + frames_of(second_sector, 8)
    trio = [worker(bus, model_base, tmp_path / "grids") for _ in range(3)]
    run_until(trio, lambda: [len(w.assignment) for w in trio] == [4, 4, 4])  # all in the group, 4 partitions each
    announce(bus, granules_of(scenario) + frames, tmp_path / "spool", sectors=("M1", "M2"))
    run_until(trio, lambda: scored(*trio) >= 16)
    for w in trio:
        w.close()
    assert all(scored(w) >= 2 for w in trio), [dict(w.outcomes) for w in trio]  # shared by load, not by sector
    events = grid_events(bus)
    assert sorted(e.frame for e in events) == sorted(p.name for p in frames)  # each frame once
    assert [e.glm_missing for e in events] == [0] * 16  # no worker scored without the lightning on the bus
    assert min(e.glm_used for e in events) >= 45


def test_frames_waiting_for_glm_survive_their_partition_moving_away_and_back(bus: Bus, model_base: Path,
                                                                              scenario: list[Path],
                                                                              tmp_path: Path) -> None:  # fmt: skip
    frames = frames_of(scenario, 8)  # on 8 partitions in a row: some on each half of the 12
    announce(bus, frames, tmp_path / "spool")  # the GLM is late
    first = worker(bus, model_base, tmp_path / "grids")
    run_until([first], lambda: len(first.pending) == 8)
    second = worker(bus, model_base, tmp_path / "grids")  # joins: half the partitions move to it
    pair = [first, second]
    run_until(
        pair,
        lambda: (
            [len(w.assignment) for w in pair] == [6, 6]
            and len(first.pending) < 8
            and len(first.pending) + len(second.pending) == 8
        ),
    )
    second.close()  # leaves: everything moves back to the first
    run_until([first], lambda: len(first.assignment) == 12 and len(first.pending) == 8)
    first.close()  # and the holder goes too, before the GLM came
    assert scored(first, second) == 0
    announce(bus, granules_of(scenario), tmp_path / "spool-glm")
    third = worker(bus, model_base, tmp_path / "grids")  # whoever comes next finds every frame uncommitted
    run_until([third], lambda: scored(third) == 8)
    third.close()
    events = grid_events(bus)
    assert sorted(e.frame for e in events) == sorted(p.name for p in frames)
    assert all(e.glm_missing == 0 for e in events)


def test_a_restarted_worker_rebuilds_its_lightning_context_from_the_glm_topic(bus: Bus, model_base: Path,
                                                                              scenario: list[Path],
                                                                              tmp_path: Path) -> None:  # fmt: skip
    frames, granules = frames_of(scenario, 3), granules_of(scenario)
    announce(bus, granules[:-9] + frames, tmp_path / "spool")  # the last three minutes of GLM are still to come
    first = worker(bus, model_base, tmp_path / "grids")
    run_until([first], lambda: len(first.glm) == len(granules) - 9 and len(first.pending) == 3)
    first.close()  # dies with the frames unscored
    announce(bus, granules[-9:], tmp_path / "spool-late")
    clock = FakeClock(NOW)
    restarted = worker(bus, model_base, tmp_path / "grids", clock)
    run_until([restarted], lambda: scored(restarted) == 3)
    restarted.close()
    events = [e for e in grid_events(bus)]
    assert sorted(e.frame for e in events) == sorted(p.name for p in frames)
    assert [e.glm_missing for e in events] == [0, 0, 0]  # the whole window, rebuilt from the GLM topic
    assert len(restarted.glm) == len(granules)


def test_the_lag_gauge_reads_the_brokers(bus: Bus, model_base: Path, scenario: list[Path], tmp_path: Path) -> None:
    frames = frames_of(scenario, 2)
    announce(bus, granules_of(scenario) + frames, tmp_path / "spool")
    clock = FakeClock(NOW)
    w = worker(bus, model_base, tmp_path / "grids", clock)
    for partition in range(12):  # as in a fresh process (the registry is global)
        CONSUMER_LAG.remove(FRAMES_TOPIC, str(partition))
    run_until([w], lambda: scored(w) == 2)
    clock.advance(10.0)  # the next step reads the lag from the brokers
    w.step(timeout_s=1.0)
    lag = [REGISTRY.get_sample_value("ltgcast_consumer_lag_messages", {"topic": FRAMES_TOPIC, "partition": str(p)})
           for p in range(12)]  # fmt: skip
    w.close()
    assert lag == [0.0] * 12  # one gauge per partition of the topic, all committed
    assert len(list((tmp_path / "grids").rglob("*.nc"))) == 2
    again = bus.subscribe([FRAMES_TOPIC], group="workers")  # the workers' group: everything was committed
    left = [FrameEvent.from_json(m.value) for m in again.poll(3.0, 500)]
    again.close()
    assert left == []


def test_workers_of_a_temporal_model_find_each_frames_predecessor_on_any_partition(
    bus: Bus, scenario: list[Path], tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The frame 15 minutes before is 15 slots back: another partition, often the other worker's. Each worker
    reads the frame topic whole and reads the predecessor's file; nobody scores without the trend."""
    import json

    from serve.stores.gridfile import read_grid
    from tests.support.models import trend_repository

    base = trend_repository(tmp_path_factory)
    abi = frames_of(scenario, 24)
    predecessors, frames = abi[1:9], abi[16:]  # the predecessors' GLM windows are incomplete: they never score
    pair = [worker(bus, base, tmp_path / "grids") for _ in range(2)]
    run_until(pair, lambda: [len(w.assignment) for w in pair] == [6, 6])
    announce(bus, granules_of(scenario) + predecessors + frames, tmp_path / "spool")
    run_until(pair, lambda: scored(*pair) >= 8)
    for w in pair:
        w.close()
    assert [len(w.scoring.previous.index) for w in pair] == [16, 16]  # every partition's frames, in each worker
    assert sum(w.scoring.previous.reads for w in pair) == 8
    events = sorted(grid_events(bus), key=lambda e: e.scan_start)  # (the store hides grids of 2030 from today's clock)
    assert [e.frame for e in events] == [p.name for p in frames]
    trends = [json.loads(read_grid(Path(e.uri))[1]["provenance"]) for e in events]
    assert [t["trend"] for t in trends] == ["ok"] * 8
    assert [t["trend_from"] for t in trends] == [p.name for p in predecessors]
