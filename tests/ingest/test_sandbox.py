"""A file that hangs, crashes or bloats the reader costs a child process, never the ingest daemon.

In the time-limit test a named pipe with a GOES-R name stands in for the byte-flipped granule the fuzz loop
found (HDF5 never returns from opening it): opening a pipe nobody writes to blocks for ever, deterministically.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY

from foundation.errors import FrameDecodeError
from ingest.bus import InProcessBus
from ingest.checkpoint import Checkpoint
from ingest.daemon import DaemonSettings, IngestDaemon
from ingest.events import DEADLETTER_TOPIC, GLM_TOPIC, DeadLetterEvent, FrameEvent
from ingest.quarantine import Quarantine
from ingest.sandbox import Isolation, check_in_child
from ingest.sources import Candidate
from tests.support.clock import FakeClock
from tests.support.goesfiles import write_abi_l1b, write_glm

STUCK = "OR_GLM-L2-LCFA_G16_s20241671802200_e20241671802400_c20241671802415.nc"


def _stuck(directory: Path) -> Path:
    path = directory / STUCK
    os.mkfifo(path)
    return path


def test_a_file_whose_reading_never_ends_is_refused_at_the_time_limit(tmp_path):
    with pytest.raises(FrameDecodeError) as caught:
        check_in_child(_stuck(tmp_path), isolation=Isolation(timeout_s=1.0))
    assert caught.value.stage == "decode"
    assert caught.value.reason.startswith("reading did not finish within 1 s and was stopped")


def test_a_read_past_the_memory_cap_is_refused(tmp_path):
    path = write_abi_l1b(tmp_path, np.full((1500, 2500), 60.0))  # a CONUS frame needs some 330 MiB of address space
    with pytest.raises(FrameDecodeError) as caught:
        check_in_child(path, isolation=Isolation(memory_limit_mib=260))
    assert caught.value.reason == "reading needed more than the 260 MiB of memory allowed"


def test_the_readers_own_refusal_comes_back_with_its_stage(tmp_path):
    with pytest.raises(FrameDecodeError) as caught:
        check_in_child(write_abi_l1b(tmp_path, np.full((4, 5), np.nan)))
    assert caught.value.stage == "empty"
    assert type(caught.value).__name__ == "FrameEmptyError"
    assert caught.value.reason.startswith("0 of 20 earth pixels are valid")


def test_flashes_dropped_in_the_child_are_counted_here(tmp_path, caplog):
    path = write_glm(tmp_path, lat=[35.0, np.nan], lon=[-97.0, -96.0], offsets_s=[1.0, 2.0])
    before = REGISTRY.get_sample_value("ltgcast_glm_flashes_dropped_total", {"reason": "position"}) or 0.0
    check_in_child(path)
    after = REGISTRY.get_sample_value("ltgcast_glm_flashes_dropped_total", {"reason": "position"})
    assert after == before + 1
    assert any(r.getMessage().endswith("dropped 1 of 2 flashes (position 1)") for r in caplog.records)


class _Listed:
    """A source that hands over the files it was given, as they are."""

    def __init__(self, paths: list[Path]) -> None:
        self.candidates = [Candidate(p.name, p.as_uri(), 0, local=p) for p in paths]

    def poll(self) -> list[Candidate]:
        return list(self.candidates)

    def pending(self) -> int:
        return 0

    def fetch(self, candidate: Candidate) -> Path:
        assert candidate.local is not None
        return candidate.local

    def discard(self, candidate: Candidate, local: Path) -> None:
        return None


def test_the_daemon_refuses_a_file_its_child_cannot_read_and_goes_on(tmp_path):
    # the child needs some 200 MiB of address space for a small granule and some 330 MiB for a CONUS frame
    bloated = write_abi_l1b(tmp_path, np.full((1500, 2500), 60.0))
    good = write_glm(tmp_path, lat=[35.0], lon=[-97.0], offsets_s=[1.0])
    clock = FakeClock(datetime(2024, 6, 15, 18, 40, tzinfo=UTC))
    bus = InProcessBus()
    checkpoint = Checkpoint.open(tmp_path / "state")
    try:
        settings = DaemonSettings(isolation=Isolation(memory_limit_mib=265))
        daemon = IngestDaemon(_Listed([bloated, good]), bus, checkpoint, Quarantine(tmp_path / "q"), clock,
                              settings=settings)  # fmt: skip
        report = daemon.poll_once()
    finally:
        checkpoint.close()
    assert report.error is None
    assert dict(report.outcomes) == {"quarantined": 1, "announced": 1}
    (letter,) = [DeadLetterEvent.from_json(m.value) for m in bus.messages(DEADLETTER_TOPIC)]
    assert (letter.name, letter.stage, letter.reason) == (
        bloated.name,
        "decode",
        "reading needed more than the 265 MiB of memory allowed",
    )
    assert [FrameEvent.from_json(m.value).name for m in bus.messages(GLM_TOPIC)] == [good.name]


@pytest.mark.parametrize("preload", [False, True])
def test_the_checks_children_do_not_import_the_main_script_again(tmp_path: Path, preload: bool) -> None:
    """Each check's child re-runs the parent's main script; with its imports preloaded they cost nothing."""
    frame = write_abi_l1b(tmp_path, np.full((4, 5), 100.0, np.float32))
    script = tmp_path / "main.py"
    script.write_text(
        "import sys\nimport ltgcast.cli\nfrom ingest.sandbox import check_in_child, preload_in_checks\n"
        f"if __name__ == '__main__':\n    if {preload}:\n        preload_in_checks('ltgcast.cli')\n"
        f"    for _ in range(3):\n        check_in_child({str(frame)!r})\n"
    )
    done = subprocess.run([sys.executable, "-X", "importtime", str(script)], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).resolve().parents[2])  # fmt: skip
    imports = [line for line in done.stderr.splitlines() if line.endswith("| ltgcast.cli")]
    assert len(imports) == (2 if preload else 4)  # the parent and the fork server, or the parent and each child
