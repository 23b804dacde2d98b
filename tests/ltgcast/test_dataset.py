"""`ltgcast dataset build` from a simulated two-day archive, on disk and in a (moto) S3 bucket."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pytest

from featurize.channels import ir_channel
from featurize.features import patch_features
from featurize.sampling import split_of
from ingest.filenames import parse_filename
from ingest.readers import read_product
from ingest.synthetic import ScenarioConfig, simulate
from ltgcast.cli import main
from models.dataset import read_records
from tests.conftest import make_public_bucket

pytestmark = pytest.mark.slow
DAYS = (datetime(2024, 6, 17, 18, 0, tzinfo=UTC), datetime(2024, 6, 18, 19, 0, tzinfo=UTC))


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One hour of a mesoscale sector on each of two days (a train day and a test day)."""
    root = tmp_path_factory.mktemp("archive")
    assert [split_of(d.date()) for d in DAYS] == ["train", "test"]
    for seed, start in enumerate(DAYS, start=1):
        simulate(ScenarioConfig(out=root / f"{start:%Y%m%d}", sector="M1", start=start, minutes=60, seed=seed))
    return root


def build(archive_uri: str, out: Path, *extra: str) -> dict[str, object]:
    args = [
        "dataset", "build", "--archive", archive_uri, "--start", "2024-06-17T00:00Z", "--end", "2024-06-19T00:00Z",
        "--out", str(out), "--sector", "M1", "--max-positives", "40", "--min-negatives", "20",
        "--shards", "2", "--shuffle-buffer", "64", "--seed", "5", *extra,
    ]  # fmt: skip
    assert main(args) == 0
    return json.loads((out / "dataset.json").read_text())


def test_dataset_from_a_two_day_archive(archive: Path, tmp_path: Path) -> None:
    summary = build(f"dir:{archive}", tmp_path / "ds")
    # Frames every 5 min; a frame needs GLM 15 min before and 30 min after it: 4 usable per hour.
    assert summary["frames_considered"] == 24
    assert summary["frames_used"] == 8
    assert summary["frames_skipped"] == {"GLM covers less than 98% of the ltg and label windows": 16}
    splits = summary["splits"]
    assert splits["train"]["examples"] > 0
    assert splits["test"]["examples"] > 0
    assert splits["validation"]["examples"] == 0
    for split in splits.values():
        assert sum(split["shard_counts"]) == split["examples"]
    channels, features = tuple(summary["channels"]), tuple(summary["features"])
    frames: dict[str, object] = {}
    for split in ("train", "test"):
        paths = [tmp_path / "ds" / name for name in splits[split]["shards"]]
        records = list(read_records(paths, channels, features, 64))
        assert len(records) == splits[split]["examples"]
        assert sum(int(r["label"][0]) for r in records) == splits[split]["positives"]
        first_frames = {r["frame"][0] for r in records[:40]}
        assert len(first_frames) >= 2  # shuffled across frames before writing
        for record in records[:: max(len(records) // 25, 1)]:
            name = record["frame"][0].decode()
            assert split_of(parse_filename(name).scan_start.date()) == split  # whole days per split
            assert (record["kind"][0] == 0) == (record["label"][0] == 1)  # positives are kind 0
            if name not in frames:
                frames[name] = read_product(next(archive.rglob(name)))
            image = frames[name]
            row, col = int(record["row"][0]), int(record["col"][0])
            assert record["ir"][32, 32] == ir_channel(image.values)[row, col]  # patch centred on its pixel
            again = patch_features({c: record[c][None] for c in channels})
            for feature in features:
                np.testing.assert_allclose(record[feature][0], again[feature][0], rtol=1e-6)
    stats = json.loads((tmp_path / "ds" / "stats.json").read_text())
    assert stats["ir"]["count"] + stats["ir"]["nan_count"] == splits["train"]["examples"] * 64 * 64
    assert stats["ir_max_64"]["count"] + stats["ir_max_64"]["nan_count"] == splits["train"]["examples"]
    assert sum(stats["ltg_mean_16"]["histogram"]) == stats["ltg_mean_16"]["count"]


def test_the_same_seed_writes_the_same_bytes(archive: Path, tmp_path: Path) -> None:
    first = build(f"dir:{archive}", tmp_path / "a")
    second = build(f"dir:{archive}", tmp_path / "b")
    assert first["splits"] == second["splits"]
    for name in first["splits"]["train"]["shards"]:
        digests = {hashlib.sha256((tmp_path / d / name).read_bytes()).hexdigest() for d in ("a", "b")}
        assert len(digests) == 1


def test_dataset_from_an_s3_archive(archive: Path, s3_endpoint: str, tmp_path: Path) -> None:
    import boto3

    client = boto3.session.Session().client(
        "s3", region_name="us-east-1", endpoint_url=s3_endpoint,
        aws_access_key_id="test", aws_secret_access_key="test",  # noqa: S106 - moto's dummy credentials
    )  # fmt: skip
    bucket = "noaa-goes16-archive"
    make_public_bucket(client, bucket)
    day = archive / "20240617"
    for path in sorted(day.glob("OR_*.nc")):
        name = parse_filename(path.name)
        if name.instrument == "ABI" and name.scan_start.minute % 5:
            continue  # the build uses one frame in five; upload just those and every GLM granule
        client.upload_file(str(path), bucket, f"{name.product}/{name.scan_start:%Y/%j/%H}/{path.name}")
    client.close()
    summary = build(f"s3://{bucket}?endpoint={s3_endpoint}", tmp_path / "s3ds", "--end", "2024-06-18T00:00Z")
    local = build(f"dir:{day}", tmp_path / "dirds", "--end", "2024-06-18T00:00Z")
    assert summary["frames_used"] == local["frames_used"] == 4
    assert summary["splits"]["train"]["examples"] == local["splits"]["train"]["examples"]
    assert date(2024, 6, 17).isoformat() in summary["start"]
    assert any((tmp_path / "s3ds" / ".cache").rglob("OR_GLM-*.nc"))  # downloaded into the cache
