"""The service's Prometheus metrics that dashboards and alerts rely on, defined once at module scope.

Names are part of the contract with ``deploy/`` (dashboards, alert rules): change one here and there
together. Labels are bounded: ``satellite`` (G16–G19), ``sector`` (C, F, M1, M2), ``band`` (1–16),
``stage`` (a fixed list per metric), ``reason`` (a fixed list per metric), ``role`` (stable, shadow),
``model_version`` (the handful of versions a process serves), ``feature`` (the channels and dense
features of a feature set, about ten); never a file name or a grid id. The label values:

* ``ltgcast_input_nan_fraction`` ``reason``: all, fill, bad_dqf, nonphysical;
* ``ltgcast_frames_total`` ``reason``: the worker's outcomes (scored, scored_out_of_order, duplicate,
  too_old, future, other_band, other_sector, bad_event, failed);
* ``ltgcast_stage_latency_seconds`` ``stage``: read, featurize, score, store, drift;
* ``ltgcast_frame_age_seconds`` ``stage``: ingest (announced), publish (grid out);
* ``ltgcast_scorer_errors_total`` ``reason``: unavailable, deadline_exceeded, resource_exhausted,
  invalid_argument, circuit_open, bad_output, other; ``backend``: embedded, tfserving;
* ``ltgcast_consumer_lag_messages`` ``topic``: the bus topic the worker reads (``ltgcast.frames.v1``),
  ``partition``: the topic's partitions (three by default on Kafka, one in process).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

INPUT_NAN = Gauge(
    "ltgcast_input_nan_fraction",
    "Fraction of the earth pixels of the last frame without a value (space is never counted), by cause.",
    ["satellite", "sector", "band", "reason"],
)
GLM_RECEIVED = Counter("ltgcast_glm_granules_received_total", "GLM LCFA granules received.", ["satellite"])
GLM_MISSING = Counter(
    "ltgcast_glm_granules_missing_total",
    "20-s GLM granules missing from the 15-minute windows of scored frames (late, lost or unreadable).",
    ["satellite"],
)
FRAME_AGE = Histogram(
    "ltgcast_frame_age_seconds",
    "Seconds from a frame's scan start to its announcement (stage=ingest) and to its grid (stage=publish).",
    ["sector", "stage"],
    buckets=(30, 60, 90, 120, 180, 240, 300, 450, 600, 900, 1800, 3600, 21600),
)
STAGE_LATENCY = Histogram(
    "ltgcast_stage_latency_seconds",
    "Seconds per frame in each stage of the worker.",
    ["stage"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60),
)
FRAMES = Counter("ltgcast_frames_total", "ABI frame events by what the worker did with them.", ["sector", "reason"])
PREDICTION_MEAN = Gauge(
    "ltgcast_prediction_mean",
    "Mean probability over the earth pixels of the last grid.",
    ["sector", "model_version"],
)
PREDICTION_ABOVE = Gauge(
    "ltgcast_prediction_above_fraction",
    "Fraction of the earth pixels of the last grid at or above each contour level.",
    ["sector", "level"],
)
FEATURE_PSI = Gauge(
    "ltgcast_feature_psi",
    "Population stability index of a channel or feature over the last frames against the model card's reference.",
    ["sector", "feature"],
)
FEATURE_PSI_THRESHOLD = Gauge(
    "ltgcast_feature_psi_threshold",
    "PSI above which a feature has drifted: the model card's per-feature threshold (0.25 when it has none).",
    ["sector", "feature"],
)
FEATURE_KS = Gauge(
    "ltgcast_feature_ks",
    "Kolmogorov-Smirnov statistic (binned) of a channel or feature over the last frames against the reference.",
    ["sector", "feature"],
)
LIVE_CSI = Gauge("ltgcast_live_csi", "Critical success index of the last verified grids.", ["sector", "threshold"])
LIVE_POD = Gauge("ltgcast_live_pod", "Probability of detection of the last verified grids.", ["sector", "threshold"])
LIVE_FAR = Gauge("ltgcast_live_far", "False alarm ratio of the last verified grids.", ["sector", "threshold"])
LIVE_BRIER = Gauge("ltgcast_live_brier", "Brier score of the last verified grids.", ["sector"])
LIVE_RELIABILITY = Gauge(
    "ltgcast_live_reliability_observed",
    "Observed lightning frequency of the last verified grids' pixels whose probability is in [bin, bin + 0.1).",
    ["sector", "bin"],
)
LIVE_VERIFIED = Counter("ltgcast_live_verified_grids_total", "Grids verified against the flashes that followed.",
                        ["sector"])  # fmt: skip
LIVE_SKIPPED = Counter(
    "ltgcast_live_unverified_grids_total",
    "Grids never verified, by reason (GLM did not cover their 30 minutes; too many waiting).",
    ["sector", "reason"],
)
DRIFT_SKIPPED = Counter(
    "ltgcast_drift_skipped_frames_total", "Frames left out of drift monitoring because its queue was full.", ["sector"]
)
DRIFT_ERRORS = Counter(
    "ltgcast_drift_errors_total",
    "Frames whose drift pass raised (logged; the sector's drift values go stale).",
    ["sector"],
)
MODEL_INFO = Gauge("ltgcast_model_info", "1 for each model version served, by role.", ["role", "model_version"])
MODEL_SWAPS = Counter(
    "ltgcast_model_swaps_total", "Model version changes by outcome (rejected: kept the models).", ["outcome"]
)
MODEL_REJECTIONS = Counter(
    "ltgcast_model_rejections_total", "Model versions refused, by the stage that refused them.", ["stage"]
)
MODEL_VERSION = Gauge("ltgcast_model_version", "Model version served in each role (0: none).", ["role"])
MODEL_CHECK_ERRORS = Counter("ltgcast_model_check_errors_total", "Scans of the model base that raised (logged).")
MODEL_LAST_CHECK = Gauge("ltgcast_model_last_check_timestamp_seconds", "Unix time of the last model-base scan.")
SCORER_ERRORS = Counter(
    "ltgcast_scorer_errors_total",
    "Scoring calls that failed (after retries), by backend and cause.",
    ["backend", "reason"],
)
SCORER_CIRCUIT = Gauge(
    "ltgcast_scorer_circuit_state",
    "State of the scorer's circuit breaker per transport: 0 closed (calls go through), 1 half-open (one trial "
    "call), 2 open (calls refused until the cool-down ends). The embedded scorer is always 0.",
    ["backend", "transport"],
)
CONSUMER_LAG = Gauge(
    "ltgcast_consumer_lag_messages",
    "Messages on a bus partition after the worker group's committed offset (published, not yet processed).",
    ["topic", "partition"],
)
CONSUMER_LAG_ERRORS = Counter(
    "ltgcast_consumer_lag_errors_total",
    "Reads of the consumer lag that failed (the lag gauge then keeps its last values).",
)
