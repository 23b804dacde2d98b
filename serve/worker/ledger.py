"""Which messages of each partition are done, and how far each partition may be committed.

A consumer commits "this message and everything before it" (Kafka's offsets),
so a partition may be committed only up to the first message that is not done:
a frame still waiting for GLM (or for a store that failed) holds back the
commits of every later message of its partition, and a crash re-delivers it.

Each offset is tracked once: a second delivery of an offset still in flight is
refused by :meth:`OffsetLedger.track` (it would otherwise be handled twice, and
finishing one copy must never mark the other done). When a rebalance takes
partitions away, :meth:`OffsetLedger.drop` forgets them whole; the new owner
reads them again from the committed offset.

>>> from ingest.bus import Message
>>> ledger = OffsetLedger()
>>> a, b, c = (Message("t", "k", b"", 0, offset) for offset in (7, 8, 9))
>>> [ledger.track(m) for m in (a, b, c, b)]
[True, True, True, False]
>>> ledger.done(b); ledger.committable()  # 7 is not done: nothing may be committed
[]
>>> ledger.done(a); [m.offset for m in ledger.committable()]
[8]
>>> ledger.committed(b); ledger.open()  # forgotten only once the commit went through
1
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from ingest.bus import Message, TopicPartition


class OffsetLedger:
    """Messages in flight per partition, in offset order, each done or not."""

    def __init__(self) -> None:
        self._offsets: dict[TopicPartition, list[int]] = {}
        self._entries: dict[TopicPartition, dict[int, tuple[Message, bool]]] = {}

    def track(self, message: Message) -> bool:
        """Start tracking ``message``; ``False`` if its offset is already in flight (a second delivery)."""
        slot = (message.topic, message.partition)
        entries = self._entries.setdefault(slot, {})
        if message.offset in entries:
            return False
        entries[message.offset] = (message, False)
        bisect.insort(self._offsets.setdefault(slot, []), message.offset)
        return True

    def done(self, message: Message) -> None:
        """Mark ``message`` done (nothing happens if its partition was dropped meanwhile)."""
        entries = self._entries.get((message.topic, message.partition), {})
        if message.offset in entries:
            entries[message.offset] = (entries[message.offset][0], True)

    def committable(self) -> list[Message]:
        """Per partition, the last message of the done prefix: what to commit now (see :meth:`committed`)."""
        out = []
        for slot, offsets in self._offsets.items():
            entries = self._entries[slot]
            last = None
            for offset in offsets:
                if not entries[offset][1]:
                    break
                last = entries[offset][0]
            if last is not None:
                out.append(last)
        return out

    def committed(self, message: Message) -> None:
        """The commit of ``message`` went through: forget it and everything before it on its partition."""
        slot = (message.topic, message.partition)
        offsets, entries = self._offsets.get(slot, []), self._entries.get(slot, {})
        while offsets and offsets[0] <= message.offset:
            entries.pop(offsets.pop(0), None)

    def drop(self, partitions: Iterable[TopicPartition]) -> int:
        """Forget every message of ``partitions``; return how many were still open (not done)."""
        dropped = 0
        for slot in set(partitions):
            entries = self._entries.pop(slot, {})
            self._offsets.pop(slot, None)
            dropped += sum(1 for _, is_done in entries.values() if not is_done)
        return dropped

    def open(self) -> int:
        """Messages tracked and not done yet."""
        return sum(1 for entries in self._entries.values() for _, is_done in entries.values() if not is_done)
