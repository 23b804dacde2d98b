"""Fuzzing the GOES-R readers: seeded mutations of real-format files, each read in a bounded worker process.

The contract under test is the readers' (:mod:`ingest.readers`): whatever bytes a feed delivers, reading a
file ends in a parsed product or in a :class:`~foundation.errors.FrameDecodeError` whose reason is one line —
no other exception, no hang, no more memory than the largest real product needs — and an accepted product
is sound (an ABI frame with enough valid earth pixels; no GLM flash outside its granule's window, off the
globe or with an impossible energy).

A case is one seed file (a real NOAA sample or a file of the synthetic scenario) with one to three of the
:data:`MUTATIONS` applied, all drawn from ``numpy.random.default_rng((seed, case))``, so any case can be
replayed alone (:func:`make_case`). Byte-level mutations (flips in the header region, truncation) come
last in a combination, after the edits made through netCDF4 (huge or zero dimensions, bad packing
attributes, fill everywhere, times in 2099, NaN positions, wrong storage types, dropped variables, bad
values, a file name naming another sector, band or satellite).

Cases run in a worker process (``python -m ltgcast.fuzzing SPEC``) whose address space is capped with
``RLIMIT_AS`` and in which warnings are errors. The parent gives each case ``case_timeout_s``; a case that
overruns (``hang``) or kills the worker (``died``) is recorded and a fresh worker goes on at the next case.
The worker resets its peak resident set before each read (``/proc/self/clear_refs``), so the memory a read
adds is measured alone, apart from the mutation's. With ``isolated`` each file is checked as the ingest
daemon checks it (:func:`ingest.sandbox.check_in_child`), so a hang or crash inside the HDF5 library becomes
a refusal; the plain mode holds the reader itself to the contract, and such a file shows there as ``hang``.

Outcome kinds: ``accepted``; ``refused`` (by stage and reason class, :data:`REASON_CLASSES`); and the
violations ``error`` (another exception), ``memory`` (``MemoryError`` under the cap), ``multiline`` (a
reason of more than one line), ``unsound`` (an accepted product breaking the contract), ``hang``, ``died``.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import netCDF4
import numpy as np

import ingest
from foundation.errors import ConfigError, FrameDecodeError
from ingest.abi import MIN_VALID_SHARE, AbiImage
from ingest.glm import MAX_FLASH_ENERGY_J, WINDOW_MARGIN_S, GlmGranule
from ingest.ncio import NETCDF_LOCK
from ingest.readers import read_product
from ingest.sandbox import Isolation, check_in_child
from ingest.synthetic import J2000, ScenarioConfig, simulate

Rng = np.random.Generator
Mutation = Callable[[Rng, Path], tuple[Path, str]]

#: Bytes at the start of a file where byte flips land most of the time (superblock, root group, first headers).
HEADER_BYTES = 16_384
#: Largest variable :func:`rewrite` copies (a CONUS 2-km image is 3.75 million values); larger ones stay fill.
COPY_LIMIT = 1 << 22
#: Default cap on the worker's address space and the per-case time limit.
MEMORY_LIMIT_MIB = 2048
CASE_TIMEOUT_S = 30.0

#: Variables the readers read, by product: the targets of attribute, value and type mutations.
ABI_TARGETS = ("Rad", "CMI", "DQF", "x", "y", "t", "band_id", "band_wavelength", "planck_fk1", "planck_fk2",
               "planck_bc1", "planck_bc2", "kappa0")  # fmt: skip
GLM_TARGETS = ("flash_lat", "flash_lon", "flash_energy", "flash_area", "flash_time_offset_of_first_event",
               "flash_time_offset_of_last_event", "flash_id", "flash_quality_flag", "group_lat", "group_time_offset",
               "group_parent_flash_id", "event_lat", "event_lon", "event_time_offset", "event_energy",
               "product_time", "nominal_satellite_subpoint_lon", "flash_count", "event_count")  # fmt: skip
#: Dimensions worth resizing, by product.
DIMENSIONS = {"ABI": ("y", "x", "band"), "GLM": ("number_of_flashes", "number_of_groups", "number_of_events")}
#: Sizes a resized dimension gets: empty, one, just past the real limits, and far past any.
DIM_SIZES = (0, 1, 501, 5425, 100_000, 630_001, 10_000_000, 2**31 - 1)
BAD_NUMBERS = (float("nan"), float("inf"), -1.0, 0.0, 1e30, -1e30, 1e-30)
FAR_FUTURE = datetime(2099, 1, 1, tzinfo=UTC)

#: Reason text → reason class, first match wins (the classes of the report).
REASON_CLASSES = (
    ("time limit", r"did not finish within"),
    ("memory cap", r"of memory allowed"),
    ("crash", r"reading process died"),
    ("open", r"cannot open as NetCDF"),
    ("corrupt", r"read failed"),
    ("missing", r"missing (variable|attribute)"),
    ("shape", r"declares"),
    ("packing", r"scale_factor|_FillValue|valid_range|stored as"),
    ("empty", r"earth pixels"),
    ("identity", r"file name says|expected an? .*file|ABI band"),
    ("time", r"product_time|counts from|mid-scan|since"),
    ("geometry", r"fixed-grid|goes_imager_projection|sweep_angle_axis|subpoint"),
    ("calibration", r"[Pp]lanck|kappa0|CMI should"),
    ("units", r"units should"),
)


def reason_class(reason: str) -> str:
    """The class of a refusal reason (:data:`REASON_CLASSES`), ``other`` when none matches.

    >>> reason_class("variable 'Rad' declares shape (100000, 100000); expected at most (500, 500)")
    'shape'
    """
    return next((name for name, pattern in REASON_CLASSES if re.search(pattern, reason)), "other")


# -- mutations ---------------------------------------------------------------------------------------------


def _instrument(path: Path) -> str:
    return "GLM" if "_GLM-" in path.name else "ABI"


def _targets(ds: netCDF4.Dataset, path: Path) -> list[str]:
    names = GLM_TARGETS if _instrument(path) == "GLM" else ABI_TARGETS
    return [n for n in names if n in ds.variables]


def _pick(rng: Rng, items: Iterable[Any]) -> Any:
    options = list(items)
    return options[int(rng.integers(len(options)))]


def flip_bytes(rng: Rng, path: Path) -> tuple[Path, str]:
    """XOR 1-8 bytes with random non-zero values, most in the first :data:`HEADER_BYTES`."""
    data = bytearray(path.read_bytes())
    count = int(rng.integers(1, 9))
    for _ in range(count):
        span = min(len(data), HEADER_BYTES) if rng.random() < 0.8 else len(data)
        if span:
            data[int(rng.integers(span))] ^= int(rng.integers(1, 256))
    path.write_bytes(bytes(data))
    return path, f"flip_bytes({count})"


def truncate(rng: Rng, path: Path) -> tuple[Path, str]:
    """Cut the file at a random length."""
    size = path.stat().st_size
    keep = int(rng.integers(size)) if size else 0
    with path.open("r+b") as handle:
        handle.truncate(keep)
    return path, f"truncate({keep}/{size})"


def rewrite(
    src: Path,
    dst: Path,
    *,
    dims: dict[str, int] | None = None,
    drop: tuple[str, ...] = (),
    dtypes: dict[str, Any] | None = None,
    fills: dict[str, Any] | None = None,
) -> None:
    """Copy ``src`` to ``dst`` through netCDF4 with dimensions resized, variables dropped or retyped, fills changed.

    Variables over a resized dimension are created but not written (they read as fill), so a file declaring
    a 100000 × 100000 image stays small.
    """
    dims, dtypes, fills = dims or {}, dtypes or {}, fills or {}
    with NETCDF_LOCK, netCDF4.Dataset(src) as old, netCDF4.Dataset(dst, "w", format="NETCDF4") as new:
        old.set_auto_maskandscale(False)
        for name, dim in old.dimensions.items():
            new.createDimension(name, dims.get(name, len(dim)))
        new.setncatts({k: old.getncattr(k) for k in old.ncattrs()})
        resized = {n for n, size in dims.items() if n in old.dimensions and size != len(old.dimensions[n])}
        for name, var in old.variables.items():
            if name not in drop:
                write = not resized & set(var.dimensions) and var.size <= COPY_LIMIT
                _copy_variable(new, var, dtypes.get(name, var.dtype), fills.get(name), write=write)


def _copy_variable(new: netCDF4.Dataset, var: netCDF4.Variable[Any], dtype: Any, fill: Any, *, write: bool) -> None:
    attrs = {k: var.getncattr(k) for k in var.ncattrs()}
    fill = attrs.pop("_FillValue", None) if fill is None else fill
    sizes = [len(new.dimensions[d]) for d in var.dimensions]
    chunking = var.chunking()
    chunks = [max(1, min(c, s)) for c, s in zip(chunking, sizes, strict=True)] if isinstance(chunking, list) else None
    numeric = dtype is not str
    target = new.createVariable(
        var.name, dtype, var.dimensions, zlib=numeric and bool(var.filters().get("zlib")),
        chunksizes=chunks if chunks and all(sizes) else None, fill_value=fill if numeric else None,
    )  # fmt: skip
    target.set_auto_maskandscale(False)
    target.setncatts(attrs)
    if write:
        values = np.asarray(var[...])
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            target[...] = values.astype(str).astype(object) if not numeric else values.astype(dtype)


def _replace(path: Path, **changes: Any) -> None:
    """Rewrite ``path`` in place with :func:`rewrite`'s ``changes``."""
    tmp = path.with_name(path.name + ".tmp")
    rewrite(path, tmp, **changes)
    tmp.replace(path)


