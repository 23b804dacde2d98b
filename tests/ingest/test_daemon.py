"""The ingest daemon on a directory spool: exactly once, partial writes, restarts, bad files.

Uses the real spool, checkpoint and quarantine on tmp_path with the in-process bus
and a fake clock; the same flows run against the real Kafka broker in
tests/ltgcast/test_ingest_cli.py.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY

from foundation.errors import IngestError
from ingest.bus import InProcessBus
from ingest.checkpoint import Checkpoint
from ingest.daemon import DaemonSettings, IngestDaemon
from ingest.events import DEADLETTER_TOPIC, FRAMES_TOPIC, GLM_TOPIC, DeadLetterEvent, FrameEvent
from ingest.filenames import parse_filename
from ingest.quarantine import Quarantine
from ingest.sources import Candidate, FrameFilter
from ingest.sources.spool import DirSpool
from tests.support.clock import FakeClock
from tests.support.goesfiles import write_abi_l1b, write_glm

NOW = datetime(2024, 6, 15, 18, 40, tzinfo=UTC)


class Rig:
    """A spool, a state folder, a bus and a clock; make daemons over them."""

    def __init__(self, tmp: Path) -> None:
        self.spool = tmp / "spool"
        self.state = tmp / "state"
        self.spool.mkdir()
        self.bus = InProcessBus(clock=publish_order())  # timestamps count publishes: one order over every topic
        self.clock = FakeClock(NOW)
        self.checkpoint: Checkpoint | None = None

    def daemon(self, **filter_args: object) -> IngestDaemon:
        if self.checkpoint is not None:
            self.checkpoint.close()
        self.checkpoint = Checkpoint.open(self.state)
        return IngestDaemon(
            DirSpool(self.spool, self.clock, settle_s=2.0),
            self.bus,
            self.checkpoint,
            Quarantine(self.state / "quarantine"),
            self.clock,
            frame_filter=FrameFilter(**filter_args),  # type: ignore[arg-type]
            settings=DaemonSettings(poll_interval_s=1.0, max_fetch_failures=2),
        )

    def frames(self) -> list[FrameEvent]:
        """ABI frames and GLM granules as announced, in publish order (they travel on two topics)."""
        messages = self.bus.messages(FRAMES_TOPIC) + self.bus.messages(GLM_TOPIC)
        return [FrameEvent.from_json(m.value) for m in sorted(messages, key=lambda m: m.timestamp)]

    def letters(self) -> list[DeadLetterEvent]:
        return [DeadLetterEvent.from_json(m.value) for m in self.bus.messages(DEADLETTER_TOPIC)]

    def settle(self, daemon: IngestDaemon) -> None:
        """Two polls, 3 s apart: everything complete in the spool is handled."""
        daemon.poll_once()
        self.clock.advance(3)
        daemon.poll_once()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(tmp_path)
    yield rig
    if rig.checkpoint is not None:
        rig.checkpoint.close()


def publish_order() -> Callable[[], float]:
    return itertools.count().__next__  # type: ignore[return-value]


def scenario_files(meso_scenario: Path, abi: int, glm: int) -> list[Path]:
    return sorted(meso_scenario.glob("OR_ABI-*.nc"))[:abi] + sorted(meso_scenario.glob("OR_GLM-*.nc"))[:glm]


def test_each_file_is_announced_once_in_time_order(rig: Rig, meso_scenario: Path) -> None:
    files = scenario_files(meso_scenario, abi=3, glm=6)
    for path in files:
        shutil.copy(path, rig.spool / path.name)
    daemon = rig.daemon()
    rig.settle(daemon)
    for _ in range(3):  # later polls list the same files again
        rig.clock.advance(5)
        daemon.poll_once()
    frames = rig.frames()
    assert sorted(f.name for f in frames) == sorted(p.name for p in files)
    assert [f.scan_start for f in frames] == sorted(f.scan_start for f in frames)
    first = next(f for f in frames if f.family == "ABI-L1b-Rad")
    assert (first.satellite, first.sector, first.band, first.mode, first.key) == ("G19", "M1", 13, 6, first.name)
    on_topics = {m.topic for m in rig.bus.messages(GLM_TOPIC)} | {m.topic for m in rig.bus.messages(FRAMES_TOPIC)}
    assert on_topics == {GLM_TOPIC, FRAMES_TOPIC}
    assert all(FrameEvent.from_json(m.value).is_glm for m in rig.bus.messages(GLM_TOPIC))
    assert not any(FrameEvent.from_json(m.value).is_glm for m in rig.bus.messages(FRAMES_TOPIC))
    assert first.uri == (rig.spool / first.name).resolve().as_uri()
    assert first.size == (rig.spool / first.name).stat().st_size
    assert first.ingest_time == "2024-06-15T18:40:03.000Z"


def test_partial_write_is_not_read_until_the_writer_stops(rig: Rig, meso_scenario: Path) -> None:
    source = scenario_files(meso_scenario, abi=1, glm=0)[0]
    data = source.read_bytes()
    target = rig.spool / source.name
    daemon = rig.daemon()
    with target.open("wb") as out:
        out.write(data[: len(data) // 3])
        out.flush()
        for _ in range(3):  # the writer keeps writing; polls keep coming
            daemon.poll_once()
            rig.clock.advance(1.5)
            out.write(data[len(data) // 3 : 2 * len(data) // 3] if _ == 0 else b"")
            out.flush()
            os.utime(target, ns=(0, int(rig.clock.now().timestamp() * 1e9)))
        assert rig.frames() == []
        assert daemon.source.pending() == 1
        out.write(data[2 * len(data) // 3 :])
    os.utime(target, ns=(0, int(rig.clock.now().timestamp() * 1e9)))
    daemon.poll_once()
    assert rig.frames() == []  # complete, but not yet stable for settle_s
    rig.clock.advance(2.5)
    daemon.poll_once()
    assert [f.name for f in rig.frames()] == [source.name]
    assert rig.letters() == []


def test_temporary_names_are_never_read_and_a_rename_is(rig: Rig, meso_scenario: Path) -> None:
    source = scenario_files(meso_scenario, abi=1, glm=0)[0]
    temporary = rig.spool / f".{source.name}.tmp"
    shutil.copy(source, temporary)
    daemon = rig.daemon()
    rig.settle(daemon)
    assert rig.frames() == []
    assert daemon.source.pending() == 0  # a temporary name is not even pending
    temporary.rename(rig.spool / source.name)
    rig.settle(daemon)
    assert [f.name for f in rig.frames()] == [source.name]


def test_restart_in_the_middle_misses_nothing_and_repeats_nothing(rig: Rig, meso_scenario: Path) -> None:
    files = scenario_files(meso_scenario, abi=4, glm=4)
    for path in files[:5]:
        shutil.copy(path, rig.spool / path.name)
    rig.settle(rig.daemon())
    assert len(rig.frames()) == 5
    for path in files[5:]:  # these land while the daemon is down
        shutil.copy(path, rig.spool / path.name)
    rig.settle(rig.daemon())  # a new process: state from the checkpoint only
    names = [f.name for f in rig.frames()]
    assert sorted(names) == sorted(p.name for p in files)
    assert len(names) == len(set(names))


def test_a_duplicate_dropped_twice_is_announced_once(rig: Rig, meso_scenario: Path) -> None:
    path = scenario_files(meso_scenario, abi=1, glm=0)[0]
    shutil.copy(path, rig.spool / path.name)
    daemon = rig.daemon()
    rig.settle(daemon)
    (rig.spool / "again").mkdir()
    shutil.copy(path, rig.spool / "again" / path.name)  # same file, other folder
    shutil.copy(path, rig.spool / path.name)  # and overwritten in place
    rig.clock.advance(5)
    rig.settle(daemon)
    assert [f.name for f in rig.frames()] == [path.name]


def test_corrupt_file_is_quarantined_while_the_next_good_one_is_announced(rig: Rig, meso_scenario: Path) -> None:
    good = scenario_files(meso_scenario, abi=2, glm=0)
    truncated = rig.spool / good[0].name
    truncated.write_bytes(good[0].read_bytes()[:4000])
    shutil.copy(good[1], rig.spool / good[1].name)
    (rig.spool / "notes.nc").write_text("not a GOES file")
    daemon = rig.daemon()
    before = REGISTRY.get_sample_value("ltgcast_ingest_files_total", {"outcome": "quarantined"}) or 0
    rig.settle(daemon)

    assert [f.name for f in rig.frames()] == [good[1].name]
    letters = {d.name: d for d in rig.letters()}
    assert set(letters) == {good[0].name, "notes.nc"}
    assert letters[good[0].name].stage == "decode"
    assert "cannot open as NetCDF-4" in letters[good[0].name].reason
    assert letters[good[0].name].key == "M1"
    assert letters["notes.nc"].stage == "name"
    assert "matches no known GOES-R product" in letters["notes.nc"].reason
    # The bytes were copied into quarantine, with a reason file beside them; the spool is not ours to change.
    kept = Path(letters[good[0].name].quarantine_uri.removeprefix("file://"))
    assert kept.read_bytes() == good[0].read_bytes()[:4000]
    assert truncated.stat().st_size == 4000
    reason = json.loads(kept.with_name(kept.name + ".reason.json").read_text())
    assert reason["stage"] == "decode"
    assert reason["source_uri"] == truncated.resolve().as_uri()
    after = REGISTRY.get_sample_value("ltgcast_ingest_files_total", {"outcome": "quarantined"})
    assert after == before + 2
    # Nothing changes in the spool: nothing is refused twice.
    rig.clock.advance(5)
    rig.settle(daemon)
    assert len(rig.letters()) == 2
    # The feeder resends the truncated file whole (same name, new size): it is tried again and announced.
    shutil.copy(good[0], rig.spool / "resend.tmp")
    (rig.spool / "resend.tmp").rename(truncated)
    rig.clock.advance(5)
    rig.settle(daemon)
    assert [f.name for f in rig.frames()] == [good[1].name, good[0].name]
    assert len(rig.letters()) == 2


def test_goes_products_without_a_reader_are_left_alone(rig: Rig) -> None:
    other = rig.spool / "OR_ABI-L2-ACHAC-M6_G16_s20241671801178_e20241671803563_c20241671804099.nc"
    other.write_bytes(b"an ACHA product we do not read")
    rig.settle(rig.daemon())
    assert rig.frames() == []
    assert rig.letters() == []
    assert other.exists()


def test_wrong_product_inside_a_good_name_is_quarantined(rig: Rig) -> None:
    radiance = np.full((4, 5), 100.0, np.float32)
    lying = write_abi_l1b(rig.spool, radiance, band=13, band_id=2)  # the seed's accidental visible band
    daemon = rig.daemon(sectors=("C",), satellites=("G16",))
    rig.settle(daemon)
    assert rig.frames() == []
    (letter,) = rig.letters()
    assert letter.name == lying.name
    assert letter.stage == "decode"
    assert "band_id" in letter.reason


def test_filters_select_products(rig: Rig, meso_scenario: Path) -> None:
    for path in scenario_files(meso_scenario, abi=2, glm=3):
        shutil.copy(path, rig.spool / path.name)
    rig.settle(rig.daemon(glm=False))
    assert {f.family for f in rig.frames()} == {"ABI-L1b-Rad"}
    rig.settle(rig.daemon(glm=True, bands=(8,)))  # band 8 wanted now: GLM only is new
    assert sorted({f.family for f in rig.frames()}) == ["ABI-L1b-Rad", "GLM-L2-LCFA"]
    assert len(rig.frames()) == 5


def test_lag_is_measured_per_sector_and_band(rig: Rig, meso_scenario: Path) -> None:
    path = scenario_files(meso_scenario, abi=1, glm=0)[0]
    shutil.copy(path, rig.spool / path.name)
    labels = {"product": "ABI-L1b-RadM", "sector": "M1", "band": "13"}
    count = REGISTRY.get_sample_value("ltgcast_ingest_lag_seconds_count", labels) or 0
    total = REGISTRY.get_sample_value("ltgcast_ingest_lag_seconds_sum", labels) or 0
    daemon = rig.daemon()
    rig.settle(daemon)
    (frame,) = rig.frames()
    expected = (datetime.fromisoformat(frame.ingest_time) - datetime.fromisoformat(frame.scan_end)).total_seconds()
    assert REGISTRY.get_sample_value("ltgcast_ingest_lag_seconds_count", labels) == count + 1
    assert REGISTRY.get_sample_value("ltgcast_ingest_lag_seconds_sum", labels) == pytest.approx(total + expected)
    assert daemon.summary.to_dict()["lag"]["M1/13"]["median_s"] == pytest.approx(expected, abs=1e-3)


class FlakyBus(InProcessBus):
    """An in-process bus whose publishes fail while ``down`` is set."""

    down = True

    def publish(self, topic: str, key: str, value: bytes, *, slot: int | None = None) -> None:
        if self.down:
            msg = "broker unreachable"
            raise IngestError(msg)
        super().publish(topic, key, value, slot=slot)


def test_a_bus_outage_loses_nothing(rig: Rig, meso_scenario: Path) -> None:
    rig.bus = FlakyBus()
    files = scenario_files(meso_scenario, abi=2, glm=0)
    for path in files:
        shutil.copy(path, rig.spool / path.name)
    daemon = rig.daemon()
    rig.settle(daemon)
    assert daemon.summary.failed_polls >= 1
    assert "broker unreachable" in (daemon.summary.last_error or "")
    assert rig.checkpoint is not None
    assert not rig.checkpoint.entries
    rig.bus.down = False  # type: ignore[attr-defined]
    daemon.poll_once()
    assert [f.name for f in rig.frames()] == [p.name for p in files]


class VanishingSource(DirSpool):
    """A spool whose fetches always fail, as a download that never completes."""

    def fetch(self, candidate: Candidate) -> Path:
        msg = f"short download of {candidate.name}"
        raise IngestError(msg)


def test_a_file_that_never_fetches_is_dead_lettered(rig: Rig, meso_scenario: Path) -> None:
    path = scenario_files(meso_scenario, abi=1, glm=0)[0]
    shutil.copy(path, rig.spool / path.name)
    daemon = rig.daemon()
    daemon.source = VanishingSource(rig.spool, rig.clock)
    daemon.poll_once()
    rig.clock.advance(3)
    report = daemon.poll_once()
    assert (report.pending, rig.letters()) == (1, [])  # first failure: retried on the next poll
    report = daemon.poll_once()
    assert (report.outcomes["deadletter"], report.pending) == (1, 0)  # given up after max_fetch_failures
    (letter,) = rig.letters()
    assert (letter.stage, letter.quarantine_uri) == ("download", None)
    assert "short download" in letter.reason
    assert (rig.spool / path.name).exists()  # nothing was downloaded, so nothing was moved


def test_one_shot_run_ends_when_nothing_is_pending(rig: Rig, meso_scenario: Path) -> None:
    for path in scenario_files(meso_scenario, abi=2, glm=2):
        shutil.copy(path, rig.spool / path.name)
    summary = rig.daemon().run(once=True)
    assert summary.outcomes["announced"] == 4
    assert rig.clock.slept  # it waited for the files to settle instead of reading them early


def test_late_files_beyond_retention_are_not_announced(rig: Rig, meso_scenario: Path) -> None:
    newest = scenario_files(meso_scenario, abi=1, glm=0)[0]
    shutil.copy(newest, rig.spool / newest.name)
    daemon = rig.daemon()
    rig.settle(daemon)
    radiance = np.full((4, 5), 100.0, np.float32)
    old = write_abi_l1b(rig.spool, radiance, sector="M1", platform="G19", start=NOW - timedelta(hours=7))
    rig.clock.advance(5)
    rig.settle(daemon)
    assert [f.name for f in rig.frames()] == [newest.name]
    assert rig.checkpoint is not None
    assert rig.checkpoint.entries[old.name].outcome == "late"


def test_a_one_shot_run_gives_up_after_repeated_failed_polls(rig: Rig, meso_scenario: Path) -> None:
    rig.bus = FlakyBus()
    path = scenario_files(meso_scenario, abi=1, glm=0)[0]
    shutil.copy(path, rig.spool / path.name)
    daemon = rig.daemon()
    rig.clock.advance(5)
    summary = daemon.run(once=True)
    assert summary.gave_up
    assert summary.failed_polls == daemon.settings.max_poll_failures
    backoff = [daemon.settings.backoff.delay(n) for n in range(1, daemon.settings.max_poll_failures)]
    assert backoff == [2.0, 4.0, 8.0, 16.0]
    assert rig.clock.slept[-len(backoff) :] == backoff  # after the settling waits, back-off between failures
    assert summary.to_dict()["outcomes"] == {}


def test_a_file_from_the_future_is_refused_before_the_watermark_learns_of_it(rig: Rig) -> None:
    radiance = np.full((4, 5), 100.0, np.float32)
    frame = lambda start: write_abi_l1b(rig.spool, radiance, sector="M1", platform="G19", start=start)  # noqa: E731
    replayed = frame(NOW - timedelta(hours=7, minutes=40))  # a replay: the archive is hours behind the clock
    future = frame(datetime(2099, 6, 15, 18, 1, 17, tzinfo=UTC))
    granule = write_glm(rig.spool, lat=[30.0], lon=[-90.0], offsets_s=[1.0], start=datetime(2099, 1, 1, tzinfo=UTC))
    daemon = rig.daemon()
    before = REGISTRY.get_sample_value("ltgcast_ingest_files_total", {"outcome": "quarantined"}) or 0
    rig.settle(daemon)
    next_one = frame(NOW - timedelta(hours=7, minutes=35))  # the replay goes on after the file from 2099
    rig.clock.advance(5)
    rig.settle(daemon)

    assert [f.name for f in rig.frames()] == [replayed.name, next_one.name]  # the next one is not `late`
    letters = {d.name: d for d in rig.letters()}
    assert set(letters) == {future.name, granule.name}
    for letter in letters.values():
        assert (letter.stage, letter.key) == ("future", "M1" if letter.name == future.name else "GLM")
        assert "ahead of the clock (2024-06-15T18:40:03Z)" in letter.reason
        assert "expected at most 300 s ahead (--future-tolerance-s)" in letter.reason
    assert "scan start 2099-06-15T18:01:17Z" in letters[future.name].reason
    reason = json.loads((rig.state / "quarantine" / "2024-06-15" / f"{future.name}.reason.json").read_text())
    assert reason["stage"] == "future"
    assert rig.checkpoint is not None
    assert rig.checkpoint.watermark == parse_filename(next_one.name).scan_start
    assert rig.checkpoint.entries[future.name].outcome == "quarantined"
    assert rig.checkpoint.entries[future.name].scan_start is None  # kept for the retention, by the wall clock
    assert REGISTRY.get_sample_value("ltgcast_ingest_files_total", {"outcome": "quarantined"}) == before + 2


def test_the_future_tolerance_is_a_setting(rig: Rig) -> None:
    radiance = np.full((4, 5), 100.0, np.float32)
    frame = lambda start: write_abi_l1b(rig.spool, radiance, sector="M1", platform="G19", start=start)  # noqa: E731
    skewed = [frame(NOW + timedelta(minutes=m)) for m in (4, 20)]  # a feeder whose clock runs ahead of ours
    too_far = frame(NOW + timedelta(minutes=40))
    daemon = rig.daemon()
    daemon.settings = DaemonSettings(future_tolerance_s=1800.0)
    rig.settle(daemon)
    assert [f.name for f in rig.frames()] == [p.name for p in skewed]
    (letter,) = rig.letters()
    assert (letter.name, letter.stage) == (too_far.name, "future")
    assert "expected at most 1800 s ahead" in letter.reason
    assert DaemonSettings().future_tolerance_s == 300.0


def test_links_in_the_spool_are_quarantined_with_their_reason_only_and_never_followed(
    rig: Rig, meso_scenario: Path, tmp_path: Path
) -> None:
    frames = scenario_files(meso_scenario, abi=4, glm=0)
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(frames[0], outside / frames[0].name)
    (rig.spool / frames[0].name).symlink_to(outside / frames[0].name)  # a real frame, outside the spool
    (rig.spool / frames[1].name).symlink_to("/etc/passwd")  # named like a frame
    (rig.spool / "passwd.nc").symlink_to("/etc/passwd")  # named like nothing: still refused as a link
    (rig.spool / frames[2].name.replace("C13", "C08")).symlink_to("/etc/passwd")  # unwanted band: left alone
    linked = tmp_path / "elsewhere"
    linked.mkdir()
    shutil.copy(frames[2], linked / frames[2].name)
    (rig.spool / "linked").symlink_to(linked, target_is_directory=True)  # never walked
    (rig.spool / "sub").mkdir()
    shutil.copy(frames[3], rig.spool / "sub" / frames[3].name)  # a regular file in a subfolder: read as ever
    daemon = rig.daemon()
    rig.settle(daemon)

    assert [f.name for f in rig.frames()] == [frames[3].name]
    letters = {d.name: d for d in rig.letters()}
    assert set(letters) == {frames[0].name, frames[1].name, "passwd.nc"}
    for letter in letters.values():
        assert (letter.stage, letter.quarantine_uri) == ("spool", None)
        assert "is a symbolic link (to " in letter.reason
        assert "expected a regular file inside the spool" in letter.reason
    assert str(outside / frames[0].name) in letters[frames[0].name].reason
    assert "/etc/passwd" in letters[frames[1].name].reason
    kept = sorted(p.name for p in (rig.state / "quarantine").rglob("*") if p.is_file())
    assert kept == sorted(f"{name}.reason.json" for name in letters)  # reasons only: no target was copied
    reason = json.loads((rig.state / "quarantine" / "2024-06-15" / f"{frames[1].name}.reason.json").read_text())
    assert reason["stage"] == "spool"
    rig.clock.advance(5)
    rig.settle(daemon)
    assert len(rig.letters()) == 3  # refused once
