"""The bus contract, on the in-process bus and on the real Kafka broker."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest

from foundation.addresses import free_port
from foundation.errors import ConfigError, IngestError
from ingest.bus import Bus, InProcessBus, Message, Subscription, get_bus
from ingest.events import TOPICS
from ingest.kafkabus import KafkaBus


def test_get_bus_lists_valid_schemes() -> None:
    with pytest.raises(ConfigError, match=r"unknown bus URI 'amqp://x'; expected one of: inproc://, kafka://"):
        get_bus("amqp://x")
    with pytest.raises(ConfigError, match="expected the bare URI inproc://"):
        get_bus("inproc://somewhere")
    with pytest.raises(
        ConfigError, match=r"unknown Kafka bus option 'acks'.*valid: heartbeat_s, namespace, partitions"
    ):
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


def partition_counts(address: str, topics: list[str]) -> dict[str, int]:
    """Partitions per topic, once the metadata of a topic just created or grown has settled."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=address)
    try:
        for _ in range(50):
            counts = {t["name"]: len(t["partitions"]) for t in admin.describe_topics(topics)}
            if all(counts.values()):
                break
            time.sleep(0.2)
        return counts
    finally:
        admin.close()


@pytest.mark.kafka
def test_kafka_topics_have_twelve_partitions_in_their_namespace(kafka_address: str) -> None:
    namespace = f"ns{uuid.uuid4().hex[:8]}"
    bus = get_bus(f"kafka://{kafka_address}?namespace={namespace}")
    assert isinstance(bus, KafkaBus)
    bus.ensure_topics(TOPICS)  # what the first publish or subscribe does
    names = [f"{namespace}.{t}" for t in TOPICS]
    assert partition_counts(kafka_address, names) == dict.fromkeys(names, 12)  # 2, 3, 4 or 6 workers: equal shares


@pytest.mark.kafka
def test_a_topic_with_fewer_partitions_is_grown(kafka_address: str) -> None:
    topic = f"ltgcast.test.grow.{uuid.uuid4().hex[:8]}"
    KafkaBus(kafka_address, partitions=3).ensure_topics([topic])
    assert partition_counts(kafka_address, [topic]) == {topic: 3}
    KafkaBus(kafka_address, partitions=12).ensure_topics([topic])
    assert partition_counts(kafka_address, [topic]) == {topic: 12}


def test_kafka_bus_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="heartbeat_s must be at most a third of session_timeout_s"):
        get_bus("kafka://127.0.0.1:9092?session_timeout_s=6&heartbeat_s=3")
    with pytest.raises(ConfigError, match="namespace may hold letters"):
        get_bus("kafka://127.0.0.1:9092?namespace=a/b")
    bus = get_bus("kafka://127.0.0.1:9092?namespace=staging")
    assert isinstance(bus, KafkaBus)
    assert (bus.full("ltgcast.frames.v1"), bus.short("staging.ltgcast.frames.v1")) == (
        "staging.ltgcast.frames.v1", "ltgcast.frames.v1")  # fmt: skip


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
    assert first.lag() == {(topic, p): published[p] for p in range(12)}  # nothing committed: all of it
    done = Counter[int]()
    for partition in sorted(published):  # commit the first message of each partition, all of the first one
        mine = [m for m in got if m.partition == partition]
        last = mine[-1] if not done else mine[0]
        first.commit(last)
        done[partition] = last.offset + 1
    expected = {(topic, p): published[p] - done[p] for p in range(12)}
    assert first.lag() == expected
    assert any(v > 0 for v in expected.values())  # some partition still has work left
    first.close()

    again = kafka_bus.subscribe([topic], group)  # a new member reads the group's commits from the broker
    poll_all(again, sum(expected.values()))
    assert again.lag() == expected
    again.close()


def test_kafka_outage_is_an_ingest_error() -> None:

    port = free_port()  # nothing listens there
    bus = get_bus(f"kafka://127.0.0.1:{port}?timeout_s=2")
    with pytest.raises(IngestError, match=rf"Kafka at 127.0.0.1:{port}: no broker reachable .*refused"):
        bus.publish("ltgcast.frames.v1", "C", b"{}")


def test_in_process_broadcast_reads_the_last_seconds_whole_and_says_when_it_caught_up() -> None:
    now = [1000.0]
    bus = InProcessBus(clock=lambda: now[0])
    for i in range(3):
        bus.publish("glm", "G19", f"old-{i}".encode())
    now[0] = 2000.0
    bus.publish("glm", "G19", b"new-0")
    recent = bus.broadcast("glm", lookback_s=60.0)
    assert not recent.caught_up()
    assert [m.value for m in recent.poll(timeout_s=0)] == [b"new-0"]
    assert recent.caught_up()
    everything = bus.broadcast("glm", lookback_s=None)
    assert len(everything.poll(timeout_s=0)) == 4
    bus.publish("glm", "G19", b"new-1")
    assert [m.value for m in recent.poll(timeout_s=0)] == [b"new-1"]  # each reader has its own position
    assert [m.timestamp for m in bus.messages("glm")] == [1000.0] * 3 + [2000.0] * 2


