"""The Kafka bus (kafka-python): the one place Kafka exceptions are translated.

``kafka://127.0.0.1:9092[,host:port…][?partitions=12&replication=1&timeout_s=10&namespace=staging
&session_timeout_s=8&heartbeat_s=2]``

* Producer: ``acks=all``, retries inside kafka-python, and :meth:`KafkaBus.publish`
  waits for the broker's acknowledgement, so a returned publish is durable.
  A ``slot`` puts the message on partition ``slot`` modulo the topic's
  partitions (the key still travels with it): frame events take their scan's
  place in their sector's sequence, so they are shared by count between the
  workers of a group, not pinned to one by their sector, and a frame announced
  twice lands on the same partition.
* Topics are created on first use with ``partitions`` partitions (default 12:
  2, 3, 4 or 6 workers each get the same number) and ``replication`` replicas
  (default 1, the single-node broker). A topic that exists with fewer
  partitions is grown to ``partitions`` (new partitions only ever add room;
  growing moves where keys and slots land, which costs nothing but order).
* ``namespace`` prefixes every topic name (``<namespace>.ltgcast.frames.v1``)
  and consumer group: several deployments (staging and production, or test
  runs) share one cluster without seeing each other's events or rebalancing
  each other's groups. Messages handed out carry the topic names without the
  prefix.
* Consumers never auto-commit: :meth:`KafkaSubscription.commit` commits the offset
  after a processed message, and a consumer that dies before committing has its
  messages re-delivered to the group. The group's session times out after
  ``session_timeout_s`` (default 8 s, heartbeats every ``heartbeat_s``, 2 s), so
  the partitions of a member killed with ``kill -9`` move within seconds; a
  member that closes leaves the group at once.
* Rebalances are eager (the range assignor): every member hears, inside its
  poll, that all its partitions were revoked, then which ones it was given
  (:class:`~ingest.bus.RebalanceListener`). The listener runs on kafka-python's
  I/O thread while the polling thread waits, so it must not call the consumer.
* :meth:`KafkaBus.broadcast` assigns every partition of a topic by hand (no
  group, no commits), seeks each to the first record whose timestamp (the
  producer's create time) is within ``lookback_s`` of this machine's clock,
  and looks for new partitions every minute (a new one is read from its start).
* :meth:`KafkaSubscription.lag` asks the brokers for the log end and start
  offsets of the partitions assigned to this member and the group's committed
  offsets (a few round trips, each bounded by ``timeout_s``); nothing while a
  rebalance has left the member without partitions.

Every ``kafka.errors.KafkaError`` (and the ``OSError`` of a refused connection)
becomes :class:`~foundation.errors.IngestError`, naming the brokers and what failed;
a commit the group refused after a rebalance becomes
:class:`~foundation.errors.RebalancedError`.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import (
    CommitFailedError,
    IllegalGenerationError,
    InvalidPartitionsError,
    KafkaError,
    RebalanceInProgressError,
    TopicAlreadyExistsError,
    UnknownMemberIdError,
)
from kafka.structs import OffsetAndMetadata, TopicPartition

from foundation.addresses import parse_address
from foundation.errors import ConfigError, IngestError, RebalancedError
from ingest.bus import Message, RebalanceListener
from ingest.bus import TopicPartition as Partition

log = logging.getLogger(__name__)

_OPTIONS: dict[str, type[int] | type[float] | type[str]] = {
    "partitions": int, "replication": int, "timeout_s": float, "namespace": str, "session_timeout_s": float,
    "heartbeat_s": float,
}  # fmt: skip
#: Commit errors that mean "the group moved on": the partition belongs to another member now.
_REBALANCED = (CommitFailedError, IllegalGenerationError, RebalanceInProgressError, UnknownMemberIdError)
PARTITION_CHECK_S = 60.0  # how often a broadcast reader looks for new partitions


class KafkaBus:
    """A :class:`~ingest.bus.Bus` on an Apache Kafka cluster."""

    def __init__(self, brokers: str, *, partitions: int = 12, replication: int = 1, timeout_s: float = 10.0,
                 namespace: str = "", session_timeout_s: float = 8.0, heartbeat_s: float = 2.0) -> None:  # fmt: skip
        if partitions < 1 or replication < 1 or timeout_s <= 0:
            msg = f"Kafka bus: partitions and replication must be >= 1 and timeout_s > 0; found {partitions}, " \
                  f"{replication}, {timeout_s}"  # fmt: skip
            raise ConfigError(msg)
        if not 0 < heartbeat_s * 3 <= session_timeout_s:
            msg = (f"Kafka bus: heartbeat_s must be at most a third of session_timeout_s; found heartbeat_s "
                   f"{heartbeat_s}, session_timeout_s {session_timeout_s}")  # fmt: skip
            raise ConfigError(msg)
        if namespace and not all(c.isalnum() or c in "._-" for c in namespace):
            msg = f"Kafka bus namespace may hold letters, digits, '.', '_' and '-' only; found {namespace!r}"
            raise ConfigError(msg)
        self.brokers = brokers
        self.partitions = partitions
        self.replication = replication
        self.timeout_s = timeout_s
        self.namespace = namespace
        self.session_timeout_s = session_timeout_s
        self.heartbeat_s = heartbeat_s
        self._producer: KafkaProducer | None = None
        self._known_topics: set[str] = set()
        self._lock = threading.Lock()

    @classmethod
    def from_uri(cls, uri: str) -> KafkaBus:
        """Parse ``kafka://host:port[,host:port][?option=value]``."""
        parts = urlsplit(uri)
        if not parts.netloc:
            msg = f"expected kafka://host:port[,host:port], found {uri!r}"
            raise ConfigError(msg)
        options: dict[str, Any] = {}
        for name, values in parse_qs(parts.query).items():
            if name not in _OPTIONS:
                msg = f"unknown Kafka bus option {name!r} in {uri!r}; valid: {', '.join(sorted(_OPTIONS))}"
                raise ConfigError(msg)
            try:
                options[name] = _OPTIONS[name](values[-1])
            except ValueError as exc:
                msg = f"Kafka bus option {name}: expected a {_OPTIONS[name].__name__}, found {values[-1]!r}"
                raise ConfigError(msg) from exc
        return cls(parts.netloc, **options)

    # -- names -----------------------------------------------------------------------------

    def full(self, topic: str) -> str:
        """The topic's name on the cluster (with the namespace)."""
        return f"{self.namespace}.{topic}" if self.namespace else topic

    def short(self, topic: str) -> str:
        """The topic's name as ltgcast knows it (without the namespace)."""
        prefix = f"{self.namespace}." if self.namespace else ""
        return topic[len(prefix) :] if prefix and topic.startswith(prefix) else topic

    def _timeouts(self) -> dict[str, int]:
        """Client time-outs: an unreachable cluster fails within ``timeout_s``, not kafka-python's 30 s."""
        millis = int(self.timeout_s * 1000)
        return {"request_timeout_ms": max(millis - 500, 500), "bootstrap_timeout_ms": millis}

    @contextmanager
    def translated(self, what: str) -> Iterator[None]:
        """Turn Kafka and socket errors raised inside into :class:`IngestError`."""
        try:
            yield
        except _REBALANCED as exc:
            msg = f"Kafka at {self.brokers}: {what} refused, the group has rebalanced: {type(exc).__name__}: {exc}"
            raise RebalancedError(msg) from exc
        except (KafkaError, OSError) as exc:
            msg = f"Kafka at {self.brokers}: {what} failed: {type(exc).__name__}: {exc}"
            raise IngestError(msg) from exc

    def _check_reachable(self) -> None:
        """Fail fast, naming the brokers, when none accepts a TCP connection."""
        problems = []
        for address in self.brokers.split(","):
            try:
                host, port = parse_address(address.strip(), "broker")
                socket.create_connection((host, port), timeout=min(self.timeout_s, 5.0)).close()
            except (OSError, ConfigError) as exc:
                problems.append(f"{address}: {exc}")
            else:
                return
        msg = f"Kafka at {self.brokers}: no broker reachable ({'; '.join(problems)})"
        raise IngestError(msg)

    def ensure_topics(self, topics: Sequence[str]) -> None:
        """Create the topics that do not exist yet and grow those with fewer partitions (idempotent)."""
        missing = [self.full(t) for t in topics if self.full(t) not in self._known_topics]
        if not missing:
            return
        self._check_reachable()
        with self.translated(f"creating topics {missing}"):
            admin = KafkaAdminClient(bootstrap_servers=self.brokers, **self._timeouts())
            try:
                existing = {t["name"]: len(t["partitions"]) for t in admin.describe_topics(missing)
                            if t.get("error_code", 0) == 0}  # fmt: skip
                new = [NewTopic(t, self.partitions, self.replication) for t in missing if t not in existing]
                if new:
                    try:
                        admin.create_topics(new)
                        log.info("created Kafka topics %s", ", ".join(t.name for t in new))
                    except TopicAlreadyExistsError:
                        log.debug("topics %s were created meanwhile by another client", missing)
                # 0: just created elsewhere, metadata not yet everywhere; never shrink, never race to grow twice
                small = {t: self.partitions for t, count in existing.items() if 0 < count < self.partitions}
                if small:
                    try:
                        admin.create_partitions(small)
                        log.info("grew Kafka topics %s to %d partitions", ", ".join(small), self.partitions)
                    except InvalidPartitionsError as exc:
                        log.info("Kafka topics %s were grown meanwhile by another client: %s", ", ".join(small), exc)
            finally:
                admin.close()
        self._known_topics.update(missing)

    def _producer_for(self, topic: str) -> KafkaProducer:
        self.ensure_topics([topic])
        with self._lock:
            if self._producer is None:
                with self.translated("connecting the producer"):
                    self._producer = KafkaProducer(
                        bootstrap_servers=self.brokers,
                        acks="all",
                        retries=5,
                        linger_ms=0,
                        max_block_ms=int(self.timeout_s * 1000),
                        # A record not acknowledged within timeout_s fails instead of staying
                        # queued: otherwise a slow broker would deliver it after publish()
                        # gave up, and the retry on the next poll would be a duplicate.
                        delivery_timeout_ms=int(self.timeout_s * 1000),
                        **self._timeouts(),
                    )
            return self._producer

    def publish(self, topic: str, key: str, value: bytes, *, slot: int | None = None) -> None:
        """Send and wait for the acknowledgement of every in-sync replica."""
        producer = self._producer_for(topic)
        name = self.full(topic)
        with self.translated(f"publishing to {name}"):
            partition = None
            if slot is not None:
                partitions = sorted(producer.partitions_for(name))
                partition = int(partitions[slot % len(partitions)])
            # Waits past delivery_timeout_ms, so the future has its final answer.
            producer.send(name, key=key.encode(), value=value, partition=partition).get(timeout=2 * self.timeout_s + 5)

    def _consumer(self, group: str | None, **extra: Any) -> KafkaConsumer:
        return KafkaConsumer(
            **extra,
            bootstrap_servers=self.brokers,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(self.session_timeout_s * 1000),
            heartbeat_interval_ms=int(self.heartbeat_s * 1000),
            bootstrap_timeout_ms=int(self.timeout_s * 1000),
        )

    def subscribe(self, topics: Sequence[str], group: str, *,
                  listener: RebalanceListener | None = None) -> KafkaSubscription:  # fmt: skip
        """Join ``group``; a group new to a topic starts at its earliest message."""
        self.ensure_topics(topics)
        group = self.full(group)  # deployments sharing a cluster never rebalance each other's groups
        with self.translated(f"joining consumer group {group!r}"):
            consumer = self._consumer(group)
            consumer.subscribe([self.full(t) for t in topics], listener=_Listener(self, listener))
        return KafkaSubscription(self, consumer)

    def broadcast(self, topic: str, lookback_s: float | None) -> KafkaReader:
        """Read every partition of ``topic`` from the first record of the last ``lookback_s`` seconds (no group)."""
        self.ensure_topics([topic])
        since = None if lookback_s is None else time.time() - lookback_s
        with self.translated(f"reading {self.full(topic)} from every partition"):
            return KafkaReader(self, self.full(topic), since)

    def close(self) -> None:
        """Flush and close the producer."""
        producer, self._producer = self._producer, None
        if producer is not None:
            with self.translated("closing the producer"):
                producer.close(timeout=self.timeout_s)

    def message(self, record: Any) -> Message:
        """A kafka-python record as a :class:`~ingest.bus.Message` (topic without the namespace)."""
        return Message(
            topic=self.short(record.topic),
            key=record.key.decode(errors="replace") if record.key is not None else "",
            value=record.value,
            partition=record.partition,
            offset=record.offset,
            timestamp=record.timestamp / 1000.0 if record.timestamp is not None and record.timestamp >= 0 else 0.0,
        )


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """kafka-python's listener interface in front of ours (topic names without the namespace)."""

    def __init__(self, bus: KafkaBus, listener: RebalanceListener | None) -> None:
        self._bus = bus
        self._listener = listener

    def _names(self, partitions: Any) -> list[Partition]:
        return sorted((self._bus.short(tp.topic), tp.partition) for tp in partitions)

    def on_partitions_revoked(self, revoked: Any) -> None:
        log.info("Kafka: partitions revoked: %s", self._names(revoked))
        if self._listener is not None:
            self._listener.revoked(self._names(revoked))

    def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("Kafka: partitions assigned: %s", self._names(assigned))
        if self._listener is not None:
            self._listener.assigned(self._names(assigned))


