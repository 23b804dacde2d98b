"""The worker's named parts alone (GLM index, offset ledger, sink feed) and the loop's fault handling in-process:
a rebalance releasing frames, a bogus copy of a real frame, a store that fails once, an announcement that fails
once, a GLM topic read whole by two workers; plus the breaker, retired scorers and bounded metrics."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY

from foundation.clock import SystemClock, wait_until
from foundation.errors import EventError, IngestError, StoreError
from foundation.files import atomic_path, atomic_write_text
from foundation.retry import Retry
from ingest.bus import InProcessBus, Message
from ingest.events import DEADLETTER_TOPIC, FRAMES_TOPIC, GRIDS_TOPIC, DeadLetterEvent, FrameEvent, GridEvent
from ingest.readers import read_product
from ingest.synthetic import ScenarioConfig, simulate
from monitor.quality import record_prediction
from serve.scoring import EmbeddedScorer
from serve.scoring.tfserving import CircuitBreaker
from serve.stores.files import FileGridStore
from serve.worker.glm import GlmIndex
from serve.worker.ledger import OffsetLedger
from serve.worker.loop import NowcastWorker
from serve.worker.settings import WorkerSettings
from serve.worker.sinks import SinkFeed
from tests.support.clock import FakeClock
from tests.support.frames import frame_event, publish_frames

START = datetime(2024, 6, 15, 20, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return simulate(ScenarioConfig(out=tmp_path_factory.mktemp("sim"), sector="M1", start=START, minutes=18, seed=6))


def event_of(path: Path, uri: str | None = None) -> FrameEvent:
    return frame_event(path, START, uri=uri)


def announce(bus: InProcessBus, path: Path, uri: str | None = None) -> FrameEvent:
    return publish_frames(bus, [path], START, uri=uri)[0]


def abi(paths: list[Path]) -> list[Path]:
    return sorted(p for p in paths if "_ABI-" in p.name)


def glm(paths: list[Path]) -> list[Path]:
    return sorted(p for p in paths if "_GLM-" in p.name)


def drain(worker: NowcastWorker, steps: int = 200) -> None:
    for _ in range(steps):
        if not worker.step(timeout_s=0) and worker.idle():
            return


# -- the GLM index ----------------------------------------------------------------------------------------------------
def test_a_window_is_complete_once_covered_and_the_stream_has_passed_its_end(scenario: list[Path]) -> None:
    index = GlmIndex(read_product)
    granules = [event_of(p) for p in glm(scenario)]
    frame = event_of(abi(scenario)[-1])
    lo, hi = frame.start - timedelta(minutes=15), frame.start
    for granule in granules:
        if granule.end <= hi - timedelta(seconds=30):
            assert index.add(granule)
    early = index.window(frame.satellite, lo, hi)
    assert early.coverage > 0.9  # the last half minute is missing: not complete
    assert (early.reached, early.complete) == (False, False)
    for granule in granules:
        index.add(granule)
    assert not index.add(granules[0])  # known already
    window = index.window(frame.satellite, lo, hi)
    assert window.complete
    assert window.coverage == pytest.approx(1.0)
    assert len(window.granules) in (45, 46)
    assert index.window("G18", lo, hi).granules == ()  # another satellite's window is its own


def test_impossible_granules_are_refused_and_old_ones_pruned(scenario: list[Path]) -> None:
    index = GlmIndex(read_product)
    granule = event_of(glm(scenario)[0])
    doc = granule.to_json().replace(granule.scan_end.encode(), b"2024-06-15T23:00:00.000Z")
    with pytest.raises(EventError):
        index.add(FrameEvent.from_json(doc))  # the name disagrees with the times
    with pytest.raises(EventError, match="expected a GLM granule event"):
        index.add(event_of(abi(scenario)[0]))
    for path in glm(scenario):
        index.add(event_of(path))
    total = len(index)
    assert index.prune(START + timedelta(minutes=10)) == 29  # ended before 20:10 (the one ending at 20:10 stays)
    assert len(index) == total - 29


def test_granules_from_the_future_are_refused_by_the_index_clock(scenario: list[Path]) -> None:
    granules = [event_of(p) for p in glm(scenario)]
    now = granules[0].start - timedelta(seconds=300)  # the first granule is exactly at the tolerance
    index = GlmIndex(read_product, now=lambda: now)
    assert index.add(granules[0])
    with pytest.raises(EventError, match=r"is from the future: scan start 2024-06-15T20:00:20Z is 320 s ahead"):
        index.add(granules[1])
    assert len(index) == 1
    assert index.newest() == granules[0].end  # the stream has not "reached" anything beyond what was accepted
    roomy = GlmIndex(read_product, now=lambda: now, future_tolerance_s=3600.0)
    assert all(roomy.add(g) for g in granules[:3])


def test_flashes_are_read_once_cached_within_a_bound_and_a_wrong_file_is_left_out(scenario: list[Path]) -> None:
    reads: list[str] = []

    def read(path: Path) -> object:
        reads.append(path.name)
        return read_product(path)

    index = GlmIndex(read, cache_granules=5)
    events = [event_of(p) for p in glm(scenario)[:8]]
    for event in events:
        index.add(event)
    _, used, unreadable, _ = index.flashes(events)
    assert (len(used), unreadable, index.cached) == (8, 0, 5)
    index.flashes(events[-5:])
    assert len(reads) == 8  # the last five were still in the cache
    liar = FrameEvent.from_json(events[0].to_json().replace(events[0].uri.encode(), events[1].uri.encode()))
    fresh = GlmIndex(read_product)
    _, used, unreadable, io_errors = fresh.flashes([liar])
    assert (used, unreadable, io_errors) == ([], 1, 0)  # the URI holds another granule than the one named


# -- the offset ledger ------------------------------------------------------------------------------------------------
def test_the_ledger_commits_only_done_prefixes_and_forgets_dropped_partitions() -> None:
    ledger = OffsetLedger()
    messages = [Message("t", "k", b"", partition, offset) for partition in (0, 1) for offset in range(3)]
    for message in messages:
        assert ledger.track(message)
    assert not ledger.track(messages[1])  # re-delivered while in flight: never handled twice
    ledger.done(messages[1])
    ledger.done(messages[3])
    assert [(m.partition, m.offset) for m in ledger.committable()] == [(1, 0)]
    ledger.done(messages[0])
    assert [(m.partition, m.offset) for m in ledger.committable()] == [(0, 1), (1, 0)]  # until committed
    ledger.committed(messages[1])  # the commit of partition 1's failed: it stays committable
    assert [(m.partition, m.offset) for m in ledger.committable()] == [(1, 0)]
    assert ledger.open() == 3
    assert ledger.drop([("t", 1)]) == 2
    ledger.done(messages[4])  # its partition went: nothing happens
    assert (ledger.open(), ledger.committable()) == (1, [])


# -- the loop's fault handling ----------------------------------------------------------------------------------------
Setup = tuple[InProcessBus, FakeClock, FileGridStore, EmbeddedScorer]


@pytest.fixture
def setup(model_base: Path, tmp_path: Path) -> Setup:
    return (InProcessBus(), FakeClock(START + timedelta(minutes=20)), FileGridStore(tmp_path / "grids"),
            EmbeddedScorer(model_base / "lightning" / "1"))  # fmt: skip


def test_two_workers_on_one_bus_each_read_the_glm_topic_whole(scenario: list[Path], setup: Setup) -> None:
    bus, clock, store, scorer = setup
    for path in glm(scenario):
        announce(bus, path)
    pair = [NowcastWorker(bus, scorer, store, clock, WorkerSettings(group=g)) for g in ("a", "b")]
    for worker in pair:
        drain(worker)
    assert [worker.outcomes["glm"] for worker in pair] == [len(glm(scenario))] * 2


def test_a_rebalance_releases_the_frames_of_partitions_that_went(scenario: list[Path], setup: Setup) -> None:
    bus, clock, store, scorer = setup
    worker = NowcastWorker(bus, scorer, store, clock, WorkerSettings(glm_deadline_s=600))
    announce(bus, abi(scenario)[-1])  # waits for its GLM
    worker.step(timeout_s=0)
    assert len(worker.pending) == 1
    before = REGISTRY.get_sample_value("ltgcast_worker_released_frames_total") or 0.0
    worker.revoked([(FRAMES_TOPIC, 0)])  # what the listener hears inside a poll
    worker.step(timeout_s=0)
    assert (worker.pending, worker.ledger.open()) == ([], 0)  # let go, never committed
    assert REGISTRY.get_sample_value("ltgcast_worker_released_frames_total") == before + 1
    assert bus.subscribe([FRAMES_TOPIC], "ltgcast-worker").poll(0) != []  # the next owner finds it


def test_a_partition_given_back_after_a_split_join_is_read_again_and_its_polled_copy_skipped(
    scenario: list[Path], setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus, clock, store, scorer = setup
    worker = NowcastWorker(bus, scorer, store, clock, WorkerSettings(glm_deadline_s=600))
    rewound: list[list[tuple[str, int]]] = []
    monkeypatch.setattr(worker.subscription, "rewind", lambda partitions: rewound.append(list(partitions)))
    announce(bus, abi(scenario)[-2])
    worker.step(timeout_s=0)
    assert len(worker.pending) == 1
    worker.revoked([(FRAMES_TOPIC, 0)])  # a join that spans polls: revoked now, nothing assigned yet
    worker.step(timeout_s=0)
    assert (worker.pending, rewound) == ([], [])  # let go
    announce(bus, abi(scenario)[-1])  # the consumer kept its position: this one comes next, past the dropped one
    worker.assigned([(FRAMES_TOPIC, 0)])  # the join ends: the partition comes back
    worker.step(timeout_s=0)
    assert rewound == [[(FRAMES_TOPIC, 0)]]  # read again from the committed offset
    assert (worker.pending, worker.ledger.open()) == ([], 0)  # the copy polled past the dropped frame is skipped
    assert worker.outcomes["scored"] == 0


def test_a_bogus_copy_of_a_real_frame_never_hides_it(scenario: list[Path], setup: Setup, tmp_path: Path) -> None:
    bus, clock, store, scorer = setup
    for path in glm(scenario):
        announce(bus, path)
    frame = abi(scenario)[-1]
    announce(bus, frame, uri=str(abi(scenario)[-2]))  # its name, another frame's file
    announce(bus, frame)  # the real one, right behind
    worker = NowcastWorker(bus, scorer, store, clock)
    drain(worker)
    assert (worker.outcomes["failed"], worker.outcomes["scored"]) == (1, 1)
    letter = DeadLetterEvent.from_json(bus.messages(DEADLETTER_TOPIC)[-1].value)
    assert f"expected the file {frame.name}" in letter.reason
    (grid,) = [GridEvent.from_json(m.value) for m in bus.messages(GRIDS_TOPIC)]
    assert grid.frame == frame.name


class FailingOnce:
    """A file store whose first put fails as a full or read-only disk does."""

    def __init__(self, store: FileGridStore) -> None:
        self.store, self.root, self.calls = store, store.root, 0

    def put(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == 1:
            raise OSError(28, "No space left on device")
        return self.store.put(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def test_a_store_failure_is_retried_after_a_back_off_not_dead_lettered(scenario: list[Path], setup: Setup) -> None:
    bus, clock, store, scorer = setup
    for path in glm(scenario) + abi(scenario)[-1:]:
        announce(bus, path)
    flaky = FailingOnce(store)
    worker = NowcastWorker(bus, scorer, flaky, clock)  # type: ignore[arg-type]
    drain(worker)
    assert (worker.outcomes["scored"], len(worker.pending)) == (0, 1)  # kept, uncommitted
    assert bus.subscribe([FRAMES_TOPIC], "ltgcast-worker").poll(0) != []
    clock.advance(0.5)
    worker.step(timeout_s=0)
    assert flaky.calls == 1  # not before its back-off (1 s)
    clock.advance(1.0)
    drain(worker)
    assert (worker.outcomes["scored"], worker.outcomes["failed"], flaky.calls) == (1, 0, 2)
    assert bus.messages(DEADLETTER_TOPIC) == []
    assert bus.subscribe([FRAMES_TOPIC], "ltgcast-worker").poll(0) == []


def test_a_stored_grid_carries_its_scan_as_the_map_underlay(scenario: list[Path], setup: Setup) -> None:
    from serve.stores.gridfile import read_underlay

    bus, clock, store, scorer = setup
    frame = abi(scenario)[-1]
    for path in [*glm(scenario), frame]:
        announce(bus, path)
    drain(NowcastWorker(bus, scorer, store, clock))
    (stored,) = store.grids("M1")
    image = read_product(frame)
    assert image.band == 13
    underlay = read_underlay(stored.path)
    assert underlay is not None
    np.testing.assert_allclose(underlay, image.values, atol=0.375 + 1e-4)  # 0.75 K steps; NaN where NaN


class GridsDownOnce(InProcessBus):
    """A bus whose first grid announcement fails (the broker is away)."""

    failed = False

    def publish(self, topic: str, key: str, value: bytes, *, slot: int | None = None) -> None:
        if topic == GRIDS_TOPIC and not self.failed:
            self.failed = True
            msg = "Kafka at 127.0.0.1:9092: publishing to ltgcast.grids.v1 failed: KafkaTimeoutError"
            raise IngestError(msg)
        super().publish(topic, key, value, slot=slot)


def test_a_failed_announcement_is_retried_alone_and_the_frame_waits_for_it(scenario: list[Path], setup: Setup,
                                                                            model_base: Path) -> None:  # fmt: skip
    _, clock, store, scorer = setup
    bus = GridsDownOnce()
    for path in glm(scenario) + abi(scenario)[-1:]:
        announce(bus, path)
    reads: list[str] = []

    def read(path: Path) -> object:
        reads.append(Path(path).name)
        return read_product(path)

    worker = NowcastWorker(bus, scorer, store, clock, read=read)
    worker.step(timeout_s=0)
    while worker.step(timeout_s=0):
        pass
    assert (bus.failed, len(worker.unannounced), worker.outcomes["scored"]) == (True, 0, 1)
    assert sum(1 for name in reads if "_ABI-" in name) == 1  # read and scored once; only the announcement again
    assert len(bus.messages(GRIDS_TOPIC)) == 1
    assert bus.subscribe([FRAMES_TOPIC], "ltgcast-worker").poll(0) == []


# -- the extra sinks ----------------------------------------------------------------------------------------------
class MemorySink:
    """Redis as far as the feed needs it: puts, a run id, and which grids it lacks."""

    def __init__(self) -> None:
        self.grids: dict[str, Any] = {}
        self.run_id = "a"
        self.down = False
        self.lock = threading.Lock()

    def put(self, probability: Any, grid: Any, meta: Any, *, encoding: str = "uint8") -> None:
        if self.down:
            msg = "Redis at memory: put failed: ConnectionError"
            raise StoreError(msg)
        with self.lock:
            self.grids[meta.grid_id] = probability

    def instance(self) -> str:
        if self.down:
            msg = "Redis at memory: INFO failed: ConnectionError"
            raise StoreError(msg)
        return self.run_id

    def missing(self, grid_ids: list[str]) -> list[str]:
        return [g for g in grid_ids if g not in self.grids]

    def restart_empty(self) -> None:
        with self.lock:
            self.grids, self.run_id = {}, self.run_id + "'"

    def __str__(self) -> str:
        return "Redis at memory"


def stored_grids(scenario: list[Path], store: FileGridStore, scorer: EmbeddedScorer, count: int) -> list[Any]:
    bus, clock = InProcessBus(), FakeClock(START + timedelta(minutes=20))
    for path in glm(scenario) + abi(scenario)[-count:]:
        announce(bus, path)
    drain(NowcastWorker(bus, scorer, store, clock))
    return store.grids("M1")


def test_a_sink_feed_retries_and_puts_back_what_a_restarted_sink_lost(
    scenario: list[Path], setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING", logger="serve.worker.sinks")
    _, _, store, scorer = setup
    grids = stored_grids(scenario, store, scorer, 3)
    sink = MemorySink()
    feed = SinkFeed(sink, store, SystemClock(), check_s=0.05, first_retry_s=0.05, max_retry_s=0.2).start()
    try:
        assert feed.wait_empty(10)
        # reconciled at start: the store's grids go in
        wait_until(lambda: len(sink.grids) >= 3, "the store's grids in the sink", 10.0, every_s=0.05)
        assert sorted(sink.grids) == [g.grid_id for g in grids]
        sink.down = True
        sink.restart_empty()
        wait_until(lambda: feed.failures >= 1, "the feed noticing the restarted sink", 10.0, every_s=0.05)
        sink.down = False  # back, empty, with a new run id
        wait_until(lambda: len(sink.grids) >= 3, "the grids back-filled", 10.0, every_s=0.05)
        assert sorted(sink.grids) == [g.grid_id for g in grids]
        assert feed.failures >= 1
        assert feed.backfills >= 2
    finally:
        feed.close(timeout_s=1.0)
    retries = [r.getMessage() for r in caplog.records if "trying again in" in r.getMessage()]
    assert retries, "the failed attempts are logged"
    assert all(m.startswith("sink Redis at memory: ") and m.count("Redis at memory") == 1 for m in retries), retries


# -- the breaker, retired scorers, bounded series, atomic writes ------------------------------------------------------
def test_a_trial_call_that_raises_anything_reopens_the_breaker_never_sticks_half_open() -> None:
    now = [0.0]
    breaker = CircuitBreaker(failures=1, cooldown_s=5.0, clock=lambda: now[0])
    retry, clock = Retry(attempts=1), SystemClock()
    breaker.failure()
    now[0] = 5.0
    assert breaker.state == "half-open"

    def closed_channel() -> None:
        msg = "Cannot invoke RPC on closed channel!"
        raise ValueError(msg)

    with pytest.raises(ValueError, match="closed channel"):
        retry.call(closed_channel, clock, transient=(OSError,), what="predict", breaker=breaker)
    assert breaker.state == "open"  # re-opened by the failed trial, not stuck half-open waiting for it
    now[0] = 10.0
    assert retry.call(lambda: 42, clock, transient=(OSError,), what="predict", breaker=breaker) == 42
    assert breaker.state == "closed"


def test_one_prediction_mean_series_per_sector_whatever_the_versions() -> None:
    grid = np.full((4, 4), 0.25, np.float32)
    for version in (101, 102, 103):
        record_prediction("M2", version, grid)
    series = [s for m in REGISTRY.collect() if m.name == "ltgcast_prediction_mean" for s in m.samples
              if s.labels["sector"] == "M2"]  # fmt: skip
    assert [s.labels["model_version"] for s in series] == ["103"]


def test_concurrent_writers_of_one_file_leave_one_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "grid.nc"
    payloads = [bytes([i]) * 200_000 for i in range(8)]
    barrier = threading.Barrier(len(payloads))

    def write(data: bytes) -> None:
        barrier.wait()
        with atomic_path(target) as temporary:
            temporary.write_bytes(data[:100_000])
            time.sleep(0.01)
            temporary.write_bytes(data)

    threads = [threading.Thread(target=write, args=(p,)) for p in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert target.read_bytes() in payloads  # one writer's whole file
    assert [p.name for p in tmp_path.iterdir()] == ["grid.nc"]  # no temporary left behind


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = atomic_write_text(tmp_path / "serving.json", "old")

    def interrupted() -> None:
        with atomic_path(target) as temporary:
            temporary.write_text("half")
            raise RuntimeError

    with pytest.raises(RuntimeError):
        interrupted()
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["serving.json"]
