"""Evaluation on a dataset's test split: every model beside the three baselines it must beat.

Forecasts are scored with the examples' sampling weights (:mod:`featurize.sampling`),
so the scores describe the frames' pixel population, not the class-balanced
sample. Baselines:

* **climatology** — the training split's weighted base rate, everywhere;
* **persistence** — 1 where lightning is in the 16×16 box now (``ltg_max_16 > 0``), else 0;
* **logistic** — logistic regression on the engineered features, fitted on the
  training split with the examples' sampling weights (standardised
  features), so, like the population-weighted models, it is calibrated to the
  frames' pixels and is a fair opponent on Brier skill as well as on CSI.

For each: ROC-AUC, PR-AUC, Brier, Brier skill against climatology, ECE and the
reliability curve, POD/FAR/CSI/bias at 10/25/50/75 %, and the best-CSI
threshold. Optionally, storm lead times on an archive (:mod:`models.leadtime`,
:mod:`ltgcast.leadtimes`) for persistence, the logistic baseline and the
models, scored on whole frames. Written as ``evaluation.json``, ``report.md``
and ``reliability.png``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from featurize.channels import FeatureSet, get_feature_set
from models.data import manifest
from models.dataset import read_records
from models.metrics import best_csi, brier, brier_skill, contingency, pr_auc, reliability, roc_auc

THRESHOLDS = (0.10, 0.25, 0.50, 0.75)


def load_split(data: Path, split: str) -> dict[str, np.ndarray]:
    """Labels, weights, engineered features and filled patches of one split, as arrays."""
    from featurize.channels import FILL_VALUES

    doc = manifest(data)
    channels, features = tuple(doc["channels"]), tuple(doc["features"])
    paths = [data / name for name in doc["splits"][split]["shards"]]
    rows = list(read_records(paths, channels, features, int(doc["patch"])))
    tiles = (
        np.stack([np.stack([r[c] for c in channels], axis=-1) for r in rows])
        if rows
        else np.zeros((0, 64, 64, len(channels)))
    )
    for k, name in enumerate(channels):
        layer = tiles[..., k]
        layer[~np.isfinite(layer)] = FILL_VALUES[name]
    return {
        "label": np.array([r["label"][0] for r in rows], np.float64),
        "weight": np.array([r["weight"][0] for r in rows], np.float64),
        "features": np.array([[r[f][0] for f in features] for r in rows], np.float64).reshape(len(rows), len(features)),
        "tiles": tiles.astype(np.float32),
        "feature_names": np.array(features),
    }


def scores(p: np.ndarray, y: np.ndarray, w: np.ndarray, base_rate: float) -> dict[str, Any]:
    """Every score of one forecast."""
    return {
        "roc_auc": roc_auc(p, y, w),
        "pr_auc": pr_auc(p, y, w),
        "brier": brier(p, y, w),
        "brier_skill": brier_skill(p, y, w, base_rate=base_rate),
        "reliability": reliability(p, y, w),
        "thresholds": [contingency(p, y, t, w) for t in THRESHOLDS],
        "best_csi": best_csi(p, y, w),
    }


@dataclass(frozen=True)
class Forecaster:
    """A model under evaluation.

    ``patch`` maps filled patches ``[N, 64, 64, C]`` to probabilities ``[N]``;
    ``dense`` (for lead times) maps one model tile ``[1, H + 64, W + 64, C]``
    (:func:`featurize.channels.with_halo`) to probabilities ``[H, W]``.
    """

    patch: Callable[[np.ndarray], np.ndarray]
    dense: Callable[[np.ndarray], np.ndarray] | None = None


def _finite(x: np.ndarray) -> np.ndarray:
    filled: np.ndarray = np.nan_to_num(x, nan=0.0)
    return filled


def fit_logistic(train: dict[str, np.ndarray]) -> Any:
    """The logistic-regression baseline fitted on the training split (sampling-weighted)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    logistic = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    weight = train["weight"] / train["weight"].mean()  # mean 1: the regularisation strength keeps its meaning
    logistic.fit(_finite(train["features"]), train["label"], logisticregression__sample_weight=weight)
    return logistic


def baselines(train: dict[str, np.ndarray], test: dict[str, np.ndarray], logistic: Any) -> dict[str, np.ndarray]:
    """Climatology, persistence and logistic-regression probabilities on the test examples."""
    rate = float(np.sum(train["weight"] * train["label"]) / np.sum(train["weight"]))
    names = list(test["feature_names"])
    now = test["features"][:, names.index("ltg_max_16")] > 0
    return {
        "climatology": np.full(test["label"].shape, rate),
        "persistence": now.astype(np.float64),
        "logistic": logistic.predict_proba(_finite(test["features"]))[:, 1],
    }


