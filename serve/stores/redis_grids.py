"""The Redis grid store: the distributed-mode sink for probability grids.

Same call shape as :class:`serve.stores.files.FileGridStore` (``put(probability, grid,
meta, encoding=...)``), so the worker can write to both. One put is one atomic
Lua script, followed by one ``PUBLISH``. This module is the half that talks to
Redis (settings, the store, the subscription); what it writes, as bytes and JSON,
is :mod:`serve.stores.redis_codecs`, which has no ``redis`` import.

Key layout (``P`` is :attr:`RedisSettings.prefix`, default ``ltgcast``)::

    P:grid:<grid_id>       hash, TTL = grid_ttl
        probability        zlib-compressed little-endian cells, row-major [H, W]
        encoding           "uint8" (percent, 255 = missing), "float16" or "float32" (NaN = missing)
        shape              JSON [H, W]
        geometry           JSON: projection attributes, x/y first value and step (radians)
        meta               JSON: the GridMeta fields, times as ISO 8601 UTC ("...Z")
    P:history:<sector>     sorted set: member grid id, score scan start (epoch seconds);
                           trimmed to the window behind the newest scan; TTL = grid_ttl
    P:latest:<sector>      hash {grid_id, scan, version}; TTL = grid_ttl, refreshed when it moves

Notifications go to :attr:`RedisSettings.channel_name` (default ``P:grids``) as
small JSON objects (:class:`~serve.stores.redis_codecs.GridNotification`), never the
arrays; :meth:`RedisGridStore.subscribe` listens to them.

Rules:

* **Idempotent.** A grid id names one key; writing it again replaces every field
  and restarts its TTL, and the history keeps one member per id.
* **Latest moves forward only.** Grids are ordered by (scan start, model
  version, grid id). ``latest`` moves to a put's grid when that grid is not
  older than the current one, so a replayed or out-of-order older scan never
  replaces a newer one; a higher model version of the same scan does (and a
  newer scan from a lower, rolled-back version does too: the scan decides
  first). Re-putting the current latest refreshes it. The compare-and-set runs
  inside the same Lua script as the writes, so it is atomic. Once the latest
  key expires (no grid for ``grid_ttl``) the next put becomes latest.
* **History window in scan time, not wall time.** After each put the history
  keeps the grids whose scan start is within ``history_window`` of the newest
  scan in it; a replayed grid older than that is stored (``get`` finds it) but
  not listed. ``history`` leaves out ids whose grid key has already expired.
* **Errors.** Every ``redis.exceptions.RedisError`` (and ``OSError``) becomes
  :class:`~foundation.errors.StoreError` here, naming the server and the operation;
  a stored grid that does not decode is a ``StoreError`` too. Grid ids are
  parsed with :meth:`ingest.events.GridKey.parse` before any key is built.

Keys are not hash-tagged: one put touches three keys, which suits a single
server or Sentinel; Redis Cluster would need a ``{sector}`` hash tag in them.

Importing this module never connects; the client connects on first use.
"""

from __future__ import annotations

import json
import logging
import math
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, NamedTuple, cast
from urllib.parse import urlsplit

import numpy as np
import redis
from numpy.typing import NDArray
from redis.backoff import ExponentialWithJitterBackoff
from redis.client import PubSub
from redis.exceptions import RedisError
from redis.retry import Retry

from foundation.addresses import format_address, parse_address
from foundation.errors import ConfigError, StoreError
from ingest.events import GridKey, GridView
from ingest.geometry import FixedGrid
from serve.stores.files import check_sector
from serve.stores.gridfile import GridMeta
from serve.stores.redis_codecs import (
    GridNotification,
    aware_iso,
    codec,
    geometry_json,
    grid_from_json,
    meta_from_json,
    meta_json,
)

log = logging.getLogger(__name__)

_FIELDS = ("probability", "encoding", "shape", "geometry", "meta")

# KEYS: grid hash, history zset, latest hash.
# ARGV: grid id, scan (epoch s), model version, TTL (ms), window (s), then field/value pairs of the grid hash.
# Returns 1 when latest moved to this grid, else 0.
_PUT_LUA = """
local grid_id, scan, version, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 6, #ARGV))
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[2], ARGV[2], grid_id)
local newest = redis.call('ZREVRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local cutoff = tonumber(newest[2]) - tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. string.format('%.6f', cutoff))
redis.call('PEXPIRE', KEYS[2], ttl)
local current = redis.call('HMGET', KEYS[3], 'scan', 'version', 'grid_id')
local moved = not current[1]
if not moved then
  local cscan, cversion = tonumber(current[1]), tonumber(current[2])
  moved = scan > cscan or (scan == cscan and (version > cversion or (version == cversion and grid_id >= current[3])))
end
if moved then
  redis.call('HSET', KEYS[3], 'grid_id', grid_id, 'scan', ARGV[2], 'version', ARGV[3])
  redis.call('PEXPIRE', KEYS[3], ttl)
  return 1
end
return 0
"""


