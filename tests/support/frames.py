"""Frames onto a bus as the ingest daemon announces them: one :class:`FrameEvent` per file."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from ingest.bus import Bus
from ingest.events import FrameEvent
from ingest.filenames import parse_filename


def frame_event(path: Path, ingest_time: datetime, *, uri: str | None = None,
                source_uri: str | None = None) -> FrameEvent:  # fmt: skip
    """The event of one GOES-R file (an ABI frame or a GLM granule), named, sized and keyed from the file."""
    return FrameEvent.of(parse_filename(path), uri=uri or str(path), source_uri=source_uri or str(path),
                         size=path.stat().st_size, ingest_time=ingest_time)  # fmt: skip


def publish_frames(bus: Bus, paths: Iterable[Path], ingest_time: datetime, *, topic: str | None = None,
                   uri: str | None = None, source_uri: str | None = None) -> list[FrameEvent]:  # fmt: skip
    """Publish each file's event in the order given; return the events.

    As the daemon does, each goes to its own topic (frames or GLM) and partition slot; ``topic`` puts them all
    on one topic instead (in one order: granules given first are indexed before the frames that need them).
    ``uri``/``source_uri`` override the file paths (one file only).
    """
    events = []
    for path in paths:
        event = frame_event(path, ingest_time, uri=uri, source_uri=source_uri)
        if topic is None:
            bus.publish(event.topic, event.key, event.to_json(), slot=event.slot)
        else:
            bus.publish(topic, event.key, event.to_json())
        events.append(event)
    return events
