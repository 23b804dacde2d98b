"""``ltgcast evaluate``: trained runs and exported versions beside the baselines, on a dataset's test split."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ingest.errors import ConfigError


def _from_run(run: Path) -> Any:
    import numpy as np

    from models.architectures import load

    model = load(run / "model.keras")

    def predict(tiles: Any) -> Any:
        logits = np.asarray(model(tiles, training=False))[:, 0, 0, 0]
        return 1.0 / (1.0 + np.exp(-logits))

    return predict


def _from_saved_model(path: Path) -> Any:
    import tensorflow as tf

    signature = tf.saved_model.load(str(path)).signatures["patch"]
    return lambda tiles: signature(patch=tf.constant(tiles))["probability"].numpy()


def evaluate_command(args: argparse.Namespace) -> int:
    """Evaluate; print the headline scores as JSON."""
    from models.evaluate import evaluate

    data = Path(args.data)
    if not (data / "dataset.json").is_file():
        msg = f"--data: {data} holds no dataset.json"
        raise ConfigError(msg)
    models = {Path(r).name: _from_run(Path(r)) for r in args.run or []}
    models |= {f"{Path(s).parent.name}/{Path(s).name}": _from_saved_model(Path(s)) for s in args.saved_model or []}
    summary = evaluate(data, models, Path(args.out))
    brief = {
        name: {k: round(r[k], 4) for k in ("roc_auc", "pr_auc", "brier_skill")}
        | {"best_csi": round(r["best_csi"]["csi"], 4)}
        for name, r in summary["forecasts"].items()
    }
    sys.stdout.write(json.dumps(brief) + "\n")
    return 0


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``ltgcast evaluate``."""
    parser.add_argument("--data", required=True, help="a dataset folder; its test split is scored")
    parser.add_argument("--run", action="append", help="a folder written by `ltgcast train` (repeatable)")
    parser.add_argument("--saved-model", action="append", help="a repository version folder (repeatable)")
    parser.add_argument("--out", required=True, help="where evaluation.json, report.md and reliability.png go")
