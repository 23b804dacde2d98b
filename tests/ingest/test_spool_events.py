"""The spool woken by the kernel: a file renamed into place is ready at once, one written in place still settles.

These run on the real file system with the real inotify notifications (through watchdog) and the system clock:
the spool's settle time is set far longer than each test waits, so a file listed early can only have been
listed because its rename was seen, and a wait that returns early can only have been woken by a notification.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from foundation.clock import SystemClock
from foundation.errors import ConfigError
from ingest.bus import InProcessBus
from ingest.checkpoint import Checkpoint
from ingest.daemon import DaemonSettings, IngestDaemon
from ingest.events import FRAMES_TOPIC, FrameEvent
from ingest.quarantine import Quarantine
from ingest.sources import SourceContext, get_source
from ingest.sources.spool import DirSpool
from tests.support.clock import FakeClock
from tests.support.goesfiles import START, write_abi_l1b

NAME = "OR_ABI-L1b-RadC-M6C13_G16_s20241671801178_e20241671803551_c20241671804000.nc"
LONG = 60.0  # a settle time and a poll interval no test here waits out


def spool_of(root: Path, settle_s: float, watch: str = "events") -> DirSpool:
    spool = get_source(f"dir:{root}?settle_s={settle_s}&watch={watch}", SourceContext(root / ".cache", SystemClock()))
    assert isinstance(spool, DirSpool)
    return spool


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[DirSpool]:
    root = tmp_path / "spool"
    root.mkdir()
    spool = spool_of(root, LONG, watch="auto")  # the default: notifications from the first wait on
    yield spool
    spool.close()


def later(seconds: float, action: object) -> threading.Thread:
    thread = threading.Timer(seconds, action)  # type: ignore[arg-type]
    thread.start()
    return thread


def renamed_in(folder: Path, name: str = NAME, data: bytes = b"x" * 1000) -> None:
    """Written under a hidden temporary name, then renamed into place (LDM's and most feeders' way)."""
    temporary = folder / f".{name}.part"
    temporary.write_bytes(data)
    os.replace(temporary, folder / name)


def test_a_renamed_in_file_is_announced_without_waiting_for_a_poll_or_a_settle(spool: DirSpool) -> None:
    assert (spool.poll(), spool.watching) == ([], False)
    spool.wait(0.0)  # the first wait starts the notifications
    assert spool.watching
    began = time.monotonic()
    writer = later(0.2, lambda: renamed_in(spool.root))
    listed = []
    while not listed and time.monotonic() - began < LONG / 2:
        spool.wait(LONG)  # woken by the temporary file's writes, then by the rename
        listed = spool.poll()
    woke = time.monotonic() - began
    writer.join()
    assert woke < LONG / 2  # woken by the rename, not by the end of the poll interval
    assert [c.name for c in listed] == [NAME]  # at once: the 60-s settle did not apply
    assert spool.pending() == 0


def test_a_file_moved_in_from_another_folder_is_ready_at_once(spool: DirSpool, tmp_path: Path) -> None:
    spool.wait(0.0)
    outside = tmp_path / "incoming"
    outside.mkdir()
    (outside / NAME).write_bytes(b"y" * 500)
    os.replace(outside / NAME, spool.root / NAME)  # an unmatched move into the tree
    began = time.monotonic()
    spool.wait(LONG)
    assert [c.name for c in spool.poll()] == [NAME]
    assert time.monotonic() - began < LONG / 2


def test_a_file_written_in_place_still_waits_for_its_settle(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    root.mkdir()
    spool = spool_of(root, settle_s=1.0)
    try:
        spool.wait(0.0)
        with (root / NAME).open("wb") as out:  # written under its final name
            out.write(b"z" * 100)
            out.flush()
            spool.wait(LONG)  # woken by the write
            assert (spool.poll(), spool.pending()) == ([], 1)  # seen, not complete yet
            out.write(b"z" * 100)
        began = time.monotonic()
        spool.wait(LONG)
        assert spool.poll() == []  # the second write restarted the settle
        while not (listed := spool.poll()) and time.monotonic() - began < LONG / 2:
            spool.wait(LONG)  # woken when the settle is due, not after the 60-s poll interval
        assert [(c.name, c.size) for c in listed] == [(NAME, 200)]
        assert time.monotonic() - began < LONG / 2
    finally:
        spool.close()


def test_a_file_renamed_in_then_changed_waits_for_its_settle(spool: DirSpool) -> None:
    spool.wait(0.0)
    renamed_in(spool.root)
    with (spool.root / NAME).open("ab") as out:  # a writer that goes on writing after its rename
        out.write(b"more")
    spool.wait(LONG)
    time.sleep(0.2)  # every notification of the append has arrived
    assert (spool.poll(), spool.pending()) == ([], 1)


def test_temporary_hidden_and_unwanted_names_are_never_listed_nor_remembered(spool: DirSpool, tmp_path: Path) -> None:
    spool.wait(0.0)
    outside = tmp_path / "incoming"
    (outside / ".hidden").mkdir(parents=True)
    (spool.root / ".hidden").mkdir()
    for name in (f".{NAME}.part", f"{NAME}.tmp", "notes.txt", NAME):  # moved in: complete, as a rename says
        (outside / name).write_bytes(b"m")
        os.replace(outside / name, spool.root / name)
    (outside / ".hidden" / NAME).write_bytes(b"h")
    os.replace(outside / ".hidden" / NAME, spool.root / ".hidden" / NAME)  # a folder the spool does not walk
    spool.wait(LONG)
    time.sleep(0.2)  # every notification has arrived
    assert [c.source_uri for c in spool.poll()] == [(spool.root / NAME).as_uri()]  # only the wanted one, at once
    assert spool._watch is not None
    assert spool._watch.renamed == {}  # nothing kept for files the spool will never list


def test_polling_mode_keeps_the_settle_rule_for_a_renamed_file(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    root.mkdir()
    clock = FakeClock(datetime(2024, 6, 15, 18, tzinfo=UTC))
    spool = DirSpool(root, clock, settle_s=2.0)  # watch="poll" is the constructor's default
    renamed_in(root)
    spool.wait(1.0)
    assert (spool.watching, clock.slept) == (False, [1.0])  # a plain sleep of the poll interval
    assert spool.poll() == []
    clock.advance(2.0)
    assert [c.name for c in spool.poll()] == [NAME]


def test_watch_option_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="watch: expected one of auto, events, poll, found 'inotify'"):
        spool_of(tmp_path, 1.0, watch="inotify")


def test_the_daemon_announces_a_renamed_in_frame_between_its_polls(tmp_path: Path) -> None:
    spool_dir, state, outside = tmp_path / "spool", tmp_path / "state", tmp_path / "outside"
    for folder in (spool_dir, state, outside):
        folder.mkdir()
    frame = write_abi_l1b(outside, np.full((4, 5), 100.0, np.float32), start=START)  # a valid CONUS block
    stop = threading.Event()
    clock = SystemClock(interrupt=stop)
    bus = InProcessBus()
    checkpoint = Checkpoint.open(state)
    source = get_source(f"dir:{spool_dir}?settle_s={LONG}", SourceContext(state / "cache", clock))
    daemon = IngestDaemon(source, bus, checkpoint, Quarantine(state / "quarantine"), clock,
                          settings=DaemonSettings(poll_interval_s=LONG, future_tolerance_s=1e9))  # fmt: skip
    runner = threading.Thread(target=daemon.run, kwargs={"stop": stop})
    runner.start()
    try:
        time.sleep(0.5)  # the first poll found nothing; the daemon now waits for up to a minute
        began = time.monotonic()
        renamed_in(spool_dir, frame.name, frame.read_bytes())
        while not bus.messages(FRAMES_TOPIC) and time.monotonic() - began < LONG / 2:
            time.sleep(0.02)
        assert [FrameEvent.from_json(m.value).name for m in bus.messages(FRAMES_TOPIC)] == [frame.name]
    finally:
        stop.set()
        runner.join(timeout=10)
        checkpoint.close()
    assert not runner.is_alive()  # the stop ended the wait at once
    assert not getattr(source, "watching", True)  # the run closed the notifications


def test_a_renamed_in_file_never_overtakes_an_older_one_still_settling(tmp_path: Path) -> None:
    """Announced out of scan order, a frame could be scored without an older granule of its window."""
    root = tmp_path / "spool"
    root.mkdir()
    older = "OR_GLM-L2-LCFA_G16_s20241671800000_e20241671800200_c20241671800220.nc"
    newer = "OR_ABI-L1b-RadM1-M6C13_G16_s20241671800245_e20241671800303_c20241671800350.nc"
    (root / older).write_bytes(b"g" * 100)  # there before the notifications start: it settles
    spool = spool_of(root, settle_s=5.0)  # long enough that a loaded machine (CI) does not see it settle early
    try:
        spool.wait(0.0)
        assert (spool.poll(), spool.pending()) == ([], 1)  # the older one is seen: it settles from now on
        time.sleep(0.5)
        renamed_in(root, newer)  # ready at once on its own, but scanned after the settling granule
        began = time.monotonic()
        spool.wait(LONG)
        # Held back, not listed. The wait may end on the hidden temporary file before the rename's notification
        # arrives: then the newer one is counted as settling too (2) at this poll, and known renamed at a later one.
        assert (spool.poll(), spool.pending()) in (([], 1), ([], 2))
        while not (listed := spool.poll()) and time.monotonic() - began < LONG / 2:
            spool.wait(LONG)
        # Together, once the older one settled. Had the newer one not been known renamed-in, it would have settled
        # half a second after the older one (seen that much later), and the older one would be listed alone here.
        assert {c.name for c in listed} == {older, newer}
    finally:
        spool.close()
