"""Typed events: versioned JSON decoded in one place; anything unknown, incomplete or of the wrong type refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from foundation.errors import EventError
from ingest.events import (
    DEADLETTER_TOPIC,
    FRAMES_TOPIC,
    GLM_TOPIC,
    GRIDS_TOPIC,
    DeadLetterEvent,
    FrameEvent,
    GridEvent,
    GridKey,
    describe,
)
from ingest.filenames import parse_filename

NAME = "OR_ABI-L1b-RadM1-M6C13_G19_s20241671801245_e20241671801303_c20241671801598.nc"
GLM_NAME = "OR_GLM-L2-LCFA_G19_s20250971300200_e20250971300400_c20250971300420.nc"


def frame_event(name: str = NAME) -> FrameEvent:
    return FrameEvent.of(
        parse_filename(name),
        uri="file:///spool/" + name,
        source_uri="s3://noaa-goes19/ABI-L1b-RadM/2024/167/18/" + name,
        size=123_456,
        ingest_time=datetime(2024, 6, 15, 18, 2, 30, tzinfo=UTC),
    )


def grid_event() -> GridEvent:
    key = GridKey("G19", "M1", datetime(2024, 6, 15, 18, 1, 24, 500_000, tzinfo=UTC), "lightning", 3)
    return GridEvent.of(key, valid_time=datetime(2024, 6, 15, 18, 31, 24, tzinfo=UTC), uri="/grids/x.nc",
                        frame=NAME, glm_used=45, glm_missing=0, created=datetime(2024, 6, 15, 18, 3, tzinfo=UTC),
                        scan_start=datetime(2024, 6, 15, 18, 1, 24, 500_000, tzinfo=UTC))  # fmt: skip


def test_frame_event_fields_come_from_the_name() -> None:
    event = frame_event()
    assert (event.satellite, event.product, event.family) == ("G19", "ABI-L1b-RadM", "ABI-L1b-Rad")
    assert (event.sector, event.band, event.mode, event.label) == ("M1", 13, 6, "M1")
    assert (event.topic, event.key) == (FRAMES_TOPIC, NAME)  # spread by load; the name is the idempotency key
    assert event.scan_start == "2024-06-15T18:01:24.500Z"
    assert event.scan_end == "2024-06-15T18:01:30.300Z"
    assert event.ingest_time == "2024-06-15T18:02:30.000Z"
    assert event.start == datetime(2024, 6, 15, 18, 1, 24, 500_000, tzinfo=UTC)


def test_frame_event_round_trips_and_carries_no_arrays() -> None:
    event = frame_event()
    payload = event.to_json()
    doc = json.loads(payload)
    assert list(doc)[:2] == ["schema", "version"]
    assert (doc["schema"], doc["version"]) == ("ltgcast.frame", 1)
    assert all(isinstance(v, str | int | type(None)) for v in doc.values())
    assert len(payload) < 1024
    assert FrameEvent.from_json(payload) == event


def test_glm_events_go_to_their_own_topic_keyed_by_satellite() -> None:
    event = frame_event(GLM_NAME)
    assert (event.is_glm, event.topic, event.key, event.label) == (True, GLM_TOPIC, "G19", "GLM")
    assert (event.sector, event.band, event.product) == (None, None, "GLM-L2-LCFA")


def changed(change: dict[str, object], base: FrameEvent | None = None) -> bytes:
    return json.dumps(json.loads((base or frame_event()).to_json()) | change).encode()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"version": 2}, "expected schema 'ltgcast.frame' version 1, found schema 'ltgcast.frame' version 2"),
        ({"schema": "ltgcast.grid"}, "found schema 'ltgcast.grid'"),
        ({"version": "1"}, "Expected `int`, got `str` - at `$.version`"),
        ({"family": 1}, "Expected `str`, got `int` - at `$.family`"),
        ({"band": "13"}, "Expected `int | null`, got `str` - at `$.band`"),
        ({"size": True}, "Expected `int`, got `bool` - at `$.size`"),
        ({"scan_start": "yesterday"}, "FrameEvent.scan_start: expected ISO 8601 UTC, found 'yesterday'"),
        ({"scan_end": "2024-06-15T18:01:30"}, "FrameEvent.scan_end: expected ISO 8601 UTC"),
        ({"size": -1}, "FrameEvent.size: expected a byte count >= 0, found -1"),
        ({"sector": "M2"}, "disagree with its name"),
        ({"name": "passwd"}, "FrameEvent.name: "),
        ({"scan_start": "2024-06-15T18:01:25.500Z"}, "FrameEvent times 2024-06-15T18:01:25.500Z..2024"),
        ({"uri": "http://evil/x.nc"}, "expected a file:// URI or a local path"),
    ],
)
def test_bad_frame_events_are_refused_naming_the_problem(change: dict[str, object], expected: str) -> None:
    with pytest.raises(EventError) as refused:
        FrameEvent.from_json(changed(change))
    assert expected in str(refused.value)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"\xff\x00", "undecodable bytes"),
        (b"[1, 2]", "Expected `object`, got `array`"),
        (b"{}", "Object missing required field `schema`"),
        (b'{"schema": "ltgcast.frame", "version": 1}', "FrameEvent: Object missing required field `name`"),
        (b'{"schema": "ltgcast.frame", "version": 1' + b" " * 10, "undecodable bytes"),
        (b"null", "Expected `object`, got `null`"),
    ],
)
def test_garbage_and_missing_keys_are_refused(payload: bytes, expected: str) -> None:
    with pytest.raises(EventError) as refused:
        FrameEvent.from_json(payload)
    assert expected in str(refused.value)


def test_a_missing_field_is_named() -> None:
    doc = json.loads(frame_event().to_json())
    del doc["uri"]
    with pytest.raises(EventError, match="missing required field `uri`"):
        FrameEvent.from_json(json.dumps(doc))


def test_dead_letter_round_trip_and_stage_check() -> None:
    letter = DeadLetterEvent(
        name="garbage.nc",
        key="unknown",
        stage="name",
        reason="no grammar",
        source_uri="file:///spool/garbage.nc",
        quarantine_uri=None,
        ingest_time="2024-06-15T18:02:30.000Z",
        origin="ltgcast.frames.v1/3@120",
    )
    assert DeadLetterEvent.from_json(letter.to_json()) == letter
    old = json.loads(letter.to_json())
    del old["origin"]  # letters written before ``origin`` existed still decode
    assert DeadLetterEvent.from_json(json.dumps(old)).origin is None
    bad = json.loads(letter.to_json()) | {"stage": "mood"}
    with pytest.raises(EventError, match="stage: expected one of"):
        DeadLetterEvent.from_json(json.dumps(bad))


def test_a_grid_event_is_a_view_of_its_grid_key() -> None:
    event = grid_event()
    assert event.grid_id == "G19_M1_20240615T180124Z_lightning-v3"
    assert event.grid == GridKey.parse(event.grid_id)
    assert event.scan_start == "2024-06-15T18:01:24.500Z"  # the frame's own time; the id keeps whole seconds
    assert GridEvent.from_json(event.to_json()) == event
    forged = json.loads(event.to_json()) | {"grid_id": "G19_M1_20240615T180124Z_lightning-v4"}
    with pytest.raises(EventError, match="is not the id of its fields"):
        GridEvent.from_json(json.dumps(forged))
    with pytest.raises(EventError, match="granule counts must be >= 0"):
        GridEvent.from_json(json.dumps(json.loads(event.to_json()) | {"glm_used": -1}))


def test_grid_keys_round_trip_sort_and_refuse_what_would_not_parse_back() -> None:
    key = GridKey.parse("G19_C_20240615T200024Z_lightning-v3")
    assert (key.satellite, key.sector, key.model_name, key.model_version) == ("G19", "C", "lightning", 3)
    later = GridKey("G19", "C", datetime(2024, 6, 15, 20, 0, 24, 900_000, tzinfo=UTC), "lightning", 4)
    assert later.scan_start == key.scan_start  # to the second, as the id spells it
    assert max([later, key], key=lambda k: k.order) == later
    with pytest.raises(ValueError, match="not a valid grid key"):
        GridKey("G19", "C", key.scan_start, "light ning/..", 3)
    with pytest.raises(ValueError, match="timezone-aware"):
        GridKey("G19", "C", datetime(2024, 6, 15), "lightning", 3)  # noqa: DTZ001


@pytest.mark.parametrize("topic", [FRAMES_TOPIC, GLM_TOPIC, GRIDS_TOPIC, DEADLETTER_TOPIC])
def test_every_topic_has_one_decoder_and_refuses_the_others_records(topic: str) -> None:
    records = {FRAMES_TOPIC: frame_event(), GLM_TOPIC: frame_event(GLM_NAME), GRIDS_TOPIC: grid_event()}
    if topic in records:
        assert describe(topic, records[topic].to_json()) == records[topic]
    wrong = grid_event() if topic != GRIDS_TOPIC else frame_event()
    with pytest.raises(EventError, match="expected schema"):
        describe(topic, wrong.to_json())


def test_mutated_events_are_records_or_event_errors_never_anything_else() -> None:
    """A seeded mutation loop over a real event: every outcome is a record or an EventError (any other raises)."""
    import random

    rng = random.Random(14)
    base = frame_event().to_json()
    outcomes = {"ok": 0, "refused": 0}
    for _ in range(3000):
        data = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data))
            data[at] = rng.randrange(256)
        try:
            FrameEvent.from_json(bytes(data))
        except EventError:
            outcomes["refused"] += 1
        else:
            outcomes["ok"] += 1
    assert outcomes["refused"] > 2000  # most mutations break the name, a time or the JSON itself
    assert outcomes["ok"] + outcomes["refused"] == 3000
