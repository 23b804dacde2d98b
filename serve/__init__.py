"""Online serving, in rooms that follow a frame's path.

* ``worker/`` — frame events in, a probability grid stored and announced out (the pure core is ``worker.nowcast``);
* ``scoring/`` — the scorer protocol and its backends (embedded ONNX/TensorFlow, TF Serving), hot-swap and shadow;
* ``stores/`` — the CF NetCDF grid file, the file grid store (the source of truth), the Redis grid store;
* ``products/`` — contours, PNG overlays, point series and georeferenced rasters of a stored grid;
* ``alerts/`` — the sites file, site alert states and the webhook;
* ``api/`` — the HTTP API (socket-free routing) and its uvicorn server; ``viewer/`` is the browser side;
* ``metrics.py`` — the plumbing metrics every room counts into.

Arrows run worker → scoring, stores; api → products, stores, alerts; products and alerts → stores; never
back (``tests/test_layout.py`` holds them).
"""