def huge_dim(rng: Rng, path: Path) -> tuple[Path, str]:
    """Resize one dimension the reader depends on (to 0, 1, just past the limit, or far past it)."""
    dim, size = _pick(rng, DIMENSIONS[_instrument(path)]), int(_pick(rng, DIM_SIZES))
    _replace(path, dims={dim: size})
    return path, f"huge_dim({dim}={size})"


def bad_attribute(rng: Rng, path: Path) -> tuple[Path, str]:
    """Set a packing or units attribute of a read variable to something impossible."""
    attr = _pick(rng, ("scale_factor", "add_offset", "valid_range", "units", "_Unsigned", "_FillValue"))
    value: Any = _pick(rng, (*BAD_NUMBERS, "garbage", np.array([1, 2, 3], np.int16)))
    if attr == "units":
        value = _pick(rng, ("seconds since 2099-01-01 00:00:00.000", "furlongs", "milliseconds since 1066-10-14"))
    elif attr == "_Unsigned":
        value = _pick(rng, ("true", "false", "maybe"))
    with NETCDF_LOCK, netCDF4.Dataset(path) as ds:
        name = _pick(rng, _targets(ds, path))
    if attr == "_FillValue":
        value = _pick(rng, (0, -1, 1, 127))
        _replace(path, fills={name: value})
    else:
        with NETCDF_LOCK, netCDF4.Dataset(path, "a") as ds:
            ds[name].setncattr(attr, value)
    return path, f"bad_attribute({name}.{attr}={value!r})"


