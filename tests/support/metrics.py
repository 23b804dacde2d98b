"""Per-test metric values: every ``ltgcast_*`` series back at zero before each test, read back by name.

Metrics are defined once at module scope on prometheus_client's process-wide registry (one ``/metrics`` per
process), and objects keep the children they took (``METRIC.labels(...)``), so a test cannot swap the registry
under them. Instead the autouse fixture in ``tests/conftest.py`` zeroes every series in place before each test:
no test reads counts another left, the series declared at import (zero-valued reasons dashboards expect) stay
declared, and children held by long-lived objects keep counting into the registry.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

PREFIX = "ltgcast_"


def project_metrics(registry: CollectorRegistry = REGISTRY) -> list[MetricWrapperBase]:
    """The registry's ``ltgcast_*`` metrics.

    prometheus_client has no public list of a registry's collectors; ``_collector_to_names`` is its own map.
    """
    collectors = list(registry._collector_to_names)
    return [c for c in collectors if isinstance(c, MetricWrapperBase) and c._name.startswith(PREFIX)]


def zero_metrics(registry: CollectorRegistry = REGISTRY) -> int:
    """Zero every ``ltgcast_*`` series in place (labelled children too); the number of metrics touched."""
    metrics = project_metrics(registry)
    for metric in metrics:
        if metric._labelnames:
            with metric._lock:
                children = list(metric._metrics.values())
            for child in children:
                child._metric_init()  # type: ignore[no-untyped-call]
        else:
            metric._metric_init()  # type: ignore[no-untyped-call]
    return len(metrics)


def value(name: str, registry: CollectorRegistry = REGISTRY, **labels: str) -> float:
    """A sample's value in this test (0.0 when the series does not exist)."""
    return registry.get_sample_value(name, labels) or 0.0
