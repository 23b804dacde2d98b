"""The one boundary between netCDF4 and ltgcast.

Every GOES-R file is opened here; ``OSError``/``RuntimeError`` from the HDF5
layer, missing variables and missing attributes become
:class:`~foundation.errors.FrameDecodeError` naming the file and what was missing.

Packed variables are decoded explicitly rather than through netCDF4's masked
arrays, so the rules are visible and no masked array escapes:

1. read the stored integers;
2. reinterpret them as unsigned when ``_Unsigned = "true"`` (GOES-R stores
   12-bit counts and 16-bit packed values in signed ``int16``);
3. mark ``_FillValue`` and values outside ``valid_range`` (both reinterpreted
   the same way: ``valid_range = [0, -6]`` means ``[0, 65530]``) as missing;
4. apply ``scale_factor`` and ``add_offset``; missing becomes NaN.

A hostile or broken file must cost no more memory than the product it claims
to be: :func:`check_shape` compares a variable's *declared* shape (metadata
only) with what the reader expects before anything is read, and every unpacking
attribute (``scale_factor``, ``add_offset``, ``_FillValue``, ``valid_range``)
and storage type is checked, so a wrong one is a
:class:`~foundation.errors.FrameDecodeError` naming the variable, never a
``ValueError`` from NumPy.

HDF5, under netCDF4, is not thread-safe, and netCDF4 releases the GIL around
its calls: two threads reading at once (the ingest daemon validating one file
while the worker reads another, or the HTTP API reading a grid) crash the
process. Every netCDF4 call of ltgcast therefore runs under :data:`NETCDF_LOCK`,
held for the life of an open dataset.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
from numpy.typing import NDArray

from foundation.errors import FrameDecodeError, FrameShapeError

#: Held around every use of netCDF4 in the process (HDF5 is not thread-safe); re-entrant.
NETCDF_LOCK = threading.RLock()


@contextmanager
def open_dataset(path: str | Path) -> Iterator[netCDF4.Dataset]:
    """Open a NetCDF file read-only with automatic masking and scaling off, holding :data:`NETCDF_LOCK`.

    Raises
    ------
    FrameDecodeError
        The file is missing, truncated, or not NetCDF/HDF5.
    """
    with NETCDF_LOCK:
        try:
            ds = netCDF4.Dataset(str(path), mode="r")
        except (OSError, RuntimeError) as exc:
            raise FrameDecodeError(str(path), f"cannot open as NetCDF-4 ({exc})") from exc
        try:
            ds.set_auto_maskandscale(False)
            yield ds
        except (OSError, RuntimeError) as exc:
            raise FrameDecodeError(str(path), f"read failed, file truncated or corrupt? ({exc})") from exc
        finally:
            ds.close()


def variable(ds: netCDF4.Dataset, name: str) -> netCDF4.Variable[Any]:
    """Return variable ``name`` or fail naming it."""
    try:
        return ds.variables[name]
    except KeyError as exc:
        raise FrameDecodeError(ds.filepath(), f"missing variable {name!r}") from exc


def attribute(obj: netCDF4.Dataset | netCDF4.Variable[Any], name: str) -> Any:
    """Return attribute ``name`` of a dataset or variable, or fail naming it."""
    try:
        return obj.getncattr(name)
    except AttributeError as exc:
        where = getattr(obj, "name", "global")
        raise FrameDecodeError(_path_of(obj), f"missing attribute {name!r} on {where}") from exc


def _path_of(obj: netCDF4.Dataset | netCDF4.Variable[Any]) -> str:
    ds = obj.group() if isinstance(obj, netCDF4.Variable) else obj
    return str(ds.filepath())


def declared_unsigned(var: netCDF4.Variable[Any]) -> bool:
    """Whether ``var`` declares its integers unsigned (``_Unsigned = "true"``)."""
    return str(getattr(var, "_Unsigned", "false")).lower() == "true"


def check_shape(var: netCDF4.Variable[Any], expected: tuple[int, ...], what: str) -> None:
    """Refuse ``var`` unless its declared shape is ``expected``; reads no data.

    ``what`` says where the expectation comes from (``"a CONUS 2 km frame"``).

    Raises
    ------
    FrameShapeError
        Naming the variable, the expected and the declared shape.
    """
    found = tuple(int(n) for n in var.shape)
    if found != expected:
        msg = f"variable {var.name!r} declares shape {found}; expected {expected} for {what}"
        raise FrameShapeError(_path_of(var), msg)


def check_scalar(var: netCDF4.Variable[Any]) -> None:
    """Refuse ``var`` unless it holds exactly one value (shape ``()`` or ``(1,)``); reads no data."""
    found = tuple(int(n) for n in var.shape)
    if found not in ((), (1,)):
        msg = f"variable {var.name!r} declares shape {found}; expected a scalar, () or (1,)"
        raise FrameShapeError(_path_of(var), msg)


def _numeric_kind(var: netCDF4.Variable[Any], kinds: str) -> str:
    """The NumPy kind of ``var``'s storage type, refused unless it is one of ``kinds``."""
    kind = str(getattr(var.dtype, "kind", "O"))
    if kind not in kinds:
        names = {"iu": "an integer", "iuf": "a numeric"}[kinds]
        msg = f"variable {var.name!r} should be stored as {names} type, found {var.dtype}"
        raise FrameDecodeError(_path_of(var), msg)
    return kind


