"""The checkpoint: atomic, locked, bounded, and never silently reset."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from foundation.errors import IngestError
from ingest.checkpoint import Checkpoint

T0 = datetime(2024, 6, 15, 18, 0, tzinfo=UTC)


def test_outcomes_survive_a_reopen(tmp_path: Path) -> None:
    checkpoint = Checkpoint.open(tmp_path)
    checkpoint.record("a.nc", "announced", T0, T0)
    checkpoint.record("b.nc", "quarantined", None, T0)
    checkpoint.close()
    again = Checkpoint.open(tmp_path)
    assert again.seen("a.nc")
    assert again.seen("b.nc")
    assert not again.seen("c.nc")
    assert again.watermark == T0
    again.close()
    assert not (tmp_path / "checkpoint.json.tmp").exists()


def test_one_daemon_per_state_folder(tmp_path: Path) -> None:
    first = Checkpoint.open(tmp_path)
    with pytest.raises(IngestError, match="locked by another ingest daemon"):
        Checkpoint.open(tmp_path)
    first.close()
    Checkpoint.open(tmp_path).close()


@pytest.mark.parametrize("content", ["{not json", json.dumps({"version": 9, "files": {}}), "[1, 2]"])
def test_an_unreadable_checkpoint_stops_the_daemon(tmp_path: Path, content: str) -> None:
    (tmp_path / "checkpoint.json").write_text(content)
    with pytest.raises(IngestError, match="checkpoint .* is unreadable .* refusing to start afresh"):
        Checkpoint.open(tmp_path)
    Checkpoint.open(tmp_path / "elsewhere").close()  # the lock was released on the way out


def test_old_entries_are_forgotten_behind_the_watermark(tmp_path: Path) -> None:
    checkpoint = Checkpoint.open(tmp_path, retention=timedelta(hours=1))
    checkpoint.record("old.nc", "announced", T0, T0)
    checkpoint.record("new.nc", "announced", T0 + timedelta(minutes=90), T0 + timedelta(minutes=90))
    assert not checkpoint.seen("old.nc")
    assert checkpoint.seen("new.nc")
    assert checkpoint.too_late(T0 + timedelta(minutes=29))
    assert not checkpoint.too_late(T0 + timedelta(minutes=31))
    checkpoint.close()
    doc = json.loads((tmp_path / "checkpoint.json").read_text())
    assert list(doc["files"]) == ["new.nc"]


def test_a_file_named_in_the_future_does_not_make_real_files_late(tmp_path: Path) -> None:
    checkpoint = Checkpoint.open(tmp_path, retention=timedelta(hours=1))
    checkpoint.record("future.nc", "announced", T0 + timedelta(days=300), T0)
    assert checkpoint.watermark == T0
    assert not checkpoint.too_late(T0 - timedelta(minutes=30))
    checkpoint.close()


def test_a_refused_file_is_tried_again_only_with_another_size(tmp_path: Path) -> None:
    checkpoint = Checkpoint.open(tmp_path)
    checkpoint.record("cut.nc", "quarantined", T0, T0, size=4000)
    checkpoint.record("sent.nc", "announced", T0, T0, size=9000)
    assert checkpoint.seen("cut.nc", 4000)
    assert not checkpoint.seen("cut.nc", 9000)
    assert checkpoint.seen("sent.nc", 1234)  # announced is final whatever the size
    checkpoint.close()


def test_old_refusals_before_any_announcement_are_remembered(tmp_path: Path) -> None:
    checkpoint = Checkpoint.open(tmp_path, retention=timedelta(hours=1))
    now = T0 + timedelta(days=400)  # a backfill of old data: scan times far behind the wall clock
    checkpoint.record("old-bad.nc", "quarantined", T0, now, size=10)
    assert checkpoint.seen("old-bad.nc", 10)
    checkpoint.close()