def _head(var: netCDF4.Variable[Any]) -> tuple[slice, ...]:
    """The whole of a variable of at most :data:`COPY_LIMIT` values, else a corner of it (mutations stay cheap)."""
    if var.size <= COPY_LIMIT:
        return tuple(slice(None) for _ in var.shape)
    return tuple(slice(0, min(n, 4096 if len(var.shape) == 1 else 64)) for n in var.shape)


def _shape_of(var: netCDF4.Variable[Any], index: tuple[slice, ...]) -> tuple[int, ...]:
    return tuple(len(range(*i.indices(n))) for i, n in zip(index, var.shape, strict=True))


def fill_everywhere(rng: Rng, path: Path) -> tuple[Path, str]:
    """Overwrite a whole read variable with its ``_FillValue`` (NaN for floats without one)."""
    with NETCDF_LOCK, netCDF4.Dataset(path, "a") as ds:
        ds.set_auto_maskandscale(False)
        name = _pick(rng, _targets(ds, path))
        var = ds[name]
        fill = var.getncattr("_FillValue") if "_FillValue" in var.ncattrs() else np.nan
        if var.size:
            index = _head(var)
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                var[index] = np.full(_shape_of(var, index), fill).astype(var.dtype)
    return path, f"fill_everywhere({name})"


