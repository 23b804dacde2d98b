"""``ltgcast train``: flags → :class:`models.train.TrainSettings` → :func:`models.train.train`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from foundation.errors import ConfigError


def train_command(args: argparse.Namespace) -> int:
    """Train; print the report's summary; exit 1 with the guard's message when training diverged."""
    from models.architectures import ARCHITECTURES
    from models.train import TrainSettings, train  # TensorFlow is imported only to train

    if args.arch not in ARCHITECTURES:
        msg = f"--arch: unknown architecture {args.arch!r}; valid: {', '.join(ARCHITECTURES)}"
        raise ConfigError(msg)
    if args.epochs < 1 or args.batch < 1 or args.width < 1:
        msg = "--epochs, --batch and --width must be >= 1"
        raise ConfigError(msg)
    if not 0.0 <= args.persistence_floor < 1.0:
        msg = f"--persistence-floor must be in [0, 1); found {args.persistence_floor}"
        raise ConfigError(msg)
    if not 0.0 <= args.dropout < 1.0:
        msg = f"--dropout must be in [0, 1); found {args.dropout}"
        raise ConfigError(msg)
    if not (Path(args.data) / "dataset.json").is_file():
        msg = f"--data: {args.data} holds no dataset.json (build one with `ltgcast dataset build`)"
        raise ConfigError(msg)
    settings = TrainSettings(
        data=Path(args.data),
        out=Path(args.out),
        arch=args.arch,
        width=args.width,
        epochs=args.epochs,
        batch=args.batch,
        learning_rate=args.learning_rate,
        patience=args.patience,
        seed=args.seed,
        positive_weight=args.positive_weight,
        weighting=args.weighting,
        dropout=args.dropout,
        calibrate=not args.no_calibration,
        persistence_floor=args.persistence_floor,
    )
    report = train(settings)
    keys = ("feature_set", "weighting", "positive_weight", "early_stopping_on", "epochs_run", "calibration",
            "persistence_floor")  # fmt: skip
    brief = {k: report[k] for k in keys}
    brief["final"] = {k: v[-1] for k, v in report["history"].items()}
    sys.stdout.write(json.dumps(brief) + "\n")
    return 0


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``ltgcast train``."""
    parser.add_argument("--data", required=True, help="a folder written by `ltgcast dataset build`")
    parser.add_argument("--out", required=True, help="run folder: model.keras, training.json, tensorboard/")
    parser.add_argument("--arch", default="combined", help="cnn, combined or logistic")
    parser.add_argument("--width", type=int, default=16, help="filters per convolution")
    parser.add_argument("--epochs", type=int, default=10, help="passes over the training split, at most")
    parser.add_argument("--batch", type=int, default=64, help="examples per gradient step")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="Adam's learning rate")
    parser.add_argument("--patience", type=int, default=3, help="epochs without improvement before stopping")
    parser.add_argument(
        "--weighting",
        choices=("balanced", "population"),
        default="balanced",
        help="balanced: positives weighted up; population: each example by its sampling weight (calibrated)",
    )
    parser.add_argument("--positive-weight", type=float, help="balanced: default negatives / positives of train")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the data order")
    parser.add_argument("--dropout", type=float, default=0.2, help="dropout on the trunk's output while training")
    parser.add_argument(
        "--no-calibration", action="store_true", help="skip Platt scaling on the validation split (on by default)"
    )
    parser.add_argument(
        "--persistence-floor", type=float, default=0.5, metavar="SHARE",
        help="where a pixel's 16x16 box holds lightning now, the probability is at least SHARE x the dataset's "
        "persistence rate (and 0.25), in the graph; 0: no floor (default 0.5)",
    )  # fmt: skip
