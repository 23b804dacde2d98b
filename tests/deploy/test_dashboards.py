"""The Grafana dashboards and provisioning files of ``deploy/grafana/``, checked statically and against real Prometheus.

Grafana itself is not installable here, so the dashboards are held to what Grafana would do with them. The static
checks: every file parses, the five topics have a dashboard each with a unique uid, every panel queries the
provisioned datasource with at least one expression, every expression reads only metrics the code defines and is
valid PromQL (``promtool check rules`` on the expressions as recording rules), and the panels that stand for an
alert draw the alert's threshold. The live check (``slow``): ``ltgcast run`` on a simulated mesoscale sector
replayed 60 times faster than real time, scraped every second by a dedicated Debian ``prometheus`` that also
loads the alert rules; once the service has verified grids against GLM, every panel's expression is evaluated
through Prometheus's HTTP API, with the template variables as Grafana would fill them, and must return data.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from tests.deploy.promql import PROMETHEUS_OWN, ROOT, defined_metrics, metrics_in

GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "ltgcast.yml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "ltgcast.yml"
RULES = ROOT / "deploy" / "prometheus" / "rules"
DATASOURCE_UID = "ltgcast-prometheus"
TOPICS = frozenset({"ltgcast-input-health", "ltgcast-drift", "ltgcast-live-skill", "ltgcast-latency-throughput",
                    "ltgcast-model-versions"})  # fmt: skip
PANEL_TYPES = frozenset({"timeseries", "stat", "gauge", "bargauge", "table"})
#: What the test puts in place of Grafana's template variables: every sector, and a rate window of 60 scrapes.
VARIABLES = {"sector": ".*", "__rate_interval": "1m", "__interval": "1m"}
#: Panels that stand for an alert of deploy/prometheus/rules/ltgcast.rules.yml: they must draw its threshold(s).
ALERT_PANELS = {
    ("ltgcast-input-health", "Earth pixels without a value (last frame)"): "LtgcastInputNanSpike",
    ("ltgcast-input-health", "GLM granules received per minute"): "LtgcastGlmGap",
    ("ltgcast-input-health", "GLM granules missing per scored frame"): "LtgcastGlmGranulesMissing",
    ("ltgcast-input-health", "Age of the newest grid"): "LtgcastStaleGrids",
    ("ltgcast-drift", "Feature PSI against the model card's reference"): "LtgcastFeatureDrift",
    ("ltgcast-live-skill", "Live CSI at the 25 % contour"): "LtgcastLiveCsiCollapse",
    ("ltgcast-latency-throughput", "Frames waiting for GLM"): "LtgcastPendingFramesPilingUp",
    ("ltgcast-latency-throughput", "Consumer lag (max)"): "LtgcastConsumerLag",
}

#: The live run: a 50-minute mesoscale scenario at 60x (about 12 s to write it, then 50 s of replay); the first
#: grid is verified once GLM covers the 30 minutes after its scan, about 30 s into the replay.
SIM_SOURCE = "sim:?sector=M1&start=2024-06-15T18:00Z&minutes=50&seed=1&speed=60"
VERIFIED_DEADLINE_S = 240.0
#: The same kind of day with every cloud top 15 K warmer (seed 41: the drift tests' day), for the drift alert.
WARM_SOURCE = "sim:?sector=M1&start=2024-07-30T17:00Z&minutes=45&seed=41&speed=60&cloud_top_offset_k=15"
DRIFT_ALERT = "LtgcastFeatureDrift"
PANELS_DEADLINE_S = 60.0

T = TypeVar("T")


# -- the files -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One query of one panel."""

    dashboard: str
    panel: str
    ref: str
    expr: str

    @property
    def query(self) -> str:
        """The expression with the template variables filled in."""
        return substitute(self.expr)

    def __str__(self) -> str:
        return f"{self.dashboard} / {self.panel!r} / {self.ref}: {self.query}"


def substitute(expr: str) -> str:
    """``$name`` and ``${name}`` replaced from :data:`VARIABLES` (unknown names left as they are)."""
    return re.sub(r"\$(?:\{(\w+)\}|(\w+))", lambda m: VARIABLES.get(m[1] or m[2], m[0]), expr)


def dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard file, by uid."""
    boards = [json.loads(path.read_text(encoding="utf-8")) for path in sorted(DASHBOARDS.glob("*.json"))]
    uids = [board["uid"] for board in boards]
    assert len(uids) == len(set(uids)), f"a dashboard uid is used twice: {sorted(uids)}"
    return {board["uid"]: board for board in boards}


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The panels of a dashboard, those inside (collapsed) rows included; rows themselves left out."""
    for panel in board.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def targets() -> list[Target]:
    """Every query of every panel of every dashboard."""
    return [
        Target(uid, panel.get("title", ""), target.get("refId", ""), target.get("expr", ""))
        for uid, board in dashboards().items()
        for panel in panels(board)
        for target in panel.get("targets", [])
    ]


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


# -- static checks ---------------------------------------------------------------------------------------------------


def test_the_datasource_is_provisioned_with_the_uid_the_panels_use() -> None:
    config = load_yaml(DATASOURCES)
    assert config["apiVersion"] == 1
    [source] = config["datasources"]
    assert (source["uid"], source["type"], source["access"]) == (DATASOURCE_UID, "prometheus", "proxy")
    assert urllib.parse.urlsplit(source["url"]).scheme in {"http", "https"}, source["url"]


def test_the_dashboards_are_provisioned_from_files() -> None:
    config = load_yaml(PROVIDERS)
    assert config["apiVersion"] == 1
    [provider] = config["providers"]
    assert provider["type"] == "file"
    assert Path(provider["options"]["path"]).is_absolute(), "Grafana needs an absolute path on its host"


def test_each_topic_has_one_dashboard_with_a_unique_uid_and_title() -> None:
    boards = dashboards()
    assert set(boards) == TOPICS
    titles = [board["title"] for board in boards.values()]
    assert len(titles) == len(set(titles)), titles
    for uid, board in boards.items():
        assert (DASHBOARDS / f"{uid}.json").is_file(), f"{uid}: the file is named after its uid"
        assert board["schemaVersion"] >= 36, uid
        assert "ltgcast" in board["tags"], uid
        assert board["time"]["to"] == "now", uid
        assert board["refresh"], uid
        assert board.get("description"), f"{uid}: say what the dashboard answers"


