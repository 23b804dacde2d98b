"""Training: the NaN guard, the input check, and a short real run on a simulated dataset."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from foundation.errors import TrainingError
from ingest.synthetic import ScenarioConfig, simulate
from ltgcast.cli import main
from models.architectures import build
from models.train import TrainSettings, fit
from tests.models.helpers import write_tiny_dataset


def test_a_nan_batch_stops_training_naming_the_step(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (40, 64, 64, 2)).astype("float32")
    y = (rng.random((40, 1, 1, 1)) < 0.3).astype("float32")
    x[17, 3, 5, 0] = np.nan  # the 3rd batch of 8 carries a NaN, past any input check
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    model = build("logistic", ("ir", "ltg"), seed=1)
    with pytest.raises(TrainingError, match=r"loss became non-finite at epoch 1, step 3 \(batch index 2\)"):
        fit(model, data, None, TrainSettings(data=tmp_path, out=tmp_path / "run", epochs=2))


def test_an_infinite_input_is_refused_before_it_reaches_the_weights(tmp_path: Path) -> None:
    write_tiny_dataset(tmp_path / "inf", np.inf)
    code = main(["train", "--data", str(tmp_path / "inf"), "--out", str(tmp_path / "run"), "--arch", "logistic",
                 "--epochs", "1", "--batch", "2"])  # fmt: skip
    assert code == 1
    nan_data = tmp_path / "nan"
    write_tiny_dataset(nan_data, np.nan)  # NaN is filled by the policy, so this one trains
    assert main(["train", "--data", str(nan_data), "--out", str(tmp_path / "ok"), "--arch", "logistic",
                 "--epochs", "1", "--batch", "2"]) == 0  # fmt: skip


def test_training_error_message_names_the_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_tiny_dataset(tmp_path / "inf", np.inf)
    main(["train", "--data", str(tmp_path / "inf"), "--out", str(tmp_path / "run"), "--epochs", "1", "--batch", "2"])
    err = capsys.readouterr().err
    assert "non-finite value reached the model" in err
    assert "input tile after the fill policy" in err


@pytest.mark.slow
def test_a_short_training_run_on_a_simulated_dataset(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    simulate(
        ScenarioConfig(out=archive, sector="M1", start=datetime(2024, 6, 17, 18, 0, tzinfo=UTC), minutes=60, seed=4)
    )
    data = tmp_path / "data"
    assert main(["dataset", "build", "--archive", f"dir:{archive}", "--start", "2024-06-17T00:00Z",
                 "--end", "2024-06-18T00:00Z", "--out", str(data), "--max-positives", "60",
                 "--min-negatives", "30", "--shards", "1"]) == 0  # fmt: skip
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(run), "--arch", "combined", "--width", "4",
                 "--epochs", "2", "--batch", "32", "--seed", "3"]) == 0  # fmt: skip
    report = json.loads((run / "training.json").read_text())
    assert report["epochs_run"] == 2
    assert report["early_stopping_on"] == "loss"  # the simulated day has no validation split
    assert all(np.isfinite(report["history"]["loss"]))
    assert report["positive_weight"] > 0
    assert (run / "model.keras").is_file()
    assert any((run / "tensorboard").rglob("events.out.tfevents.*"))


def test_population_weighting_trains_on_the_sampling_weights(tmp_path: Path) -> None:
    write_tiny_dataset(tmp_path / "data", 0.5)
    args = ["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--arch", "logistic",
            "--epochs", "1", "--batch", "2", "--weighting", "population"]  # fmt: skip
    assert main(args) == 0
    report = json.loads((tmp_path / "run" / "training.json").read_text())
    assert report["weighting"] == "population"
    assert report["positive_weight"] is None
