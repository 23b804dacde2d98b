"""The Kafka bus (kafka-python): the one place Kafka exceptions are translated.

``kafka://127.0.0.1:9092[,host:port…][?partitions=3&replication=1&timeout_s=10]``

* Producer: ``acks=all``, retries inside kafka-python, and :meth:`KafkaBus.publish`
  waits for the broker's acknowledgement, so a returned publish is durable.
* Topics are created on first use with ``partitions`` partitions (default 3:
  CONUS, full disk and the mesoscale sectors spread over them by key) and
  ``replication`` replicas (default 1, the single-node broker).
* Consumers never auto-commit: :meth:`KafkaSubscription.commit` commits the offset
  after a processed message, and a consumer that dies before committing has its
  messages re-delivered to the group.
* :meth:`KafkaSubscription.lag` asks the brokers for the log end and start
  offsets of the partitions assigned to this member and the group's committed
  offsets (a few round trips, each bounded by ``timeout_s``); nothing while a
  rebalance has left the member without partitions.

Every ``kafka.errors.KafkaError`` (and the ``OSError`` of a refused connection)
becomes :class:`~ingest.errors.IngestError`, naming the brokers and what failed.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata, TopicPartition

from ingest.addresses import parse_address
from ingest.bus import Message
from ingest.errors import ConfigError, IngestError

log = logging.getLogger(__name__)

_OPTIONS: dict[str, type[int] | type[float]] = {"partitions": int, "replication": int, "timeout_s": float}


class KafkaBus:
    """A :class:`~ingest.bus.Bus` on an Apache Kafka cluster."""

    def __init__(self, brokers: str, *, partitions: int = 3, replication: int = 1, timeout_s: float = 10.0) -> None:
        self.brokers = brokers
        self.partitions = partitions
        self.replication = replication
        self.timeout_s = timeout_s
        self._producer: KafkaProducer | None = None
        self._known_topics: set[str] = set()

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

    def _timeouts(self) -> dict[str, int]:
        """Client time-outs: an unreachable cluster fails within ``timeout_s``, not kafka-python's 30 s."""
        millis = int(self.timeout_s * 1000)
        return {"request_timeout_ms": max(millis - 500, 500), "bootstrap_timeout_ms": millis}

    @contextmanager
    def translated(self, what: str) -> Iterator[None]:
        """Turn Kafka and socket errors raised inside into :class:`IngestError`."""
        try:
            yield
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
        """Create the topics that do not exist yet (idempotent)."""
        missing = [t for t in topics if t not in self._known_topics]
        if not missing:
            return
        self._check_reachable()
        with self.translated(f"creating topics {missing}"):
            admin = KafkaAdminClient(bootstrap_servers=self.brokers, **self._timeouts())
            try:
                existing = set(admin.list_topics())
                new = [NewTopic(t, self.partitions, self.replication) for t in missing if t not in existing]
                if new:
                    admin.create_topics(new)
                    log.info("created Kafka topics %s", ", ".join(t.name for t in new))
            except TopicAlreadyExistsError:
                log.debug("topics %s were created meanwhile by another client", missing)
            finally:
                admin.close()
        self._known_topics.update(missing)

    def _producer_for(self, topic: str) -> KafkaProducer:
        self.ensure_topics([topic])
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

    def publish(self, topic: str, key: str, value: bytes) -> None:
        """Send and wait for the acknowledgement of every in-sync replica."""
        producer = self._producer_for(topic)
        with self.translated(f"publishing to {topic}"):
            # Waits past delivery_timeout_ms, so the future has its final answer.
            producer.send(topic, key=key.encode(), value=value).get(timeout=2 * self.timeout_s + 5)

    def subscribe(self, topics: Sequence[str], group: str) -> KafkaSubscription:
        """Join ``group``; a group new to a topic starts at its earliest message."""
        self.ensure_topics(topics)
        with self.translated(f"joining consumer group {group!r}"):
            consumer = KafkaConsumer(
                *topics,
                bootstrap_servers=self.brokers,
                group_id=group,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                bootstrap_timeout_ms=int(self.timeout_s * 1000),
            )
        return KafkaSubscription(self, consumer)

    def close(self) -> None:
        """Flush and close the producer."""
        producer, self._producer = self._producer, None
        if producer is not None:
            with self.translated("closing the producer"):
                producer.close(timeout=self.timeout_s)


class KafkaSubscription:
    """A member of a Kafka consumer group with manual commits."""

    def __init__(self, bus: KafkaBus, consumer: KafkaConsumer) -> None:
        self._bus = bus
        self._consumer = consumer

    def poll(self, timeout_s: float, max_records: int = 100) -> list[Message]:
        """Fetched records, partition by partition in offset order."""
        with self._bus.translated("polling"):
            batches = self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        return [
            Message(
                topic=r.topic,
                key=r.key.decode() if r.key is not None else "",
                value=r.value,
                partition=r.partition,
                offset=r.offset,
            )
            for records in batches.values()
            for r in records
        ]

    def commit(self, message: Message) -> None:
        """Commit the offset after ``message`` on its partition (synchronously)."""
        position = {TopicPartition(message.topic, message.partition): OffsetAndMetadata(message.offset + 1, "", -1)}
        with self._bus.translated(f"committing {message.topic}[{message.partition}]@{message.offset}"):
            self._consumer.commit(position)

    def lag(self) -> dict[tuple[str, int], int]:
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
        return {(tp.topic, tp.partition): max(0, ends[tp] - done[tp]) for tp in assigned}

    def close(self) -> None:
        """Leave the group without committing anything more."""
        with self._bus.translated("closing the consumer"):
            self._consumer.close(autocommit=False)
