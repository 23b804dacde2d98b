"""Where probability grids are kept: the CF NetCDF grid file, the file grid store (the source of truth), and Redis.

``gridfile`` is the format (one grid, its flashes and its fixed-grid geometry in one file), ``files`` the store
that the worker writes and the API reads, ``redis_grids`` the distributed mode's extra sink and its pub/sub,
``redis_codecs`` what that sink writes (probability codecs, geometry, metadata and notification JSON).
"""