def time_2099(rng: Rng, path: Path) -> tuple[Path, str]:
    """Move a time into 2099: ``product_time``/``t``, an offset's epoch, or every flash through its offset."""
    future = (FAR_FUTURE - J2000).total_seconds()
    with NETCDF_LOCK, netCDF4.Dataset(path, "a") as ds:
        ds.set_auto_maskandscale(False)
        choice = _pick(rng, ("value", "epoch", "offset"))
        name = _pick(rng, [n for n in ("t", "product_time") if n in ds.variables] or ["x"])
        if choice == "epoch" and "flash_time_offset_of_first_event" in ds.variables:
            name = _pick(rng, ("flash_time_offset_of_first_event", "event_time_offset", "group_time_offset"))
            ds[name].setncattr("units", "seconds since 2099-01-01 00:00:00.000")
        elif choice == "offset" and "flash_time_offset_of_first_event" in ds.variables:
            name = _pick(rng, ("flash_time_offset_of_first_event", "flash_time_offset_of_last_event"))
            scale = 1e3 if "milli" in ds[name].units else 1.0
            shift = (FAR_FUTURE - datetime(2024, 1, 1, tzinfo=UTC)).total_seconds() * scale
            ds[name].setncattr("add_offset", np.float32(shift))
        elif ds[name].dtype.kind == "f":
            ds[name][...] = future
    return path, f"time_2099({choice}:{name})"


def nan_positions(rng: Rng, path: Path) -> tuple[Path, str]:
    """Put NaN, or a latitude/longitude off the globe, into some or all flash (or group) positions."""
    with NETCDF_LOCK, netCDF4.Dataset(path, "a") as ds:
        ds.set_auto_maskandscale(False)
        names = [n for n in ("flash_lat", "flash_lon", "group_lat", "group_lon") if n in ds.variables]
        if not names or not ds[names[0]].size:
            return path, "nan_positions(none)"
        name = _pick(rng, names)
        values = np.asarray(ds[name][...], dtype=np.float32)
        which = rng.random(values.size) < _pick(rng, (0.05, 0.5, 1.0))
        values[which] = _pick(rng, (np.nan, np.inf, 1e6, -999.0, 91.0, 400.0))
        ds[name][...] = values
    return path, f"nan_positions({name}:{int(which.sum())})"


def wrong_dtype(rng: Rng, path: Path) -> tuple[Path, str]:
    """Store a read variable in another type (floats for integers, integers for floats, strings)."""
    with NETCDF_LOCK, netCDF4.Dataset(path) as ds:
        name = _pick(rng, _targets(ds, path))
    dtype = _pick(rng, (np.float64, np.float32, np.int64, np.int8, np.uint16, str))
    _replace(path, dtypes={name: dtype})
    return path, f"wrong_dtype({name}={getattr(dtype, '__name__', dtype)})"


def drop_variable(rng: Rng, path: Path) -> tuple[Path, str]:
    """Remove a read variable."""
    with NETCDF_LOCK, netCDF4.Dataset(path) as ds:
        name = _pick(rng, _targets(ds, path))
    _replace(path, drop=(name,))
    return path, f"drop_variable({name})"


def bad_value(rng: Rng, path: Path) -> tuple[Path, str]:
    """Write an impossible value into a small variable or a projection attribute."""
    with NETCDF_LOCK, netCDF4.Dataset(path, "a") as ds:
        ds.set_auto_maskandscale(False)
        if "goes_imager_projection" in ds.variables and rng.random() < 0.4:
            attr = _pick(rng, ("perspective_point_height", "semi_major_axis", "semi_minor_axis",
                               "longitude_of_projection_origin", "sweep_angle_axis"))  # fmt: skip
            value: Any = _pick(rng, BAD_NUMBERS) if attr != "sweep_angle_axis" else "y"
            ds["goes_imager_projection"].setncattr(attr, value)
            return path, f"bad_value(goes_imager_projection.{attr}={value!r})"
        name = _pick(rng, _targets(ds, path))
        var = ds[name]
        index = _head(var)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            noise = rng.normal(0.0, float(_pick(rng, (1.0, 1e3, 1e9))), _shape_of(var, index))
            var[index] = noise.astype(var.dtype) if var.size else noise
    return path, f"bad_value({name})"


def rename(rng: Rng, path: Path) -> tuple[Path, str]:
    """Rename the file to claim another sector, band or satellite (the name is still a valid GOES-R name)."""
    name = path.name
    choice = _pick(rng, ("sector", "band", "satellite"))
    if choice == "sector" and "-L1b-Rad" in name:
        name = re.sub(r"Rad(C|F|M1|M2)-", f"Rad{_pick(rng, ('C', 'F', 'M1', 'M2'))}-", name)
    elif choice == "band" and "_ABI-" in name:
        name = re.sub(r"C\d\d_G", f"C{int(rng.integers(0, 18)):02d}_G", name)
    else:
        name = re.sub(r"_G\d\d_", f"_G{_pick(rng, ('16', '17', '18', '19'))}_", name)
    target = path.with_name(name)
    path.rename(target)
    return target, f"rename({choice}:{name[:30]})"


