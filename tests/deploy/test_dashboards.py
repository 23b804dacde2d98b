"""The Grafana dashboards and provisioning files of ``deploy/grafana/``, checked statically and against real Prometheus.

Grafana itself is not installable here, so the dashboards are held to what Grafana would do with them. The static
checks: every file parses, the five topics have a dashboard each with a unique uid, every panel queries the
provisioned datasource with at least one expression, every expression reads only metrics the code defines and is
valid PromQL (``promtool check rules`` on the expressions as recording rules), the panels that stand for an
alert draw the alert's threshold over the alert's series only, and no threshold is drawn over series it is not
about. The live check (``slow``): ``ltgcast run`` on a simulated mesoscale sector replayed 60 times faster than
real time, scraped every second by a dedicated Debian ``prometheus`` that also loads the alert rules; once the
service has verified grids against GLM, every panel's expression is evaluated through Prometheus's HTTP API, with
the template variables as Grafana would fill them, and must return data with at least one finite value.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
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

from foundation.addresses import free_port
from foundation.clock import wait_until
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
    ("ltgcast-live-skill", "CSI at the 25 % contour over time"): "LtgcastLiveCsiCollapse",
    ("ltgcast-latency-throughput", "Frames waiting for GLM"): "LtgcastPendingFramesPilingUp",
    ("ltgcast-latency-throughput", "Frames waiting for GLM over time"): "LtgcastPendingFramesPilingUp",
    ("ltgcast-latency-throughput", "Consumer lag (max)"): "LtgcastConsumerLag",
    ("ltgcast-latency-throughput", "Consumer lag by partition"): "LtgcastConsumerLag",
}
#: The sectors (``monitor/metrics.py``'s bounded label set) and the series name the grid-age panel gives each.
SECTORS = frozenset({"C", "F", "M1", "M2"})
GRID_AGE_PANEL = ("ltgcast-input-health", "Age of the newest grid")

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


def steps_of(thresholds: dict[str, Any]) -> set[float]:
    """The values of a thresholds config's steps (the base step, ``null``, left out)."""
    return {float(step["value"]) for step in thresholds.get("steps", []) if step["value"] is not None}


def default_thresholds(panel: dict[str, Any]) -> set[float]:
    """The threshold steps a panel shows on every series: a time series draws them only when its style is on."""
    defaults = panel["fieldConfig"]["defaults"]
    style = defaults.get("custom", {}).get("thresholdsStyle", {}).get("mode", "off")
    if panel["type"] == "timeseries" and style == "off":
        return set()
    return steps_of(defaults.get("thresholds", {}))


def panel_thresholds(panel: dict[str, Any]) -> set[float]:
    """The threshold steps a panel shows: its defaults' and, outside time series, its overrides' too."""
    found = default_thresholds(panel)
    if panel["type"] != "timeseries":  # a time series never shows an override's thresholds: see the test below
        for override in panel["fieldConfig"].get("overrides", []):
            found |= {v for p in override["properties"] if p["id"] == "thresholds" for v in steps_of(p["value"])}
    return found


def series_thresholds(panel: dict[str, Any], name: str) -> set[float]:
    """The threshold steps a stat colours the series called ``name`` by (a ``byName`` override, or the defaults)."""
    for override in panel["fieldConfig"].get("overrides", []):
        if override["matcher"] == {"id": "byName", "options": name}:
            for prop in override["properties"]:
                if prop["id"] == "thresholds":
                    return steps_of(prop["value"])
    return steps_of(panel["fieldConfig"]["defaults"].get("thresholds", {}))


def alert_exprs() -> dict[str, str]:
    """The expression of every alert of ltgcast.rules.yml, by name."""
    rules = load_yaml(RULES / "ltgcast.rules.yml")
    return {rule["alert"]: rule["expr"] for group in rules["groups"] for rule in group["rules"] if "alert" in rule}


SELECTOR = re.compile(r"([a-zA-Z_:][\w:]*)\{([^}]*)\}")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


def label_matchers(expr: str) -> dict[str, list[frozenset[tuple[str, str, str]]]]:
    """The label matchers of every selector of ``expr``, by metric (a bare selector: an empty set)."""
    found: dict[str, list[frozenset[tuple[str, str, str]]]] = {}
    for match in SELECTOR.finditer(expr):
        found.setdefault(match[1], []).append(frozenset(MATCHER.findall(match[2])))
    for name in metrics_in(SELECTOR.sub(" ", expr)):
        found.setdefault(name, []).append(frozenset())
    return found