class KafkaSubscription:
    """A member of a Kafka consumer group with manual commits."""

    def __init__(self, bus: KafkaBus, consumer: KafkaConsumer) -> None:
        self._bus = bus
        self._consumer = consumer

    def poll(self, timeout_s: float, max_records: int = 100) -> list[Message]:
        """Fetched records, partition by partition in offset order."""
        with self._bus.translated("polling"):
            batches = self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        return [self._bus.message(r) for records in batches.values() for r in records]

    def commit(self, message: Message) -> None:
        """Commit the offset after ``message`` on its partition (synchronously)."""
        tp = TopicPartition(self._bus.full(message.topic), message.partition)
        with self._bus.translated(f"committing {message.origin}"):
            self._consumer.commit({tp: OffsetAndMetadata(message.offset + 1, "", -1)})

    def lag(self) -> dict[Partition, int]:
        """Per assigned partition: log end offset − the group's committed offset (the log start if none)."""
        timeout_ms = int(self._bus.timeout_s * 1000)
        with self._bus.translated("reading the consumer lag"):
            assigned = sorted(self._consumer.assignment() or ())
            if not assigned:  # not joined yet, or rebalancing: nothing of ours to report
                return {}
            ends = self._consumer.end_offsets(assigned, timeout_ms=timeout_ms)
            starts = self._consumer.beginning_offsets(assigned, timeout_ms=timeout_ms)
            committed = {tp: self._consumer.committed(tp, timeout_ms=timeout_ms) for tp in assigned}
        done = {tp: max(committed[tp] if committed[tp] is not None else 0, starts[tp]) for tp in assigned}
        # never below 0: a commit past the log end (a recreated topic, a truncated log) is no backlog
        return {(self._bus.short(tp.topic), tp.partition): max(0, ends[tp] - done[tp]) for tp in assigned}

    def pause(self, paused: bool) -> None:
        """Stop or restart fetching every assigned partition (polls go on, so the member stays in the group)."""
        with self._bus.translated("pausing" if paused else "resuming"):
            assigned = list(self._consumer.assignment() or ())
            if paused:
                self._consumer.pause(*assigned)
            else:
                self._consumer.resume(*self._consumer.paused())

    def rewind(self, partitions: Sequence[Partition]) -> None:
        """Seek each partition still assigned to the group's committed offset (its start if none)."""
        timeout_ms = int(self._bus.timeout_s * 1000)
        with self._bus.translated(f"rewinding {len(partitions)} partition(s) to the committed offsets"):
            assigned = set(self._consumer.assignment() or ())
            for topic, number in partitions:
                tp = TopicPartition(self._bus.full(topic), number)
                if tp not in assigned:
                    continue
                committed = self._consumer.committed(tp, timeout_ms=timeout_ms)
                if committed is None:
                    self._consumer.seek_to_beginning(tp)
                else:
                    self._consumer.seek(tp, committed)

    def close(self) -> None:
        """Leave the group now (its partitions move at once) without committing anything more."""
        with self._bus.translated("closing the consumer"):
            self._consumer.close(autocommit=False)