def dense_forecasts(
    models: dict[str, Forecaster], logistic: Any, feature_names: list[str], feature_set: FeatureSet
) -> dict[str, Callable[[dict[str, np.ndarray]], np.ndarray]]:
    """Whole-frame versions of persistence, the logistic baseline and the models: frame channels → ``[H, W]``."""
    from featurize.channels import model_input, with_halo
    from featurize.features import dense_features

    def persistence(channels: dict[str, np.ndarray]) -> np.ndarray:
        return (dense_features(channels)["ltg_max_16"] > 0).astype(np.float32)

    def linear(channels: dict[str, np.ndarray]) -> np.ndarray:
        features = dense_features(channels)
        shape = channels["ir"].shape
        table = np.stack([features[name].ravel() for name in feature_names], axis=1)
        return np.asarray(logistic.predict_proba(_finite(table))[:, 1].reshape(shape))

    def model(dense: Callable[[np.ndarray], np.ndarray]) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
        return lambda channels: dense(with_halo(model_input(channels, feature_set)[0], feature_set)[None])

    out = {"persistence": persistence, "logistic": linear}
    return out | {name: model(m.dense) for name, m in models.items() if m.dense is not None}


def plot_reliability(results: dict[str, dict[str, Any]], path: Path) -> None:
    """One reliability diagram with every forecast."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 5))
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect")
    for name, result in results.items():
        curve = result["reliability"]
        points = [(f, o) for f, o in zip(curve["forecast"], curve["observed"], strict=True) if f is not None]
        if points:
            axes.plot(*zip(*points, strict=True), marker="o", label=f"{name} (ECE {curve['ece']:.3f})")
    axes.set(xlabel="forecast probability", ylabel="observed frequency", xlim=(0, 1), ylim=(0, 1))
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def report_markdown(summary: dict[str, Any]) -> str:
    """The markdown report: the scores table, the reliability diagram and, when measured, lead times."""
    results = summary["forecasts"]
    lines = [
        f"# Evaluation on the test split ({summary['examples']} examples, weighted to the frames' pixels)",
        "",
        "| forecast | ROC-AUC | PR-AUC | Brier | Brier skill | ECE | best CSI (threshold) | CSI@25% | CSI@50% |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        at = {t["threshold"]: t for t in r["thresholds"]}
        lines.append(
            f"| {name} | {r['roc_auc']:.3f} | {r['pr_auc']:.3f} | {r['brier']:.4f} | {r['brier_skill']:.3f} | "
            f"{r['reliability']['ece']:.3f} | {r['best_csi']['csi']:.3f} ({r['best_csi']['threshold']:.2f}) | "
            f"{at[0.25]['csi']:.3f} | {at[0.5]['csi']:.3f} |"
        )
    lines += ["", "![reliability](reliability.png)", ""]
    lead = summary.get("lead_time")
    if lead:
        rule = lead["onset_rule"]
        lines += [
            f"## Lead time before the first flash ({lead['archive']}, {lead['start']} .. {lead['end']}, "
            f"{lead['frames']} frames)",
            "",
            f"An onset is a flash with no flash within {rule['radius_px']} px in the {rule['quiet_minutes']:g} min "
            f"before it; the probability is the largest in the {rule['box_px']}×{rule['box_px']} box around it, "
            f"and the lead time counts from the first frame of the {rule['lookback_minutes']:g} min before the "
            "flash at or above the threshold.",
            "",
            "| forecast | onsets | reached 25 % | median lead @25 % (min) | reached 50 % | median lead @50 % (min) |",
            "|---|---|---|---|---|---|",
        ]

        def minutes(value: float | None) -> str:
            return "–" if value is None else f"{value:.0f}"

        for name, r in lead["forecasts"].items():
            a, b = r["0.25"], r["0.5"]
            lines.append(
                f"| {name} | {r['onsets']} | {a['detected']} | {minutes(a['median_minutes'])} | "
                f"{b['detected']} | {minutes(b['median_minutes'])} |"
            )
        lines.append("")
    return "\n".join(lines)


LeadTimes = Callable[[dict[str, Callable[[dict[str, np.ndarray]], np.ndarray]]], dict[str, Any]]


def evaluate(data: Path, models: dict[str, Forecaster], out: Path, *, lead: LeadTimes | None = None) -> dict[str, Any]:
    """Score ``models`` and the baselines on the test split; with ``lead``, also their storm lead times.

    ``lead`` receives whole-frame forecasts (persistence, logistic and every
    model with a ``dense`` function) and returns :func:`ltgcast.leadtimes.archive_lead_times`'s result.
    """
    doc = manifest(data)
    train, test = load_split(data, "train"), load_split(data, "test")
    if test["label"].size == 0:
        msg = f"{data} has no test examples to evaluate on"
        raise ValueError(msg)
    logistic = fit_logistic(train)
    forecasts = baselines(train, test, logistic)
    for name, model in models.items():
        forecasts[name] = np.concatenate(
            [
                np.asarray(model.patch(test["tiles"][i : i + 256]), np.float64).ravel()
                for i in range(0, len(test["tiles"]), 256)
            ]
        )
    rate = float(forecasts["climatology"][0])
    results = {name: scores(np.clip(p, 0, 1), test["label"], test["weight"], rate) for name, p in forecasts.items()}
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {
        "data": str(data),
        "examples": int(test["label"].size),
        "base_rate": rate,
        "forecasts": results,
    }
    if lead is not None:
        names = list(test["feature_names"])
        summary["lead_time"] = lead(dense_forecasts(models, logistic, names, get_feature_set(doc["feature_set"])))
    (out / "evaluation.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    plot_reliability(results, out / "reliability.png")
    (out / "report.md").write_text(report_markdown(summary), encoding="utf-8")
    return summary
