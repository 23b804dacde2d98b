"""Each test sees its own metric values: the autouse ``fresh_metrics`` fixture zeroes every ltgcast series."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from ingest.metrics import GLM_FLASHES_DROPPED
from serve.metrics import RELEASED
from tests.support.metrics import value, zero_metrics


def test_a_count_left_by_an_earlier_test_is_gone(fresh_metrics: int) -> None:
    # the other half of this pair runs in any order: whichever runs second would see 3 without the fixture
    assert fresh_metrics > 20  # the project's metrics were found and zeroed
    assert value("ltgcast_worker_released_frames_total") == 0.0
    RELEASED.inc(3)


def test_the_same_count_starts_at_zero_again() -> None:
    assert value("ltgcast_worker_released_frames_total") == 0.0
    RELEASED.inc(3)


def test_zeroing_keeps_declared_series_and_held_children_counting() -> None:
    registry = CollectorRegistry()
    counter = Counter("ltgcast_test_things_total", "things", ["reason"], registry=registry)
    seconds = Histogram("ltgcast_test_seconds", "time", registry=registry)
    counter.labels("declared")  # a zero series declared at import, as dashboards expect
    held = counter.labels("held")  # a child an object keeps
    held.inc(5)
    seconds.observe(2.0)
    assert zero_metrics(registry) == 2
    assert registry.get_sample_value("ltgcast_test_things_total", {"reason": "declared"}) == 0.0
    assert registry.get_sample_value("ltgcast_test_things_total", {"reason": "held"}) == 0.0
    assert registry.get_sample_value("ltgcast_test_seconds_count") == 0.0
    held.inc()
    assert value("ltgcast_test_things_total", registry, reason="held") == 1.0
    # and the process registry keeps the series ingest declares for every drop reason
    assert REGISTRY.get_sample_value("ltgcast_glm_flashes_dropped_total", {"reason": "position"}) == 0.0
    GLM_FLASHES_DROPPED.labels(reason="position").inc()
