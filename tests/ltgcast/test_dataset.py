"""`ltgcast dataset build` from a simulated two-day archive, on disk and in a (moto) S3 bucket."""

from __future__ import annotations

import functools
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from featurize.channels import DEFAULT_FEATURE_SET, get_feature_set
from featurize.examples import Flashes, frame_channels
from featurize.features import dense_features
from featurize.sampling import split_of
from ingest.filenames import parse_filename
from ingest.readers import read_product
from ingest.synthetic import ScenarioConfig, simulate
from ltgcast.cli import main
from models.dataset import read_records
from tests.conftest import make_public_bucket

pytestmark = pytest.mark.slow
# Day one crosses an hour boundary (17:40-18:40 UTC); day two is a test-split day.
DAYS = (datetime(2024, 6, 17, 17, 40, tzinfo=UTC), datetime(2024, 6, 18, 19, 0, tzinfo=UTC))


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One hour of a mesoscale sector on each of two days (a train day and a test day)."""
    root = tmp_path_factory.mktemp("archive")
    assert [split_of(d.date()) for d in DAYS] == ["train", "test"]
    for seed, start in enumerate(DAYS, start=1):
        simulate(ScenarioConfig(out=root / f"{start:%Y%m%d}", sector="M1", start=start, minutes=60, seed=seed))
    return root


@functools.cache
def all_flashes(archive: Path) -> Flashes:
    granules = [read_product(p) for p in sorted(archive.rglob("OR_GLM-*.nc"))]
    return Flashes(
        np.concatenate([g.flashes.lat for g in granules]),
        np.concatenate([g.flashes.lon for g in granules]),
        np.concatenate([g.flashes.time for g in granules]),
    )


def frame_dense(archive: Path, name: str) -> dict[str, np.ndarray]:
    """Channels and dense features of one archived frame, recomputed from its files."""
    image = read_product(next(archive.rglob(name)))
    t = parse_filename(name).scan_start.timestamp()
    channels = frame_channels(image.values, image.grid, all_flashes(archive), t, get_feature_set(DEFAULT_FEATURE_SET))
    return {**channels, **dense_features(channels)}


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
    # Frames every 5 min; a frame needs GLM 15 min before and 30 min after it: 4 usable per simulated hour.
    assert summary["frames_considered"] == 24
    assert summary["frames_used"] == 8
    assert summary["frames_skipped"] == {"GLM covers less than 98% of the ltg and label windows": 16}
    assert summary["feature_set"] == "ir-ltg/2"
    assert 0 < summary["persistence_rate"] <= 1  # P(lightning next 30 min | lightning in the box now), for the gate
    splits = summary["splits"]
    assert splits["train"]["examples"] > 0
    assert splits["test"]["examples"] > 0
    assert splits["validation"]["examples"] == 0
    for split in splits.values():
        assert sum(split["shard_counts"]) == split["examples"]
    channels, features = tuple(summary["channels"]), tuple(summary["features"])
    dense: dict[str, dict[str, np.ndarray]] = {}
    for split in ("train", "test"):
        paths = [tmp_path / "ds" / name for name in splits[split]["shards"]]
        records = list(read_records(paths, channels, features, 64))
        assert len(records) == splits[split]["examples"]
        assert sum(int(r["label"][0]) for r in records) == splits[split]["positives"]
        names = [r["frame"][0] for r in records]
        changes = sum(a != b for a, b in zip(names, names[1:], strict=False))
        assert changes > len(records) // 2  # shuffled across frames: neighbours rarely share a frame
        for record in records[:: max(len(records) // 20, 1)]:
            name = record["frame"][0].decode()
            assert split_of(parse_filename(name).scan_start.date()) == split  # whole days per split
            assert (record["kind"][0] == 0) == (record["label"][0] == 1)  # positives are kind 0
            assert record["weight"][0] >= 1.0
            if name not in dense:
                dense[name] = frame_dense(archive, name)
            row, col = int(record["row"][0]), int(record["col"][0])
            assert record["ir"][32, 32] == dense[name]["ir"][row, col]  # the patch is centred on its pixel
            for feature in features:  # stored features = the dense path at that pixel
                np.testing.assert_allclose(record[feature][0], dense[name][feature][row, col], rtol=1e-6)
    # The drift reference describes whole training frames (4 frames of 500 x 500), as the live service sees them.
    stats = json.loads((tmp_path / "ds" / "stats.json").read_text())
    train_frames = [n for n in dense if split_of(parse_filename(n).scan_start.date()) == "train"]
    pixels = 4 * 500 * 500
    for name in ("ir", "ltg", "ir_max_64", "ltg_mean_16"):
        assert stats[name]["count"] + stats[name]["nan_count"] == pixels, name
        assert sum(stats[name]["histogram"]) == stats[name]["count"], name
    reference = dense[train_frames[0]]["ir_mean_64"]
    assert stats["ir_mean_64"]["min"] <= float(np.nanmin(reference))
    assert stats["ir_mean_64"]["max"] >= float(np.nanmax(reference))


def test_the_same_seed_writes_the_same_bytes(archive: Path, tmp_path: Path) -> None:
    first = build(f"dir:{archive}", tmp_path / "a")
    second = build(f"dir:{archive}", tmp_path / "b")
    assert first["splits"] == second["splits"]
    for split in first["splits"].values():
        for name in split["shards"]:
            digests = {hashlib.sha256((tmp_path / d / name).read_bytes()).hexdigest() for d in ("a", "b")}
            assert len(digests) == 1, name
    assert (tmp_path / "a" / "stats.json").read_bytes() == (tmp_path / "b" / "stats.json").read_bytes()


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
    # Local-time bounds (UTC+2) and frames whose GLM windows span the 17 and 18 UTC hour folders.
    window = ("--start", "2024-06-17T19:00+02:00", "--end", "2024-06-18T02:00+02:00")
    summary = build(f"s3://{bucket}?endpoint={s3_endpoint}", tmp_path / "s3ds", *window)
    local = build(f"dir:{day}", tmp_path / "dirds", *window)
    assert summary["frames_used"] == local["frames_used"] == 4
    assert summary["splits"]["train"]["examples"] == local["splits"]["train"]["examples"]
    assert summary["start"] == "2024-06-17T17:00:00.000Z"
    assert any((tmp_path / "s3ds" / ".cache").rglob("OR_GLM-*.nc"))  # downloaded into the cache


def test_trend_feature_set_uses_the_frame_fifteen_minutes_earlier(archive: Path, tmp_path: Path) -> None:
    summary = build(f"dir:{archive}", tmp_path / "trend", "--feature-set", "ir-ltg-trend/1")
    assert summary["channels"] == ["ir", "ltg", "ir_trend"]
    assert summary["frames_used"] == 8
    paths = [tmp_path / "trend" / name for name in summary["splits"]["train"]["shards"]]
    record = next(read_records(paths, tuple(summary["channels"]), tuple(summary["features"]), 64))
    name = record["frame"][0].decode()
    now = read_product(next(archive.rglob(name)))
    start = parse_filename(name).scan_start
    earlier_name = next(
        p.name
        for p in archive.rglob("OR_ABI-*.nc")
        if abs((parse_filename(p.name).scan_start - start).total_seconds() + 900) < 60
    )
    before = read_product(next(archive.rglob(earlier_name)))
    row, col = int(record["row"][0]), int(record["col"][0])
    expected = np.float32((before.values[row, col] - now.values[row, col]) / 20.0)
    assert record["ir_trend"][32, 32] == pytest.approx(expected, rel=1e-6)
