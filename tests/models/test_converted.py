"""The converted artefact (model.onnx): the pool rewrite, the gate's checks, ``ltgcast models convert``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from models.onnx import sha256_of
from models.repository import ModelRepository
from models.validation import validate

ROOT = Path(__file__).resolve().parents[2]
REPOSITORY = ROOT / "models" / "repository"


def copy_repository(tmp_path: Path) -> ModelRepository:
    shutil.copytree(REPOSITORY / "lightning", tmp_path / "lightning")
    return ModelRepository(tmp_path)


def set_card(repo: ModelRepository, version: int, **fields: object) -> None:
    path = repo.path("lightning", version) / "model_card.json"
    path.write_text(json.dumps({**repo.card("lightning", version), **fields}, indent=1) + "\n", encoding="utf-8")


def test_committed_versions_carry_a_vouched_artefact() -> None:
    repo = ModelRepository(REPOSITORY)
    for version in repo.versions("lightning"):
        entry = repo.card("lightning", version)["onnx"]
        assert sha256_of(repo.path("lightning", version) / entry["file"]) == entry["sha256"]
        assert max(entry["max_abs_difference"].values()) <= 1e-5


def test_ladder_is_the_pool_it_replaces() -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from models.export import ladder_pools

    x = helper.make_tensor_value_info("tile", TensorProto.FLOAT, [1, 1, None, None])
    nodes = [
        helper.make_node("AveragePool", ["tile"], ["a"], kernel_shape=[16, 1], strides=[1, 1]),
        helper.make_node("AveragePool", ["a"], ["b"], kernel_shape=[1, 64], strides=[1, 1]),
        helper.make_node("MaxPool", ["tile"], ["c"], kernel_shape=[64, 1], strides=[1, 1]),
        helper.make_node("MaxPool", ["c"], ["d"], kernel_shape=[1, 3], strides=[1, 1]),  # not a power of two: kept
    ]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 1, None, None]) for n in ("b", "d")]
    model = helper.make_model(
        helper.make_graph(nodes, "pools", [x], outputs), opset_imports=[helper.make_opsetid("", 17)]
    )
    before = model.SerializeToString()
    assert ladder_pools(model) == 3
    onnx.checker.check_model(model)
    data = np.random.default_rng(0).uniform(0, 1, (1, 1, 70, 90)).astype(np.float32)
    import onnxruntime as ort

    plain = ort.InferenceSession(before, providers=["CPUExecutionProvider"]).run(None, {"tile": data})
    laddered = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"tile": data}
    )
    np.testing.assert_allclose(laddered[0], plain[0], rtol=0, atol=1e-6)  # pairwise vs sequential sums
    np.testing.assert_array_equal(laddered[1], plain[1])  # the maximum is exact


@pytest.mark.slow
def test_the_gate_rejects_a_tampered_or_swapped_artefact(tmp_path: Path) -> None:
    repo = copy_repository(tmp_path)
    assert validate(repo, "lightning", 2).passed
    artefact = repo.path("lightning", 2) / "model.onnx"
    artefact.write_bytes(artefact.read_bytes().replace(b"Sigmoid", b"Sigmoie", 1))  # an edit, card untouched
    report = validate(repo, "lightning", 2)
    assert any("model.onnx: sha256" in p and "altered or swapped" in p for p in report.problems), report.problems
    # the attacker also rewrites the hash: another model's artefact then fails the agreement check
    shutil.copy(repo.path("lightning", 1) / "model.onnx", artefact)
    entry = {**repo.card("lightning", 2)["onnx"], "sha256": sha256_of(artefact)}
    set_card(repo, 2, onnx=entry)
    report = validate(repo, "lightning", 2)
    assert any("model.onnx on " in p and "differ from serving_default" in p for p in report.problems), report.problems


def test_an_artefact_the_card_does_not_name_is_refused(tmp_path: Path) -> None:
    from models.validation import ValidationReport, _converted

    repo = copy_repository(tmp_path)
    card = {k: v for k, v in repo.card("lightning", 1).items() if k != "onnx"}
    report = ValidationReport("lightning", 1)
    _converted(None, repo.path("lightning", 1), card, report)
    assert report.problems == ["model.onnx: present but the model card records no sha256 for it"]
    (repo.path("lightning", 1) / "model.onnx").unlink()
    report = ValidationReport("lightning", 1)
    _converted(None, repo.path("lightning", 1), card, report)
    assert report.passed
    assert report.checks["converted"].startswith("none")


@pytest.mark.slow
def test_models_convert_rewrites_the_artefact_and_the_card(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ltgcast.cli import main

    repo = copy_repository(tmp_path)
    (repo.path("lightning", 1) / "model.onnx").unlink()
    set_card(repo, 1, onnx=None)
    assert main(["models", "convert", "--base", str(tmp_path), "--version", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    entry = repo.card("lightning", 1)["onnx"]
    assert out["onnx"] == entry
    assert entry["sha256"] == sha256_of(repo.path("lightning", 1) / "model.onnx")
    assert max(entry["max_abs_difference"].values()) <= 1e-5
    assert validate(repo, "lightning", 1).checks["converted"]["sha256"] == entry["sha256"]