def test_every_panel_queries_the_provisioned_datasource() -> None:
    for uid, board in dashboards().items():
        ids = [panel["id"] for panel in panels(board)]
        assert len(ids) == len(set(ids)), f"{uid}: panel ids repeat: {ids}"
        for panel in panels(board):
            where = f"{uid} / {panel.get('title')!r}"
            assert panel["type"] in PANEL_TYPES, f"{where}: type {panel['type']!r}, expected one of {PANEL_TYPES}"
            assert panel.get("title"), f"{where}: no title"
            assert panel.get("description"), f"{where}: say what the panel shows and what is normal"
            assert panel["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}, where
            assert panel.get("fieldConfig", {}).get("defaults", {}).get("unit"), f"{where}: no unit"
            queries = panel.get("targets", [])
            assert queries, f"{where}: no target"
            assert len({q["refId"] for q in queries}) == len(queries), f"{where}: refIds repeat"
            for query in queries:
                assert query["expr"].strip(), f"{where} / {query['refId']}: empty expression"
                assert query.get("datasource", panel["datasource"])["uid"] == DATASOURCE_UID, where


def test_panels_fit_the_grid_without_overlapping() -> None:
    for uid, board in dashboards().items():
        cells: dict[tuple[int, int], str] = {}
        for panel in panels(board):
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24, f"{uid} / {panel['title']!r} is wider than the 24 columns"
            for x in range(pos["x"], pos["x"] + pos["w"]):
                for y in range(pos["y"], pos["y"] + pos["h"]):
                    assert (x, y) not in cells, f"{uid}: {panel['title']!r} overlaps {cells[(x, y)]!r}"
                    cells[(x, y)] = panel["title"]


def test_every_template_variable_is_filled_by_the_test() -> None:
    for uid, board in dashboards().items():
        for variable in board.get("templating", {}).get("list", []):
            assert variable["name"] in VARIABLES, f"{uid}: ${variable['name']} has no value in VARIABLES"
            assert variable["datasource"]["uid"] == DATASOURCE_UID, uid
    for target in targets():
        assert not re.search(r"\$\{?\w", target.query), f"{target}: a variable the test does not know"


def test_every_metric_a_panel_reads_is_defined() -> None:
    known = defined_metrics() | PROMETHEUS_OWN
    for target in targets():
        names = metrics_in(target.query)
        assert names, f"{target}: no metric found"
        unknown = names - known
        assert not unknown, f"{target} reads {sorted(unknown)}, which no metrics.py defines (renamed?)"


def panel_thresholds(panel: dict[str, Any]) -> set[float]:
    """Every threshold step value of a panel, its overrides' included."""
    field = panel["fieldConfig"]
    found = [field["defaults"].get("thresholds", {})]
    found += [p["value"] for o in field.get("overrides", []) for p in o["properties"] if p["id"] == "thresholds"]
    return {float(step["value"]) for t in found for step in t.get("steps", []) if step["value"] is not None}


def test_the_panels_of_an_alert_draw_its_threshold() -> None:
    """A number the alert compares with is a threshold step of the panel; a metric it compares with, a query."""
    rules = load_yaml(RULES / "ltgcast.rules.yml")
    exprs = {rule["alert"]: rule["expr"] for group in rules["groups"] for rule in group["rules"] if "alert" in rule}
    boards = dashboards()
    for (uid, title), alert in ALERT_PANELS.items():
        [panel] = [p for p in panels(boards[uid]) if p["title"] == title]
        where = f"{uid} / {title!r} stands for {alert}"
        numbers = {float(v) for v in re.findall(r"(?:[<>]=?|==)\s*([\d.]+)", exprs[alert])}
        lines = set(re.findall(r"(?:[<>]=?|==)\s*([a-zA-Z_:][\w:]*)", exprs[alert]))
        assert numbers or lines, f"{alert}: no threshold found in {exprs[alert]!r}"
        missing = numbers - panel_thresholds(panel)
        assert not missing, f"{where} but has no threshold step at {sorted(missing)}"
        read = {name for target in panel["targets"] for name in metrics_in(substitute(target["expr"]))}
        assert lines <= read, f"{where} but does not draw {sorted(lines - read)}"


@pytest.mark.prometheus
def test_every_panel_expression_is_valid_promql(tmp_path: Path, promtool: str) -> None:
    rules = [{"record": f"dashboard:panel_{i}:expr", "expr": t.query} for i, t in enumerate(targets())]
    path = tmp_path / "panels.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}), encoding="utf-8")
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60,
                          check=False)  # fmt: skip
    output = done.stdout + done.stderr
    if done.returncode != 0:  # name the panels: promtool names only the rule's index
        bad = [str(t) for i, t in enumerate(targets()) if f"panel_{i}:" in output]
        pytest.fail(f"promtool check rules refused the panel expressions:\n{output}\n" + "\n".join(bad))
    assert f"{len(rules)} rules found" in output, output


# -- the live stack --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def promtool() -> str:
    """Debian's promtool (package ``prometheus``); missing is a failure, never a skip."""
    return installed("promtool")


@pytest.fixture(scope="module")
def prometheus() -> str:
    """Debian's prometheus server binary; missing is a failure, never a skip."""
    return installed("prometheus")


def installed(command: str) -> str:
    path = shutil.which(command)
    if path is None:
        pytest.fail(
            f"{command} not found on PATH: install Debian's prometheus package "
            "(`sudo apt-get install prometheus`, or `deploy/local/services.sh up prometheus` which installs it)"
        )
    return path


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Daemon:
    """A server process whose output goes to a log file; stopped (SIGTERM, then SIGKILL) when the block ends."""

    def __init__(self, name: str, argv: list[str], log: Path, *, env: dict[str, str] | None = None) -> None:
        self.name, self.log = name, log
        with log.open("wb") as out:
            self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            cwd=ROOT, env=env)  # fmt: skip

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Terminate, wait up to 30 s, then kill."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)

    def tail(self, chars: int = 6000) -> str:
        """The end of its log."""
        text = self.log.read_text(encoding="utf-8", errors="replace") if self.log.is_file() else ""
        header = f"--- {self.name} (exit {self.process.poll()}), last {chars} characters of {self.log} ---"
        return f"{header}\n{text[-chars:]}"


