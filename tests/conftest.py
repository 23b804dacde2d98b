"""Shared fixtures: real NOAA samples (skipped with a reason when absent), a small scenario, real services."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from foundation.addresses import free_port, parse_address
from foundation.clock import wait_until
from ingest.synthetic import ScenarioConfig, simulate
from tests.support.metrics import zero_metrics

REAL_DATA = Path(
    os.environ.get("LTGCAST_GOES_SAMPLES", Path(__file__).resolve().parents[1].parent / "shared" / "data" / "goes16")
)


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The folder of real NOAA GOES-R samples beside the checkout."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real GOES-R samples not found at {REAL_DATA} (see docs/architecture.md)")
    return REAL_DATA


@pytest.fixture(scope="session")
def meso_scenario(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 minutes of a synthetic mesoscale sector with lightning (seed 1)."""
    out = tmp_path_factory.mktemp("meso")
    simulate(ScenarioConfig(out=out, sector="M1", start=datetime(2024, 6, 15, 18, 0, tzinfo=UTC), minutes=30, seed=1))
    return out


@pytest.fixture(autouse=True)
def fresh_metrics() -> int:
    """Each test starts with ltgcast's metric series at zero (tests/support/metrics.py): none reads another's."""
    return zero_metrics()


# -- real services ---------------------------------------------------------------------
# `make test` starts them with deploy/local/services.sh; a test that needs one and cannot
# reach it fails (never skips), naming the address and how to start it.


def _reachable(address: str) -> bool:
    host, port = parse_address(address, "test service address")  # [::1]:6379 too
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def kafka_address() -> str:
    """host:port of the real Kafka broker (env LTGCAST_KAFKA, default 127.0.0.1:9092)."""
    address = os.environ.get("LTGCAST_KAFKA", "127.0.0.1:9092")
    if not _reachable(address):
        pytest.fail(f"no Kafka broker at {address}; start it with `make services-up` (or set LTGCAST_KAFKA)")
    return address


@pytest.fixture(scope="session")
def redis_address() -> str:
    """host:port of the real Redis server (env LTGCAST_REDIS, default 127.0.0.1:6379)."""
    address = os.environ.get("LTGCAST_REDIS", "127.0.0.1:6379")
    if not _reachable(address):
        pytest.fail(f"no Redis server at {address}; start it with `make services-up` (or set LTGCAST_REDIS)")
    return address


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto S3 server on a free loopback port, for the life of the test session."""
    port = free_port()  # nothing listens there
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if server.poll() is not None:
            pytest.fail(f"moto S3 server exited (status {server.returncode}): {log.read_text()[-2000:]}")
        return _reachable(f"127.0.0.1:{port}")

    try:
        wait_until(up, f"moto S3 server on {url}", limit_s=60, every_s=0.2)
    except TimeoutError:
        server.kill()
        pytest.fail(f"moto S3 server did not start on {url}: {log.read_text()[-2000:]}")
    yield url
    server.terminate()
    server.wait(timeout=10)


def make_public_bucket(client: object, name: str) -> None:
    """Create ``name`` readable and listable by anyone, as NOAA's open-data buckets are."""
    import json

    client.create_bucket(Bucket=name)  # type: ignore[attr-defined]
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{name}/*"},
            {"Effect": "Allow", "Principal": "*", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{name}"},
        ],
    }
    client.put_bucket_policy(Bucket=name, Policy=json.dumps(policy))  # type: ignore[attr-defined]
