"""What the worker scores, how long it waits and how it bounds its work: :class:`WorkerSettings`.

Checked on construction, and light to import: ``ltgcast``'s flags take their defaults from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from foundation.clock import FUTURE_TOLERANCE_S
from foundation.errors import ConfigError
from foundation.settings import check_numbers
from ingest.events import SECTORS


@dataclass(frozen=True)
class WorkerSettings:
    """What the worker scores, how long it waits, and how it bounds its work."""

    sectors: frozenset[str] = frozenset(SECTORS)
    glm_deadline_s: float = 90.0
    max_age_s: float = 3600.0  # frames older than this on arrival are let go; 0: no limit (replays)
    future_tolerance_s: float = FUTURE_TOLERANCE_S  # frames and granules starting further ahead of the clock: refused
    horizon: timedelta = timedelta(minutes=30)
    encoding: str = "uint8"
    group: str = "ltgcast-worker"
    poll_timeout_s: float = 1.0
    verify: bool = True  # score each grid against the flashes of its 30 minutes once they are in
    verify_deadline_s: float = 600.0  # after the label window (or arrival, on replays) GLM may still complete it
    verify_window: int = 12  # grids per sector in the rolling live scores
    max_awaiting: int = 128  # grids held in memory for verification; the oldest beyond are dropped (counted)
    lag_interval_s: float = 10.0  # seconds between two reads of the consumer lag (a broker round trip on Kafka)
    glm_lookback_s: float = 0.0  # how far back the GLM topic is read at start; 0: max age + 25 min (6 h: no limit)
    retry_first_s: float = 1.0  # first wait before a frame that failed transiently is tried again
    retry_max_s: float = 60.0  # the longest wait between two tries
    step_budget_s: float = 2.0  # scoring time per step before polling again (a rebalance waits for every member)
    read_tries: int = 4  # tries of a frame whose file (or a granule's) cannot be read (a shared volume's hiccup)
    max_pending: int = 256  # frames in hand beyond which fetching pauses
    poll_records: int = 20  # frame messages per poll
    flash_cache: int = 400  # granules whose flashes stay in memory
    trend_cache_mib: float = 256.0  # band-13 frames kept for temporal models' ir_trend (20 min per sector at most)

    def __post_init__(self) -> None:
        check_numbers(self, positive=("lag_interval_s", "retry_first_s", "retry_max_s", "step_budget_s"),
                      non_negative=("glm_deadline_s", "max_age_s", "future_tolerance_s", "poll_timeout_s",
                                    "verify_deadline_s", "glm_lookback_s", "trend_cache_mib"),
                      counts=("verify_window", "max_awaiting", "read_tries", "max_pending", "poll_records",
                              "flash_cache"))  # fmt: skip
        unknown = sorted(set(self.sectors) - set(SECTORS))
        if not self.sectors or unknown:
            msg = f"WorkerSettings.sectors: expected some of {sorted(SECTORS)}, found {sorted(self.sectors)}"
            raise ConfigError(msg)
        if self.encoding not in ("uint8", "float32"):
            msg = f"WorkerSettings.encoding: expected uint8 or float32, found {self.encoding!r}"
            raise ConfigError(msg)

    def lookback_s(self) -> float:
        """Seconds of GLM topic read at start: the oldest frame scored needs its 15-minute window, plus margin."""
        if self.glm_lookback_s > 0:
            return self.glm_lookback_s
        if self.max_age_s > 0:
            return self.max_age_s + 25 * 60.0
        return 6 * 3600.0
