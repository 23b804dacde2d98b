"""The event bus: one :class:`Bus` protocol, chosen by URI from :data:`BUSES`.

Contract of every bus
---------------------
* :meth:`Bus.publish` returns only once the message is durable (Kafka: acknowledged
  by all in-sync replicas, ``acks=all``); it raises :class:`~foundation.errors.IngestError`
  otherwise, and the caller keeps its work to retry.
* Messages with the same key keep their order, unless published with a
  ``slot``: then the message goes to partition ``slot`` modulo the topic's
  partitions (Kafka; the in-process bus has one partition), whatever its key.
  Consecutive slots take consecutive partitions, so the members of a consumer
  group share such messages by count, and a message published again with the
  same slot lands on the same partition.
* A :class:`Subscription` belongs to a consumer group. :meth:`Subscription.poll`
  hands out messages; :meth:`Subscription.commit` records that one message (and
  every earlier one on its partition) was processed. A consumer commits only after
  its work succeeded, so a crash re-delivers the work instead of losing it
  (at-least-once; consumers make their effects idempotent).
* Partitions move between the members of a group (a member joins, leaves or
  dies). A :class:`RebalanceListener` given to :meth:`Bus.subscribe` hears, inside
  :meth:`Subscription.poll`, which partitions were taken away (before they move:
  drop what is not committed; the new owner reads it again from the committed
  offset) and which were given. A member may be given back a partition it had
  (kafka-python keeps its fetch position then): :meth:`Subscription.rewind`
  makes it deliver such a partition again from the committed offset. A commit for a partition the member no
  longer holds raises :class:`~foundation.errors.RebalancedError` and changes nothing.
* :meth:`Subscription.lag` is the group's backlog on each partition this member
  reads: the log end offset (the next offset to be written) minus the group's
  committed offset, where a partition the group never committed counts from the
  oldest message the log still holds (as a new group starts there), and so does
  a commit older than that (the log dropped what it pointed at). Messages polled
  but not committed are still lag. An empty answer means the member reads no
  partition right now (a Kafka rebalance); it is not "no lag".
* :meth:`Bus.broadcast` reads one topic whole, every partition, outside any
  group and without commits: each reader starts at the first message the bus
  took in the last ``lookback_s`` seconds (by the bus's own clock and
  timestamps: Kafka's record timestamps), or at the oldest message kept. A
  restarted reader recovers its position from the clock alone.
  :meth:`Reader.caught_up` says when it has read everything the topic held when
  it started.

Implementations: ``inproc://`` (:class:`InProcessBus`, the embedded default, one
process, nothing durable across restarts) and ``kafka://host:port[,host:port]``
(:class:`ingest.kafkabus.KafkaBus`, kafka-python, imported only when used).

>>> sorted(BUSES)
['inproc', 'kafka']
>>> bus = get_bus("inproc://")
>>> bus.publish("ltgcast.frames.v1", "C", b"{}")
>>> sub = bus.subscribe(["ltgcast.frames.v1"], group="doc")
>>> [m.value for m in sub.poll(timeout_s=0)]
[b'{}']
>>> sub.lag()  # polled, not committed
{('ltgcast.frames.v1', 0): 1}
>>> reader = bus.broadcast("ltgcast.frames.v1", lookback_s=None)
>>> [m.value for m in reader.poll(timeout_s=0)], reader.caught_up()
([b'{}'], True)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from foundation.errors import ConfigError
from foundation.registry import Registry

#: A topic and partition number.
TopicPartition = tuple[str, int]


@dataclass(frozen=True)
class Message:
    """One message as delivered to a consumer; ``timestamp``: when the bus took it (seconds since 1970)."""

    topic: str
    key: str
    value: bytes
    partition: int
    offset: int
    timestamp: float = 0.0

    @property
    def origin(self) -> str:
        """``topic/partition@offset``: where this message sits on the bus."""
        return f"{self.topic}/{self.partition}@{self.offset}"


class RebalanceListener(Protocol):
    """Told by :meth:`Subscription.poll` when the group moves partitions to or from this member."""

    def revoked(self, partitions: Sequence[TopicPartition]) -> None:
        """These partitions are about to go to another member: commit what is done, drop the rest."""
        ...

    def assigned(self, partitions: Sequence[TopicPartition]) -> None:
        """These partitions are now read by this member, from the group's committed offsets."""
        ...