#: Every mutation by name; the byte-level ones run last in a combination.
MUTATIONS: dict[str, Mutation] = {
    "huge_dim": huge_dim,
    "bad_attribute": bad_attribute,
    "fill_everywhere": fill_everywhere,
    "time_2099": time_2099,
    "nan_positions": nan_positions,
    "wrong_dtype": wrong_dtype,
    "drop_variable": drop_variable,
    "bad_value": bad_value,
    "rename": rename,
    "flip_bytes": flip_bytes,
    "truncate": truncate,
}
BYTE_LEVEL = ("flip_bytes", "truncate")


def make_case(seed: int, case: int, seeds: list[Path], directory: Path) -> tuple[Path, list[str]]:
    """Case ``case`` of run ``seed``: a copy of one seed file in ``directory`` with 1-3 mutations applied.

    A mutation that cannot apply to the file as it stands (a variable it needs is gone) is recorded as skipped.
    """
    rng = np.random.default_rng((seed, case))
    source = seeds[int(rng.integers(len(seeds)))]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / source.name
    shutil.copyfile(source, path)
    count = int(_pick(rng, (1, 1, 1, 2, 2, 3)))
    names = [str(_pick(rng, MUTATIONS)) for _ in range(count)]
    names.sort(key=lambda n: n in BYTE_LEVEL)
    done = []
    for name in names:
        try:
            path, description = MUTATIONS[name](rng, path)
        except (OSError, RuntimeError, ValueError, TypeError, KeyError, IndexError, AttributeError, MemoryError) as exc:
            description = f"{name}(skipped: {type(exc).__name__})"
        done.append(description)
    return path, done


# -- one case, in the worker --------------------------------------------------------------------------------


def unsound(product: AbiImage | GlmGranule) -> str | None:
    """Why an accepted product breaks the readers' contract, or ``None``."""
    if isinstance(product, AbiImage):
        acc = product.accounting
        if product.values.dtype != np.float32 or isinstance(product.values, np.ma.MaskedArray):
            return f"image is {type(product.values).__name__} of {product.values.dtype}, expected float32 ndarray"
        if acc.earth == 0 or acc.valid / acc.earth < MIN_VALID_SHARE:
            return f"accepted with {acc.valid} of {acc.earth} earth pixels valid"
        return None
    flashes = product.flashes
    low = product.scan_start.timestamp() - WINDOW_MARGIN_S[0]
    high = product.scan_end.timestamp() + WINDOW_MARGIN_S[1]
    with np.errstate(invalid="ignore"):
        checks = {
            "position": np.isfinite(flashes.lat) & (np.abs(flashes.lat) <= 90) & (np.abs(flashes.lon) <= 180),
            "time": (flashes.time >= low) & (flashes.time_last <= high) & (flashes.time <= flashes.time_last),
            "energy": (flashes.energy >= 0) & (flashes.energy <= MAX_FLASH_ENERGY_J),
        }
    broken = [f"{n} {int((~ok).sum())}" for n, ok in checks.items() if not ok.all()]
    return f"accepted flashes with a bad {', '.join(broken)}" if broken else None


def run_case(seed: int, case: int, seeds: list[Path], work: Path, isolation: Isolation | None = None) -> dict[str, Any]:
    """Build case ``case``, read it once, and say how that ended (see the module docstring for the kinds).

    With ``isolation`` the file is checked as the ingest daemon checks it (:func:`ingest.sandbox.check_in_child`):
    a hang or crash of the HDF5 library becomes a refusal, and the product itself is not seen.
    """
    directory = work / f"case{case:06d}"
    try:
        began = time.perf_counter()
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            path, mutations = make_case(seed, case, seeds, directory)
        result: dict[str, Any] = {"case": case, "event": "done", "seed_file": path.name, "mutations": mutations,
                                  "mutate_s": round(time.perf_counter() - began, 4)}  # fmt: skip
        before = _reset_peak_rss()
        began = time.perf_counter()
        result |= _read(path) if isolation is None else _check(path, isolation)
        result["seconds"] = round(time.perf_counter() - began, 4)
        peak = _status_mib("VmHWM")
        result |= {"read_peak_mib": peak, "read_added_mib": max(0.0, peak - before)}
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return result


