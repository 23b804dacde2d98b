"""The NOAA S3 source against a real S3-compatible server (moto, on loopback).

The bucket is laid out like noaa-goes19: <product>/<YYYY>/<DOY>/<HH>/OR_….nc.
"""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest

from foundation.addresses import free_port
from foundation.errors import IngestError
from foundation.retry import Retry
from ingest.bus import InProcessBus
from ingest.checkpoint import Checkpoint
from ingest.daemon import IngestDaemon
from ingest.events import FRAMES_TOPIC, GLM_TOPIC, FrameEvent
from ingest.filenames import parse_filename
from ingest.quarantine import Quarantine
from ingest.sources import Candidate, FrameFilter, SourceContext, get_source
from ingest.sources.noaa_s3 import NoaaS3Source
from tests.conftest import make_public_bucket
from tests.support.clock import FakeClock


def key_of(path: Path) -> str:
    name = parse_filename(path.name)
    return f"{name.product}/{name.scan_start:%Y/%j/%H}/{path.name}"


@pytest.fixture
def bucket(s3_endpoint: str) -> Iterator[tuple[str, object]]:
    """A fresh bucket on the moto server, and a client to fill it."""
    client = boto3.session.Session().client(
        "s3",
        region_name="us-east-1",
        endpoint_url=s3_endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",  # noqa: S106 - moto's dummy credentials, only to upload
    )
    name = f"noaa-goes19-{uuid.uuid4().hex[:8]}"
    make_public_bucket(client, name)
    yield name, client
    client.close()


def upload(client: object, bucket: str, paths: list[Path], rewrite_hour: dict[str, str] | None = None) -> list[str]:
    keys = []
    for path in paths:
        key = key_of(path)
        for old, new in (rewrite_hour or {}).items():
            key = key.replace(old, new)
        client.upload_file(str(path), bucket, key)  # type: ignore[attr-defined]
        keys.append(key)
    return keys


def source_for(endpoint: str, bucket: str, tmp_path: Path, clock: FakeClock, **options: str) -> NoaaS3Source:
    query = "&".join([f"endpoint={endpoint}", *(f"{k}={v}" for k, v in options.items())])
    context = SourceContext(cache=tmp_path / "cache", clock=clock, frame_filter=FrameFilter(sectors=("M1",)))
    source = get_source(f"s3://{bucket}?{query}", context)
    assert isinstance(source, NoaaS3Source)
    return source


def test_prefixes_cover_the_current_and_previous_hour(tmp_path: Path) -> None:
    clock = FakeClock(datetime(2025, 1, 1, 0, 5, tzinfo=UTC))
    source = source_for("http://127.0.0.1:9", "noaa-goes19", tmp_path, clock)
    assert source.prefixes() == [
        "ABI-L1b-RadM/2024/366/23/",
        "ABI-L1b-RadM/2025/001/00/",
        "GLM-L2-LCFA/2024/366/23/",
        "GLM-L2-LCFA/2025/001/00/",
    ]


def test_announces_across_an_hour_boundary(
    s3_endpoint: str, bucket: tuple[str, object], meso_scenario: Path, tmp_path: Path
) -> None:
    name, client = bucket
    files = sorted(meso_scenario.glob("OR_ABI-*.nc"))[:2] + sorted(meso_scenario.glob("OR_GLM-*.nc"))[:2]
    previous_hour = upload(client, name, files[:1] + files[2:3])  # stored under hour 18
    this_hour = upload(client, name, files[1:2] + files[3:4], rewrite_hour={"/167/18/": "/167/19/"})
    clock = FakeClock(datetime(2024, 6, 15, 19, 1, tzinfo=UTC))  # 19:01: hour 18 is the previous one
    source = source_for(s3_endpoint, name, tmp_path, clock)
    listed = source.poll()
    assert sorted(c.source_uri for c in listed) == sorted(f"s3://{name}/{k}" for k in previous_hour + this_hour)

    bus = InProcessBus()
    checkpoint = Checkpoint.open(tmp_path / "state")
    try:
        daemon = IngestDaemon(source, bus, checkpoint, Quarantine(tmp_path / "q"), clock)
        daemon.poll_once()
        daemon.poll_once()  # a second poll lists the same keys and announces nothing new
    finally:
        checkpoint.close()
    events = [FrameEvent.from_json(m.value) for m in bus.messages(FRAMES_TOPIC) + bus.messages(GLM_TOPIC)]
    assert sorted(e.name for e in events) == sorted(p.name for p in files)
    for event in events:
        local = Path(event.uri.removeprefix("file://"))
        assert local.parent.parent == tmp_path / "cache"
        assert local.read_bytes() == (meso_scenario / event.name).read_bytes()
        assert event.size == local.stat().st_size
        assert event.source_uri.startswith(f"s3://{name}/")


