"""The converted scorers (serve/scoring/onnx.py) against TensorFlow, their fallback, and the fast path's imports."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from featurize.channels import get_feature_set, model_input, scene_channels
from foundation.errors import ArtefactUnavailable
from models.behaviour import field
from models.onnx import RUNTIMES
from serve.scoring import EmbeddedScorer, get_scorer
from serve.scoring.onnx import SCORER_FALLBACK, ConvertedScorer
from serve.scoring.settings import ScorerSettings

ROOT = Path(__file__).resolve().parents[2]
REPOSITORY = ROOT / "models" / "repository" / "lightning"


def in_range(shape: tuple[int, int], channels: int, seed: int = 0) -> np.ndarray:
    """Random model input in each channel's range (``ir_trend`` in [-1, 1]), plus a few saturated pixels."""
    x = np.random.default_rng(seed).uniform(0, 1, (*shape, channels)).astype(np.float32)
    if channels > 2:
        x[..., 2] = 2 * x[..., 2] - 1
    x[0, 0], x[-1, -1] = 1.0, 0.0
    return x


def scene(version: str) -> np.ndarray:
    """The behavioural suite's four-storm field as the scorer gets it (``[192, 256, C]``)."""
    fs = get_feature_set(_card_set(version))
    storms = field()
    previous = storms.bt_k if fs.temporal else None
    return model_input(scene_channels(fs, storms.bt_k, storms.flashes, previous), fs)[0]


def _card_set(version: str) -> str:
    import json

    return str(json.loads((REPOSITORY / version / "model_card.json").read_text(encoding="utf-8"))["feature_set"])


@pytest.fixture(scope="module")
def tensorflow_scorers() -> dict[str, EmbeddedScorer]:
    return {v: EmbeddedScorer(REPOSITORY / v, ScorerSettings(tile=0)) for v in ("1", "2")}


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("version", ["1", "2"])
def test_converted_equals_tensorflow_at_odd_shapes_edges_and_tiles(
    runtime: str, version: str, tensorflow_scorers: dict[str, EmbeddedScorer]
) -> None:
    reference = tensorflow_scorers[version]
    channels = len(reference.feature_set.channels)
    for tile in (0, 40):  # 40 divides neither side: ragged tiles at the bottom and right edges
        fast = ConvertedScorer(REPOSITORY / version, ScorerSettings(tile=tile), runtime=runtime)
        for x in (in_range((90, 131), channels), in_range((1, 3), channels, 1), scene(version)):
            np.testing.assert_allclose(fast.score(x), reference.score(x), rtol=0, atol=1e-5)


def test_parallel_tiles_equal_sequential() -> None:
    x = in_range((77, 150), 3)
    one = ConvertedScorer(REPOSITORY / "2", ScorerSettings(tile=32, threads=1, concurrency=1))
    two = ConvertedScorer(REPOSITORY / "2", ScorerSettings(tile=32, threads=1, concurrency=2))
    default = ConvertedScorer(REPOSITORY / "2", ScorerSettings(tile=32))  # several tiles: in flight at once
    np.testing.assert_array_equal(one.score(x), two.score(x))
    np.testing.assert_array_equal(one.score(x), default.score(x))
    two.close()
    default.close()


def test_embedded_picks_the_converted_scorer_without_importing_tensorflow() -> None:
    code = (
        "import sys, numpy as np\n"
        "from pathlib import Path\n"
        "from serve.scoring import get_scorer\nfrom serve.scoring.settings import ScorerSettings\n"
        f"s = get_scorer(Path({str(REPOSITORY / '2')!r}), ScorerSettings())\n"
        "p = s.score(np.zeros((70, 90, 3), np.float32))\n"
        "assert p.shape == (70, 90), p.shape\n"
        "print(type(s).__name__, s.runtime, 'tensorflow' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ConvertedScorer", RUNTIMES[0], "False"]


def _copy(version: str, tmp_path: Path) -> Path:
    target = tmp_path / "lightning" / version
    shutil.copytree(REPOSITORY / version, target)
    return target


def _fallbacks(reason: str) -> float:
    return SCORER_FALLBACK.labels(reason)._value.get()


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda p: (p / "model.onnx").unlink(), "missing"),
        (lambda p: (p / "model.onnx").write_bytes((p / "model.onnx").read_bytes()[:-7] + b"garbage"), "hash_mismatch"),
    ],
)
def test_falls_back_to_tensorflow_once_warned(damage, reason: str, tmp_path: Path, caplog) -> None:
    version = _copy("2", tmp_path)
    damage(version)
    before = _fallbacks(reason)
    with caplog.at_level(logging.WARNING, logger="serve.scoring"):
        first = get_scorer(version, ScorerSettings())
        second = get_scorer(version, ScorerSettings())
    assert isinstance(first, EmbeddedScorer)
    assert isinstance(second, EmbeddedScorer)
    warned = [r for r in caplog.records if "with TensorFlow" in r.getMessage()]
    assert len(warned) == 1
    assert str(version) in warned[0].getMessage()
    assert _fallbacks(reason) == before + 2
    x = in_range((20, 30), 3)
    np.testing.assert_allclose(first.score(x), EmbeddedScorer(REPOSITORY / "2").score(x), atol=1e-6)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_named_runtime_refuses_a_corrupt_artefact(runtime: str, tmp_path: Path) -> None:
    version = _copy("1", tmp_path)
    (version / "model.onnx").write_bytes(b"not a model")
    with pytest.raises(ArtefactUnavailable, match="sha256") as caught:
        get_scorer(version, ScorerSettings(backend=runtime))
    assert caught.value.reason == "hash_mismatch"


def test_the_bytes_hashed_are_the_bytes_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model.onnx swapped just after its hash was checked is never loaded: the scorer runs the bytes it hashed."""
    import hashlib

    import models.onnx

    version = _copy("2", tmp_path)
    sha256 = hashlib.sha256

    def hash_then_swap(data: bytes) -> Any:
        digest = sha256(data)
        (version / "model.onnx").write_bytes(b"swapped after the check")  # an attacker's timing, at its best
        return digest

    monkeypatch.setattr(models.onnx.hashlib, "sha256", hash_then_swap)
    scorer = get_scorer(version, ScorerSettings(backend="onnxruntime", tile=0))
    monkeypatch.undo()
    x = in_range((20, 30), 3)
    np.testing.assert_allclose(scorer.score(x), EmbeddedScorer(REPOSITORY / "2").score(x), atol=1e-5)


def test_unknown_backend_lists_the_new_ones() -> None:
    with pytest.raises(ValueError, match="embedded, patch, tfserving, tensorflow, openvino, onnxruntime"):
        get_scorer(REPOSITORY / "2", ScorerSettings(backend="nope"))
