"""The Prometheus alert rules and config of ``deploy/prometheus/``, checked by Debian's real ``promtool``.

``promtool check rules`` and ``check config`` validate the files; ``promtool test rules`` runs the unit
tests in ``ltgcast.rules.test.yml``. The Python checks keep those tests honest: every alert has a case
where it fires and one where it stays silent, and every metric an alert reads is one the code defines
(``monitor/``, ``serve/``, ``ingest/`` ``metrics.py``) or one issue 7 is still to add.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.promql import PROMETHEUS_OWN, ROOT, defined_metrics, metrics_in

pytestmark = pytest.mark.prometheus

PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "rules" / "ltgcast.rules.yml"
RULE_TESTS = PROMETHEUS / "rules" / "ltgcast.rules.test.yml"
CONFIG = PROMETHEUS / "prometheus.yml"

#: Metrics the rules read before the code exports them (delete a name here once it is defined).
ALLOWED_AHEAD: frozenset[str] = frozenset()


# -- promtool ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def promtool() -> str:
    """Path of Debian's promtool (package ``prometheus``); missing is a failure, never a skip."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found on PATH: install Debian's prometheus package "
            "(`sudo apt-get install prometheus`, or `deploy/local/services.sh up prometheus` which installs it)"
        )
    return path


def run_promtool(promtool: str, *args: str) -> str:
    """Run promtool from the checkout's root; fail with its output unless it exits 0 and says SUCCESS."""
    done = subprocess.run([promtool, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"promtool {' '.join(args)} exited {done.returncode}:\n{output}"
    assert "SUCCESS" in output, f"promtool {' '.join(args)} did not say SUCCESS:\n{output}"
    return output


def test_the_rule_file_is_valid(promtool: str) -> None:
    output = run_promtool(promtool, "check", "rules", str(RULES))
    assert f"{len(alerts())} rules found" in output


def test_the_rule_unit_tests_pass(promtool: str) -> None:
    output = run_promtool(promtool, "test", "rules", str(RULE_TESTS))
    assert "FAILED" not in output, output


def test_the_config_is_valid_and_loads_the_rule_file(promtool: str) -> None:
    output = run_promtool(promtool, "check", "config", str(CONFIG))
    assert "1 rule files found" in output, output  # the glob found ltgcast.rules.yml and not its tests


# -- the rule file and its tests ---------------------------------------------------------------------------------


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def alerts() -> dict[str, dict[str, Any]]:
    """Every alerting rule of the rule file, by name."""
    rules = [rule for group in load(RULES)["groups"] for rule in group["rules"] if "alert" in rule]
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)), f"an alert name is used twice: {sorted(names)}"
    return {rule["alert"]: rule for rule in rules}


def cases() -> list[dict[str, Any]]:
    """Every ``alert_rule_test`` entry of the unit tests."""
    return [case for test in load(RULE_TESTS)["tests"] for case in test.get("alert_rule_test", [])]


def test_the_unit_tests_load_the_rule_file_beside_them() -> None:
    assert [RULE_TESTS.parent / name for name in load(RULE_TESTS)["rule_files"]] == [RULES]


def test_every_alert_says_how_urgent_and_what_happened() -> None:
    for name, rule in alerts().items():
        assert "for" in rule, f"{name}: no `for:`"
        assert rule.get("labels", {}).get("severity") in {"page", "ticket"}, f"{name}: severity must be page|ticket"
        annotations = rule.get("annotations", {})
        assert "{{ $labels." in annotations.get("summary", ""), f"{name}: the summary must say where (a label)"
        assert "{{ $value" in annotations.get("description", ""), f"{name}: the description must give the value"


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    firing = {case["alertname"] for case in cases() if case.get("exp_alerts")}
    silent = {case["alertname"] for case in cases() if not case.get("exp_alerts")}
    names = set(alerts())
    assert (firing | silent) <= names, f"unit tests of alerts the rule file lacks: {sorted((firing | silent) - names)}"
    assert not names - firing, f"alerts no unit test sees fire: {sorted(names - firing)}"
    assert not names - silent, f"alerts no unit test sees silent: {sorted(names - silent)}"


# -- metric names ------------------------------------------------------------------------------------------------


def test_metric_names_are_read_from_expressions() -> None:
    rules = alerts()
    assert metrics_in(rules["LtgcastScorerDown"]["expr"]) == {"ltgcast_frames_total"}
    assert metrics_in(rules["LtgcastStaleGrids"]["expr"]) == {"ltgcast_grid_last_scan_timestamp_seconds"}
    assert metrics_in(rules["LtgcastDown"]["expr"]) == {"up"}
    quantile = 'histogram_quantile(0.9, sum by (le) (rate(ltgcast_frame_age_seconds_bucket{stage="publish"}[5m])))'
    assert metrics_in(quantile) == {"ltgcast_frame_age_seconds_bucket"}


def test_every_metric_an_alert_reads_is_defined_or_announced() -> None:
    known = defined_metrics() | ALLOWED_AHEAD | PROMETHEUS_OWN
    used: set[str] = set()
    for name, rule in alerts().items():
        names = metrics_in(rule["expr"])
        assert names, f"{name}: no metric found in {rule['expr']!r}"
        unknown = names - known
        assert not unknown, (
            f"{name} reads {sorted(unknown)}, which no metrics.py defines "
            "(renamed? change the rule and its tests with it; a metric still to come goes in ALLOWED_AHEAD)"
        )
        used |= names
    assert ALLOWED_AHEAD <= used, f"ALLOWED_AHEAD names metrics no alert reads: {sorted(ALLOWED_AHEAD - used)}"