class KafkaReader:
    """Every partition of one topic, assigned by hand, from a point in time (:meth:`KafkaBus.broadcast`)."""

    def __init__(self, bus: KafkaBus, topic: str, since: float | None) -> None:
        self._bus = bus
        self._topic = topic
        self._since = since
        # metadata refreshed every minute: new partitions are seen within a minute
        self._consumer = bus._consumer(None, metadata_max_age_ms=int(PARTITION_CHECK_S * 1000))
        self._targets: dict[TopicPartition, int] = {}
        self._caught_up = False
        self._next_check = 0.0
        self._add_partitions()

    def _add_partitions(self) -> None:
        """Assign partitions not assigned yet, each from ``since`` (new ones after the first: from the start)."""
        known = set(self._consumer.assignment() or ())
        partitions = self._consumer.partitions_for_topic(self._topic) or set()
        fresh = [TopicPartition(self._topic, p) for p in sorted(partitions)]
        fresh = [tp for tp in fresh if tp not in known]
        # no partitions yet (metadata of a topic just created): look again on the next poll
        self._next_check = time.monotonic() + (PARTITION_CHECK_S if known or fresh else 0.0)
        if not fresh:
            return
        self._consumer.assign(sorted(known) + fresh)
        timeout_ms = int(self._bus.timeout_s * 1000)
        ends = self._consumer.end_offsets(fresh, timeout_ms=timeout_ms)
        found = {}
        if self._since is not None and not known:
            found = self._consumer.offsets_for_times({tp: int(self._since * 1000) for tp in fresh},
                                                     timeout_ms=timeout_ms)  # fmt: skip
        for tp in fresh:
            if self._since is None or known:
                self._consumer.seek_to_beginning(tp)
            else:
                at = found.get(tp)
                self._consumer.seek(tp, at.offset if at is not None else ends[tp])
        self._targets.update(ends)
        self._caught_up = False
        log.info(
            "Kafka: reading %d partition(s) of %s from %s",
            len(fresh),
            self._topic,
            "the start" if self._since is None or known else time.strftime("%H:%M:%S", time.gmtime(self._since)),
        )

    def poll(self, timeout_s: float, max_records: int = 500) -> list[Message]:
        """The next records of any partition."""
        with self._bus.translated(f"reading {self._topic}"):
            if time.monotonic() >= self._next_check:
                self._add_partitions()
            batches = self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        return [self._bus.message(r) for records in batches.values() for r in records]

    def caught_up(self) -> bool:
        """Whether every partition's position reached the end it had when it was assigned (never with none)."""
        if not self._targets:
            return False
        if not self._caught_up:
            with self._bus.translated(f"reading positions on {self._topic}"):
                self._caught_up = all(self._consumer.position(tp) >= end for tp, end in self._targets.items())
        return self._caught_up

    def close(self) -> None:
        """Release the connection."""
        with self._bus.translated(f"closing the reader of {self._topic}"):
            self._consumer.close(autocommit=False)