@dataclass
class Stack:
    """``ltgcast run`` and the Prometheus scraping it."""

    service: Daemon
    prometheus: Daemon
    service_url: str
    prometheus_url: str

    def logs(self) -> str:
        return f"{self.service.tail()}\n{self.prometheus.tail()}"

    def wait_for(self, what: str, check: Callable[[], T | None], deadline_s: float) -> T:
        """Poll ``check`` every second until it returns something truthy; fail naming ``what`` otherwise."""
        end = time.monotonic() + deadline_s
        while True:
            for daemon in (self.service, self.prometheus):
                if daemon.process.poll() is not None:
                    pytest.fail(f"{daemon.name} exited while waiting for {what}\n{self.logs()}")
            found = check()
            if found:
                return found
            if time.monotonic() > end:
                pytest.fail(f"{what}: not there after {deadline_s:.0f} s\n{self.logs()}")
            time.sleep(1.0)

    def api(self, path: str, **params: str) -> dict[str, Any]:
        """A GET on Prometheus's HTTP API; the JSON answer, errors (HTTP 4xx with a JSON body) included."""
        url = f"{self.prometheus_url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return dict(json.load(response))
        except urllib.error.HTTPError as exc:
            with exc:
                return dict(json.loads(exc.read() or b"{}") or {"status": "error", "error": str(exc)})

    def query(self, expr: str) -> dict[str, Any]:
        return self.api("/api/v1/query", query=expr)


def http_text(url: str) -> str:
    """The body of a GET, or "" when nothing answers yet."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode("utf-8"))
    except (OSError, urllib.error.URLError):
        return ""


def verified_grids(metrics_text: str) -> float:
    """The service's ``ltgcast_live_verified_grids_total`` over its sectors (0 while none is exported)."""
    found = re.findall(r"^ltgcast_live_verified_grids_total\{[^}]*\} (\S+)$", metrics_text, flags=re.MULTILINE)
    return sum(float(value) for value in found)