@dataclass(frozen=True)
class RedisSettings:
    """Where the Redis store lives and how long it keeps grids.

    Attributes
    ----------
    address
        ``host:port``, or a ``redis://``, ``rediss://`` or ``unix://`` URL.
    prefix
        Namespace of every key (``<prefix>:grid:…``).
    history_window
        How far behind the newest scan the per-sector history reaches.
    grid_ttl
        Lifetime of a stored grid (and of the history and latest keys after their last change).
    channel
        Pub/sub channel of notifications; ``None`` means ``<prefix>:grids``.
    socket_timeout_s, connect_timeout_s
        Per-command and per-connect time-outs, seconds.
    retries
        Extra attempts after a connection error or time-out (with jittered back-off).
    compression_level
        zlib level of the stored probability, 1 (fast) to 9 (small).
    """

    address: str = "127.0.0.1:6379"
    prefix: str = "ltgcast"
    history_window: timedelta = timedelta(hours=6)
    grid_ttl: timedelta = timedelta(hours=6)
    channel: str | None = None
    socket_timeout_s: float = 5.0
    connect_timeout_s: float = 2.0
    retries: int = 1
    compression_level: int = 6

    def __post_init__(self) -> None:
        """Crash on a setting that cannot work, naming it."""
        if not self.prefix or any(c.isspace() for c in self.prefix) or self.prefix.endswith(":"):
            msg = f"Redis key prefix must be non-empty, without spaces or a trailing ':'; found {self.prefix!r}"
            raise ConfigError(msg)
        for name in ("history_window", "grid_ttl"):
            value: timedelta = getattr(self, name)
            if value.total_seconds() < 1:
                msg = f"Redis store {name} must be at least one second; found {value}"
                raise ConfigError(msg)
        if self.socket_timeout_s <= 0 or self.connect_timeout_s <= 0 or self.retries < 0:
            msg = (f"Redis time-outs must be positive and retries >= 0; found socket {self.socket_timeout_s}, "
                   f"connect {self.connect_timeout_s}, retries {self.retries}")  # fmt: skip
            raise ConfigError(msg)
        if not 1 <= self.compression_level <= 9:
            msg = f"zlib compression level must be 1..9; found {self.compression_level}"
            raise ConfigError(msg)
        _split_address(self.address)

    @property
    def channel_name(self) -> str:
        """The pub/sub channel: :attr:`channel`, or ``<prefix>:grids``."""
        return self.channel if self.channel is not None else f"{self.prefix}:grids"

    @property
    def display_address(self) -> str:
        """The address without credentials, for messages and logs."""
        if "://" not in self.address:
            return self.address
        parts = urlsplit(self.address)
        if parts.scheme == "unix":
            return f"unix://{parts.path}"
        return f"{parts.scheme}://{format_address(parts.hostname or '', parts.port or 6379)}{parts.path}"


