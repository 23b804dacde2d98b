"""GOES-R data layer: filenames, readers, fixed-grid geometry, synthetic scenarios.

Contracts (stated once, checked at the reader boundary)
-------------------------------------------------------
* Arrays leaving a reader are ``float32``; NaN marks every missing value. Fill,
  masked, off-disk (space) and bad-``DQF`` pixels become NaN the moment they are
  read. No ``numpy.ma.MaskedArray`` ever leaves this package.
* Times are timezone-aware UTC :class:`datetime.datetime`. Per-element times (GLM)
  are ``float64`` seconds since 1970-01-01T00:00:00Z, which is unambiguous and
  needs no naive ``datetime64``.
* ABI images stay on their native fixed grid, rows top to bottom (north to south),
  columns west to east, exactly as stored in the file.
* A frame is keyed by (satellite, sector, band, scan start).

Importing this package reads no files, opens no connections and reads no
environment variables.
"""
