"""``ltgcast evaluate``: trained runs and exported versions beside the baselines, on a dataset's test split.

With ``--lead-archive`` (and ``--lead-start``/``--lead-end``), every forecast is
also run on whole frames of that archive to measure storm lead times; use an
archive (or period) the models were not trained on.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from foundation.errors import ConfigError

if TYPE_CHECKING:  # models.evaluate imports TensorFlow: only `ltgcast evaluate` should pay for it
    from models.evaluate import Forecaster


def _from_run(run: Path) -> Forecaster:
    import numpy as np

    from models.architectures import load
    from models.evaluate import Forecaster

    model = load(run / "model.keras")

    def sigmoid(x: Any) -> Any:
        return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))

    def patch(tiles: Any) -> Any:
        return sigmoid(np.asarray(model(tiles, training=False))[:, 0, 0, 0])

    def dense(tile: Any) -> Any:  # [1, H + 64, W + 64, C] → [H, W]; the last row and column are halo pixels
        return sigmoid(np.asarray(model(tile, training=False))[0, :-1, :-1, 0])

    return Forecaster(patch, dense)


def _from_saved_model(path: Path) -> Forecaster:
    import tensorflow as tf

    from models.evaluate import Forecaster

    signatures = tf.saved_model.load(str(path)).signatures
    return Forecaster(
        lambda tiles: signatures["patch"](patch=tf.constant(tiles))["probability"].numpy(),
        lambda tile: signatures["serving_default"](tile=tf.constant(tile))["probability"].numpy()[0],
    )


def _lead(args: argparse.Namespace, data: Path) -> Any:
    if not args.lead_archive:
        return None
    if not (args.lead_start and args.lead_end):
        msg = "--lead-archive needs --lead-start and --lead-end"
        raise ConfigError(msg)
    from featurize.channels import get_feature_set
    from ltgcast.datasets import utc_flag
    from ltgcast.leadtimes import LeadSettings, archive_lead_times
    from models.data import manifest

    start, end = utc_flag(args.lead_start, "--lead-start"), utc_flag(args.lead_end, "--lead-end")
    if end <= start:
        msg = f"--lead-end ({args.lead_end}) must be after --lead-start ({args.lead_start})"
        raise ConfigError(msg)
    settings = LeadSettings(
        archive=args.lead_archive,
        start=start,
        end=end,
        cache=Path(args.out) / ".cache",
        feature_set=get_feature_set(manifest(data)["feature_set"]),
        sector=args.lead_sector,
        every_minutes=args.lead_every_minutes,
    )
    return lambda forecasts: archive_lead_times(settings, forecasts, (0.25, 0.5))


def evaluate_command(args: argparse.Namespace) -> int:
    """Evaluate; print the headline scores as JSON."""
    from models.evaluate import evaluate

    data = Path(args.data)
    if not (data / "dataset.json").is_file():
        msg = f"--data: {data} holds no dataset.json"
        raise ConfigError(msg)
    lead = _lead(args, data)
    names = [Path(r).name for r in args.run or []]
    names += [f"{Path(s).parent.name}/{Path(s).name}" for s in args.saved_model or []]
    clash = sorted({n for n in names if names.count(n) > 1 or n in ("climatology", "persistence", "logistic")})
    if clash:
        msg = f"--run/--saved-model: forecast names must be unique and not a baseline's; found {clash}"
        raise ConfigError(msg)
    from models.data import manifest
    from serve.scoring import read_card

    data_set = manifest(data)["feature_set"]
    for path in args.saved_model or []:  # the test split's patches carry one feature set's scaling and edges
        card = read_card(Path(path))
        if card.get("feature_set") != data_set:
            msg = (f"--saved-model {path} takes feature set {card.get('feature_set')}; --data holds {data_set} "
                   "(compare models of different feature sets with `ltgcast models compare`)")  # fmt: skip
            raise ConfigError(msg)
    models = {Path(r).name: _from_run(Path(r)) for r in args.run or []}
    models |= {f"{Path(s).parent.name}/{Path(s).name}": _from_saved_model(Path(s)) for s in args.saved_model or []}
    summary = evaluate(data, models, Path(args.out), lead=lead)
    brief: dict[str, Any] = {
        name: {k: round(r[k], 4) for k in ("roc_auc", "pr_auc", "brier_skill")}
        | {"best_csi": round(r["best_csi"]["csi"], 4), "best_csi_threshold": round(r["best_csi"]["threshold"], 3)}
        for name, r in summary["forecasts"].items()
    }
    for name, r in summary.get("lead_time", {}).get("forecasts", {}).items():
        brief[name]["lead_time"] = {
            "onsets": r["onsets"],
            **{f"median_minutes_{k}": r[k]["median_minutes"] for k in ("0.25", "0.5")},
            **{f"detected_{k}": r[k]["detected"] for k in ("0.25", "0.5")},
        }
    sys.stdout.write(json.dumps(brief) + "\n")
    return 0


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``ltgcast evaluate``."""
    parser.add_argument("--data", required=True, help="a dataset folder; its test split is scored")
    parser.add_argument("--run", action="append", help="a folder written by `ltgcast train` (repeatable)")
    parser.add_argument("--saved-model", action="append", help="a repository version folder (repeatable)")
    parser.add_argument("--out", required=True, help="where evaluation.json, report.md and reliability.png go")
    parser.add_argument("--lead-archive", help="archive URI (dir:PATH or s3://noaa-goes19) for storm lead times")
    parser.add_argument("--lead-start", help="first frame time for lead times, ISO 8601 UTC")
    parser.add_argument("--lead-end", help="end of the lead-time period, ISO 8601 UTC")
    parser.add_argument("--lead-sector", default="M1", help="ABI sector for lead times (default M1)")
    parser.add_argument("--lead-every-minutes", type=float, default=5.0, help="frame spacing for lead times")
