"""Shared fixtures: real NOAA samples (skipped with a reason when absent) and a small scenario."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ingest.synthetic import ScenarioConfig, simulate

REAL_DATA = Path(
    os.environ.get("LTGCAST_GOES_SAMPLES", Path(__file__).resolve().parents[1].parent / "shared" / "data" / "goes16")
)


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The folder of real NOAA GOES-R samples beside the checkout."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real GOES-R samples not found at {REAL_DATA} (see ARCHITECTURE.md)")
    return REAL_DATA


@pytest.fixture(scope="session")
def meso_scenario(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 minutes of a synthetic mesoscale sector with lightning (seed 1)."""
    out = tmp_path_factory.mktemp("meso")
    simulate(ScenarioConfig(out=out, sector="M1", start=datetime(2024, 6, 15, 18, 0, tzinfo=UTC), minutes=30, seed=1))
    return out
