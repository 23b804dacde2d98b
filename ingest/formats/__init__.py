"""NOAA GOES-R file layouts as data, and a writer that reproduces them.

Each ``*.json`` beside this module is the header of one real NOAA product file
(dimensions, global attributes, every variable's dtype, dimensions, chunking,
compression and attributes, and the values of small metadata variables),
extracted by :mod:`ingest.formats.extract`. No measurement data is stored.

:func:`write_product` writes a file with exactly that layout, replacing the
dimension sizes, attributes and variable values it is given. Physical values
are packed by :func:`pack`, the inverse of :func:`ingest.ncio.decode`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
from numpy.typing import NDArray

from ingest.ncio import NETCDF_LOCK

TEMPLATES = ("abi_l1b_rad", "glm_l2_lcfa")


@cache
def load_template(name: str) -> dict[str, Any]:
    """A product layout by name; unknown names list the valid ones."""
    if name not in TEMPLATES:
        msg = f"unknown template {name!r}; valid: {', '.join(TEMPLATES)}"
        raise ValueError(msg)
    text = resources.files(__package__).joinpath(f"{name}.json").read_text(encoding="utf-8")
    return json.loads(text)  # type: ignore[no-any-return]


def decode_attribute(spec: Mapping[str, Any]) -> Any:
    """JSON attribute spec ``{"type": ..., "value": ...}`` → the value netCDF4 writes."""
    if spec["type"] == "str":
        return spec["value"]
    return (
        np.array(spec["value"], dtype=spec["type"])
        if isinstance(spec["value"], list)
        else np.dtype(spec["type"]).type(spec["value"])
    )


def encode_attribute(value: Any) -> dict[str, Any]:
    """A netCDF4 attribute value → JSON spec (inverse of :func:`decode_attribute`)."""
    if isinstance(value, str):
        return {"type": "str", "value": value}
    array = np.asarray(value)
    return {"type": array.dtype.name, "value": array.tolist()}


def pack(values: NDArray[Any], attrs: Mapping[str, Any], dtype: str) -> NDArray[Any]:
    """Physical values → stored integers by ``scale_factor``/``add_offset``/``_Unsigned``.

    NaN becomes ``_FillValue``. Values are rounded to the nearest count and
    clipped to ``valid_range`` (or to the integer type's range).
    """
    target = np.dtype(dtype)
    if target.kind == "f":
        out = np.asarray(values, dtype=target).copy()
        if "_FillValue" in attrs:
            out[np.isnan(out)] = attrs["_FillValue"]
        return out
    unsigned = str(attrs.get("_Unsigned", "false")).lower() == "true"
    view = np.dtype(target.str.replace("i", "u")) if unsigned and target.kind == "i" else target
    info = np.iinfo(view)
    low, high = float(info.min), float(info.max)
    if "valid_range" in attrs:
        low, high = (float(v) for v in np.asarray(attrs["valid_range"], dtype=target).astype(view))
    scale = float(attrs.get("scale_factor", 1.0))
    offset = float(attrs.get("add_offset", 0.0))
    physical = np.asarray(values, dtype=np.float64)
    missing = ~np.isfinite(physical)
    counts = np.asarray(np.clip(np.rint((np.where(missing, offset, physical) - offset) / scale), low, high), view)
    if "_FillValue" in attrs:
        counts[missing] = np.asarray(attrs["_FillValue"], dtype=target).astype(view)
    return counts.view(target) if view != target else counts


def write_product(
    path: str | Path,
    template: Mapping[str, Any],
    *,
    dimensions: Mapping[str, int],
    global_attrs: Mapping[str, Any],
    values: Mapping[str, NDArray[Any] | float | int],
    attrs: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """Write one product file in the template's layout.

    Parameters
    ----------
    path
        Where to write; an existing file is replaced.
    template
        A layout from :func:`load_template`.
    dimensions
        Sizes of the template's variable-size dimensions (``y``/``x``, the GLM counts).
    global_attrs
        Global attributes that replace the template's (same order kept).
    values
        Physical values per variable; packed per its (possibly overridden) attributes.
        Variables not given keep the template's stored values or stay unwritten (fill).
    attrs
        Per-variable attribute overrides (e.g. ``scale_factor`` for another band);
        ``None`` removes an attribute.
    """
    attrs = attrs or {}
    with NETCDF_LOCK, netCDF4.Dataset(str(path), "w", format="NETCDF4") as ds:
        ds.set_auto_maskandscale(False)
        for name, size in template["dimensions"].items():
            ds.createDimension(name, dimensions.get(name, size))
        ds.setncatts(
            {k: global_attrs.get(k, decode_attribute(spec)) for k, spec in template["global_attributes"].items()}
        )
        for spec in template["variables"]:
            _write_variable(ds, spec, values, attrs.get(spec["name"], {}))


def _write_variable(
    ds: netCDF4.Dataset, spec: Mapping[str, Any], values: Mapping[str, Any], overrides: Mapping[str, Any]
) -> None:
    merged = {k: decode_attribute(a) for k, a in spec["attributes"].items()} | dict(overrides)
    var_attrs = {k: v for k, v in merged.items() if v is not None}
    fill = var_attrs.pop("_FillValue", None)
    dims = tuple(spec["dimensions"])
    chunks = spec.get("chunks")
    sizes = [len(ds.dimensions[d]) for d in dims]
    if chunks is not None:
        chunks = [max(1, min(c, s)) for c, s in zip(chunks, sizes, strict=True)]
    options: dict[str, Any] = {
        "zlib": bool(spec.get("zlib", False)),
        "complevel": int(spec.get("complevel", 4)),
        "shuffle": bool(spec.get("shuffle", False)),
        "chunksizes": chunks if chunks and all(sizes) else None,
        "contiguous": chunks is None,
        "fill_value": fill if fill is not None else False,
    }
    var = ds.createVariable(spec["name"], np.dtype(spec["dtype"]), dims, **options)
    var.set_auto_maskandscale(False)
    var.setncatts(var_attrs)
    if fill is not None:
        var_attrs["_FillValue"] = fill
    if spec["name"] in values:
        var[...] = pack(np.asarray(values[spec["name"]]), var_attrs, spec["dtype"])
    elif "value" in spec:
        var[...] = np.asarray(spec["value"], dtype=spec["dtype"])