def test_the_panels_of_an_alert_draw_its_threshold() -> None:
    """A number the alert compares with is a threshold step the panel shows; a metric it compares with, a query.

    And the panel draws it over the alert's series only: every query reading a metric the alert reads selects it
    with the label matchers that every selector of the alert has (``threshold="0.25"`` for the live CSI).
    """
    exprs = alert_exprs()
    boards = dashboards()
    for (uid, title), alert in ALERT_PANELS.items():
        [panel] = [p for p in panels(boards[uid]) if p["title"] == title]
        where = f"{uid} / {title!r} stands for {alert}"
        numbers = {float(v) for v in re.findall(r"(?:[<>]=?|==)\s*([\d.]+)", exprs[alert])}
        lines = set(re.findall(r"(?:[<>]=?|==)\s*([a-zA-Z_:][\w:]*)", exprs[alert]))
        assert numbers or lines, f"{alert}: no threshold found in {exprs[alert]!r}"
        missing = numbers - panel_thresholds(panel)
        assert not missing, f"{where} but shows no threshold step at {sorted(missing)}"
        read = {name for target in panel["targets"] for name in metrics_in(substitute(target["expr"]))}
        assert lines <= read, f"{where} but does not draw {sorted(lines - read)}"
        required = {name: frozenset.intersection(*sets) for name, sets in label_matchers(exprs[alert]).items()}
        for target in panel["targets"]:
            for name, selected in label_matchers(substitute(target["expr"])).items():
                for matchers in selected if name in required else []:
                    lacking = required[name] - matchers
                    assert not lacking, f"{where} but {target['refId']} reads {name} without {sorted(lacking)}"


def test_the_grid_age_panel_holds_each_sector_to_its_own_stale_limit() -> None:
    """LtgcastStaleGrids has a limit per sector; the grid-age panel turns each sector's series red at that limit."""
    expr = alert_exprs()["LtgcastStaleGrids"]
    limits = {sector: float(limit) for sectors, limit in re.findall(r'\{sector=~?"([\w|]+)"\}\)\s*>\s*([\d.]+)', expr)
              for sector in sectors.split("|")}  # fmt: skip
    assert set(limits) == SECTORS, f"LtgcastStaleGrids: expected a limit for each of {sorted(SECTORS)} in {expr!r}"
    uid, title = GRID_AGE_PANEL
    [panel] = [p for p in panels(dashboards()[uid]) if p["title"] == title]
    assert panel["type"] == "stat", f"{uid} / {title!r}: a stat colours each series by its own thresholds"
    [query] = panel["targets"]
    assert query["legendFormat"] == "{{sector}}", f"{uid} / {title!r}: the overrides match series named by sector"
    for sector, limit in limits.items():
        shown = series_thresholds(panel, sector)
        assert max(shown, default=None) == limit, f"{uid} / {title!r}: {sector} steps at {shown}, the alert at {limit}"


def test_a_time_series_draws_its_thresholds_for_all_its_series() -> None:
    """Grafana draws one set of threshold lines per axis, the first series' (an override's thresholds never show).

    So a time series keeps its thresholds in its defaults, and a panel whose default thresholds show (lines, or a
    stat's colours) reads the same metrics in every query: one metric's alert line over another metric's series
    (frames waiting at 20 over consumer lag, whose alert is at 50) misleads.
    """
    for uid, board in dashboards().items():
        for panel in panels(board):
            where = f"{uid} / {panel['title']!r}"
            if panel["type"] == "timeseries":
                for override in panel["fieldConfig"].get("overrides", []):
                    props = {p["id"] for p in override["properties"]} & {"thresholds", "custom.thresholdsStyle"}
                    assert not props, f"{where}: an override sets {sorted(props)}, which Grafana does not draw"
            if default_thresholds(panel):
                read = [metrics_in(substitute(t["expr"])) for t in panel["targets"]]
                assert all(names == read[0] for names in read), (
                    f"{where}: its threshold steps {sorted(default_thresholds(panel))} apply to queries of different "
                    f"metrics {read}; split the panel"
                )


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

        def alive_and_checked() -> T | None:
            for daemon in (self.service, self.prometheus):
                if daemon.process.poll() is not None:
                    pytest.fail(f"{daemon.name} exited while waiting for {what}\n{self.logs()}")
            return check()

        try:
            return wait_until(alive_and_checked, what, deadline_s, every_s=1.0)
        except TimeoutError as exc:
            pytest.fail(f"{exc}\n{self.logs()}")

    def api(self, path: str, **params: str) -> dict[str, Any]:
        """A GET on Prometheus's HTTP API; the JSON answer, errors (HTTP 4xx with a JSON body) included."""
        url = f"{self.prometheus_url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return dict(json.load(response))
        except urllib.error.HTTPError as exc:
            with exc:
                return dict(json.loads(exc.read() or b"{}") or {"status": "error", "error": str(exc)})

    def query(self, expr: str, at: float | None = None) -> dict[str, Any]:
        """An instant query, now or ``at`` a Unix time."""
        return self.api("/api/v1/query", query=expr, **({} if at is None else {"time": f"{at:.3f}"}))


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


def sample_values(data: dict[str, Any]) -> list[str] | None:
    """The sample values of an instant query's answer (strings as Prometheus writes them); None for a string."""
    kind, result = data["resultType"], data["result"]
    if kind == "scalar":
        return [result[1]]
    if kind == "vector":
        return [series["value"][1] for series in result if "value" in series]
    if kind == "matrix":
        return [value for series in result for _, value in series.get("values", [])]
    return None