def _packing(var: netCDF4.Variable[Any]) -> tuple[float, float]:
    """``scale_factor`` and ``add_offset`` of ``var``: finite numbers, the scale not zero."""
    try:
        scale = float(np.asarray(getattr(var, "scale_factor", 1.0), dtype=np.float64).reshape(-1)[0])
        offset = float(np.asarray(getattr(var, "add_offset", 0.0), dtype=np.float64).reshape(-1)[0])
    except (ValueError, TypeError, IndexError) as exc:
        msg = f"variable {var.name!r}: scale_factor/add_offset should be numbers ({exc})"
        raise FrameDecodeError(_path_of(var), msg) from exc
    if not (np.isfinite(scale) and np.isfinite(offset) and scale != 0.0):
        found = f"scale_factor {scale!r}, add_offset {offset!r}"
        msg = f"variable {var.name!r}: expected a finite non-zero scale_factor and a finite add_offset, found {found}"
        raise FrameDecodeError(_path_of(var), msg)
    return scale, offset


def raw_integers(
    var: netCDF4.Variable[Any], unsigned: bool | None = None, index: Any = Ellipsis
) -> tuple[NDArray[Any], NDArray[np.bool_]]:
    """Stored integers of ``var`` (or of ``var[index]``) and the missing mask.

    ``unsigned`` overrides the variable's ``_Unsigned`` declaration when given.
    A ``_FillValue`` or ``valid_range`` that is not a number (or a pair of numbers)
    of the variable's type is a :class:`~foundation.errors.FrameDecodeError`.
    """
    _numeric_kind(var, "iu")
    raw = np.asarray(var[index])
    unsigned = (declared_unsigned(var) if unsigned is None else unsigned) and raw.dtype.kind == "i"
    target = raw.dtype.str.replace("i", "u") if unsigned else raw.dtype

    def as_stored(value: Any) -> NDArray[Any]:
        number = np.asarray(value, dtype=np.float64)
        info = np.iinfo(raw.dtype)
        if not (np.isfinite(number).all() and info.min <= number.min(initial=0) <= number.max(initial=0) <= info.max):
            msg = f"{value!r} is not a {raw.dtype} value"
            raise ValueError(msg)
        stored = number.astype(raw.dtype)
        return stored.astype(target, copy=False) if unsigned else stored

    values = raw.view(target) if unsigned else raw
    missing = np.zeros(values.shape, dtype=bool)
    try:
        if "_FillValue" in var.ncattrs():
            missing |= values == as_stored(var.getncattr("_FillValue")).reshape(-1)[0]
        if "valid_range" in var.ncattrs():
            low, high = as_stored(var.getncattr("valid_range")).reshape(-1)
            missing |= (values < low) | (values > high)
    except (ValueError, TypeError, OverflowError, IndexError) as exc:
        msg = f"variable {var.name!r}: _FillValue/valid_range do not fit its type {raw.dtype} ({exc})"
        raise FrameDecodeError(_path_of(var), msg) from exc
    return values, missing