def _split_address(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a ``host:port`` address, ``None`` for a URL; :class:`ConfigError` otherwise."""
    msg = f"Redis address must be host:port or a redis://, rediss:// or unix:// URL; found {address!r}"
    if "://" in address:
        if address.partition("://")[0] not in ("redis", "rediss", "unix"):
            raise ConfigError(msg)
        return None
    try:
        return parse_address(address, "Redis address")
    except ConfigError:
        raise ConfigError(msg) from None


@dataclass(frozen=True)
class RedisStoredGrid(GridView):
    """A grid written to Redis (a view of its :class:`~ingest.events.GridKey`): its Redis key, what the put did."""

    grid: GridKey
    key: str  # the Redis key of the grid's hash
    nbytes: int
    latest: bool

    @property
    def scan_start(self) -> datetime:
        """The frame's scan start (to the second)."""
        return self.grid.scan_start


class RedisGrid(NamedTuple):
    """A grid read back: probability ``[H, W]`` float32 (NaN = missing), GridMeta fields, geometry."""

    probability: NDArray[np.float32]
    meta: dict[str, Any]
    grid: FixedGrid


# -- the store ----------------------------------------------------------------------------


class RedisGridStore:
    """Probability grids in Redis: latest per sector, a rolling history, pub/sub notifications."""

    def __init__(self, settings: RedisSettings | None = None, *, client: redis.Redis | None = None) -> None:
        self.settings = settings or RedisSettings()
        self._client = client if client is not None else self._connect()
        # EVALSHA by the script's SHA-1 (computed here, no round trip); on NOSCRIPT (first use, a restart, a
        # SCRIPT FLUSH) redis-py loads the script and runs it again.
        self._put_script = self._client.register_script(_PUT_LUA)

    def _connect(self) -> redis.Redis:
        """A client; redis-py connects lazily, on the first command."""
        s = self.settings
        options: dict[str, Any] = {
            "socket_timeout": s.socket_timeout_s,
            "socket_connect_timeout": s.connect_timeout_s,
            "retry": Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries=s.retries),
            "decode_responses": False,
        }
        host_port = _split_address(s.address)
        if host_port is None:
            return redis.Redis.from_url(s.address, **options)
        return redis.Redis(host=host_port[0], port=host_port[1], **options)

    # -- the one boundary where redis errors are translated ----------------------------

    @contextmanager
    def translated(self, operation: str) -> Iterator[None]:
        """Turn Redis and socket errors raised inside into :class:`StoreError`."""
        try:
            yield
        except (RedisError, OSError) as exc:
            msg = f"Redis at {self.settings.display_address}: {operation} failed: {type(exc).__name__}: {exc}"
            raise StoreError(msg) from exc

    def key(self, kind: str, name: str) -> str:
        """``<prefix>:<kind>:<name>``."""
        return f"{self.settings.prefix}:{kind}:{name}"

    def grid_key(self, grid_id: str) -> str:
        """The key of a grid; ``ValueError`` for an id that is not a grid id."""
        GridKey.parse(grid_id)
        return self.key("grid", grid_id)

    # -- writes --------------------------------------------------------------------------

    def put(self, probability: NDArray[np.floating[Any]], grid: FixedGrid, meta: GridMeta, *,
            encoding: str = "uint8") -> RedisStoredGrid:  # fmt: skip
        """Write (or rewrite) the grid of ``meta`` atomically, then publish a notification."""
        grid_key = meta.key
        encode, _ = codec(encoding)
        if probability.shape != grid.shape:
            msg = f"probability shape {probability.shape} does not match the grid {grid.shape}"
            raise ValueError(msg)
        blob = zlib.compress(encode(np.asarray(probability, np.float32)), self.settings.compression_level)
        fields: dict[str, str | bytes] = {
            "probability": blob,
            "encoding": encoding,
            "shape": json.dumps(list(grid.shape)),
            "geometry": geometry_json(grid),
            "meta": meta_json(meta),
        }
        key = self.key("grid", meta.grid_id)
        scan = meta.scan_start.timestamp()
        keys = [key, self.key("history", grid_key.sector), self.key("latest", grid_key.sector)]
        args: list[str | bytes | int] = [meta.grid_id, repr(scan), meta.model_version,
                                         math.ceil(self.settings.grid_ttl.total_seconds() * 1000),
                                         repr(self.settings.history_window.total_seconds())]  # fmt: skip
        args += [item for pair in fields.items() for item in pair]
        with self.translated(f"put {meta.grid_id}"):
            moved = bool(self._put_script(keys, args))
            self._client.publish(self.settings.channel_name, GridNotification.of(meta, moved).to_json())
        log.debug("stored %s in Redis (%d bytes, latest moved: %s)", meta.grid_id, len(blob), moved)
        return RedisStoredGrid(grid_key, key, len(blob), moved)

    # -- reads ---------------------------------------------------------------------------

    def get(self, grid_id: str) -> RedisGrid | None:
        """The grid with this id, or ``None`` (never stored, or expired); ``ValueError`` for a bad id."""
        key = self.grid_key(grid_id)
        with self.translated(f"get {grid_id}"):
            values = cast(list[bytes | None], self._client.hmget(key, list(_FIELDS)))
        if all(v is None for v in values):
            return None
        try:
            return self._decode(dict(zip(_FIELDS, values, strict=True)))
        except (KeyError, TypeError, ValueError, AttributeError, zlib.error) as exc:
            msg = f"Redis at {self.settings.display_address}: {key} is not a stored grid: {type(exc).__name__}: {exc}"
            raise StoreError(msg) from exc

    @staticmethod
    def _decode(fields: dict[str, bytes | None]) -> RedisGrid:
        missing = [name for name, value in fields.items() if value is None]
        if missing:
            msg = f"fields {', '.join(missing)} are missing"
            raise ValueError(msg)
        raw = {name: cast(bytes, value) for name, value in fields.items()}
        height, width = (int(n) for n in json.loads(raw["shape"]))
        _, decode = codec(raw["encoding"].decode())
        cells = zlib.decompress(raw["probability"])
        probability = decode(cells, (height, width))
        grid = grid_from_json(raw["geometry"])
        if grid.shape != probability.shape:
            msg = f"geometry {grid.shape} does not match the probability {probability.shape}"
            raise ValueError(msg)
        return RedisGrid(probability, meta_from_json(raw["meta"]), grid)

    def latest(self, sector: str) -> str | None:
        """The id of the newest grid of a sector (see the module rules), or ``None``."""
        key = self.key("latest", check_sector(sector))
        with self.translated(f"latest {sector}"):
            value = cast(bytes | None, self._client.hget(key, "grid_id"))
        return None if value is None else value.decode()

    def history(self, sector: str, since: datetime) -> list[str]:
        """Ids of the grids of a sector scanned at or after ``since`` and still stored, oldest first."""
        key = self.key("history", check_sector(sector))
        aware_iso(since)  # ValueError for a naive time
        start = since.timestamp()
        with self.translated(f"history {sector}"):
            members = cast(list[bytes], self._client.zrangebyscore(key, start, "+inf"))
            ids = [m.decode() for m in members if _is_grid_id(m.decode())]
            pipe = self._client.pipeline(transaction=False)
            for grid_id in ids:
                pipe.exists(self.key("grid", grid_id))
            alive = pipe.execute() if ids else []
        found = [grid_id for grid_id, exists in zip(ids, alive, strict=True) if exists]
        return sorted(found, key=_order)

    def missing(self, grid_ids: list[str]) -> list[str]:
        """Those of ``grid_ids`` that are not stored (never put, expired, or lost in a restart); one round trip."""
        keys = [self.grid_key(grid_id) for grid_id in grid_ids]
        with self.translated(f"looking up {len(keys)} grids"):
            pipe = self._client.pipeline(transaction=False)
            for key in keys:
                pipe.exists(key)
            found = pipe.execute() if keys else []
        return [grid_id for grid_id, exists in zip(grid_ids, found, strict=True) if not exists]

    def ttl(self, grid_id: str) -> float | None:
        """Seconds the grid has left, or ``None`` when it is not stored."""
        key = self.grid_key(grid_id)
        with self.translated(f"ttl {grid_id}"):
            millis = self._client.pttl(key)
        return None if millis < 0 else millis / 1000

    def ping(self) -> None:
        """Round trip to the server; :class:`StoreError` when it does not answer."""
        with self.translated("ping"):
            self._client.ping()

    def instance(self) -> str:
        """The server's run id: a new one means the server restarted (and, without persistence, forgot every grid)."""
        with self.translated("reading the server's run id"):
            info = self._client.info("server")
        return str(info.get("run_id", ""))

    def __str__(self) -> str:
        return f"Redis at {self.settings.display_address}"

    # -- notifications -------------------------------------------------------------------

    def subscribe(self) -> GridSubscription:
        """Listen to the notification channel; returns once the server confirmed the subscription."""
        with self.translated(f"subscribe {self.settings.channel_name}"):
            pubsub = self._client.pubsub(ignore_subscribe_messages=False)  # type: ignore[no-untyped-call,unused-ignore]
        return GridSubscription(self, pubsub)

    def close(self) -> None:
        """Release the connections."""
        with self.translated("close"):
            self._client.close()

    def __enter__(self) -> RedisGridStore:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:  # fmt: skip
        self.close()


