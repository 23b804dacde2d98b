"""A small exported model version in a real repository layout, shared by the serve tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def model_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``BASE/lightning/1``: an untrained but non-trivial combined model (random weights, width 4), served."""
    from models.repository import ModelRepository
    from tests.support.models import export_test_model

    base = tmp_path_factory.mktemp("repo")
    repo = ModelRepository(base)
    version = export_test_model(repo, base / "scratch", seed=11)
    repo.promote("lightning", version, reason="test")
    return base