class Subscription(Protocol):
    """A consumer-group member reading some topics."""

    def poll(self, timeout_s: float, max_records: int = 100) -> list[Message]:
        """Up to ``max_records`` messages, waiting at most ``timeout_s`` for the first."""
        ...

    def commit(self, message: Message) -> None:
        """Mark ``message`` and everything before it on its partition as processed."""
        ...

    def lag(self) -> dict[TopicPartition, int]:
        """Messages after the group's committed offset, per ``(topic, partition)`` this member reads.

        May ask the broker (Kafka: one round trip per partition): call it every
        few seconds, not on every poll. Raises :class:`~foundation.errors.IngestError`
        when the bus cannot answer.
        """
        ...

    def pause(self, paused: bool) -> None:
        """Stop (``True``) or restart fetching; a paused member still polls, so it stays in the group."""
        ...

    def rewind(self, partitions: Sequence[TopicPartition]) -> None:
        """Deliver these partitions again from the group's committed offsets (those this member still reads)."""
        ...

    def close(self) -> None:
        """Leave the group at once (its partitions move now); uncommitted messages will be delivered again."""
        ...


class Reader(Protocol):
    """Every partition of one topic, outside any group (:meth:`Bus.broadcast`)."""

    def poll(self, timeout_s: float, max_records: int = 500) -> list[Message]:
        """Up to ``max_records`` messages, waiting at most ``timeout_s`` for the first."""
        ...

    def caught_up(self) -> bool:
        """Whether everything the topic held when the reader started has been handed out."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


class Bus(Protocol):
    """Publish durable keyed messages; subscribe as a consumer group; read a topic whole."""

    def publish(self, topic: str, key: str, value: bytes, *, slot: int | None = None) -> None:
        """Send one message and return once it is durable (``slot``: on partition ``slot`` mod the partitions)."""
        ...

    def subscribe(self, topics: Sequence[str], group: str, *,
                  listener: RebalanceListener | None = None) -> Subscription:  # fmt: skip
        """Join ``group`` reading ``topics`` from its committed offsets (or the start)."""
        ...

    def broadcast(self, topic: str, lookback_s: float | None) -> Reader:
        """Read ``topic`` whole from the first message taken in the last ``lookback_s`` seconds (``None``: all)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class InProcessBus:
    """A bus inside one process: one partition per topic, offsets kept in memory.

    Each consumer group has one committed offset per topic; a new subscription of
    the group starts there, so a consumer that failed before committing sees the
    message again. Two live subscriptions of one group each see every message
    (there is no partition assignment in one process, so no rebalance either).

    Like a Kafka topic, each topic keeps only its last ``retention`` messages
    (offsets go on counting), so a service that runs for months holds a bounded
    log; a consumer more than ``retention`` messages behind skips to the oldest kept.
    """

    def __init__(self, retention: int = 20_000, clock: Callable[[], float] = time.time) -> None:
        self.retention = retention
        self._clock = clock
        self._base: dict[str, int] = {}  # offset of the first message kept, per topic
        self._logs: dict[str, list[Message]] = {}
        self._committed: dict[tuple[str, str], int] = {}
        self._changed = threading.Condition()

    @classmethod
    def from_uri(cls, uri: str) -> InProcessBus:
        """``inproc://`` takes no options."""
        parts = urlsplit(uri)
        if parts.netloc or parts.path or parts.query:
            msg = f"expected the bare URI inproc://, found {uri!r}"
            raise ConfigError(msg)
        return cls()

    def publish(self, topic: str, key: str, value: bytes, *, slot: int | None = None) -> None:
        """Append to the topic's log (its one partition, whatever ``slot``) and wake waiting consumers."""
        with self._changed:
            log = self._logs.setdefault(topic, [])
            base = self._base.setdefault(topic, 0)
            log.append(Message(topic, key, value, 0, base + len(log), self._clock()))
            if len(log) > self.retention:
                dropped = len(log) - self.retention
                del log[:dropped]
                self._base[topic] = base + dropped
            self._changed.notify_all()

    def subscribe(self, topics: Sequence[str], group: str, *,
                  listener: RebalanceListener | None = None) -> InProcessSubscription:  # fmt: skip
        """A subscription positioned at the group's committed offsets (``listener`` is never called)."""
        return InProcessSubscription(self, tuple(topics), group)

    def broadcast(self, topic: str, lookback_s: float | None) -> InProcessReader:
        """A reader of ``topic`` from the first message published in the last ``lookback_s`` seconds."""
        since = None if lookback_s is None else self._clock() - lookback_s
        with self._changed:
            log = self._logs.get(topic, [])
            base = self._base.get(topic, 0)
            first = next((m.offset for m in log if since is None or m.timestamp >= since), base + len(log))
            return InProcessReader(self, topic, first, base + len(log))

    def close(self) -> None:
        """Nothing to release."""

    def messages(self, topic: str) -> list[Message]:
        """The messages ``topic`` still holds (the last ``retention``; for tests and the CLI)."""
        with self._changed:
            return list(self._logs.get(topic, []))

    # -- used by the subscriptions and readers --------------------------------------------

    def _committed_offset(self, group: str, topic: str) -> int:
        with self._changed:
            return self._committed.get((group, topic), 0)

    def _lag(self, group: str, topics: Sequence[str]) -> dict[TopicPartition, int]:
        with self._changed:
            out = {}
            for topic in topics:
                base = self._base.get(topic, 0)
                end = base + len(self._logs.get(topic, []))
                out[(topic, 0)] = end - max(self._committed.get((group, topic), 0), base)
            return out

    def _commit(self, group: str, message: Message) -> None:
        with self._changed:
            slot = (group, message.topic)
            self._committed[slot] = max(self._committed.get(slot, 0), message.offset + 1)

    def _take(self, positions: dict[str, int], timeout_s: float, max_records: int) -> list[Message]:
        def available() -> list[Message]:
            out: list[Message] = []
            for topic, position in positions.items():
                start = max(position - self._base.get(topic, 0), 0)
                out.extend(self._logs.get(topic, [])[start : start + max_records - len(out)])
            return out

        with self._changed:
            self._changed.wait_for(lambda: bool(available()), timeout=max(timeout_s, 0.0))
            taken = available()
        for message in taken:
            positions[message.topic] = message.offset + 1
        return taken