def decode(var: netCDF4.Variable[Any], unsigned: bool | None = None, index: Any = Ellipsis) -> NDArray[np.float64]:
    """Unpack ``var`` (or ``var[index]``) to float64 physical values; missing values are NaN.

    ``unsigned`` overrides the ``_Unsigned`` declaration (see :func:`raw_integers`).
    Values too large for float64 after scaling become ``inf``, never a warning.
    """
    if _numeric_kind(var, "iuf") == "f":
        values = np.array(var[index], dtype=np.float64)
        if "_FillValue" in var.ncattrs():
            try:
                fill = float(np.asarray(var.getncattr("_FillValue"), dtype=np.float64).reshape(-1)[0])
            except (ValueError, TypeError, IndexError) as exc:
                msg = f"variable {var.name!r}: _FillValue should be a number ({exc})"
                raise FrameDecodeError(_path_of(var), msg) from exc
            values[values == fill] = np.nan
        return values
    scale, offset = _packing(var)
    stored, missing = raw_integers(var, unsigned, index)
    with np.errstate(over="ignore", invalid="ignore"):
        out = stored.astype(np.float64)
        out *= scale
        out += offset
    out[missing] = np.nan
    return out


def decode_int(var: netCDF4.Variable[Any], index: Any = Ellipsis) -> NDArray[np.int64]:
    """Integer variable (ids, flags) as int64 with the unsigned view applied; missing → -1.

    A variable stored as floating point is a :class:`~foundation.errors.FrameDecodeError`.
    """
    stored, missing = raw_integers(var, index=index)
    out = stored.astype(np.int64)
    out[missing] = -1
    return out


def scalar(ds: netCDF4.Dataset, name: str) -> float:
    """A scalar variable as a float; its fill value becomes NaN. The shape is checked before reading."""
    var = variable(ds, name)
    check_scalar(var)
    return float(decode(var).reshape(-1)[0])


_SINCE = re.compile(
    r"^\s*(?P<unit>milliseconds|msec|ms|seconds|secs|sec|s)\s+since\s+"
    r"(?P<epoch>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?)\s*(?:Z|UTC)?\s*$"
)
_UNIT_SECONDS = {"milliseconds": 1e-3, "msec": 1e-3, "ms": 1e-3, "seconds": 1.0, "secs": 1.0, "sec": 1.0, "s": 1.0}


def parse_time_units(units: str) -> tuple[float, datetime]:
    """Parse ``'<unit> since <UTC time>'`` into (seconds per unit, aware epoch).

    >>> parse_time_units("milliseconds since 2018-07-02 04:33:00.000")
    (0.001, datetime.datetime(2018, 7, 2, 4, 33, tzinfo=datetime.timezone.utc))
    """
    match = _SINCE.match(units)
    if match is None:
        msg = f"time units {units!r} are not '<seconds|milliseconds> since YYYY-MM-DD HH:MM:SS'"
        raise ValueError(msg)
    epoch = datetime.fromisoformat(match["epoch"].replace(" ", "T")).replace(tzinfo=UTC)
    return _UNIT_SECONDS[match["unit"]], epoch


def time_units(var: netCDF4.Variable[Any]) -> tuple[float, datetime]:
    """(seconds per unit, aware epoch) of a CF time variable's ``units``; a bad one is a FrameDecodeError."""
    units = attribute(var, "units")
    try:
        return parse_time_units(str(units))
    except ValueError as exc:
        raise FrameDecodeError(_path_of(var), f"variable {var.name!r}: {exc}") from exc


def decode_time(var: netCDF4.Variable[Any], unsigned: bool | None = None) -> NDArray[np.float64]:
    """Decode a CF time variable to float64 seconds since 1970-01-01T00:00:00Z."""
    per_unit, epoch = time_units(var)
    return decode(var, unsigned) * per_unit + epoch.timestamp()
