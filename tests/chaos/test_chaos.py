"""The distributed mode under faults: the ingest daemon and two or three workers as real processes.

Every scenario feeds the same simulated M1 (GOES-East) and CONUS (GOES-West) minutes through a spool, injects
one fault, waits until the cluster settles by itself, and asserts the targets: **0 grids lost, 0 conflicting
duplicates, 0 grids made without GLM that was on the bus, every process back and ready on its own**, dead
letters only for what was injected, and every grid in Redis (back-filled after a Redis restart). The table of
every scenario is printed at the end of the run (and written to ``var/chaos/report.json``).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from foundation.clock import wait_until
from ingest.bus import get_bus
from ingest.events import DEADLETTER_TOPIC, FRAMES_TOPIC, GLM_TOPIC, GRIDS_TOPIC, FrameEvent
from ingest.filenames import format_goes_time, parse_filename
from tests.chaos.harness import ROOT, Account, Cluster, Feed, service_pid, services_script
from tests.support.models import served_version

pytestmark = [pytest.mark.chaos, pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]

PACE_S = 0.3  # seconds between two minutes of files in the spool
SETTLE_S = 240.0  # the longest a scenario may take to settle after its fault (a liveness bound)
REDIS_DB = {"none": 8, "worker": 9, "rebalance": 10, "ingest": 11, "broker": 12, "redis": 13, "store": 14,
            "malformed": 15, "moved": 7}  # fmt: skip


@pytest.fixture
def cluster(request: pytest.FixtureRequest, tmp_path: Path, kafka_address: str, redis_address: str) -> Any:
    name = request.node.callspec.params.get("name") if hasattr(request.node, "callspec") else None
    key = name or request.node.name.removeprefix("test_").split("_")[0]
    made = Cluster(tmp_path / "cluster", kafka_address, redis_address, REDIS_DB[key], name=key)
    yield made
    made.stop()


def start(cluster: Cluster, workers: tuple[str, ...] = ("w1", "w2")) -> None:
    """Start the daemon and the workers (the feed may begin at once: frames wait on the bus for the workers)."""
    cluster.ingest()
    for name in workers:
        cluster.worker(name)


def settle(cluster: Cluster, feed: Feed, workers: tuple[str, ...], scenario: str, report: list[dict[str, Any]],
           *, dead_letters: int = 0, **notes: Any) -> Account:  # fmt: skip
    """Wait for every grid (files and Redis), account, record the row, and assert the targets."""
    wait_until(lambda: cluster.grids_stored() >= len(feed.frames), f"{scenario}: every grid stored\n{cluster.logs()}",
               SETTLE_S, every_s=1.0)  # fmt: skip
    wait_until(lambda: redis_count(cluster) >= len(feed.frames), f"{scenario}: every grid in Redis\n{cluster.logs()}",
               120.0, every_s=1.0)  # fmt: skip
    if dead_letters:  # a dead letter may follow the last grid (a file read is tried again first)
        wait_until(lambda: cluster.dead_letters() >= dead_letters, f"{scenario}: {dead_letters} dead letters\n"
                   f"{cluster.logs()}", 120.0, every_s=2.0)  # fmt: skip
    for name in workers:
        cluster.ready(cluster.processes[name], limit_s=60.0)
    account = cluster.account(scenario, feed, workers=workers)
    account.notes.update(notes)
    report.append(account.row())
    targets = (account.grids_lost, account.conflicting, account.without_glm, account.dead_letters, account.recovered)
    assert targets == (0, 0, 0, dead_letters, True), f"{account.row()}\n{cluster.logs()}"
    assert account.redis_grids == account.grids_expected, account.row()
    return account


def redis_count(cluster: Cluster) -> int:
    client = cluster.redis()
    try:
        return sum(1 for _ in client.scan_iter(match="ltgcast:grid:*"))
    except OSError:
        return 0
    finally:
        client.close()


def frames_scored(cluster: Cluster, name: str) -> float:
    return cluster.metric(cluster.processes[name], "ltgcast_frames_total", {"reason": "scored"}) + cluster.metric(
        cluster.processes[name], "ltgcast_frames_total", {"reason": "scored_out_of_order"}
    )


def stored_at_least(cluster: Cluster, count: int, what: str) -> None:
    wait_until(lambda: cluster.grids_stored() >= count, f"{count} grids stored ({what})\n{cluster.logs()}", SETTLE_S)


def assigned(cluster: Cluster, name: str) -> float:
    return cluster.metric(cluster.processes[name], "ltgcast_worker_assigned_partitions")


def test_none(cluster: Cluster, feed: Feed, report: list[dict[str, Any]]) -> None:
    start(cluster)
    wait_until(lambda: [assigned(cluster, w) for w in ("w1", "w2")] == [6, 6], "both workers in the group", SETTLE_S)
    cluster.feed(feed.steps(), PACE_S)
    account = settle(cluster, feed, ("w1", "w2"), "none (2 workers)", report)
    shares = [frames_scored(cluster, name) for name in ("w1", "w2")]
    account.notes["scored_per_worker"] = shares
    report[-1] = account.row()
    assert sum(shares) >= len(feed.frames)
    assert all(0.35 <= share / sum(shares) <= 0.65 for share in shares), shares  # shared by load


def test_worker_killed_while_scoring(cluster: Cluster, feed: Feed, report: list[dict[str, Any]]) -> None:
    start(cluster)
    feeding = cluster.feed_in_background(feed.steps(), PACE_S)
    stored_at_least(cluster, 4, "before the kill")
    cluster.ready(cluster.processes["w1"])
    killed_at, before = time.monotonic(), cluster.grids_stored()
    cluster.kill("w1")  # kill -9 while the frames of a poll are being scored
    wait_until(lambda: assigned(cluster, "w2") == 12, "the survivor holds every partition", SETTLE_S)
    takeover = round(time.monotonic() - killed_at, 1)
    feeding.join()
    cluster.worker("w1")  # restarted
    settle(cluster, feed, ("w1", "w2"), "kill -9 a worker while scoring, restart it", report,
           stored_at_kill=before, takeover_s=takeover)  # fmt: skip


def test_rebalance_join_and_leave(cluster: Cluster, feed: Feed, report: list[dict[str, Any]]) -> None:
    start(cluster)
    feeding = cluster.feed_in_background(feed.steps(), PACE_S * 3)
    stored_at_least(cluster, 3, "before a third worker joins")
    cluster.worker("w3")
    cluster.ready(cluster.processes["w3"])
    stored_at_least(cluster, 8, "before the first worker leaves")
    cluster.kill("w1", signal.SIGTERM)  # leaves the group cleanly
    feeding.join()
    w1 = cluster.processes["w1"].popen
    settle(cluster, feed, ("w2", "w3"), "a third worker joins mid-stream, then one leaves", report,
           w1_exit=w1.returncode if w1 else None)  # fmt: skip
    assert w1 is not None
    assert w1.returncode == 0


def test_ingest_killed_mid_feed(cluster: Cluster, feed: Feed, report: list[dict[str, Any]]) -> None:
    start(cluster)
    steps = feed.steps()
    half = len(steps) - 10
    cluster.feed(steps[:half], PACE_S)
    stored_at_least(cluster, 1, "before the daemon is killed")
    cluster.kill("ingest")
    cluster.feed(steps[half : half + 4], PACE_S)  # files keep landing while it is down
    cluster.ingest()
    cluster.feed(steps[half + 4 :], PACE_S)
    settle(cluster, feed, ("w1", "w2"), "kill -9 the ingest daemon mid-feed, restart it", report)


def test_broker_down_30_s(cluster: Cluster, feed: Feed, report: list[dict[str, Any]]) -> None:
    start(cluster)
    steps = feed.steps()
    cluster.feed(steps[: len(steps) - 8], PACE_S)
    stored_at_least(cluster, 3, "before the broker is killed")
    down_at = time.monotonic()
    try:
        subprocess.run(["kill", "-9", str(service_pid("kafka"))], check=True)
        cluster.feed(steps[len(steps) - 8 :], PACE_S)  # files keep landing in the spool
        time.sleep(max(0.0, 30.0 - (time.monotonic() - down_at)))
    finally:
        restarted = services_script("up", "kafka")
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    settle(cluster, feed, ("w1", "w2"), "kill -9 the Kafka broker for 30 s, restart it", report,
           broker_down_s=round(time.monotonic() - down_at, 1))  # fmt: skip


def test_redis_down_20_s(cluster: Cluster, feed: Feed, report: list[dict[str, Any]]) -> None:
    start(cluster)
    steps = feed.steps()
    cluster.feed(steps[: len(steps) - 8], PACE_S)
    stored_at_least(cluster, 3, "before Redis is killed")
    wait_until(lambda: redis_count(cluster) >= 3, "3 grids in Redis before it is killed", SETTLE_S)
    down_at = time.monotonic()
    try:
        subprocess.run(["kill", "-9", str(service_pid("redis"))], check=True)
        cluster.feed(steps[len(steps) - 8 :], PACE_S)
        time.sleep(max(0.0, 20.0 - (time.monotonic() - down_at)))
    finally:
        restarted = services_script("up", "redis")  # an empty Redis: it keeps nothing on disk
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    account = settle(cluster, feed, ("w1", "w2"), "Redis down 20 s (restarted empty)", report)
    backfilled = sum(cluster.metric(cluster.processes[w], "ltgcast_worker_sink_backfilled_total") for w in ("w1", "w2"))
    account.notes["backfilled"] = backfilled
    report[-1] = account.row()
    assert backfilled >= 3  # the grids the restart wiped came back from the file store


def test_store_unwritable_for_one_frame(cluster: Cluster, feed: Feed, report: list[dict[str, Any]]) -> None:
    start(cluster)
    victim = next(f for f in feed.frames if "RadM1" in f.name and f.name > feed.frames[len(feed.frames) // 2].name)
    name = parse_filename(victim)
    grid_id = f"{name.satellite}_{name.sector}_{name.scan_start:%Y%m%dT%H%M%S}Z_lightning-v{served_version()}"
    blocker = cluster.store / str(name.sector) / f"{name.scan_start:%Y-%m-%d}" / f"{grid_id}.nc"
    blocker.mkdir(parents=True)  # a directory where the grid's file must go: the rename into place fails
    cluster.feed(feed.steps(), PACE_S)

    def retries() -> float:
        return sum(cluster.metric(cluster.processes[w], "ltgcast_worker_retries_total", {"reason": "store"})
                   for w in ("w1", "w2"))  # fmt: skip

    wait_until(lambda: retries() >= 1, f"the store failure seen\n{cluster.logs()}", SETTLE_S)
    blocker.rmdir()  # writable again
    account = settle(cluster, feed, ("w1", "w2"), "grid store unwritable for one frame", report)
    account.notes["store_retries"] = retries()
    report[-1] = account.row()


def bad_events(feed: Feed) -> tuple[dict[str, list[bytes]], int]:
    """Malformed events of each kind for every topic, and how many dead letters two workers owe for them."""
    first = parse_filename(feed.frames[0])
    good_frame = FrameEvent.of(first, uri="file:///nowhere/x.nc", source_uri="x", size=1, ingest_time=first.scan_end)
    good_glm = FrameEvent.of(parse_filename(feed.granules[0]), uri="file:///nowhere/g.nc", source_uri="x", size=1,
                             ingest_time=parse_filename(feed.granules[0]).scan_end)  # fmt: skip
    frame_doc, glm_doc = json.loads(good_frame.to_json()), json.loads(good_glm.to_json())
    kinds = [
        json.dumps({**frame_doc, "ingest_time": "9999-12-31T23:59:59-01:00"}).encode(),  # overflows a datetime
        b"\xff\xfe not json",
        b"[1, 2, 3]",
        b'{"schema": "ltgcast.frame"}',
        json.dumps({**frame_doc, "version": 99}).encode(),
        json.dumps({**frame_doc, "family": 1}).encode(),
        json.dumps({k: v for k, v in frame_doc.items() if k != "uri"}).encode(),
        json.dumps({**frame_doc, "sector": "M2"}).encode(),
    ]
    glm_kinds = [*kinds, json.dumps({**glm_doc, "scan_end": "2099-01-01T00:00:00.000Z"}).encode()]
    # A valid event whose file is not there fails in the worker, once. Its scan is one no fed frame has: one of
    # the same scan would be let go as a duplicate if the real frame happened to be scored first.
    shift = timedelta(seconds=30)
    unfed = first.name
    for tag, when in (("s", first.scan_start), ("e", first.scan_end)):
        unfed = unfed.replace(f"_{tag}{format_goes_time(when)}", f"_{tag}{format_goes_time(when + shift)}")
    missing_file = [FrameEvent.of(parse_filename(unfed), uri="file:///nowhere/x.nc", source_uri="x", size=1,
                                  ingest_time=first.scan_end + shift).to_json()]  # fmt: skip
    events = {FRAMES_TOPIC: kinds + missing_file, GLM_TOPIC: glm_kinds, GRIDS_TOPIC: kinds,
              DEADLETTER_TOPIC: kinds}  # fmt: skip
    return events, len(kinds) + len(missing_file) + 2 * len(glm_kinds)


def test_malformed_events_on_every_topic(cluster: Cluster, feed: Feed, report: list[dict[str, Any]]) -> None:
    events, owed = bad_events(feed)  # dead letters: each bad frame event once, each bad GLM event by each worker
    start(cluster)  # both in the group first: a rebalance could hand a bad frame event on before its commit
    wait_until(lambda: [assigned(cluster, w) for w in ("w1", "w2")] == [6, 6], "both workers in the group", SETTLE_S)
    bus = get_bus(cluster.bus_uri)
    try:
        for topic, payloads in events.items():
            for i, payload in enumerate(payloads):
                bus.publish(topic, "bad", payload, slot=i if topic == FRAMES_TOPIC else None)
    finally:
        bus.close()
    cluster.feed(feed.steps(), PACE_S)
    account = settle(cluster, feed, ("w1", "w2"), "a malformed event of each kind on each topic", report,
                     dead_letters=owed, injected={t: len(p) for t, p in events.items()})  # fmt: skip
    reader = subprocess.run(
        [sys.executable, "-m", "ltgcast", "events", "--bus", cluster.bus_uri, "--topic", "grids", "--group", "check",
         "--timeout", "5"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    refused = [line for line in reader.stderr.splitlines() if line.startswith("ltgcast events:")]
    assert (reader.returncode, len(refused)) == (1, len(events[GRIDS_TOPIC])), reader.stderr[-2000:]
    assert len(reader.stdout.splitlines()) == account.notes["grid_events"]  # every good grid event printed


def test_moved_away_and_back_while_waiting_for_glm(cluster: Cluster, feed: Feed,
                                                   report: list[dict[str, Any]]) -> None:  # fmt: skip
    last = parse_filename(feed.frames[-1]).scan_start
    held = [g for g in feed.granules if parse_filename(g).scan_end > last - timedelta(minutes=6)]
    early = [[p for p in step if p not in held] for step in feed.steps()]
    start(cluster, ("w1",))
    cluster.feed(early, PACE_S)
    waiting = lambda: cluster.metric(cluster.processes["w1"], "ltgcast_worker_pending_frames")  # noqa: E731
    wait_until(lambda: waiting() >= 5, f"frames waiting for GLM\n{cluster.logs()}", SETTLE_S)
    waiting_at_join = waiting()
    cluster.worker("w2")  # joins: half the partitions (and their waiting frames) move to it
    cluster.ready(cluster.processes["w2"])
    released = lambda: cluster.metric(cluster.processes["w1"], "ltgcast_worker_released_frames_total")  # noqa: E731
    wait_until(lambda: assigned(cluster, "w2") == 6 and released() >= 1, "frames moved to the newcomer", SETTLE_S)
    moved = released()
    cluster.kill("w2", signal.SIGTERM)  # leaves: they move back
    wait_until(lambda: assigned(cluster, "w1") == 12, "every partition back with the first worker", SETTLE_S)
    cluster.kill("w1")  # and the holder dies before the GLM comes
    cluster.worker("w1")
    cluster.ready(cluster.processes["w1"])
    cluster.deliver(held)  # the late GLM
    settle(cluster, feed, ("w1",), "a partition moves away and back while frames wait for GLM, then its holder dies",
           report, frames_waiting_when_w2_joined=waiting_at_join, frames_moved_to_w2=moved)  # fmt: skip