def only_nan(data: dict[str, Any]) -> bool:
    """Whether a vector, matrix or scalar answer has no finite value (NaN and infinities only, or none at all)."""
    values = sample_values(data)
    return values is not None and not any(math.isfinite(float(value)) for value in values)


def test_an_answer_of_only_nan_is_not_data() -> None:
    """``histogram_quantile`` over buckets without an observation answers NaN: a series Grafana draws as nothing."""
    nan = {"metric": {"stage": "drift"}, "value": [1718474400.0, "NaN"]}
    one = {"metric": {"stage": "read"}, "value": [1718474400.0, "0.25"]}
    assert only_nan({"resultType": "vector", "result": [nan, {**nan, "value": [1718474400.0, "+Inf"]}]})
    assert not only_nan({"resultType": "vector", "result": [nan, one]})
    assert only_nan({"resultType": "scalar", "result": [1718474400.0, "NaN"]})
    assert not only_nan({"resultType": "scalar", "result": [1718474400.0, "0"]})
    assert not only_nan({"resultType": "matrix", "result": [{"metric": {}, "values": [[1.0, "NaN"], [2.0, "3"]]}]})
    assert not only_nan({"resultType": "string", "result": [1718474400.0, "NaN"]})


def evaluate(stack: Stack, queries: list[Target]) -> tuple[list[str], list[str], list[str]]:
    """The panels whose query Prometheus refuses, those that return nothing, and those that return only NaN.

    NaN (or an infinity) is what ``histogram_quantile`` gives over buckets without an observation, or a score
    without events: series that Grafana draws as nothing, so they do not count as data.
    """
    invalid, empty, nan_only = [], [], []
    for target in queries:
        answer = stack.query(target.query)
        if answer.get("status") != "success":
            invalid.append(f"{target}\n    -> {answer.get('errorType')}: {answer.get('error')}")
        elif not answer["data"]["result"]:
            empty.append(str(target))
        elif only_nan(answer["data"]):
            values = sample_values(answer["data"]) or []
            nan_only.append(f"{target}\n    -> {len(values)} values, none finite: {sorted(set(values))}")
    for uid, board in dashboards().items():
        for variable in board.get("templating", {}).get("list", []):
            match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", variable.get("definition", ""))
            assert match, f"{uid}: ${variable['name']} is not label_values(metric, label)"
            answer = stack.api(f"/api/v1/label/{match[2]}/values", **{"match[]": match[1]})
            if not answer.get("data"):
                empty.append(f"{uid} / variable ${variable['name']}: {match[0]} -> {answer}")
    return invalid, empty, nan_only


@pytest.mark.prometheus
@pytest.mark.slow
def test_every_panel_returns_data_from_a_live_service(stack: Stack) -> None:
    """Once a grid is verified, every panel query (and $sector) answers with a finite value; every rule runs."""
    stack.wait_for(
        "a grid verified against GLM (ltgcast_live_verified_grids_total > 0 on the service's /metrics)",
        lambda: verified_grids(http_text(f"{stack.service_url}/metrics")),
        VERIFIED_DEADLINE_S,
    )
    queries = targets()
    end = time.monotonic() + PANELS_DEADLINE_S
    invalid, empty, nan_only = evaluate(stack, queries)
    while not invalid and (empty or nan_only) and time.monotonic() < end:  # a series is 1-2 scrapes behind
        time.sleep(2.0)
        invalid, empty, nan_only = evaluate(stack, queries)
    failures = (["INVALID " + line for line in invalid] + ["EMPTY " + line for line in empty]
                + ["NAN-ONLY " + line for line in nan_only])  # fmt: skip
    assert not failures, (
        f"of {len(queries)} panel queries, {len(invalid)} invalid, {len(empty)} empty and {len(nan_only)} NaN-only "
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
        # timestamp(): the time of the rule's evaluation, not of this query (a later scrape may hold a newer PSI)
        pending = stack.wait_for(f"{DRIFT_ALERT} pending", lambda: stack.query(f"timestamp({alert})")["data"]["result"],
                                 180)  # fmt: skip
        features = {series["metric"]["feature"] for series in pending}
        assert {series["metric"]["sector"] for series in pending} == {"M1"}
        evaluated = max(float(series["value"][1]) for series in pending)
        # What the rule saw at that evaluation: the PSI over its threshold at that instant, or at the scrape before
        # (one still being written then may have replaced the last sample since).
        crossing = "ltgcast_feature_psi > ltgcast_feature_psi_threshold"
        crossed = {series["metric"]["feature"] for at in (evaluated, evaluated - 1.0)
                   for series in stack.query(crossing, at=at)["data"]["result"]}  # fmt: skip
        assert crossed >= features, (
            f"{DRIFT_ALERT} is pending on {sorted(features)} at {evaluated} but only {sorted(crossed)} had a PSI "
            f"over the threshold then\n{stack.logs()}"
        )