def test_a_missing_hour_folder_is_an_empty_listing(
    s3_endpoint: str, bucket: tuple[str, object], meso_scenario: Path, tmp_path: Path
) -> None:
    name, client = bucket
    frame = sorted(meso_scenario.glob("OR_ABI-*.nc"))[0]
    keys = upload(client, name, [frame], rewrite_hour={"/167/18/": "/167/20/"})
    clock = FakeClock(datetime(2024, 6, 15, 20, 10, tzinfo=UTC))  # hour 19 has no folder at all
    source = source_for(s3_endpoint, name, tmp_path, clock)
    assert [c.source_uri for c in source.poll()] == [f"s3://{name}/{keys[0]}"]


def test_short_downloads_are_retried_then_refused(
    s3_endpoint: str, bucket: tuple[str, object], meso_scenario: Path, tmp_path: Path
) -> None:
    name, client = bucket
    frame = sorted(meso_scenario.glob("OR_ABI-*.nc"))[0]
    (key,) = upload(client, name, [frame])
    clock = FakeClock(datetime(2024, 6, 15, 18, 30, tzinfo=UTC))
    source = source_for(s3_endpoint, name, tmp_path, clock)
    source.retry = Retry(attempts=3, base_s=1.0)
    wrong = Candidate(frame.name, f"s3://{name}/{key}", frame.stat().st_size + 7)
    with pytest.raises(IngestError, match=r"short download .* listed \d+ bytes, Content-Length \d+, received \d+"):
        source.fetch(wrong)
    assert clock.slept == [1.0, 2.0]
    assert not list((tmp_path / "cache").rglob("*.part"))
    good = source.fetch(Candidate(frame.name, f"s3://{name}/{key}", frame.stat().st_size))
    assert good.read_bytes() == frame.read_bytes()


def test_an_outage_is_retried_with_backoff_then_reported(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    clock = FakeClock(datetime(2024, 6, 15, 18, 30, tzinfo=UTC))
    source = source_for(f"http://127.0.0.1:{port}", "noaa-goes19", tmp_path, clock, timeout_s="1")
    source.retry = Retry(attempts=3, base_s=0.5)
    with pytest.raises(IngestError, match=r"listing s3://noaa-goes19/ABI-L1b-RadM/2024/167/17/ failed after at most 3"):
        source.poll()
    assert clock.slept == [0.5, 1.0]


def test_a_slow_listing_times_out_and_is_retried(tmp_path: Path) -> None:
    """A server that accepts and never answers: each try ends at the read time-out."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        clock = FakeClock(datetime(2024, 6, 15, 18, 30, tzinfo=UTC))
        source = source_for(f"http://127.0.0.1:{port}", "noaa-goes19", tmp_path, clock, timeout_s="0.5")
        source.retry = Retry(attempts=2, base_s=0.1)
        with pytest.raises(IngestError, match="Read timeout"):
            source.poll()
        assert clock.slept == [0.1]
        assert len(held) >= 2
    finally:
        stop.set()
        thread.join()
        for connection in held:
            connection.close()
        server.close()


class ScriptedClient:
    """An S3 client double whose listings fail with the given HTTP statuses, then succeed."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.calls = 0

    def get_paginator(self, operation: str) -> ScriptedClient:
        return self

    def paginate(self, **kwargs: str) -> list[dict[str, list[object]]]:
        from botocore.exceptions import ClientError

        self.calls += 1
        if self.statuses:
            status = self.statuses.pop(0)
            raise ClientError({"Error": {"Code": str(status)}, "ResponseMetadata": {"HTTPStatusCode": status}}, "List")
        return [{"Contents": []}]


@pytest.mark.parametrize(("statuses", "calls", "fails"), [([503, 500], 3, False), ([429], 2, False), ([403], 1, True)])
def test_which_s3_errors_are_retried(tmp_path: Path, statuses: list[int], calls: int, fails: bool) -> None:
    clock = FakeClock(datetime(2024, 6, 15, 18, 30, tzinfo=UTC))
    client = ScriptedClient(statuses)
    retry = Retry(base_s=1)
    source = NoaaS3Source("noaa-goes19", ["GLM-L2-LCFA"], tmp_path, clock, client=client, hours=1, retry=retry)
    if fails:
        with pytest.raises(IngestError, match="403"):
            source.poll()
    else:
        assert source.poll() == []
    assert client.calls == calls
