"""Chaos fixtures: one simulated feed (G19 mesoscale and G18 CONUS, ending now) and the report of every scenario."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ingest.synthetic import ScenarioConfig, simulate
from tests.chaos.harness import ROOT, Feed, dump, reference_grids
from tests.support.models import served_version

REPORT = ROOT / "var" / "chaos" / "report.json"
ROWS: list[dict[str, Any]] = []
MESO_FRAMES = 12  # a whole turn of the 12 partition slots: two workers get 6 each, whatever the first slot
CONUS_FRAMES = 1  # a second satellite and sector; each CONUS frame costs every scenario seconds of scoring


@pytest.fixture(scope="session")
def feed(tmp_path_factory: pytest.TempPathFactory) -> Feed:
    """36 minutes ending about now: M1 every minute (G19, East) and CONUS every 5 minutes (G18, West), with GLM;
    the last 12 M1 frames and the last CONUS frame are fed.

    Frames are fed only once their whole 15-minute GLM window is in the feed; scan times are recent, so the
    workers run with their default age limit (60 minutes) for the whole suite.
    """
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=36)
    meso = simulate(ScenarioConfig(out=tmp_path_factory.mktemp("meso"), sector="M1", start=start, minutes=36, seed=21))
    conus = simulate(ScenarioConfig(out=tmp_path_factory.mktemp("conus"), sector="C", start=start, minutes=36,
                                    seed=22, satellite="G18", slot="GOES-West"))  # fmt: skip
    paths = meso + conus
    granules = tuple(sorted(p for p in paths if "_GLM-" in p.name))
    frames = sorted(p for p in meso if "_ABI-" in p.name)[-MESO_FRAMES:]
    frames += sorted(p for p in conus if "_ABI-" in p.name)[-CONUS_FRAMES:]
    frames = sorted(frames, key=lambda p: p.name.split("_s")[1])
    model = ROOT / "models" / "repository" / "lightning" / str(served_version())
    return Feed(granules, tuple(frames), reference_grids(frames, granules, model))


@pytest.fixture(scope="session")
def report() -> Iterator[list[dict[str, Any]]]:
    yield ROWS
    if ROWS:
        dump(ROWS, REPORT)


def table(rows: list[dict[str, Any]]) -> str:
    """The chaos table, as the README shows it."""
    head = ("| fault | frames fed | grids expected / stored | lost | conflicting | without GLM | dead letters "
            "| in Redis | recovered by itself | seconds |")  # fmt: skip
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        lines.append(f"| {r['scenario']} | {r['frames_fed']} | {r['grids_expected']} / {r['grids_stored']} | "
                     f"{r['grids_lost']} | {r['conflicting']} | {r['without_glm']} | {r['dead_letters']} | "
                     f"{r['redis_grids']} | {'yes' if r['recovered'] else 'NO'} | {r['seconds']} |")  # fmt: skip
    return "\n".join(lines)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the chaos table after the run (and where its JSON is)."""
    if not ROWS:
        return
    terminalreporter.section("chaos table")
    terminalreporter.write_line(table(ROWS))
    for row in ROWS:
        if row.get("notes"):
            terminalreporter.write_line(f"{row['scenario']}: {json.dumps(row['notes'], default=str)[:400]}")
    terminalreporter.write_line(f"(JSON: {REPORT.relative_to(ROOT)})")
