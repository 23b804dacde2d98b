"""Prometheus metrics of the ingest daemon, defined once at module scope.

Labels are bounded: ``product`` is a NOAA folder name of the handful the filter
allows, ``sector`` one of C/F/M1/M2/GLM, ``band`` 1–16 or ``-``, ``outcome`` one of
:data:`ingest.checkpoint.OUTCOMES`. No label ever carries a file name.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

FILES = Counter(
    "ltgcast_ingest_files_total",
    "Files given a final outcome by the ingest daemon.",
    ["outcome"],
)
LAG = Histogram(
    "ltgcast_ingest_lag_seconds",
    "Time from a file's scan end to its announcement on the bus.",
    ["product", "sector", "band"],
    buckets=(5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1800, 3600, 21600),
)
ERRORS = Counter(
    "ltgcast_ingest_errors_total",
    "Failed polls, fetches and publishes (each retried later).",
    ["stage"],
)
PENDING = Gauge("ltgcast_ingest_pending_files", "Files seen but not complete or not fetched yet.")
LAST_POLL = Gauge("ltgcast_ingest_last_poll_timestamp_seconds", "Unix time of the last successful poll.")