def _order(grid_id: str) -> tuple[datetime, int, str]:
    return GridKey.parse(grid_id).order


def _is_grid_id(text: str) -> bool:
    try:
        GridKey.parse(text)
    except ValueError:
        return False
    return True


class GridSubscription:
    """Notifications of new grids, in publish order; at most once (pub/sub keeps nothing)."""

    def __init__(self, store: RedisGridStore, pubsub: PubSub) -> None:
        self._store = store
        self._pubsub = pubsub
        self.channel = store.settings.channel_name
        with store.translated(f"subscribe {self.channel}"):
            pubsub.subscribe(self.channel)
            self._await_confirmation(store.settings.connect_timeout_s + store.settings.socket_timeout_s)

    def _await_confirmation(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            message = self._pubsub.get_message(timeout=max(deadline - time.monotonic(), 0.0))
            if message is not None and message["type"] == "subscribe":
                return
        msg = f"no confirmation of the subscription to {self.channel!r} within {timeout_s} s"
        raise StoreError(msg)

    def next(self, timeout_s: float) -> GridNotification | None:
        """The next notification, or ``None`` when none came within ``timeout_s`` seconds."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            with self._store.translated(f"listening on {self.channel}"):
                message = self._pubsub.get_message(timeout=remaining)
            if message is None or message["type"] != "message":
                continue
            try:
                return GridNotification.from_json(message["data"])
            except ValueError as exc:
                log.warning("skipped a message on %s: %s", self.channel, exc)

    def listen(self, idle_timeout_s: float) -> Iterator[GridNotification]:
        """Notifications as they come; stops after ``idle_timeout_s`` seconds without one."""
        while (notice := self.next(idle_timeout_s)) is not None:
            yield notice

    def close(self) -> None:
        """Unsubscribe and release the connection."""
        with self._store.translated(f"unsubscribe {self.channel}"):
            self._pubsub.close()

    def __enter__(self) -> GridSubscription:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:  # fmt: skip
        self.close()