def _read(path: Path) -> dict[str, Any]:
    try:
        product = read_product(path)
    except FrameDecodeError as exc:
        if "\n" in exc.reason or "\n" in str(exc):
            return {"kind": "multiline", "detail": exc.reason[:300]}
        return {"kind": "refused", "stage": exc.stage, "class": reason_class(exc.reason), "detail": exc.reason[:300]}
    except MemoryError as exc:
        return {"kind": "memory", "detail": str(exc)[:300]}
    except Exception as exc:  # the violation the fuzz loop exists to find: report it, go on
        return {"kind": "error", "detail": f"{type(exc).__name__}: {exc}"[:300]}
    problem = unsound(product)
    if problem is not None:
        return {"kind": "unsound", "detail": problem}
    dropped = sum(product.flashes_dropped.values()) if isinstance(product, GlmGranule) else 0
    return {"kind": "accepted", "flashes_dropped": dropped}


def _status_mib(field: str) -> float:
    """A ``Vm*`` field of ``/proc/self/status`` in MiB (Linux)."""
    with Path("/proc/self/status").open(encoding="ascii") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _reset_peak_rss() -> float:
    """Reset the process's peak resident set to its current size (``clear_refs``), so the next read is measured alone.

    Returns the current resident set, MiB.
    """
    with Path("/proc/self/clear_refs").open("w", encoding="ascii") as handle:
        handle.write("5")
    return _status_mib("VmRSS")


def _check(path: Path, isolation: Isolation) -> dict[str, Any]:
    try:
        check_in_child(path, isolation=isolation)
    except FrameDecodeError as exc:
        return {"kind": "refused", "stage": exc.stage, "class": reason_class(exc.reason), "detail": exc.reason[:300]}
    except Exception as exc:  # a violation of the daemon's contract: report it, go on
        return {"kind": "error", "detail": f"{type(exc).__name__}: {exc}"[:300]}
    return {"kind": "accepted", "flashes_dropped": 0}


def _memory_mib() -> dict[str, float]:
    """Peak resident set (since the last reset) and peak address space of the current process, MiB."""
    return {"maxrss_mib": _status_mib("VmHWM"), "vmpeak_mib": _status_mib("VmPeak")}


def worker(spec: dict[str, Any], out: IO[str]) -> int:
    """Run cases ``spec['start']`` to ``spec['cases'] - 1`` under the memory cap, one JSON line per event."""
    limit = int(spec["memory_limit_mib"]) * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    warnings.simplefilter("error")  # the project's test rule: a numerical warning is a defect, not noise
    seeds, work = [Path(p) for p in spec["seeds"]], Path(spec["work"])
    isolation = Isolation(timeout_s=float(spec["isolated_timeout_s"])) if spec.get("isolated_timeout_s") else None
    for case in range(int(spec["start"]), int(spec["cases"])):
        out.write(json.dumps({"case": case, "event": "start"}) + "\n")
        out.flush()
        out.write(json.dumps(run_case(int(spec["seed"]), case, seeds, work, isolation) | _memory_mib()) + "\n")
        out.flush()
    out.write(json.dumps({"event": "end"} | _memory_mib()) + "\n")
    out.flush()
    return 0


# -- the parent: workers, time limits, the report ---------------------------------------------------------


@dataclass(frozen=True)
class FuzzConfig:
    """One fuzz run: how many cases from which seed files, where to work, and the bounds."""

    cases: int
    seed: int
    seeds: tuple[Path, ...]
    work: Path
    case_timeout_s: float = CASE_TIMEOUT_S
    memory_limit_mib: int = MEMORY_LIMIT_MIB
    isolated: bool = False  # check each case as the daemon does, in a child with a third of the case's time

    @property
    def isolated_timeout_s(self) -> float | None:
        """The time limit of an isolated check, or ``None`` when cases are read in the worker itself."""
        return self.case_timeout_s / 3 if self.isolated else None


def synthetic_seeds(directory: Path) -> list[Path]:
    """Seed files the project writes itself: one minute of the synthetic M1 scenario (1 ABI frame, 3 GLM granules)."""
    config = ScenarioConfig(out=directory, sector="M1", start=datetime(2024, 6, 15, 18, 0, tzinfo=UTC), minutes=1,
                            seed=3)  # fmt: skip
    return sorted(simulate(config))


