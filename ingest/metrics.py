"""Prometheus metrics of the ingest daemon, defined once at module scope.

Labels are bounded: ``product`` is a NOAA folder name of the handful the filter
allows, ``sector`` one of C/F/M1/M2/GLM, ``band`` 1–16 or ``-``, ``outcome`` one of
:data:`ingest.checkpoint.OUTCOMES`, ``reason`` one of :data:`FLASH_DROP_REASONS` (GLM) or
:data:`SQS_REFUSAL_REASONS` (queue messages).
No label ever carries a file name.
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

#: Why the GLM reader drops a flash (see :mod:`ingest.glm`): the label values of :data:`GLM_FLASHES_DROPPED`.
FLASH_DROP_REASONS = ("position", "time", "energy")
GLM_FLASHES_DROPPED = Counter(
    "ltgcast_glm_flashes_dropped_total",
    "GLM flashes the reader dropped from a granule it kept (impossible position, time or energy); "
    "counted at every read of a granule, so the daemon's check and the worker's read each count.",
    ["reason"],
)
for _reason in FLASH_DROP_REASONS:  # every series exists from the start, at 0
    GLM_FLASHES_DROPPED.labels(reason=_reason)

#: Why the SQS source (:mod:`ingest.sources.sqs`) refused and deleted a queue message: the label values of
#: :data:`SQS_MESSAGES_REFUSED`.
SQS_REFUSAL_REASONS = ("not_json", "not_s3_event", "test_event", "wrong_bucket", "bad_key")
SQS_MESSAGES_REFUSED = Counter(
    "ltgcast_ingest_sqs_messages_refused_total",
    "Queue messages the SQS source refused and deleted: not JSON, not an S3 object notification, an s3:TestEvent, "
    "an object in another bucket than the source's, or a key outside NOAA's <product>/<YYYY>/<DOY>/<HH>/<name> layout.",
    ["reason"],
)
for _reason in SQS_REFUSAL_REASONS:
    SQS_MESSAGES_REFUSED.labels(reason=_reason)
