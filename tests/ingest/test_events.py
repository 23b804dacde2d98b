"""FrameEvent / DeadLetterEvent: versioned JSON, refused when unknown or incomplete."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from ingest.errors import EventError
from ingest.events import DeadLetterEvent, FrameEvent
from ingest.filenames import parse_filename

NAME = "OR_ABI-L1b-RadM1-M6C13_G19_s20241671801245_e20241671801303_c20241671801598.nc"


def frame_event() -> FrameEvent:
    return FrameEvent.of(
        parse_filename(NAME),
        uri="file:///spool/" + NAME,
        source_uri="s3://noaa-goes19/ABI-L1b-RadM/2024/167/18/" + NAME,
        size=123_456,
        ingest_time=datetime(2024, 6, 15, 18, 2, 30, tzinfo=UTC),
    )


def test_frame_event_fields_come_from_the_name() -> None:
    event = frame_event()
    assert (event.satellite, event.product, event.family) == ("G19", "ABI-L1b-RadM", "ABI-L1b-Rad")
    assert (event.sector, event.band, event.mode, event.key) == ("M1", 13, 6, "M1")
    assert event.scan_start == "2024-06-15T18:01:24.500Z"
    assert event.scan_end == "2024-06-15T18:01:30.300Z"
    assert event.ingest_time == "2024-06-15T18:02:30.000Z"


def test_frame_event_round_trips_and_carries_no_arrays() -> None:
    event = frame_event()
    payload = event.to_json()
    doc = json.loads(payload)
    assert doc["schema"] == "ltgcast.frame"
    assert doc["version"] == 1
    assert all(isinstance(v, str | int | type(None)) for v in doc.values())
    assert len(payload) < 1024
    assert FrameEvent.from_json(payload) == event


def test_glm_events_are_keyed_glm() -> None:
    name = parse_filename("OR_GLM-L2-LCFA_G19_s20250971300200_e20250971300400_c20250971300420.nc")
    event = FrameEvent.of(name, uri="file:///x", source_uri="file:///x", size=1, ingest_time=datetime.now(UTC))
    assert (event.key, event.sector, event.band, event.product) == ("GLM", None, None, "GLM-L2-LCFA")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"version": 2}, "expected schema 'ltgcast.frame' version 1, found schema 'ltgcast.frame' version 2"),
        ({"schema": "ltgcast.grid"}, "found schema 'ltgcast.grid'"),
        ({"scan_start": "yesterday"}, "FrameEvent.scan_start: expected ISO 8601 UTC, found 'yesterday'"),
        ({"scan_end": "2024-06-15T18:01:30"}, "FrameEvent.scan_end: expected ISO 8601 UTC"),
        ({"size": -1}, "FrameEvent.size: expected a byte count >= 0, found -1"),
    ],
)
def test_bad_frame_events_are_refused_naming_the_problem(change: dict[str, object], expected: str) -> None:
    doc = json.loads(frame_event().to_json()) | change
    with pytest.raises(EventError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        FrameEvent.from_json(json.dumps(doc))


def test_missing_keys_and_garbage_are_refused() -> None:
    doc = json.loads(frame_event().to_json())
    del doc["uri"]
    with pytest.raises(EventError, match="FrameEvent is missing uri"):
        FrameEvent.from_json(json.dumps(doc))
    with pytest.raises(EventError, match="undecodable"):
        FrameEvent.from_json(b"\xff\x00")
    with pytest.raises(EventError, match="found list"):
        FrameEvent.from_json(b"[1, 2]")


def test_dead_letter_round_trip_and_stage_check() -> None:
    letter = DeadLetterEvent(
        name="garbage.nc",
        key="unknown",
        stage="name",
        reason="no grammar",
        source_uri="file:///spool/garbage.nc",
        quarantine_uri=None,
        ingest_time="2024-06-15T18:02:30.000Z",
    )
    assert DeadLetterEvent.from_json(letter.to_json()) == letter
    bad = json.loads(letter.to_json()) | {"stage": "mood"}
    with pytest.raises(EventError, match="stage: expected one of"):
        DeadLetterEvent.from_json(json.dumps(bad))