def sample_seeds(folder: Path) -> list[Path]:
    """The real NOAA samples under ``folder`` (``abi/*.nc``, ``glm/*.nc``)."""
    return sorted(folder.glob("*/*.nc"))


class _Worker:
    """A worker process and a thread turning its output into a queue of parsed lines (``None`` at the end)."""

    def __init__(self, config: FuzzConfig, start: int, stderr: IO[bytes]) -> None:
        spec = {"cases": config.cases, "seed": config.seed, "seeds": [str(p) for p in config.seeds],
                "work": str(config.work), "start": start, "memory_limit_mib": config.memory_limit_mib,
                "isolated_timeout_s": config.isolated_timeout_s}  # fmt: skip
        root = Path(ingest.__file__).resolve().parents[1]  # the worker reads with the very code the parent imported
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ltgcast.fuzzing", json.dumps(spec)], cwd=root,
            stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, text=True,
            env=dict(os.environ, PYTHONPATH=str(root)),
        )  # fmt: skip
        self.lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                self.lines.put(json.loads(line))
            except json.JSONDecodeError:  # a line cut short when the worker was killed
                continue
        self.lines.put(None)

    def stop(self) -> None:
        """Kill the worker if it still runs, then close its pipe once the reading thread has seen its end."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._pump_thread.join(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


def run_fuzz(config: FuzzConfig) -> dict[str, Any]:
    """Run every case of ``config`` in bounded workers; the report (see :func:`summarize`)."""
    config.work.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    memory: list[dict[str, float]] = []
    began = time.perf_counter()
    stderr_path = config.work / "workers.stderr"
    with stderr_path.open("wb") as stderr:
        start = 0
        while start < config.cases:
            start = _drive(_Worker(config, start, stderr), config, results, memory)
    stderr_text = stderr_path.read_text(encoding="utf-8", errors="replace")
    return summarize(config, results, memory, time.perf_counter() - began, stderr_text)


def _drive(worker_: _Worker, config: FuzzConfig, results: list[dict[str, Any]], memory: list[dict[str, float]]) -> int:
    """Collect one worker's results until it ends, overruns a case or dies; the case to start the next one at."""
    current: int | None = None
    try:
        while True:
            try:
                line = worker_.lines.get(timeout=config.case_timeout_s)
            except queue.Empty:
                if current is None:
                    msg = f"a fuzz worker stalled outside any case for {config.case_timeout_s:g} s"
                    raise RuntimeError(msg) from None
                results.append({"case": current, "kind": "hang", "detail": f"over {config.case_timeout_s:g} s"})
                return current + 1
            if line is None:  # the worker died
                if current is None:
                    msg = "a fuzz worker died before its first case; see workers.stderr"
                    raise RuntimeError(msg)
                results.append({"case": current, "kind": "died", "detail": f"exit status {worker_.process.wait()}"})
                return current + 1
            if line["event"] == "start":
                current = int(line["case"])
            elif line["event"] == "done":
                results.append(line)
                memory.append({k: line[k] for k in ("maxrss_mib", "vmpeak_mib")})
                current = None
            else:
                memory.append({k: line[k] for k in ("maxrss_mib", "vmpeak_mib")})
                return config.cases
    finally:
        worker_.stop()


def summarize(
    config: FuzzConfig, results: list[dict[str, Any]], memory: list[dict[str, float]], seconds: float, stderr: str
) -> dict[str, Any]:
    """The JSON-ready report: cases, outcomes by kind (refusals by stage/class), times, memory, violations."""
    kinds = Counter(r["kind"] for r in results)
    refused = Counter(f"{r['stage']}/{r['class']}" for r in results if r["kind"] == "refused")
    mutations = Counter(m.split("(")[0] for r in results for m in r.get("mutations", ()))
    times = [r["seconds"] for r in results if "seconds" in r]
    violations = [r for r in results if r["kind"] not in ("accepted", "refused")]
    return {
        "benchmark": "fuzz",
        "isolated": config.isolated,
        "cases": len(results),
        "seed": config.seed,
        "seed_files": len(config.seeds),
        "outcomes": dict(sorted(kinds.items())),
        "refused": dict(sorted(refused.items())),
        "flashes_dropped": sum(r.get("flashes_dropped", 0) for r in results),
        "mutations": dict(sorted(mutations.items())),
        "max_case_s": max(times, default=0.0),
        "median_case_s": float(np.median(times)) if times else 0.0,
        "total_s": round(seconds, 2),
        "case_timeout_s": config.case_timeout_s,
        "memory_limit_mib": config.memory_limit_mib,
        "read_peak_rss_mib": max((r["read_peak_mib"] for r in results if "read_peak_mib" in r), default=0.0),
        "read_added_rss_mib": max((r["read_added_mib"] for r in results if "read_added_mib" in r), default=0.0),
        "vmpeak_mib": max((m["vmpeak_mib"] for m in memory), default=0.0),
        "tracebacks": stderr.count("Traceback"),
        "violations": violations[:50],
    }


