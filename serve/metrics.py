"""Prometheus metrics of the worker's plumbing and of the HTTP API, defined once at module scope.

The metrics of frames, inputs, predictions, stages and models that dashboards and
alerts rely on are in :mod:`monitor.metrics`. Labels here are bounded: ``sector``
one of C/F/M1/M2, ``route`` one of the API's route names (those of
:data:`serve.api.grids.PATHS` and :data:`serve.api.grids.GRID_FILES`, admin, static, unknown),
``status`` an HTTP status class (2xx … 5xx), ``site`` a site id of the sites file
(at most :data:`serve.alerts.sites.MAX_SITES`), ``to`` an alert state. No label ever carries a file name, a
grid id or a user's parameter.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

GRID_LATENCY = Histogram(
    "ltgcast_grid_latency_seconds",
    "Seconds from a frame's arrival at the worker to its grid being stored and announced.",
    ["sector"],
    buckets=(0.5, 1, 2, 3, 5, 10, 20, 30, 60, 90, 120, 300),
)
LAST_GRID = Gauge("ltgcast_grid_last_scan_timestamp_seconds", "Scan start (Unix time) of the newest grid.", ["sector"])
PENDING = Gauge("ltgcast_worker_pending_frames", "Frames waiting for their GLM granules.")
SINK_ERRORS = Counter(
    "ltgcast_worker_sink_errors_total", "Failed writes to a secondary grid sink (e.g. Redis); each is retried."
)
SINK_QUEUE = Gauge("ltgcast_worker_sink_queue", "Grids stored in files and waiting to be put into the secondary sink.")
SINK_BACKFILLED = Counter(
    "ltgcast_worker_sink_backfilled_total",
    "Grids put back into a secondary sink from the file store after the sink restarted empty.",
)
SINK_DROPPED = Counter(
    "ltgcast_worker_sink_dropped_total", "Grids left out of a secondary sink (queue full, file gone, or refused by it)."
)
STORE_RETRIES = Counter("ltgcast_worker_retries_total",
                        "Frames put back to be tried again after a transient failure (grid store or scorer).",
                        ["reason"])  # fmt: skip
RELEASED = Counter(
    "ltgcast_worker_released_frames_total",
    "Frames let go unfinished because a rebalance gave their partition to another worker.",
)
ASSIGNED = Gauge(
    "ltgcast_worker_assigned_partitions",
    "Partitions of the frame topic this worker reads now (0 while the group rebalances, or with more workers "
    "than partitions).",
)
BAD_GLM = Counter("ltgcast_worker_bad_glm_events_total", "GLM events refused (dead-lettered) by this worker.")
SHADOW_GRIDS = Counter("ltgcast_worker_shadow_grids_total", "Grids scored by the shadow model beside the stable one.")

REQUESTS = Counter("ltgcast_http_requests_total", "HTTP requests answered, by route and status class.",
                   ["route", "status"])  # fmt: skip
HTTP_REFUSED = Counter(
    "ltgcast_http_refused_total",
    "Connections and requests the HTTP server refused or cut off, by why: connections (past the connection "
    "limit), in_flight (past the requests in progress: answered 503), header_timeout (headers not complete in "
    "time), body_timeout (answered 408), write_timeout (a client that stopped reading its answer), malformed "
    "(not HTTP/1.1 the parser accepts, or dangerous framing), upgrade (h2c/websocket asked for, not served).",
    ["reason"],
)
UNREADABLE_GRIDS = Counter(
    "ltgcast_grid_files_unreadable_total",
    "Stored grid files that could not be read when listed, sampled or served (each logged once), by route.",
    ["route"],
)
REQUEST_SECONDS = Histogram(
    "ltgcast_http_request_seconds",
    "Seconds to answer an HTTP request, by route.",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
)

# Site alerts (serve.alerts.states): ``site`` is a site id of the sites file, which holds at most 1000 sites.
SITE_ALERT_STATE = Gauge(
    "ltgcast_site_alert_state", "Alert state of a site: 0 clear, 1 alert, -1 unknown (stale feed).", ["site"]
)
SITE_PROBABILITY = Gauge(
    "ltgcast_site_probability",
    "Highest probability of lightning within the site's radius in the newest grid covering it (NaN when unknown).",
    ["site"],
)
SITE_ALERT_TRANSITIONS = Counter("ltgcast_site_alert_transitions_total",
                                 "Site alert state changes, by site and new state (ALERT, CLEAR, UNKNOWN).",
                                 ["site", "to"])  # fmt: skip
ALERT_WEBHOOK = Counter("ltgcast_alert_webhook_total",
                        "Alert webhook messages by outcome: sent, failed (after its retries, or refused), dropped "
                        "(queue full).", ["outcome"])  # fmt: skip