def prometheus_config(tmp_path: Path, service_port: int) -> Path:
    """A config scraping the service every second, with a copy of the alert rules beside it."""
    shutil.copytree(RULES, tmp_path / "rules", ignore=shutil.ignore_patterns("*.test.yml"))
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": ["rules/*.rules.yml"],
        "scrape_configs": [{"job_name": "ltgcast", "static_configs": [{"targets": [f"127.0.0.1:{service_port}"]}]}],
    }
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@contextmanager
def live_stack(tmp_path: Path, prometheus: str, source: str) -> Iterator[Stack]:
    """``ltgcast run`` on the simulated ``source`` and a dedicated Prometheus scraping it; both stopped at the end."""
    service_port, prometheus_port = free_port(), free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("LTGCAST_")}
    run = [sys.executable, "-m", "ltgcast", "run", "--source", source, "--sectors", "M1",
           "--max-age-minutes", "0", "--glm-deadline", "5", "--store", str(tmp_path / "grids"),
           "--state", str(tmp_path / "state"), "--model-base", str(ROOT / "models" / "repository"),
           "--http", f"127.0.0.1:{service_port}"]  # fmt: skip
    config = prometheus_config(tmp_path, service_port)
    server = [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
              f"--web.listen-address=127.0.0.1:{prometheus_port}"]  # fmt: skip
    with ExitStack() as stop:
        service = stop.enter_context(Daemon("ltgcast run", run, tmp_path / "ltgcast.log", env=env))
        server_daemon = stop.enter_context(Daemon("prometheus", server, tmp_path / "prometheus.log"))
        stack = Stack(service, server_daemon, f"http://127.0.0.1:{service_port}", f"http://127.0.0.1:{prometheus_port}")
        stack.wait_for("Prometheus ready", lambda: http_text(f"{stack.prometheus_url}/-/ready"), 60)
        scraped = 'up{job="ltgcast"} == 1'
        stack.wait_for("Prometheus scraping ltgcast run", lambda: stack.query(scraped).get("data", {}).get("result"),
                       120)  # fmt: skip
        yield stack


@pytest.fixture
def stack(tmp_path: Path, prometheus: str) -> Iterator[Stack]:
    """The live stack on the normal simulated day."""
    with live_stack(tmp_path, prometheus, SIM_SOURCE) as live:
        yield live


def evaluate(stack: Stack, queries: list[Target]) -> tuple[list[str], list[str]]:
    """The panels whose query Prometheus refuses, and those that return nothing."""
    invalid, empty = [], []
    for target in queries:
        answer = stack.query(target.query)
        if answer.get("status") != "success":
            invalid.append(f"{target}\n    -> {answer.get('errorType')}: {answer.get('error')}")
        elif not answer["data"]["result"]:
            empty.append(str(target))
    for uid, board in dashboards().items():
        for variable in board.get("templating", {}).get("list", []):
            match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", variable.get("definition", ""))
            assert match, f"{uid}: ${variable['name']} is not label_values(metric, label)"
            answer = stack.api(f"/api/v1/label/{match[2]}/values", **{"match[]": match[1]})
            if not answer.get("data"):
                empty.append(f"{uid} / variable ${variable['name']}: {match[0]} -> {answer}")
    return invalid, empty


@pytest.mark.prometheus
@pytest.mark.slow
def test_every_panel_returns_data_from_a_live_service(stack: Stack) -> None:
    """Once a grid is verified, every panel query (and the $sector variable) answers with data; every rule runs."""
    stack.wait_for(
        "a grid verified against GLM (ltgcast_live_verified_grids_total > 0 on the service's /metrics)",
        lambda: verified_grids(http_text(f"{stack.service_url}/metrics")),
        VERIFIED_DEADLINE_S,
    )
    queries = targets()
    end = time.monotonic() + PANELS_DEADLINE_S
    invalid, empty = evaluate(stack, queries)
    while not invalid and empty and time.monotonic() < end:  # a series is 1-2 scrapes behind the service
        time.sleep(2.0)
        invalid, empty = evaluate(stack, queries)
    failures = ["INVALID " + line for line in invalid] + ["EMPTY " + line for line in empty]
    assert not failures, (
        f"of {len(queries)} panel queries, {len(invalid)} invalid and {len(empty)} empty "
        f"({PANELS_DEADLINE_S:.0f} s after the first verified grid):\n" + "\n".join(failures) + f"\n{stack.logs()}"
    )
    rules = [rule for group in stack.api("/api/v1/rules")["data"]["groups"] for rule in group["rules"]]
    assert rules, f"Prometheus loaded no alert rule\n{stack.logs()}"
    broken = [f"{rule['name']}: {rule.get('lastError')}" for rule in rules if rule["health"] == "err"]
    assert not broken, (
        "alert rules that fail to evaluate on the live series:\n" + "\n".join(broken) + f"\n{stack.logs()}"
    )
    drifted = stack.query(f"count_over_time(ALERTS{{alertname={DRIFT_ALERT!r}}}[1h])")["data"]["result"]
    assert drifted == [], f"a normal simulated day set off {DRIFT_ALERT}: {drifted}"  # the must-show's other half


@pytest.mark.prometheus
@pytest.mark.slow
def test_cloud_tops_15_k_warmer_set_off_the_drift_alert_in_a_live_run(tmp_path: Path, prometheus: str) -> None:
    """The regime change of issue 7 through the whole service: Prometheus's own rule goes pending on a live PSI.

    The rule needs 15 minutes of wall-clock time to fire, so pending (the expression true: PSI over the
    feature's calibrated threshold) is what a replay can show. On this day 20 of the 34 full windows cross.
    """
    with live_stack(tmp_path, prometheus, WARM_SOURCE) as stack:
        alert = f'ALERTS{{alertname="{DRIFT_ALERT}", alertstate="pending"}}'
        pending = stack.wait_for(f"{DRIFT_ALERT} pending", lambda: stack.query(alert)["data"]["result"], 180)
        features = {series["metric"]["feature"] for series in pending}
        assert {series["metric"]["sector"] for series in pending} == {"M1"}
        over = stack.query("ltgcast_feature_psi > ltgcast_feature_psi_threshold")["data"]["result"]
        assert over, f"{DRIFT_ALERT} is pending on {features} but no PSI is over its threshold\n{stack.logs()}"
