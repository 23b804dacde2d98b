"""The Redis grid store against the real server: round trip, latest, replay, TTL, history, pub/sub, errors, size."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import redis

from foundation.addresses import free_port
from foundation.errors import ConfigError, StoreError
from ingest.geometry import FixedGrid, GeosProjection
from serve.stores.gridfile import GridMeta
from serve.stores.redis_codecs import GridNotification, geometry_json, grid_from_json
from serve.stores.redis_grids import RedisGridStore, RedisSettings

log = logging.getLogger(__name__)

T0 = datetime(2024, 6, 15, 20, 0, 24, tzinfo=UTC)
STEP = 5.6e-5


def small_grid() -> FixedGrid:
    return FixedGrid(
        GeosProjection(lon_0=-75.2, height=35786023.0), 0.01 + STEP * np.arange(6), 0.05 - STEP * np.arange(4)
    )


def conus_grid() -> FixedGrid:
    """The GOES-East CONUS sector at 2 km: 1500 rows, 2500 columns."""
    return FixedGrid(
        GeosProjection(lon_0=-75.2, height=35786023.0),
        -0.101332 + STEP * np.arange(2500),
        0.128212 - STEP * np.arange(1500),
    )


def meta(minutes: float = 0, version: int = 1, sector: str = "M1") -> GridMeta:
    t = T0 + timedelta(minutes=minutes)
    return GridMeta("G19", sector, t, t + timedelta(minutes=30), "lightning", version, f"abi{minutes}.nc",
                    glm_files=("glm_a.nc", "glm_b.nc"), glm_missing=1, extra={"feature_set": "ir-ltg/1"})  # fmt: skip


def field(value: float = 0.25) -> np.ndarray:
    p = np.full((4, 6), value, np.float32)
    p[0, 0] = np.nan
    p[3, 5] = 1.0
    p[2, 1] = 0.0
    return p


@pytest.fixture
def raw(redis_address: str) -> Iterator[redis.Redis]:
    """A plain client on the same server, to look under the store."""
    host, _, port = redis_address.rpartition(":")
    client = redis.Redis(host=host, port=int(port))
    yield client
    client.close()


@pytest.fixture
def settings(redis_address: str) -> RedisSettings:
    return RedisSettings(address=redis_address, prefix=f"test-{uuid.uuid4().hex}", grid_ttl=timedelta(minutes=10))


@pytest.fixture
def store(settings: RedisSettings, raw: redis.Redis) -> Iterator[RedisGridStore]:
    """A store under a key prefix of its own; every key under it is deleted afterwards."""
    with RedisGridStore(settings) as s:
        yield s
    for key in raw.scan_iter(match=f"{settings.prefix}:*"):
        raw.delete(key)


def own_keys(raw: redis.Redis, settings: RedisSettings) -> set[str]:
    return {k.decode() for k in raw.scan_iter(match=f"{settings.prefix}:*")}


# -- against the real server ----------------------------------------------------------------


@pytest.mark.redis
@pytest.mark.parametrize(("encoding", "tolerance"), [("uint8", 0.005), ("float16", 5e-4), ("float32", 0.0)])
def test_a_grid_comes_back_with_values_nan_geometry_and_meta(store: RedisGridStore, encoding: str,
                                                              tolerance: float) -> None:  # fmt: skip
    grid, m, p = small_grid(), meta(), field(0.123)
    stored = store.put(p, grid, m, encoding=encoding)
    assert stored.grid_id == "G19_M1_20240615T200024Z_lightning-v1"
    assert (stored.sector, stored.version, stored.scan_start) == ("M1", 1, T0)
    got = store.get(stored.grid_id)
    assert got is not None
    probability, got_meta, got_grid = got
    assert probability.dtype == np.float32
    assert probability.shape == (4, 6)
    np.testing.assert_array_equal(np.isnan(probability), np.isnan(p))
    np.testing.assert_allclose(probability[~np.isnan(p)], p[~np.isnan(p)], rtol=0, atol=tolerance)
    assert probability[3, 5] == 1.0
    assert probability[2, 1] == 0.0
    assert got_grid.projection == grid.projection
    np.testing.assert_allclose(got_grid.x, grid.x, rtol=0, atol=1e-15)
    np.testing.assert_allclose(got_grid.y, grid.y, rtol=0, atol=1e-15)
    assert GridMeta(**got_meta) == m
    assert store.get("G19_M1_20240615T200024Z_lightning-v9") is None


@pytest.mark.redis
def test_latest_moves_forward_only(store: RedisGridStore) -> None:
    grid = small_grid()
    assert store.latest("M1") is None
    assert store.put(field(), grid, meta(2)).latest
    assert not store.put(field(), grid, meta(1)).latest  # out of order: an older scan arrives late
    assert store.latest("M1") == meta(2).grid_id
    assert store.put(field(), grid, meta(2, version=2)).latest  # same scan, newer model
    assert store.latest("M1") == meta(2, version=2).grid_id
    assert not store.put(field(), grid, meta(2, version=1)).latest  # replayed older version
    assert store.latest("M1") == meta(2, version=2).grid_id
    assert store.put(field(), grid, meta(3, version=1)).latest  # a newer scan wins, whatever the version
    assert store.latest("M1") == meta(3).grid_id
    assert store.latest("M2") is None


@pytest.mark.redis
def test_a_replayed_put_rewrites_the_same_key_and_one_history_entry(store: RedisGridStore, raw: redis.Redis,
                                                                      settings: RedisSettings) -> None:  # fmt: skip
    grid = small_grid()
    first = store.put(field(0.2), grid, meta())
    again = store.put(field(0.6), grid, meta())
    assert first.key == again.key
    assert store.history("M1", T0 - timedelta(days=1)) == [meta().grid_id]
    assert raw.zcard(f"{settings.prefix}:history:M1") == 1
    assert own_keys(raw, settings) == {first.key, f"{settings.prefix}:history:M1", f"{settings.prefix}:latest:M1"}
    got = store.get(first.grid_id)
    assert got is not None
    assert float(got.probability[1, 1]) == pytest.approx(0.6)


@pytest.mark.redis
def test_a_put_survives_a_script_flush_on_the_server(store: RedisGridStore, raw: redis.Redis) -> None:
    sha = store._put_script.sha
    store.put(field(), small_grid(), meta(1))
    assert raw.script_exists(sha) == [True]
    raw.script_flush()  # as after a server restart: EVALSHA answers NOSCRIPT
    assert raw.script_exists(sha) == [False]
    assert store.put(field(), small_grid(), meta(2)).latest
    assert raw.script_exists(sha) == [True]
    assert store.latest("M1") == meta(2).grid_id


@pytest.mark.redis
def test_grid_history_and_latest_keys_carry_the_configured_ttl(store: RedisGridStore, raw: redis.Redis,
                                                               settings: RedisSettings) -> None:  # fmt: skip
    stored = store.put(field(), small_grid(), meta())
    limit = settings.grid_ttl.total_seconds()
    for key in (stored.key, f"{settings.prefix}:history:M1", f"{settings.prefix}:latest:M1"):
        assert 0 < raw.ttl(key) <= limit, key
    remaining = store.ttl(stored.grid_id)
    assert remaining is not None
    assert 0 < remaining <= limit
    assert store.ttl(meta(5).grid_id) is None


@pytest.mark.redis
def test_history_is_trimmed_to_the_window_behind_the_newest_scan(redis_address: str, raw: redis.Redis) -> None:
    settings = RedisSettings(
        address=redis_address, prefix=f"test-{uuid.uuid4().hex}", history_window=timedelta(hours=1)
    )
    try:
        with RedisGridStore(settings) as store:
            grid = small_grid()
            for minutes in (0, 30, 90):
                store.put(field(), grid, meta(minutes))
            members = [m.decode() for m in raw.zrange(f"{settings.prefix}:history:M1", 0, -1)]
            assert members == [meta(30).grid_id, meta(90).grid_id]  # minute 0 is more than 1 h behind minute 90
            assert store.history("M1", T0 - timedelta(days=1)) == [meta(30).grid_id, meta(90).grid_id]
            assert store.history("M1", T0 + timedelta(minutes=31)) == [meta(90).grid_id]
            store.put(field(), grid, meta(10))  # a late replay outside the window: stored, not listed
            assert store.get(meta(10).grid_id) is not None
            assert store.history("M1", T0 - timedelta(days=1)) == [meta(30).grid_id, meta(90).grid_id]
            store.put(field(), grid, meta(60, version=2))
            raw.delete(f"{settings.prefix}:grid:{meta(30).grid_id}")  # as if its TTL ran out
            assert store.history("M1", T0) == [meta(60, version=2).grid_id, meta(90).grid_id]
            assert store.history("C", T0) == []
    finally:
        for key in raw.scan_iter(match=f"{settings.prefix}:*"):
            raw.delete(key)


@pytest.mark.redis
def test_every_put_is_announced_to_a_subscriber(store: RedisGridStore) -> None:
    grid = small_grid()
    with store.subscribe() as subscription:
        store.put(field(), grid, meta(2))
        store.put(field(), grid, meta(1))
        store.put(field(), grid, meta(2))  # a replay is announced again
        received = list(subscription.listen(idle_timeout_s=1.0))
    assert [(n.grid_id, n.latest) for n in received] == [
        (meta(2).grid_id, True),
        (meta(1).grid_id, False),
        (meta(2).grid_id, True),
    ]
    first = received[0]
    assert (first.satellite, first.sector, first.model_name, first.model_version) == ("G19", "M1", "lightning", 1)
    assert first.scan_start == meta(2).scan_start
    assert first.valid_time == meta(2).valid_time


@pytest.mark.redis
def test_a_subscriber_skips_foreign_messages_on_the_channel(store: RedisGridStore, raw: redis.Redis) -> None:
    with store.subscribe() as subscription:
        raw.publish(store.settings.channel_name, b"not json")
        store.put(field(), small_grid(), meta())
        notice = subscription.next(timeout_s=5.0)
    assert notice is not None
    assert notice.grid_id == meta().grid_id


@pytest.mark.redis
def test_a_grid_that_does_not_decode_is_a_store_error(store: RedisGridStore, raw: redis.Redis) -> None:
    key = store.grid_key(meta().grid_id)
    raw.hset(key, mapping={"probability": b"garbage", "encoding": "uint8", "shape": "[4, 6]", "geometry": "{}",
                           "meta": "{}"})  # fmt: skip
    with pytest.raises(StoreError, match=rf"{key} is not a stored grid: error"):
        store.get(meta().grid_id)
    raw.hdel(key, "meta")
    with pytest.raises(StoreError, match="fields meta are missing"):
        store.get(meta().grid_id)


@pytest.mark.redis
def test_a_conus_grid_is_stored_compactly(store: RedisGridStore, raw: redis.Redis) -> None:
    grid = conus_grid()
    rng = np.random.default_rng(7)
    p = np.clip(rng.normal(0.01, 0.004, (1500, 2500)), 0, 1).astype(np.float32)  # a noisy low background
    for _ in range(40):  # storms: Gaussian blobs of high probability, drawn out to 4 radii
        cy, cx, r = rng.uniform(0, 1500), rng.uniform(0, 2500), rng.uniform(10, 60)
        top, bottom = max(int(cy - 4 * r), 0), min(int(cy + 4 * r) + 1, 1500)
        left, right = max(int(cx - 4 * r), 0), min(int(cx + 4 * r) + 1, 2500)
        box = np.s_[top:bottom, left:right]
        rows, cols = np.ogrid[box]
        blob = np.exp(-((rows - cy) ** 2 + (cols - cx) ** 2) / (2 * r * r)) * rng.uniform(0.3, 1.0)
        p[box] = np.maximum(p[box], blob.astype(np.float32))
    p[:40, :] = np.nan  # a missing strip
    stored = store.put(p, grid, meta(sector="C"))
    value_bytes = raw.hstrlen(stored.key, "probability")
    memory = raw.memory_usage(stored.key)
    log.info("CONUS grid in Redis: %s bytes of probability, %s bytes for the whole key", value_bytes, memory)
    assert value_bytes == stored.nbytes
    # A noisy background (about 1.3 bits of entropy per pixel) bounds what zlib can do: under a fifth of the
    # 3.75 MB of raw uint8 cells, and under a twentieth of the 15 MB a float32 array would take.
    assert value_bytes < p.size // 5
    assert memory is not None
    assert memory < 2 * value_bytes + 64 * 1024
    got = store.get(stored.grid_id)
    assert got is not None
    np.testing.assert_array_equal(np.isnan(got.probability), np.isnan(p))
    np.testing.assert_allclose(got.probability, p, rtol=0, atol=0.005)


@pytest.mark.redis
def test_a_dead_server_is_a_store_error_naming_address_and_operation() -> None:
    port = free_port()
    settings = RedisSettings(address=f"127.0.0.1:{port}", prefix="dead", connect_timeout_s=1.0, retries=0)
    store = RedisGridStore(settings)  # constructing never connects
    m = meta()
    calls = {
        "put": lambda: store.put(field(), small_grid(), m),
        "get": lambda: store.get(m.grid_id),
        "latest": lambda: store.latest("M1"),
        "history": lambda: store.history("M1", T0),
        "subscribe": store.subscribe,
    }
    for operation, call in calls.items():
        with pytest.raises(StoreError, match=rf"Redis at 127\.0\.0\.1:{port}: {operation}\b.* failed: ConnectionError"):
            call()
    with pytest.raises(StoreError) as caught:
        store.ping()
    assert isinstance(caught.value.__cause__, redis.exceptions.ConnectionError)
    store.close()


# -- no server needed --------------------------------------------------------------------------


def test_ids_are_validated_before_any_key_is_built_or_the_server_is_asked() -> None:
    store = RedisGridStore(RedisSettings(address=f"127.0.0.1:{free_port()}", retries=0))
    for bad in ("../secret", "G19_M1_20240615T200224Z_lightning-v1 extra", "ltgcast:*", ""):
        with pytest.raises(ValueError, match="grid id must look like"):
            store.get(bad)
    with pytest.raises(ValueError, match="sector must be one of C, F, M1, M2; found 'M3'"):
        store.latest("M3")
    with pytest.raises(ValueError, match="timezone-aware"):
        store.history("M1", datetime(2024, 6, 15))  # noqa: DTZ001 - the naive time under test
    with pytest.raises(
        ValueError, match="unknown probability encoding 'png'; expected one of: uint8, float16, float32"
    ):
        store.put(field(), small_grid(), meta(), encoding="png")
    with pytest.raises(ValueError, match=r"probability shape \(3, 6\) does not match the grid \(4, 6\)"):
        store.put(field()[:3], small_grid(), meta())
    store.close()


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"address": "localhost"}, "host:port"),
        ({"address": "http://localhost:6379"}, "redis://"),
        ({"prefix": "a b"}, "prefix"),
        ({"prefix": "ltgcast:"}, "prefix"),
        ({"grid_ttl": timedelta(0)}, "grid_ttl"),
        ({"history_window": timedelta(milliseconds=10)}, "history_window"),
        ({"retries": -1}, "retries"),
        ({"compression_level": 0}, "compression level"),
    ],
)
def test_bad_settings_fail_at_start_up(changes: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        RedisSettings(**changes)  # type: ignore[arg-type]


def test_settings_defaults_and_the_address_shown_without_credentials() -> None:
    s = RedisSettings()
    assert (s.address, s.prefix, s.channel_name) == ("127.0.0.1:6379", "ltgcast", "ltgcast:grids")
    assert s.history_window == s.grid_ttl == timedelta(hours=6)
    assert RedisSettings(prefix="x", channel="elsewhere").channel_name == "elsewhere"
    secret = RedisSettings(address="redis://user:hunter2@cache.example:6380/2")
    assert secret.display_address == "redis://cache.example:6380/2"


def test_geometry_and_notification_round_trip_without_a_server() -> None:
    grid = conus_grid()
    back = grid_from_json(geometry_json(grid))
    assert back.projection == grid.projection
    assert back.shape == grid.shape
    np.testing.assert_allclose(back.x, grid.x, rtol=0, atol=1e-15)
    np.testing.assert_allclose(back.y, grid.y, rtol=0, atol=1e-15)
    m = meta()
    notice = GridNotification(m.key, m.scan_start, m.valid_time, latest=True)
    assert (notice.grid_id, notice.sector, notice.model_version) == (m.grid_id, "M1", 1)
    assert GridNotification.from_json(notice.to_json()) == notice
    assert len(notice.to_json()) < 300
    with pytest.raises(ValueError, match="not a grid notification"):
        GridNotification.from_json(b'{"grid_id": "../x"}')