def main(argv: list[str]) -> int:
    """Worker entry point: ``python -m ltgcast.fuzzing SPEC_JSON``."""
    return worker(json.loads(argv[0]), sys.stdout)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


# -- ltgcast bench-fuzz --------------------------------------------------------------------------------------


def add_bench_fuzz_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``ltgcast bench-fuzz``."""
    parser.add_argument("--cases", type=int, default=2000, help="mutated files to read")
    parser.add_argument("--seed", type=int, default=1, help="the run's seed (case i is seeded with (seed, i))")
    parser.add_argument("--json", default="var/bench/fuzz.json", help="where to write the JSON report")
    parser.add_argument("--samples", help="a folder of real NOAA samples (abi/*.nc, glm/*.nc) to mutate as well")
    parser.add_argument("--case-timeout", type=float, default=CASE_TIMEOUT_S, help="seconds one case may take")
    parser.add_argument("--memory-limit-mib", type=int, default=MEMORY_LIMIT_MIB, help="the worker's address space")
    parser.add_argument("--isolated", action="store_true", help="check each file as the ingest daemon does, in a child")


def bench_fuzz(args: argparse.Namespace) -> int:
    """``ltgcast bench-fuzz``: print the outcomes, times and memory; exit 1 when the contract was broken."""
    if args.cases <= 0 or args.case_timeout <= 0 or args.memory_limit_mib <= 0:
        msg = "--cases, --case-timeout and --memory-limit-mib must be positive"
        raise ConfigError(msg)
    samples = Path(args.samples) if args.samples else None
    if samples is not None and not sample_seeds(samples):
        msg = f"--samples: no abi/*.nc or glm/*.nc files under {samples}"
        raise ConfigError(msg)
    with tempfile.TemporaryDirectory(prefix="ltgcast-fuzz-") as tmp:
        seeds = synthetic_seeds(Path(tmp) / "seeds") + (sample_seeds(samples) if samples else [])
        config = FuzzConfig(cases=args.cases, seed=args.seed, seeds=tuple(seeds), work=Path(tmp) / "cases",
                            case_timeout_s=args.case_timeout, memory_limit_mib=args.memory_limit_mib,
                            isolated=args.isolated)  # fmt: skip
        report = run_fuzz(config) | {"cpus": os.cpu_count()}
    out = sys.stdout
    out.write(
        f"{report['cases']} cases from {report['seed_files']} seed files (seed {args.seed}) in {report['total_s']} s\n"
    )
    out.write(f"outcomes: {json.dumps(report['outcomes'])}\nrefused by stage/class: {json.dumps(report['refused'])}\n")
    out.write(f"flashes dropped from accepted granules: {report['flashes_dropped']}\n")
    out.write(f"per case: max {report['max_case_s']:.3f} s, median {report['median_case_s']:.4f} s\n")
    if args.isolated:
        out.write("memory: each read ran in the daemon's child process, capped there (see ingest.sandbox)\n")
    else:
        out.write(f"memory: one read added at most {report['read_added_rss_mib']:.0f} MiB resident (the worker's "
                  f"resident peak, mutations included: {report['read_peak_rss_mib']:.0f} MiB); worker address space "
                  f"peak {report['vmpeak_mib']:.0f} of {report['memory_limit_mib']} MiB allowed\n")  # fmt: skip
    for violation in report["violations"]:
        out.write(f"VIOLATION case {violation['case']}: {violation['kind']}: {violation.get('detail', '')}\n")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 1 if report["violations"] or report["tracebacks"] else 0
