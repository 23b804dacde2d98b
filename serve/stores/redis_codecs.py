"""What the Redis grid store writes, as bytes and JSON: probability codecs, geometry, metadata, notifications.

The pure half of the distributed mode's sink (:mod:`serve.stores.redis_grids` is the half that talks to
Redis): no ``redis`` import, no I/O, so a reader of a stored grid or of a notification needs neither.

Formats:

* **Probability** (:data:`ENCODINGS`, looked up with :func:`codec`): little-endian cells, row-major
  ``[H, W]``, before zlib. ``"uint8"`` is percent with 255 = missing; ``"float16"`` and ``"float32"``
  are the probability clipped to [0, 1] with NaN = missing. Decoders return float32 with NaN = missing.
* **Geometry** (:func:`geometry_json`, :func:`grid_from_json`): projection attributes and, per axis,
  first value, mean step and size (radians), so a regular axis comes back exact at both ends.
* **Metadata** (:func:`meta_json`, :func:`meta_from_json`): the GridMeta fields, times as ISO 8601 UTC ("...Z").
* **Notification** (:class:`GridNotification`): the small JSON object published after each put, never the arrays.

Times must be timezone-aware; a naive one is a ``ValueError`` (:func:`aware_iso`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray

from foundation.registry import Registry
from foundation.utc import iso_utc, parse_utc
from ingest.events import GridKey, GridView
from ingest.geometry import Ellipsoid, FixedGrid, GeosProjection
from serve.stores.gridfile import GridMeta, pack_percent, unpack_percent

# -- encodings: a registry, one encoder/decoder pair per name ----------------------------

Encoder = Callable[[NDArray[np.float32]], bytes]
Decoder = Callable[[bytes, tuple[int, int]], NDArray[np.float32]]
Codec = tuple[Encoder, Decoder]


def _encode_uint8(p: NDArray[np.float32]) -> bytes:
    return pack_percent(p).tobytes()


def _decode_uint8(raw: bytes, shape: tuple[int, int]) -> NDArray[np.float32]:
    return unpack_percent(np.frombuffer(raw, np.uint8).reshape(shape))


def _float_codec(dtype: str) -> Codec:
    def encode(p: NDArray[np.float32]) -> bytes:
        return np.where(np.isfinite(p), np.clip(p, 0, 1), np.nan).astype(dtype).tobytes()

    def decode(raw: bytes, shape: tuple[int, int]) -> NDArray[np.float32]:
        return np.frombuffer(raw, dtype).reshape(shape).astype(np.float32)

    return encode, decode


_CODECS: Registry[Codec] = Registry(
    "probability encoding",
    {
        "uint8": (_encode_uint8, _decode_uint8),
        "float16": _float_codec("<f2"),
        "float32": _float_codec("<f4"),
    },
)
ENCODINGS = tuple(_CODECS)


def codec(name: str) -> Codec:
    """The ``(encode, decode)`` pair of an encoding; :class:`~foundation.errors.ConfigError` listing the valid ones."""
    return _CODECS.lookup(name)


# -- geometry and metadata as JSON -------------------------------------------------------


def _axis(values: NDArray[np.float64]) -> dict[str, float | int]:
    """First value and mean step of a regular axis (exact at both ends)."""
    return {"first": float(values[0]), "step": float((values[-1] - values[0]) / (values.size - 1)), "size": values.size}


def geometry_json(grid: FixedGrid) -> str:
    """The grid as JSON: projection attributes and ``x``/``y`` first value, step and size."""
    proj = grid.projection
    return json.dumps(
        {
            "lon_0": proj.lon_0,
            "height": proj.height,
            "semi_major_axis": proj.ellipsoid.a,
            "semi_minor_axis": proj.ellipsoid.b,
            "sweep": proj.sweep,
            "x": _axis(grid.x),
            "y": _axis(grid.y),
        },
        sort_keys=True,
    )


def grid_from_json(text: str | bytes) -> FixedGrid:
    """Inverse of :func:`geometry_json`."""
    g = json.loads(text)
    projection = GeosProjection(
        lon_0=float(g["lon_0"]),
        height=float(g["height"]),
        ellipsoid=Ellipsoid(float(g["semi_major_axis"]), float(g["semi_minor_axis"])),
        sweep=str(g["sweep"]),
    )
    x, y = (g[n]["first"] + g[n]["step"] * np.arange(int(g[n]["size"]), dtype=np.float64) for n in ("x", "y"))
    return FixedGrid(projection, x, y)


def aware_iso(when: datetime) -> str:
    """:func:`foundation.utc.iso_utc` (millisecond ``...Z``) of an aware time; ``ValueError`` for a naive one."""
    if when.tzinfo is None:
        msg = f"times must be timezone-aware UTC; found naive {when.isoformat()}"
        raise ValueError(msg)
    return iso_utc(when)


def meta_json(meta: GridMeta) -> str:
    """The GridMeta fields as JSON, times as ISO 8601 UTC."""
    body = asdict(meta)
    body["scan_start"], body["valid_time"] = aware_iso(meta.scan_start), aware_iso(meta.valid_time)
    body["glm_files"] = list(meta.glm_files)
    return json.dumps(body, sort_keys=True)


def meta_from_json(text: str | bytes) -> dict[str, Any]:
    """Inverse of :func:`meta_json`: ``GridMeta(**meta_from_json(...))`` rebuilds the meta."""
    body: dict[str, Any] = json.loads(text)
    body["scan_start"], body["valid_time"] = parse_utc(body["scan_start"]), parse_utc(body["valid_time"])
    body["glm_files"] = tuple(body.get("glm_files", ()))
    return body


# -- the notification of a put ------------------------------------------------------------


@dataclass(frozen=True)
class GridNotification(GridView):
    """The pub/sub message of one put (small JSON; fetch the grid with ``get``): a view of the grid's key.

    ``scan_start`` is the frame's, to the millisecond (the key keeps whole seconds).
    """

    grid: GridKey
    scan_start: datetime
    valid_time: datetime
    latest: bool

    @classmethod
    def of(cls, meta: GridMeta, latest: bool) -> GridNotification:
        """The notification of a put of ``meta``; ``latest``: whether the put moved the sector's latest."""
        return cls(meta.key, meta.scan_start, meta.valid_time, latest)

    def to_json(self) -> bytes:
        """UTF-8 JSON: the id, its parts, times as ISO 8601 UTC."""
        key = self.grid
        body = {"grid_id": key.grid_id, "satellite": key.satellite, "sector": key.sector,
                "scan_start": aware_iso(self.scan_start), "valid_time": aware_iso(self.valid_time),
                "model_name": key.model_name, "model_version": key.model_version, "latest": self.latest}  # fmt: skip
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> GridNotification:
        """Parse :meth:`to_json` output; ``ValueError`` naming what is wrong otherwise."""
        try:
            body = json.loads(data)
            key = GridKey.parse(body["grid_id"])
            latest = body["latest"]
            if not isinstance(latest, bool):
                msg = f"latest must be true or false, found {latest!r}"
                raise TypeError(msg)
            scan_start = parse_utc(body["scan_start"])
            if scan_start.replace(microsecond=0) != key.scan_start:
                msg = f"scan_start {body['scan_start']} is not the scan of {key.grid_id}"
                raise ValueError(msg)
            return cls(key, scan_start, parse_utc(body["valid_time"]), latest)
        except (KeyError, TypeError, ValueError) as exc:
            msg = f"not a grid notification ({type(exc).__name__}: {exc}): {data[:200]!r}"
            raise ValueError(msg) from exc