def test_in_process_slots_are_accepted_and_pause_holds_messages_back() -> None:
    bus = InProcessBus()
    bus.publish("t", "a-name.nc", b"x", slot=7)
    sub = bus.subscribe(["t"], "g")
    sub.pause(True)
    assert sub.poll(timeout_s=0) == []
    sub.pause(False)
    assert [m.value for m in sub.poll(timeout_s=0)] == [b"x"]


@pytest.mark.kafka
def test_kafka_slots_share_messages_evenly_over_the_partitions_whatever_the_key(kafka_bus: Bus) -> None:
    topic = f"ltgcast.test.slots.{uuid.uuid4().hex[:8]}"
    for i in range(36):
        kafka_bus.publish(topic, "M1", f"{i}".encode(), slot=1000 + i)  # one key: hashing would pin them to one
    kafka_bus.publish(topic, "M1", b"again", slot=1000)  # the same slot: the same partition
    sub = kafka_bus.subscribe([topic], f"spread-{uuid.uuid4().hex[:8]}")
    got = poll_all(sub, 37)
    sub.close()
    assert Counter(m.partition for m in got if m.value != b"again") == dict.fromkeys(range(12), 3)
    first, again = (next(m for m in got if m.value == v) for v in (b"0", b"again"))  # both slot 1000
    assert first.partition == again.partition == 1000 % 12


@pytest.mark.kafka
def test_kafka_broadcast_reads_every_partition_from_a_point_in_time(kafka_bus: Bus) -> None:
    topic = f"ltgcast.test.broadcast.{uuid.uuid4().hex[:8]}"
    for i in range(6):
        kafka_bus.publish(topic, f"G{i % 2}", f"early-{i}".encode())
    time.sleep(3.0)
    late = time.time() - 1.0  # a second after the early ones, and before the late ones, on the bus's clock
    for i in range(6):
        kafka_bus.publish(topic, f"G{i % 2}", f"late-{i}".encode(), slot=i)
    lookback = time.time() - late
    readers = [kafka_bus.broadcast(topic, lookback_s=lookback), kafka_bus.broadcast(topic, lookback_s=None)]
    seen: list[list[bytes]] = [[], []]
    deadline = time.monotonic() + 30
    while (len(seen[0]) < 6 or len(seen[1]) < 12) and time.monotonic() < deadline:
        for reader, values in zip(readers, seen, strict=True):
            values.extend(m.value for m in reader.poll(timeout_s=0.2))
    assert sorted(seen[0]) == sorted(f"late-{i}".encode() for i in range(6))  # the last seconds only
    assert len(seen[1]) == 12  # everything, from every partition
    assert all(r.caught_up() for r in readers)
    for reader in readers:
        reader.close()


@pytest.mark.kafka
def test_kafka_rebalance_listener_and_a_commit_after_the_partition_moved(kafka_bus: Bus) -> None:
    topic, group = f"ltgcast.test.rebalance.{uuid.uuid4().hex[:8]}", f"rb-{uuid.uuid4().hex[:8]}"
    for i in range(12):
        kafka_bus.publish(topic, "k", f"{i}".encode(), slot=i)
    heard: dict[str, list[list[tuple[str, int]]]] = {"revoked": [], "assigned": []}

    class Listener:
        def revoked(self, partitions: list[tuple[str, int]]) -> None:
            heard["revoked"].append(list(partitions))

        def assigned(self, partitions: list[tuple[str, int]]) -> None:
            heard["assigned"].append(list(partitions))

    first = kafka_bus.subscribe([topic], group, listener=Listener())
    got = poll_all(first, 12)
    assert sorted(heard["assigned"][-1]) == [(topic, p) for p in range(12)]
    second = kafka_bus.subscribe([topic], group)
    deadline = time.monotonic() + 40
    while len(heard["assigned"][-1]) == 12 and time.monotonic() < deadline:  # both poll: the group rebalances
        first.poll(timeout_s=0.2)
        second.poll(timeout_s=0.2)
    assert heard["revoked"][-1] == [(topic, p) for p in range(12)]  # eager: everything, then a new share
    mine = set(heard["assigned"][-1])
    assert len(mine) == 6  # two members, twelve partitions: half each
    assert {m.partition for m in got} - {p for _, p in mine}  # some of what the first read now belongs to the second
    second.close()
    first.close()
