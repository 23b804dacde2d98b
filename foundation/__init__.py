"""The foundation below every room: what ingest, featurize, models, monitor, serve and ltgcast all stand on.

* :mod:`foundation.errors` — the exception tree (every ltgcast exception, drawn once)
* :mod:`foundation.utc` — aware UTC times in and out of ISO 8601
* :mod:`foundation.addresses` — ``HOST:PORT`` and ``[IPv6]:PORT`` addresses
* :mod:`foundation.clock` — the clock seam and the rule for input from the future
* :mod:`foundation.files` — atomic, durable file writes
* :mod:`foundation.registry` — the named-implementation registry every plugin family uses
* :mod:`foundation.retry` — retry with exponential back-off on the injected clock (ingest and TF Serving)
* :mod:`foundation.settings` — the checks every settings class runs, worded one way

Nothing here imports numpy, netCDF4, TensorFlow, Kafka, Redis or prometheus-client, or any room of ltgcast;
importing it reads no files, no environment and opens no connections.
"""
