"""The worker against the real Kafka broker: frame events in, grids stored, grid events out, offsets committed."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from ingest.bus import get_bus
from ingest.events import FRAMES_TOPIC, GRIDS_TOPIC, FrameEvent, GridEvent
from ingest.filenames import parse_filename
from ingest.synthetic import ScenarioConfig, simulate
from ingest.testing import FakeClock
from monitor.metrics import CONSUMER_LAG
from serve.scoring import EmbeddedScorer
from serve.store import FileGridStore
from serve.worker import NowcastWorker, WorkerSettings

pytestmark = pytest.mark.kafka

# A date no other run uses: the shared topics hold every earlier run's events, which this worker counts as too old
# (3-hour steps over 34 years: two runs fall within the 1-hour age limit of each other with odds of 1 in 100 000).
START = datetime(2030, 1, 2, 12, 0, tzinfo=UTC) + timedelta(hours=3 * (uuid.uuid4().int % 100_000))


def test_worker_on_kafka(kafka_address: str, model_base: Path, tmp_path: Path) -> None:
    paths = simulate(ScenarioConfig(out=tmp_path / "sim", sector="M1", start=START, minutes=17, seed=8))
    frames = sorted(p for p in paths if "_ABI-" in p.name)[-2:]
    bus = get_bus(f"kafka://{kafka_address}")
    for path in sorted(p for p in paths if "_GLM-" in p.name) + frames:
        event = FrameEvent.of(parse_filename(path), uri=str(path), source_uri=str(path), size=path.stat().st_size,
                              ingest_time=START)  # fmt: skip
        bus.publish(FRAMES_TOPIC, event.key, event.to_json())
    clock = FakeClock(START + timedelta(minutes=18))
    group = f"test-worker-{uuid.uuid4().hex[:8]}"
    store = FileGridStore(tmp_path / "grids")
    worker = NowcastWorker(bus, EmbeddedScorer(model_base / "lightning" / "1"), store, clock,
                           WorkerSettings(group=group))  # fmt: skip
    for partition in range(3):  # as in a fresh process (the registry is global)
        CONSUMER_LAG.remove(FRAMES_TOPIC, str(partition))
    deadline = time.monotonic() + 60
    while worker.outcomes["scored"] < 2 and time.monotonic() < deadline:
        worker.step(timeout_s=1.0)
    clock.advance(10.0)  # the next step reads the lag from the brokers
    worker.step(timeout_s=1.0)
    lag = [REGISTRY.get_sample_value("ltgcast_consumer_lag_messages", {"topic": FRAMES_TOPIC, "partition": str(p)})
           for p in range(3)]  # fmt: skip
    assert all(value is not None and value >= 0 for value in lag), lag  # one gauge per partition of the topic
    worker.close()
    assert worker.outcomes["scored"] == 2
    assert [g.frame for g in worker.grids] == [p.name for p in frames]
    assert len(list(store.root.rglob("*.nc"))) == 2

    mine = {g.grid_id for g in worker.grids}
    seen: list[GridEvent] = []
    reader = bus.subscribe([GRIDS_TOPIC], group=f"test-{uuid.uuid4().hex[:8]}")
    deadline = time.monotonic() + 20
    while len(seen) < 2 and time.monotonic() < deadline:
        seen += [g for m in reader.poll(1.0, 500) if (g := GridEvent.from_json(m.value)).grid_id in mine]
    reader.close()
    assert sorted(g.grid_id for g in seen) == sorted(mine)

    again = bus.subscribe([FRAMES_TOPIC], group=group)  # the worker's group: everything it read was committed
    left = [FrameEvent.from_json(m.value) for m in again.poll(3.0, 500)]
    again.close()
    assert [e.name for e in left if e.name in {p.name for p in paths}] == []
