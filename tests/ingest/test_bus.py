"""The bus contract, on the in-process bus and on the real Kafka broker."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest

from ingest.bus import Bus, InProcessBus, Message, Subscription, get_bus
from ingest.errors import ConfigError, IngestError
from ingest.events import TOPICS
from ingest.kafkabus import KafkaBus


def test_get_bus_lists_valid_schemes() -> None:
    with pytest.raises(ConfigError, match=r"unknown bus URI 'amqp://x'; expected one of: inproc://, kafka://"):
        get_bus("amqp://x")
    with pytest.raises(ConfigError, match="expected the bare URI inproc://"):
        get_bus("inproc://somewhere")
    with pytest.raises(ConfigError, match=r"unknown Kafka bus option 'acks'.*valid: partitions, replication"):
        get_bus("kafka://127.0.0.1:9092?acks=1")
    with pytest.raises(ConfigError, match="expected a int, found 'many'"):
        get_bus("kafka://127.0.0.1:9092?partitions=many")


def check_contract(bus: Bus, topic: str) -> None:
    """Keyed order, commit-after-work, redelivery of uncommitted messages."""
    group = f"contract-{uuid.uuid4().hex[:8]}"
    for i in range(4):
        bus.publish(topic, "M1", f"m1-{i}".encode())
    bus.publish(topic, "C", b"c-0")

    first = bus.subscribe([topic], group)
    got = []
    for _ in range(40):
        got.extend(first.poll(timeout_s=0.5))
        if len(got) >= 5:
            break
    assert sorted(m.value for m in got) == [b"c-0", b"m1-0", b"m1-1", b"m1-2", b"m1-3"]
    m1 = [m for m in got if m.key == "M1"]
    assert [m.value for m in m1] == [b"m1-0", b"m1-1", b"m1-2", b"m1-3"]  # one key keeps its order
    assert len({m.partition for m in m1}) == 1
    # Work succeeded for the first two M1 messages only; then the consumer dies.
    first.commit(m1[1])
    first.close()

    second = bus.subscribe([topic], group)
    again = []
    for _ in range(40):
        again.extend(second.poll(timeout_s=0.5))
        if len(again) >= 3:
            break
    # Uncommitted work is delivered again, in order per key; committed work is not.
    assert sorted(m.value for m in again) == [b"c-0", b"m1-2", b"m1-3"]
    assert [m.value for m in again if m.key == "M1"] == [b"m1-2", b"m1-3"]
    for message in again:
        second.commit(message)
    assert second.poll(timeout_s=1.0) == []
    second.close()


def test_in_process_bus_contract() -> None:
    check_contract(InProcessBus(), "ltgcast.frames.v1")


def test_in_process_poll_waits_for_a_publish() -> None:
    import threading

    bus = InProcessBus()
    sub = bus.subscribe(["t"], "g")
    timer = threading.Timer(0.2, lambda: bus.publish("t", "C", b"late"))
    timer.start()
    assert [m.value for m in sub.poll(timeout_s=5)] == [b"late"]
    timer.join()


def test_in_process_topics_keep_their_last_messages_and_offsets_go_on() -> None:
    bus = InProcessBus(retention=3)
    behind = bus.subscribe(["t"], "slow")
    for i in range(5):
        bus.publish("t", "C", f"m{i}".encode())
    assert [(m.offset, m.value) for m in bus.messages("t")] == [(2, b"m2"), (3, b"m3"), (4, b"m4")]
    taken = behind.poll(timeout_s=0)  # a consumer left behind skips to the oldest message kept
    assert [m.offset for m in taken] == [2, 3, 4]
    behind.commit(taken[-1])
    bus.publish("t", "C", b"m5")
    assert [(m.offset, m.value) for m in bus.subscribe(["t"], "slow").poll(timeout_s=0)] == [(5, b"m5")]


def test_in_process_lag_is_what_the_group_has_not_committed() -> None:
    bus = InProcessBus()
    for i in range(3):
        bus.publish("t", "C", f"t{i}".encode())
    bus.publish("u", "F", b"u0")
    sub = bus.subscribe(["t", "u", "never"], "g")
    assert sub.lag() == {("t", 0): 3, ("u", 0): 1, ("never", 0): 0}
    taken = sub.poll(timeout_s=0)
    assert len(taken) == 4
    assert sub.lag() == {("t", 0): 3, ("u", 0): 1, ("never", 0): 0}  # polled is not processed
    sub.commit(taken[1])  # t1 and everything before it
    assert sub.lag() == {("t", 0): 1, ("u", 0): 1, ("never", 0): 0}
    bus.publish("t", "C", b"t3")
    assert sub.lag()[("t", 0)] == 2
    assert bus.subscribe(["t"], "other").lag() == {("t", 0): 4}  # per group
    assert bus.subscribe(["t"], "g").lag() == {("t", 0): 2}  # the group's, not the member's


def test_in_process_lag_counts_only_the_messages_retention_kept() -> None:
    bus = InProcessBus(retention=3)
    sub = bus.subscribe(["t"], "slow")
    for i in range(5):
        bus.publish("t", "C", f"m{i}".encode())
    assert sub.lag() == {("t", 0): 3}  # offsets 0 and 1 are gone: a new group starts at 2
    sub.commit(Message("t", "C", b"m0", 0, 0))  # a commit behind the oldest message kept
    assert sub.lag() == {("t", 0): 3}
    taken = sub.poll(timeout_s=0)
    sub.commit(taken[-1])
    assert sub.lag() == {("t", 0): 0}


@pytest.fixture
def kafka_bus(kafka_address: str) -> Iterator[Bus]:
    bus = get_bus(f"kafka://{kafka_address}")
    yield bus
    bus.close()


@pytest.mark.kafka
def test_kafka_bus_contract(kafka_bus: Bus) -> None:
    check_contract(kafka_bus, f"ltgcast.test.contract.{uuid.uuid4().hex[:8]}")


@pytest.mark.kafka
def test_kafka_topics_have_three_partitions(kafka_address: str, kafka_bus: Bus) -> None:
    from kafka import KafkaAdminClient

    assert isinstance(kafka_bus, KafkaBus)
    kafka_bus.ensure_topics(TOPICS)  # what the first publish or subscribe does
    admin = KafkaAdminClient(bootstrap_servers=kafka_address)
    try:
        described = {t["name"]: len(t["partitions"]) for t in admin.describe_topics(list(TOPICS))}
    finally:
        admin.close()
    assert described == dict.fromkeys(TOPICS, 3)


def poll_all(sub: Subscription, count: int) -> list[Message]:
    got: list[Message] = []
    deadline = time.monotonic() + 30
    while len(got) < count and time.monotonic() < deadline:
        got.extend(sub.poll(timeout_s=0.5))
    assert len(got) == count
    return got


@pytest.mark.kafka
def test_kafka_lag_is_published_minus_committed_per_partition(kafka_bus: Bus) -> None:
    topic, group = f"ltgcast.test.lag.{uuid.uuid4().hex[:8]}", f"lag-{uuid.uuid4().hex[:8]}"
    for i in range(12):
        kafka_bus.publish(topic, ("C", "F", "M1", "M2")[i % 4], f"{i}".encode())
    first = kafka_bus.subscribe([topic], group)
    assert first.lag() == {}  # not in the group yet: no partitions, nothing to report
    got = poll_all(first, 12)
    published = Counter(m.partition for m in got)
    assert len(published) >= 2  # the keys spread over the partitions
    assert first.lag() == {(topic, p): published[p] for p in range(3)}  # nothing committed: all of it
    done = Counter[int]()
    for partition in sorted(published):  # commit the first message of each partition, all of the first one
        mine = [m for m in got if m.partition == partition]
        last = mine[-1] if not done else mine[0]
        first.commit(last)
        done[partition] = last.offset + 1
    expected = {(topic, p): published[p] - done[p] for p in range(3)}
    assert first.lag() == expected
    assert any(v > 0 for v in expected.values())  # some partition still has work left
    first.close()

    again = kafka_bus.subscribe([topic], group)  # a new member reads the group's commits from the broker
    poll_all(again, sum(expected.values()))
    assert again.lag() == expected
    again.close()


def test_kafka_outage_is_an_ingest_error() -> None:
    import socket

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    bus = get_bus(f"kafka://127.0.0.1:{port}?timeout_s=2")
    with pytest.raises(IngestError, match=rf"Kafka at 127.0.0.1:{port}: no broker reachable .*refused"):
        bus.publish("ltgcast.frames.v1", "C", b"{}")
