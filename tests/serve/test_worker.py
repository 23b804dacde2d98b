"""The nowcast worker on the in-process bus: grids, GLM waiting, what is let go, failures, commits, replays."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY

from foundation.errors import IngestError
from ingest.bus import InProcessBus
from ingest.events import DEADLETTER_TOPIC, FRAMES_TOPIC, GLM_TOPIC, GRIDS_TOPIC, DeadLetterEvent, FrameEvent, GridEvent
from ingest.filenames import glm_filename, parse_filename
from ingest.readers import read_product
from ingest.synthetic import ScenarioConfig, simulate
from serve.scoring import EmbeddedScorer
from serve.stores.files import FileGridStore
from serve.stores.gridfile import read_grid
from serve.worker.loop import NowcastWorker
from serve.worker.settings import WorkerSettings
from tests.support.clock import FakeClock
from tests.support.frames import publish_frames

START = datetime(2024, 6, 15, 20, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return simulate(ScenarioConfig(out=tmp_path_factory.mktemp("sim"), sector="M1", start=START, minutes=18, seed=6))


def announce(bus: InProcessBus, path: Path) -> FrameEvent:
    """What the ingest daemon does: frames spread on the frame topic, granules on the GLM topic."""
    return publish_frames(bus, [path], START)[0]


def variant(event: FrameEvent, *, start: datetime | None = None, band: int | None = None,
            sector: str | None = None, uri: str | None = None) -> FrameEvent:  # fmt: skip
    """The event of another file: its name says the new band, sector or scan time, as a real name would."""
    name = parse_filename(event.name)
    when = start or name.scan_start
    stamp = lambda t: f"{t:%Y%j%H%M%S}{t.microsecond // 100_000}"  # noqa: E731
    text = (f"OR_ABI-L1b-Rad{sector or name.sector}-M6C{band or name.band:02d}_{name.satellite}_s{stamp(when)}"
            f"_e{stamp(when + timedelta(seconds=6))}_c{stamp(when + timedelta(seconds=30))}.nc")  # fmt: skip
    return FrameEvent.of(parse_filename(text), uri=uri or event.uri, source_uri=event.source_uri, size=event.size,
                         ingest_time=START)  # fmt: skip


def abi(paths: list[Path]) -> list[Path]:
    return sorted(p for p in paths if "_ABI-" in p.name)


def glm(paths: list[Path]) -> list[Path]:
    return sorted(p for p in paths if "_GLM-" in p.name)


Setup = tuple[InProcessBus, FakeClock, FileGridStore, EmbeddedScorer]


@pytest.fixture
def setup(model_base: Path, tmp_path: Path) -> Setup:
    return (InProcessBus(), FakeClock(START + timedelta(minutes=20)), FileGridStore(tmp_path / "grids"),
            EmbeddedScorer(model_base / "lightning" / "1"))  # fmt: skip


def drain(worker: NowcastWorker) -> None:
    while worker.step(timeout_s=0):
        pass


def test_frames_with_their_glm_become_grids_and_grid_events(scenario: list[Path], setup: Setup) -> None:
    bus, clock, store, scorer = setup
    for path in glm(scenario) + abi(scenario)[-3:]:
        announce(bus, path)
    worker = NowcastWorker(bus, scorer, store, clock)
    drain(worker)
    assert worker.outcomes["scored"] == 3
    grids = [GridEvent.from_json(m.value) for m in bus.messages(GRIDS_TOPIC)]
    assert [g.frame for g in grids] == [p.name for p in abi(scenario)[-3:]]
    assert all(g.glm_missing == 0 and g.glm_used >= 44 for g in grids)  # 15 min of 20-s granules
    for g in grids:
        values, attrs = read_grid(Path(g.uri))
        assert attrs["input_abi_file"] == g.frame
        assert values.shape == (500, 500)
    assert bus.subscribe([FRAMES_TOPIC], "ltgcast-worker").poll(0) == []  # everything was committed


def test_a_frame_waits_for_late_glm_and_goes_without_it_after_the_deadline(scenario: list[Path], setup: Setup) -> None:
    bus, clock, store, scorer = setup
    settings = WorkerSettings(glm_deadline_s=60.0)
    worker = NowcastWorker(bus, scorer, store, clock, settings)
    frame = abi(scenario)[-1]
    announce(bus, frame)
    drain(worker)
    assert not worker.idle()
    assert bus.subscribe([FRAMES_TOPIC], "ltgcast-worker").poll(0) != []  # the waiting frame is not committed
    clock.advance(30)
    granules = glm(scenario)
    for path in granules[: len(granules) // 2]:
        announce(bus, path)
    drain(worker)
    assert worker.outcomes["scored"] == 0  # half the window is covered: still waiting
    clock.advance(31)
    worker.step(timeout_s=0)
    assert worker.outcomes["scored"] == 1
    grid = GridEvent.from_json(bus.messages(GRIDS_TOPIC)[-1].value)
    assert grid.glm_missing > 10
    assert grid.glm_used > 0


def test_what_the_model_does_not_use_is_counted_and_let_go(scenario: list[Path], setup: Setup, tmp_path: Path) -> None:
    bus, clock, store, scorer = setup
    for path in glm(scenario):
        announce(bus, path)
    frame = abi(scenario)[-1]
    announce(bus, frame)
    announce(bus, frame)  # a duplicate
    event = FrameEvent.from_json(bus.messages(FRAMES_TOPIC)[-1].value)
    for other in (variant(event, band=2), variant(event, sector="M2"),
                  variant(event, start=datetime(2024, 6, 15, 17, 0, 24, tzinfo=UTC))):  # fmt: skip
        bus.publish(FRAMES_TOPIC, other.key, other.to_json())
    bus.publish(FRAMES_TOPIC, "M1", b'{"schema": "ltgcast.frame", "version": 1}')
    broken = tmp_path / frame.name
    broken.write_bytes(frame.read_bytes()[:5000])  # truncated
    bad = variant(event, uri=str(broken), start=datetime(2024, 6, 15, 20, 15, 24, tzinfo=UTC))
    bus.publish(FRAMES_TOPIC, bad.key, bad.to_json())
    settings = WorkerSettings(sectors=frozenset({"M1"}), glm_deadline_s=0.0)
    worker = NowcastWorker(bus, scorer, store, clock, settings)
    drain(worker)
    counts = {k: v for k, v in worker.outcomes.items() if k != "glm"}
    assert counts == {"scored": 1, "duplicate": 1, "other_band": 1, "other_sector": 1, "too_old": 1,
                      "bad_event": 1, "failed": 1}  # fmt: skip
    letters = [DeadLetterEvent.from_json(m.value) for m in bus.messages(DEADLETTER_TOPIC)]
    assert sorted(letter.stage for letter in letters) == ["event", "score"]
    assert "missing" in next(letter.reason for letter in letters if letter.stage == "event")
    assert bus.subscribe([FRAMES_TOPIC], "ltgcast-worker").poll(0) == []


def test_frames_and_granules_from_the_future_are_dead_lettered_and_let_go(scenario: list[Path], setup: Setup) -> None:
    bus, clock, store, scorer = setup
    for path in glm(scenario):
        announce(bus, path)
    event = announce(bus, abi(scenario)[-1])
    future = variant(event, start=datetime(2099, 6, 15, 20, 0, 24, tzinfo=UTC))  # a bus is a trust boundary
    bus.publish(FRAMES_TOPIC, future.key, future.to_json())
    when = datetime(2099, 6, 15, 19, 50, tzinfo=UTC)
    name = glm_filename(satellite="G19", scan_start=when, scan_end=when + timedelta(seconds=20),
                        created=when + timedelta(seconds=20))  # fmt: skip
    granule = FrameEvent.of(parse_filename(name), uri=event.uri, source_uri=event.uri, size=1, ingest_time=START)
    bus.publish(GLM_TOPIC, granule.key, granule.to_json())
    frames_before = REGISTRY.get_sample_value("ltgcast_frames_total", {"sector": "M1", "reason": "future"}) or 0
    glm_before = REGISTRY.get_sample_value("ltgcast_worker_bad_glm_events_total") or 0
    worker = NowcastWorker(bus, scorer, store, clock, WorkerSettings(glm_deadline_s=0.0))
    drain(worker)

    assert (worker.outcomes["future"], worker.outcomes["scored"]) == (1, 1)
    assert [g.scan_start for g in store.grids("M1")] == [event.start.replace(microsecond=0)]
    letters = {letter.name: letter for letter in (DeadLetterEvent.from_json(m.value)
                                                  for m in bus.messages(DEADLETTER_TOPIC))}  # fmt: skip
    frame_letter = letters[future.name]
    assert (frame_letter.stage, frame_letter.key) == ("future", "M1")
    assert frame_letter.origin is not None
    assert frame_letter.origin.startswith(f"{FRAMES_TOPIC}/")
    assert "scan start 2099-06-15T20:00:24Z is" in frame_letter.reason
    assert "ahead of the clock (2024-06-15T20:20:00Z); expected at most 300 s ahead" in frame_letter.reason
    (glm_letter,) = [letter for letter in letters.values() if letter.origin and letter.origin.startswith(GLM_TOPIC)]
    assert glm_letter.stage == "event"
    assert f"GLM granule {name} is from the future" in glm_letter.reason
    assert REGISTRY.get_sample_value("ltgcast_frames_total", {"sector": "M1", "reason": "future"}) == frames_before + 1
    assert REGISTRY.get_sample_value("ltgcast_worker_bad_glm_events_total") == glm_before + 1
    assert bus.subscribe([FRAMES_TOPIC], "ltgcast-worker").poll(0) == []  # let go, and committed


def test_a_replay_rewrites_the_same_grids(scenario: list[Path], setup: Setup) -> None:
    bus, clock, store, scorer = setup
    for path in glm(scenario) + abi(scenario)[-2:]:
        announce(bus, path)
    first = NowcastWorker(bus, scorer, store, clock)
    drain(first)
    files = sorted(p.name for p in store.root.rglob("*.nc"))
    again = NowcastWorker(bus, scorer, store, clock, WorkerSettings(group="replay"))  # reads the topic from the start
    drain(again)
    assert again.outcomes["scored"] == 2
    assert sorted(p.name for p in store.root.rglob("*.nc")) == files
    ids = [GridEvent.from_json(m.value).grid_id for m in bus.messages(GRIDS_TOPIC)]
    assert ids[:2] == ids[2:]
    shutil.rmtree(store.root)


class FlakySink:
    """Fails its first ``failures`` puts (as Redis does while down), then takes every grid."""

    def __init__(self, failures: int) -> None:
        self.calls = 0
        self.failures = failures
        self.ids: list[str] = []

    def put(self, probability: object, grid: object, meta: Any, *, encoding: str = "uint8") -> object:
        from foundation.errors import StoreError

        self.calls += 1
        if self.calls <= self.failures:
            msg = "Redis at 127.0.0.1:1: put failed: ConnectionError"
            raise StoreError(msg)
        self.ids.append(meta.grid_id)
        return None


def test_a_failing_sink_loses_nothing_and_a_shadow_model_scores_beside(scenario: list[Path], setup: Setup,
                                                                       model_base: Path) -> None:  # fmt: skip
    from serve.scoring.hotswap import ServingModels

    bus, clock, store, scorer = setup
    shadow = EmbeddedScorer(model_base / "lightning" / "1")
    shadow.version = 7  # a candidate version, as the slot would load it

    class Slot:
        def current(self) -> ServingModels:
            return ServingModels(stable=scorer, shadow=shadow)

    sink = FlakySink(failures=2)
    for path in glm(scenario) + abi(scenario)[-2:]:
        announce(bus, path)
    worker = NowcastWorker(bus, Slot(), store, clock, sinks=(sink,))
    drain(worker)
    assert worker.outcomes["scored"] == 2  # the sink's failures never held a grid back
    assert worker.sinks[0].wait_empty(30.0)  # retried (1 s, then 2 s) until the sink took both
    assert (sink.calls, sink.ids) == (4, [g.grid_id for g in store.grids("M1")])
    worker.close()
    assert [g.version for g in store.grids("M1")] == [1, 1]
    shadows = worker.shadow_store.grids("M1")
    assert [g.version for g in shadows] == [7, 7]
    assert worker.shadow_store.root == store.root / "shadow"
    stable_values, _ = read_grid(store.grids("M1")[-1].path)
    shadow_values, attrs = read_grid(shadows[-1].path)
    np.testing.assert_array_equal(stable_values, shadow_values)  # same weights: the same field, recorded twice
    assert '"role": "shadow"' in attrs["provenance"]


def test_an_unexpected_error_fails_one_frame_and_the_rest_go_on(scenario: list[Path], setup: Setup) -> None:
    bus, clock, store, scorer = setup
    frames = abi(scenario)[-3:]

    def flaky(path: Path) -> object:
        if Path(path).name == frames[1].name:
            msg = "NetCDF: HDF error"
            raise RuntimeError(msg)
        return read_product(path)

    for path in glm(scenario) + frames:
        announce(bus, path)
    worker = NowcastWorker(bus, scorer, store, clock, read=flaky)
    for _ in range(3):
        drain(worker)
    assert (worker.outcomes["scored"], worker.outcomes["failed"]) == (2, 1)
    assert len(bus.messages(GRIDS_TOPIC)) == 2  # never scored or announced twice
    letters = [DeadLetterEvent.from_json(m.value) for m in bus.messages(DEADLETTER_TOPIC)]
    assert [(d.name, d.stage) for d in letters] == [(frames[1].name, "score")]
    assert "RuntimeError: NetCDF: HDF error" in letters[0].reason
    assert worker.idle()


def test_file_uris_are_read_and_each_granule_once(scenario: list[Path], setup: Setup) -> None:
    bus, clock, store, scorer = setup
    reads: list[str] = []

    def counting(path: Path) -> object:
        reads.append(Path(path).name)
        return read_product(path)

    for path in glm(scenario) + abi(scenario)[-3:]:
        event = FrameEvent.of(parse_filename(path), uri=path.resolve().as_uri(), source_uri=path.as_uri(),
                              size=path.stat().st_size, ingest_time=START)  # fmt: skip
        bus.publish(event.topic, event.key, event.to_json())
    worker = NowcastWorker(bus, scorer, store, clock, read=counting)
    drain(worker)
    assert worker.outcomes["scored"] == 3
    granules = [name for name in reads if "_GLM-" in name]
    assert len(granules) == len(set(granules))  # windows overlap; every granule was read once
    assert len(set(granules)) >= 45


def test_drain_scores_the_frames_still_waiting_for_glm(scenario: list[Path], setup: Setup) -> None:
    bus, clock, store, scorer = setup
    worker = NowcastWorker(bus, scorer, store, clock, WorkerSettings(glm_deadline_s=600.0))
    announce(bus, abi(scenario)[-1])
    drain(worker)
    assert not worker.idle()
    worker.drain()
    assert worker.idle()
    assert worker.outcomes["scored"] == 1
    assert bus.subscribe([FRAMES_TOPIC], "ltgcast-worker").poll(0) == []  # and committed


def lag_gauge(topic: str = FRAMES_TOPIC, partition: int = 0) -> float | None:
    return REGISTRY.get_sample_value("ltgcast_consumer_lag_messages", {"topic": topic, "partition": str(partition)})


def test_the_lag_gauge_counts_what_is_not_committed_read_every_ten_seconds(scenario: list[Path],
                                                                          setup: Setup) -> None:  # fmt: skip
    bus, clock, store, scorer = setup
    worker = NowcastWorker(bus, scorer, store, clock, WorkerSettings(glm_deadline_s=60.0))
    announce(bus, abi(scenario)[-1])  # waits for its GLM, and holds back the commits of what comes after it
    granules = glm(scenario)
    for path in granules[:5]:
        announce(bus, path)
    worker.step(timeout_s=0)
    assert (worker.outcomes["glm"], lag_gauge()) == (5, 1)  # the granules are on their own topic, read whole
    announce(bus, abi(scenario)[-2])  # an older frame, behind the waiting one on the partition
    clock.advance(5)
    worker.step(timeout_s=0)
    assert lag_gauge() == 1  # not read again before 10 s
    clock.advance(5)
    worker.step(timeout_s=0)
    assert lag_gauge() == 2
    clock.advance(60)  # the frames' GLM deadline: they are scored, and everything is committed
    worker.step(timeout_s=0)
    assert (worker.outcomes["scored"] + worker.outcomes["scored_out_of_order"], lag_gauge()) == (2, 0)


def test_a_lag_read_that_fails_is_logged_and_the_worker_goes_on(setup: Setup, monkeypatch: pytest.MonkeyPatch,
                                                                caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    bus, clock, store, scorer = setup
    worker = NowcastWorker(bus, scorer, store, clock)
    answers: list[dict[tuple[str, int], int] | Exception] = [
        {("lag-test", 0): 3, ("lag-test", 1): 4},
        IngestError("Kafka at 127.0.0.1:9092: reading the consumer lag failed: KafkaTimeoutError"),
        {},  # a rebalance: no partitions for now
        {("lag-test", 1): 2},  # partition 0 went to another worker of the group
    ]

    def lag() -> dict[tuple[str, int], int]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(worker.subscription, "lag", lag)
    errors_before = REGISTRY.get_sample_value("ltgcast_consumer_lag_errors_total") or 0.0
    seen = []
    for _ in range(4):
        bus.publish(FRAMES_TOPIC, "M1", b'{"schema": "ltgcast.frame", "version": 1}')  # a broken event each time
        assert worker.step(timeout_s=0) == 1
        seen.append((lag_gauge("lag-test", 0), lag_gauge("lag-test", 1)))
        clock.advance(10)
    assert seen == [(3, 4), (3, 4), (None, None), (None, 2)]  # a failed read keeps; no partitions withdraws
    assert worker.lag_errors == 1
    assert REGISTRY.get_sample_value("ltgcast_consumer_lag_errors_total") == errors_before + 1
    assert "could not read the consumer lag: Kafka at 127.0.0.1:9092" in caplog.text
    assert worker.outcomes["bad_event"] == 4
    assert bus.subscribe([FRAMES_TOPIC], "ltgcast-worker").poll(0) == []  # every step committed all the same


def test_a_scorer_failure_is_counted_as_a_scorer_error(scenario: list[Path], setup: Setup,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    import tensorflow as tf

    bus, clock, store, scorer = setup

    def broken(tile: object) -> object:
        raise tf.errors.InternalError(None, None, "CUDA error: an illegal memory access")

    monkeypatch.setattr(scorer, "_dense", broken)
    for path in glm(scenario) + abi(scenario)[-1:]:
        announce(bus, path)
    labels = {"backend": "embedded", "reason": "other"}
    before = REGISTRY.get_sample_value("ltgcast_scorer_errors_total", labels)
    assert before is not None  # created at 0 with the scorer
    worker = NowcastWorker(bus, scorer, store, clock)
    drain(worker)
    assert worker.outcomes["failed"] == 1
    assert REGISTRY.get_sample_value("ltgcast_scorer_errors_total", labels) == before + 1
    letter = DeadLetterEvent.from_json(bus.messages(DEADLETTER_TOPIC)[-1].value)
    assert "CUDA error" in letter.reason