class InProcessSubscription:
    """A consumer of an :class:`InProcessBus`."""

    def __init__(self, bus: InProcessBus, topics: tuple[str, ...], group: str) -> None:
        self._bus = bus
        self._group = group
        self._positions = {t: bus._committed_offset(group, t) for t in topics}
        self._paused = False

    def poll(self, timeout_s: float, max_records: int = 100) -> list[Message]:
        """Messages after this subscription's position (none while paused)."""
        if self._paused:
            return self._bus._take({}, timeout_s, max_records)
        return self._bus._take(self._positions, timeout_s, max_records)

    def commit(self, message: Message) -> None:
        """Record the group's offset past ``message``."""
        self._bus._commit(self._group, message)

    def lag(self) -> dict[TopicPartition, int]:
        """Per topic (partition 0): messages the topic holds after the group's committed offset."""
        return self._bus._lag(self._group, tuple(self._positions))

    def pause(self, paused: bool) -> None:
        """Hand out nothing while paused."""
        self._paused = paused

    def rewind(self, partitions: Sequence[TopicPartition]) -> None:
        """Go back to the group's committed offsets of these topics."""
        for topic, _ in partitions:
            if topic in self._positions:
                self._positions[topic] = self._bus._committed_offset(self._group, topic)

    def close(self) -> None:
        """Nothing to release; uncommitted messages stay for the next subscription."""


class InProcessReader:
    """A :meth:`InProcessBus.broadcast` reader."""

    def __init__(self, bus: InProcessBus, topic: str, position: int, end_at_start: int) -> None:
        self._bus = bus
        self._positions = {topic: position}
        self._target = end_at_start
        self._topic = topic

    def poll(self, timeout_s: float, max_records: int = 500) -> list[Message]:
        """The next messages of the topic."""
        return self._bus._take(self._positions, timeout_s, max_records)

    def caught_up(self) -> bool:
        """Read up to where the topic ended when the reader started."""
        return self._positions[self._topic] >= self._target

    def close(self) -> None:
        """Nothing to release."""


def _kafka(uri: str) -> Bus:
    from ingest.kafkabus import KafkaBus  # kafka-python is an optional extra

    return KafkaBus.from_uri(uri)


#: URI scheme -> factory.
BUSES: Registry[Callable[[str], Bus]] = Registry(
    "bus URI", {"inproc": InProcessBus.from_uri, "kafka": _kafka}, shown="{}://"
)


def get_bus(uri: str) -> Bus:
    """The bus for ``uri``; unknown schemes list the valid ones."""
    return BUSES.lookup(urlsplit(uri).scheme, asked=uri)(uri)
