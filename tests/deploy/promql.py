"""What the deploy tests share about PromQL: the metric names an expression reads, and those the code defines.

The alert rules (``deploy/prometheus/rules/``) and the dashboards (``deploy/grafana/dashboards/``) may only read
metrics that ``monitor/``, ``serve/`` or ``ingest/`` ``metrics.py`` define (or that Prometheus writes itself).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
METRIC_MODULES = (ROOT / "monitor" / "metrics.py", ROOT / "serve" / "metrics.py", ROOT / "ingest" / "metrics.py")

#: Series Prometheus writes itself for every target.
PROMETHEUS_OWN = frozenset({"up"})
#: What prometheus-client appends to a defined name in the exposition.
SUFFIXES = ("", "_total", "_bucket", "_sum", "_count")
PROMQL_KEYWORDS = frozenset({"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
                             "offset", "bool", "inf", "nan"})  # fmt: skip


def metrics_in(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (strings, label matchers, ranges and label lists dropped).

    >>> sorted(metrics_in('sum by (sector) (rate(a_total{reason="x y"}[5m])) > 0 unless on (sector) b offset 1h'))
    ['a_total', 'b']
    >>> sorted(metrics_in('histogram_quantile(0.9, sum by (le) (rate(c_bucket{s=~"$sector"}[$__rate_interval])))'))
    ['c_bucket']
    """
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # string literals
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)  # label matchers, ranges and subqueries
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)  # label lists
    names = re.findall(r"(?<![\w:.])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()", expr)  # identifiers, not calls
    return {name for name in names if name.lower() not in PROMQL_KEYWORDS}


def defined_metrics() -> set[str]:
    """Every ``"ltgcast_…"`` name the metric modules define, with the suffixes of the exposition."""
    names = {name for path in METRIC_MODULES for name in re.findall(r'"(ltgcast_\w+)"', path.read_text("utf-8"))}
    assert len(names) > 20, f"expected the metric definitions in {[str(p) for p in METRIC_MODULES]}, found {names}"
    return {name + suffix for name in names for suffix in SUFFIXES}
