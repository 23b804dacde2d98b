"""`ltgcast ingest` end to end: real spool, real process, real Kafka broker.

Every test reads back what reached the broker and keeps only the events of its
own spool (the topics are shared by every run against the broker).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.bus import get_bus
from ingest.events import DEADLETTER_TOPIC, FRAMES_TOPIC, GLM_TOPIC

pytestmark = pytest.mark.kafka


def ltgcast(*args: str) -> list[str]:
    return [sys.executable, "-m", "ltgcast", *args]


def events_of(address: str, topic: str, spool: Path, expect: int, timeout_s: float = 20) -> list[dict[str, object]]:
    """Events on ``topic`` whose source is under ``spool``, read with a fresh consumer group.

    The frame topic is read with the GLM topic: what the daemon announced, ABI frames and GLM granules.
    """
    bus = get_bus(f"kafka://{address}")
    topics = [FRAMES_TOPIC, GLM_TOPIC] if topic == FRAMES_TOPIC else [topic]
    subscription = bus.subscribe(topics, group=f"test-{uuid.uuid4().hex[:8]}")
    prefix = spool.resolve().as_uri()
    found: list[dict[str, object]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for message in subscription.poll(timeout_s=1.0, max_records=500):
                doc = json.loads(message.value)
                if str(doc.get("source_uri", "")).startswith(prefix):
                    found.append(doc)
            if len(found) >= expect:
                # drain a little longer, so an extra (duplicate) event would be seen too
                for message in subscription.poll(timeout_s=2.0, max_records=500):
                    doc = json.loads(message.value)
                    if str(doc.get("source_uri", "")).startswith(prefix):
                        found.append(doc)
                break
    finally:
        subscription.close()
        bus.close()
    return found


def ingest_once(spool: Path, state: Path, bus: str) -> dict[str, object]:
    """Run `ltgcast ingest --once` as its own process; its JSON summary."""
    run = subprocess.run(
        ltgcast("ingest", "--source", f"dir:{spool}", "--bus", bus, "--state", str(state), "--once"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def slow_write(source: Path, target: Path, pause_s: float) -> threading.Thread:
    """Write ``source`` to ``target`` in two halves ``pause_s`` apart, under its final name."""
    data = source.read_bytes()

    def write() -> None:
        with target.open("wb") as out:
            out.write(data[: len(data) // 2])
            out.flush()
            time.sleep(pause_s)
            out.write(data[len(data) // 2 :])

    thread = threading.Thread(target=write)
    thread.start()
    return thread


def test_once_announces_each_file_exactly_once(kafka_address: str, meso_scenario: Path, tmp_path: Path) -> None:
    spool, state = tmp_path / "spool", tmp_path / "state"
    spool.mkdir()
    abi = sorted(meso_scenario.glob("OR_ABI-*.nc"))
    glm = sorted(meso_scenario.glob("OR_GLM-*.nc"))
    first = abi[:3] + glm[:3]
    for path in first:
        shutil.copy(path, spool / path.name)
    bus = f"kafka://{kafka_address}"
    summary = ingest_once(spool, state, bus)
    assert summary["outcomes"] == {"announced": 6}
    assert summary["lag"]["M1/13"]["count"] == 3

    # Restart with duplicates dropped again (in place and in another folder) and two new files.
    (spool / "resent").mkdir()
    for path in first:
        shutil.copy(path, spool / "resent" / path.name)
    second = abi[3:4] + glm[3:4]
    for path in second:
        shutil.copy(path, spool / path.name)
    assert ingest_once(spool, state, bus)["outcomes"] == {"announced": 2}

    events = events_of(kafka_address, FRAMES_TOPIC, spool, expect=8)
    names = [e["name"] for e in events]
    assert sorted(names) == sorted(p.name for p in first + second)
    assert all(e["size"] == (meso_scenario / str(e["name"])).stat().st_size for e in events)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Daemons a test starts; any still running when it ends (a failed assertion) are killed."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=30)


@pytest.mark.slow
def test_a_daemon_restarted_in_the_middle_misses_nothing(
    kafka_address: str, meso_scenario: Path, tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    spool, state = tmp_path / "spool", tmp_path / "state"
    spool.mkdir()
    files = sorted(meso_scenario.glob("OR_ABI-*.nc"))[:6] + sorted(meso_scenario.glob("OR_GLM-*.nc"))[:6]
    command = ltgcast(
        "ingest", "--source", f"dir:{spool}?settle_s=1.0", "--bus", f"kafka://{kafka_address}",
        "--state", str(state), "--poll-interval", "0.2",
    )  # fmt: skip

    def start() -> subprocess.Popen[str]:
        processes.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        return processes[-1]

    daemon = start()
    for path in files[:4]:
        shutil.copy(path, spool / path.name)
        time.sleep(0.3)
    assert len(events_of(kafka_address, FRAMES_TOPIC, spool, expect=4)) == 4
    daemon.send_signal(signal.SIGTERM)  # stop in the middle of the feed
    out, err = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, err
    assert json.loads(out)["outcomes"]["announced"] == 4
    for path in files[4:8]:  # arrive while nothing runs
        shutil.copy(path, spool / path.name)
    daemon = start()
    time.sleep(2.0)  # let it start polling, so it sees the next file half-written
    slow_write(files[8], spool / files[8].name, pause_s=0.6).join()  # paused shorter than settle_s
    for path in files[9:]:
        shutil.copy(path, spool / path.name)
        time.sleep(0.3)
    for path in files[:4]:  # and old ones dropped again
        shutil.copy(path, spool / path.name)
    events = events_of(kafka_address, FRAMES_TOPIC, spool, expect=len(files))
    daemon.send_signal(signal.SIGTERM)
    out, err = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, err
    assert json.loads(out)["outcomes"]["announced"] == len(files) - 4
    assert sorted(e["name"] for e in events) == sorted(p.name for p in files)
    assert all(e["size"] == (meso_scenario / str(e["name"])).stat().st_size for e in events)  # whole files only
    assert events_of(kafka_address, DEADLETTER_TOPIC, spool, expect=0, timeout_s=3) == []


def test_a_corrupt_file_is_dead_lettered_while_the_next_is_announced(
    kafka_address: str, meso_scenario: Path, tmp_path: Path
) -> None:
    spool, state = tmp_path / "spool", tmp_path / "state"
    spool.mkdir()
    bad, good = sorted(meso_scenario.glob("OR_ABI-*.nc"))[:2]
    (spool / bad.name).write_bytes(bad.read_bytes()[:3000])  # truncated mid-transfer
    shutil.copy(good, spool / good.name)
    run = subprocess.run(
        ltgcast(
            "ingest", "--source", f"dir:{spool}", "--bus", f"kafka://{kafka_address}", "--state", str(state), "--once"
        ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 1, run.stderr  # some input was bad; the rest was done
    assert json.loads(run.stdout)["outcomes"] == {"announced": 1, "quarantined": 1}
    assert [e["name"] for e in events_of(kafka_address, FRAMES_TOPIC, spool, expect=1)] == [good.name]
    (letter,) = events_of(kafka_address, DEADLETTER_TOPIC, spool, expect=1)
    assert (letter["name"], letter["stage"], letter["key"]) == (bad.name, "decode", "M1")
    assert "cannot open as NetCDF-4" in str(letter["reason"])
    kept = Path(str(letter["quarantine_uri"]).removeprefix("file://"))
    assert kept.is_relative_to(state / "quarantine")
    assert kept.stat().st_size == 3000
    assert json.loads(kept.with_name(kept.name + ".reason.json").read_text())["stage"] == "decode"

    # The operator's view of the same topic, through the CLI (commits as it prints).
    shown = subprocess.run(
        ltgcast("events", "--bus", f"kafka://{kafka_address}", "--topic", "deadletter", "--group",
                f"cli-{uuid.uuid4().hex[:8]}", "--timeout", "3"),
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    mine = [json.loads(line) for line in shown.stdout.splitlines() if bad.name in line and str(spool) in line]
    assert [m["schema"] for m in mine] == ["ltgcast.deadletter"]


@pytest.mark.realdata
def test_real_noaa_files_are_announced(kafka_address: str, real_data: Path, tmp_path: Path) -> None:
    spool, state = tmp_path / "spool", tmp_path / "state"
    shutil.copytree(real_data, spool)
    files = sorted(spool.rglob("OR_*.nc"))
    run = subprocess.run(
        ltgcast(
            "ingest", "--source", f"dir:{spool}", "--bus", f"kafka://{kafka_address}", "--state", str(state),
            "--once", "--bands", "1,3,8", "--products", "ABI-L1b-Rad,ABI-L2-CMIP",
        ),
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    events = events_of(kafka_address, FRAMES_TOPIC, spool, expect=len(files))
    assert sorted(e["name"] for e in events) == sorted(p.name for p in files)
    satellites = {e["satellite"] for e in events}
    assert satellites == {"G16", "G17", "G18", "G19"}
    cmips = [e for e in events if e["family"] == "ABI-L2-CMIP"]
    assert {(e["product"], e["sector"], e["band"]) for e in cmips} == {
        ("ABI-L2-CMIPM", sector, band) for sector in ("M1", "M2") for band in (1, 3)
    }
