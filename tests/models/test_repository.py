"""The model repository: add (export + card + warm-up), list, validate, promote, rollback, TF Serving config."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from foundation.errors import ModelRejected
from ingest.synthetic import ScenarioConfig, simulate
from ltgcast.cli import main
from models.architectures import build
from models.repository import WARMUP, ModelRepository
from tests.models.helpers import write_run, write_tiny_dataset

ROOT = Path(__file__).resolve().parents[2]


def model_with(bias: float) -> object:
    """A logistic model of the coldest top and the most flashes in the 16×16 box: it keeps the physics contract."""
    model = build("logistic", ("ir", "ltg"), seed=1)
    logit = model.get_layer("logit")
    kernel = np.zeros(logit.kernel.shape, np.float32)  # features: ir mean/max 64, mean/max 16, cold 64; ltg ...
    kernel[..., 3, 0], kernel[..., 7, 0] = 4.0, 4.0  # ir_max_16, ltg_max_16 (raw flashes per pixel)
    logit.kernel.assign(kernel)
    logit.bias.assign(np.array([bias], np.float32))
    return model


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> object:
    assert main(list(args)) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_versions_promotion_and_rollback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base, data = tmp_path / "repo", tmp_path / "data"
    write_tiny_dataset(data, 0.5, split="test")
    for n, bias in enumerate((-5.5, -5.0), start=1):  # v2 is less wrong on the tiny test split
        write_run(tmp_path / f"run{n}", data, model_with(bias))
        added = run_json(capsys, "models", "add", "--base", str(base), "--run", str(tmp_path / f"run{n}"))
        assert added["version"] == n
        assert added["export_check"]["max_abs_difference_after_reload"] <= 1e-5
        assert added["behaviour"] == {"suite": 1, "passed": True, "failed": []}
    listed = run_json(capsys, "models", "list", "--base", str(base))
    assert listed == [{"name": "lightning", "versions": [1, 2], "current": 1}]  # a new version is not served yet

    repo = ModelRepository(base)
    card = repo.card("lightning", 2)
    assert card["feature_set"] == "ir-ltg/1"
    assert card["channel_scaling"]["ir"] == "(320 K - BT13) / 140 K"
    assert card["drift_reference"] == {"ir": {"count": 2}}
    assert card["behaviour"]["passed"]  # `models add` records the behavioural suite's results
    assert card["behaviour"]["checks"]["no_moat"]["storms"]["300 flashes/px"]["profile_px_p_bt"][0][0] == 0
    warmup = next(iter(tf.data.TFRecordDataset(str(repo.path("lightning", 2) / WARMUP))))
    from tensorflow_serving.apis import prediction_log_pb2

    request = prediction_log_pb2.PredictionLog.FromString(warmup.numpy()).predict_log.request
    assert request.model_spec.signature_name == "serving_default"
    assert [d.size for d in request.inputs["tile"].tensor_shape.dim] == [1, 16 + 64, 16 + 64, 2]

    checked = run_json(capsys, "models", "validate", "--base", str(base), "--version", "2", "--holdout", str(data))
    assert checked["passed"]
    assert checked["checks"]["current_version"] == 1
    assert all(r["passed"] for r in checked["checks"]["behaviour"].values())
    promoted = run_json(capsys, "models", "promote", "--base", str(base), "--version", "2", "--reason", "better")
    assert promoted == {"name": "lightning", "current": 2}
    config = (base / "models.config").read_text()
    assert "versions: 2" in config
    assert 'base_path: "/models/lightning"' in config  # the base as the tensorflow/serving image mounts it
    assert run_json(capsys, "models", "rollback", "--base", str(base)) == {"name": "lightning", "current": 1}
    assert "versions: 1" in (base / "models.config").read_text()


def test_a_worse_version_is_refused_by_the_gate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base, data = tmp_path / "repo", tmp_path / "data"
    write_tiny_dataset(data, 0.5, split="test")  # one positive, one negative
    write_run(tmp_path / "good", data, model_with(0.0))  # p = 0.5 for both: Brier 0.25
    write_run(tmp_path / "bad", data, model_with(-8.0))  # p ~ 0: Brier ~0.5
    for run in ("good", "bad"):
        run_json(capsys, "models", "add", "--base", str(base), "--run", str(tmp_path / run))
    code = main(
        ["models", "promote", "--base", str(base), "--version", "2", "--holdout", str(data), "--margin", "0.05"]
    )
    assert code == 1
    assert "worse than version 1" in capsys.readouterr().err
    assert ModelRepository(base).current("lightning") == 1


def test_a_saved_run_loads_in_a_fresh_process(tmp_path: Path) -> None:
    """`ltgcast evaluate` loads runs in a new process, where no model was built first (custom layers)."""
    import subprocess
    import sys

    from models.calibration import calibrated

    calibrated(build("combined", ("ir", "ltg"), width=4), 0.5, -2.0).save(tmp_path / "model.keras")
    code = (
        "import sys, pathlib, numpy as np; from ltgcast.evaluation import _from_run; "
        "f = _from_run(pathlib.Path(sys.argv[1])); p = f.patch(np.zeros((3, 64, 64, 2), np.float32)); "
        "d = f.dense(np.zeros((1, 10 + 64, 7 + 64, 2), np.float32)); print(len(p), d.shape)"
    )
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "3 (10, 7)"


def test_calibrate_drift_writes_thresholds_into_the_card_and_nothing_else(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = tmp_path / "repo"
    shutil.copytree(ROOT / "models" / "repository" / "lightning" / "1", base / "lightning" / "1")
    before = ModelRepository(base).card("lightning", 1)
    start = datetime(2024, 7, 29, 17, 0, tzinfo=UTC)
    simulate(ScenarioConfig(out=tmp_path / "normal", sector="M1", start=start, minutes=8, seed=3))
    common = ("--base", str(base), "--archive", f"dir:{tmp_path / 'normal'}", "--start", "2024-07-29T00:00Z",
              "--end", "2024-07-30T00:00Z", "--cache", str(tmp_path / "cache"))  # fmt: skip
    done = run_json(capsys, "models", "calibrate-drift", "--version", "1", "--window", "4", "--margin", "1.2", *common)
    after = ModelRepository(base).card("lightning", 1)
    assert done["sectors"] == ["M1", "M2"]  # the mesoscale sectors are scanned alike
    assert after["drift_thresholds"] == {"M1": done["drift_thresholds"], "M2": done["drift_thresholds"]}
    assert {k: v for k, v in after.items() if k != "drift_thresholds"} == {
        k: v for k, v in before.items() if k != "drift_thresholds"
    }
    block = after["drift_thresholds"]["M1"]
    assert (block["window_frames"], block["margin"], block["calibration"]["windows"]) == (4, 1.2, 8 - 4 + 1)
    assert set(block["psi"]) == set(before["drift_reference"])
    assert all(t >= 0.25 for t in block["psi"].values())

    assert main(["models", "calibrate-drift", "--version", "9", *common]) == 2
    assert "lightning has no version 9; versions: [1]" in capsys.readouterr().err
    with pytest.raises(ModelRejected, match="'drift_reference' cannot be changed after add"):
        ModelRepository(base).annotate("lightning", 1, "drift_reference", {})


def test_a_holdout_of_another_feature_set_is_refused_not_scored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A dataset's patches carry its feature set's scaling and edges: feeding them to a model of another set lies."""
    base, data = tmp_path / "repo", tmp_path / "data"
    write_tiny_dataset(data, 0.5, split="test")
    write_run(tmp_path / "run", data, model_with(-5.0))
    run_json(capsys, "models", "add", "--base", str(base), "--run", str(tmp_path / "run"))
    doc = json.loads((data / "dataset.json").read_text())
    (data / "dataset.json").write_text(json.dumps(doc | {"feature_set": "ir-ltg/2"}))
    assert main(["models", "validate", "--base", str(base), "--version", "1", "--holdout", str(data)]) == 1
    assert "holds feature set ir-ltg/2; version 1 takes ir-ltg/1" in capsys.readouterr().err


def test_reading_the_repository_does_not_import_tensorflow() -> None:
    """The service reads the repository (hot-swap) and scores model.onnx: TensorFlow's 0.5 GiB is not loaded."""
    import subprocess
    import sys

    code = (
        "import sys; from pathlib import Path; from models.repository import ModelRepository; "
        "from serve.scoring.hotswap import ModelSlot; "
        "print(ModelRepository(Path('models/repository')).current('lightning'), 'tensorflow' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[2])  # fmt: skip
    assert done.stdout.split()[-1] == "False"
