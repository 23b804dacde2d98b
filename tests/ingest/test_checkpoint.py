"""The checkpoint: atomic, locked, bounded, and never silently reset."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ingest.checkpoint import Checkpoint
from ingest.errors import IngestError

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


@pytest.mark.parametrize("content", ["{not json", json.dumps({"version": 9, "files": {}})])
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
