"""Reader registry: one reader per product family, chosen from the file name.

Every reader refuses a file it cannot vouch for with a
:class:`~foundation.errors.FrameDecodeError` whose ``stage`` says which check
refused it and whose ``reason`` is one line naming what was expected and what
was found; nothing else escapes (the fuzz loop of :mod:`ltgcast.fuzzing` holds
the readers to it). The checks, in the order they run:

1. the name parses and is the reader's family (stage ``name``/``decode``);
2. declared shapes and counts are the product's, before any array is read
   (stage ``shape``; memory is bounded by the largest real product);
3. identity, times, geometry and packing are the product's (stage ``decode``);
4. an ABI frame holds enough valid earth pixels (stage ``empty``); GLM flashes
   with impossible positions, times or energies are dropped and counted, and
   the granule is kept.

The lists are in the module docstrings of :mod:`ingest.abi` and :mod:`ingest.glm`.

>>> sorted(READERS)
['ABI-L1b-Rad', 'ABI-L2-CMIP', 'GLM-L2-LCFA']
>>> get_reader("ABI-L1b-Rad").__name__
'AbiL1bRadReader'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from foundation.registry import Registry
from foundation.utc import iso_utc
from ingest.abi import MIN_VALID_SHARE, AbiImage, AbiL1bRadReader, AbiL2CmipReader
from ingest.filenames import parse_filename
from ingest.glm import GlmGranule, GlmLcfaReader

READERS: Registry[type[AbiL1bRadReader] | type[AbiL2CmipReader] | type[GlmLcfaReader]] = Registry(
    "product family", {"ABI-L1b-Rad": AbiL1bRadReader, "ABI-L2-CMIP": AbiL2CmipReader, "GLM-L2-LCFA": GlmLcfaReader}
)


def get_reader(family: str) -> type[AbiL1bRadReader] | type[AbiL2CmipReader] | type[GlmLcfaReader]:
    """The reader class of a product family; unknown names list the valid ones."""
    return READERS.lookup(family)


def read_product(path: str | Path, *, min_valid_share: float = MIN_VALID_SHARE) -> AbiImage | GlmGranule:
    """Read any supported GOES-R file, choosing the reader from its name.

    ``min_valid_share`` is the least share of valid earth pixels an ABI frame
    must hold (ignored for GLM granules).
    """
    reader = get_reader(parse_filename(path).family)
    if issubclass(reader, GlmLcfaReader):
        return reader().read(path)
    return reader(min_valid_share=min_valid_share).read(path)


def describe(product: AbiImage | GlmGranule) -> dict[str, Any]:
    """A flat, JSON-ready summary of a product (what ``ltgcast inspect`` prints)."""
    name = product.name
    common: dict[str, Any] = {
        "path": product.path,
        "product": name.product,
        "satellite": product.platform,
        "orbital_slot": product.orbital_slot,
        "sector": name.sector,
        "band": name.band,
        "mode": name.mode,
        "scan_start": iso_utc(name.scan_start),
        "scan_end": iso_utc(name.scan_end),
    }
    if isinstance(product, AbiImage):
        return common | _describe_abi(product)
    return common | _describe_glm(product)


def _describe_abi(image: AbiImage) -> dict[str, Any]:
    valid = image.values[np.isfinite(image.values)]
    stats = (
        {"min": float(valid.min()), "max": float(valid.max()), "mean": float(valid.mean(dtype=np.float64))}
        if valid.size
        else {"min": None, "max": None, "mean": None}
    )
    return {
        "shape": list(image.values.shape),
        "units": image.units,
        "quantity": image.quantity,
        "valid_fraction": round(image.valid_fraction, 6),
        **{k: (round(v, 4) if v is not None else None) for k, v in stats.items()},
        "projection_lon_0": image.grid.projection.lon_0,
    }


def _describe_glm(granule: GlmGranule) -> dict[str, Any]:
    flashes = granule.flashes
    has = len(flashes) > 0

    def bound(values: np.ndarray, fn: Any) -> float | None:
        finite = values[np.isfinite(values)]
        return round(float(fn(finite)), 4) if finite.size else None

    return {
        "shape": [len(flashes)],
        "units": None,
        "flashes": len(flashes),
        "groups": len(granule.groups),
        "events": len(granule.events),
        "first_flash_time": iso_utc(float(np.nanmin(flashes.time))) if has else None,
        "last_flash_time": iso_utc(float(np.nanmax(flashes.time_last))) if has else None,
        "lat_min": bound(flashes.lat, np.min),
        "lat_max": bound(flashes.lat, np.max),
        "lon_min": bound(flashes.lon, np.min),
        "lon_max": bound(flashes.lon, np.max),
        "count_mismatches": {k: list(v) for k, v in granule.count_mismatches.items()},
        "flashes_dropped": dict(granule.flashes_dropped),
        "subpoint_lon": granule.subpoint_lon,
    }
