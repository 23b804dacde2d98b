"""Extract the layout (no data) of a real NOAA GOES-R file as a JSON template.

Usage::

    python -m ingest.formats.extract REAL_FILE.nc > ingest/formats/NAME.json

Small variables (at most 4 values: scalars, bounds, band ids) keep their stored
values as defaults; the writer replaces whatever the scenario knows better.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import netCDF4
import numpy as np

from ingest.formats import encode_attribute

_SMALL = 4


def extract(path: str) -> dict[str, Any]:
    """The template of the file at ``path``."""
    with netCDF4.Dataset(path) as ds:
        ds.set_auto_maskandscale(False)
        variables = []
        for name, var in ds.variables.items():
            chunking = var.chunking()
            filters = var.filters() or {}
            spec: dict[str, Any] = {
                "name": name,
                "dtype": var.dtype.name,
                "dimensions": list(var.dimensions),
                "chunks": None if chunking == "contiguous" else list(chunking),
                "zlib": bool(filters.get("zlib")),
                "complevel": int(filters.get("complevel") or 0),
                "shuffle": bool(filters.get("shuffle")),
                "attributes": {k: encode_attribute(var.getncattr(k)) for k in var.ncattrs()},
            }
            if 0 < var.size <= _SMALL:
                spec["value"] = np.asarray(var[...]).tolist()
            variables.append(spec)
        return {
            "source": ds.getncattr("dataset_name"),
            "dimensions": {k: len(v) for k, v in ds.dimensions.items()},
            "global_attributes": {k: encode_attribute(ds.getncattr(k)) for k in ds.ncattrs()},
            "variables": variables,
        }


def main(argv: list[str] | None = None) -> int:
    """Write the template of one file to standard output."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m ingest.formats.extract REAL_FILE.nc\n")
        return 2
    json.dump(extract(args[0]), sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
