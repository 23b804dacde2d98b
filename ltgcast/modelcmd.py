"""``ltgcast models add|list|validate|promote|rollback|convert``: the model repository from the command line."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from foundation.errors import ConfigError, ModelRejected
from ltgcast.flags import add_old_spelling, env_of
from ltgcast.nowcasting import add_model_base_argument


def _card(run: Path) -> dict[str, Any]:
    """The model card of a training run: what it was trained on, how inputs are scaled, its drift reference."""
    from featurize.channels import FILL_VALUES, get_feature_set

    training = json.loads((run / "training.json").read_text(encoding="utf-8"))
    data = Path(training["settings"]["data"])
    dataset = json.loads((data / "dataset.json").read_text(encoding="utf-8"))
    stats = json.loads((data / "stats.json").read_text(encoding="utf-8"))
    feature_set = get_feature_set(dataset["feature_set"])
    return {
        "feature_set": dataset["feature_set"],
        "channels": dataset["channels"],
        "channel_scaling": feature_set.describe(),
        "scaling": feature_set.scaling,
        "edges": feature_set.edges,
        "fill_values": {c: FILL_VALUES[c] for c in dataset["channels"]},
        "halo": 32,
        "label_rule": dataset["label_rule"],
        "persistence_rate": dataset.get("persistence_rate"),
        "training_data": {k: dataset[k] for k in ("archive", "start", "end", "sector", "band", "examples")},
        "training": {
            k: training.get(k)
            for k in (
                "settings",
                "weighting",
                "positive_weight",
                "calibration",
                "persistence_floor",
                "epochs_run",
                "history",
            )  # fmt: skip
        },
        "drift_reference": stats,
    }


def _evaluated(path: Path, key: str) -> dict[str, Any]:
    """The card's ``evaluation`` and ``thresholds`` from an ``ltgcast evaluate`` output (file or folder)."""
    path = path / "evaluation.json" if path.is_dir() else path
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        msg = f"--evaluation: cannot read {path}: {exc}"
        raise ConfigError(msg) from exc
    forecasts = summary.get("forecasts", {})
    if key not in forecasts:
        msg = f"--evaluation: {path} has no forecast named {key!r} (the run folder's name); found {sorted(forecasts)}"
        raise ConfigError(msg)
    mine = forecasts[key]
    lead = summary.get("lead_time") or {}
    return {
        "evaluation": {
            "data": summary["data"],
            "examples": summary["examples"],
            "base_rate": summary["base_rate"],
            "scores": {k: mine[k] for k in ("roc_auc", "pr_auc", "brier", "brier_skill")}
            | {"ece": mine["reliability"]["ece"], "best_csi": mine["best_csi"]},
            "baselines": {
                name: {"brier_skill": r["brier_skill"], "best_csi": r["best_csi"]["csi"]}
                for name, r in forecasts.items()
                if name != key and name in ("climatology", "persistence", "logistic")
            },
            "lead_time": {  # the per-onset lists stay in evaluation.json
                k: {kk: vv for kk, vv in v.items() if kk != "lead_minutes"} if isinstance(v, dict) else v
                for k, v in (lead.get("forecasts", {}).get(key) or {}).items()
            }
            | {k: lead[k] for k in ("archive", "start", "end", "onset_rule") if k in lead},
        },
        "thresholds": {
            "best_csi": mine["best_csi"]["threshold"],
            "levels": [{k: t[k] for k in ("threshold", "pod", "far", "csi", "bias")} for t in mine["thresholds"]],
        },
    }


def _add(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    from models.architectures import load
    from models.behaviour import card_entry, run_suite
    from models.export import add_converted, export
    from models.repository import ModelRepository

    run = Path(args.run)
    card = _card(run)
    card |= _evaluated(Path(args.evaluation), run.name) if args.evaluation else {"evaluation": None}
    card.setdefault("thresholds", {"best_csi": None, "levels": [{"threshold": t} for t in (0.1, 0.25, 0.5, 0.75)]})
    if args.notes:
        card["notes"] = args.notes
    model = load(run / "model.keras")
    repo = ModelRepository(base)
    with tempfile.TemporaryDirectory(dir=base if base.is_dir() else None) as scratch:
        check = export(model, Path(scratch) / "saved", len(card["channels"]))
        card |= add_converted(Path(scratch) / "saved", card)  # model.onnx: the fast embedded scorer's input
        behaviour = card_entry(run_suite(Path(scratch) / "saved", card=card))  # recorded, not gated: `validate` gates
        card |= {"export_check": check, "behaviour": behaviour}
        version = repo.add(args.name, Path(scratch) / "saved", card, len(card["channels"]))
    if repo.versions(args.name) == [version]:  # the first version is served at once; later ones need `promote`
        repo.promote(args.name, version, reason="first version")
    recorded = {k: behaviour[k] for k in ("suite", "passed", "failed")}
    return {"name": args.name, "version": version, "export_check": check, "behaviour": recorded}


def _validate(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    from models.behaviour import summary
    from models.repository import ModelRepository
    from models.validation import validate

    repo = ModelRepository(base)
    version = args.version or repo.current(args.name)
    if version is None:
        msg = f"no versions of {args.name!r} under {base}"
        raise ConfigError(msg)
    holdout = Path(args.holdout) if args.holdout else None
    report = validate(repo, args.name, int(version), holdout=holdout, margin=args.margin)
    for line in summary(report.checks.get("behaviour", {})):  # for people; stdout stays one JSON document
        sys.stderr.write(line + "\n")
    if not report.passed:
        raise ModelRejected("; ".join(report.problems))
    return {"name": args.name, "version": report.version, "passed": True, "checks": report.checks}


def _on_service(args: argparse.Namespace) -> dict[str, Any]:
    """Promote or roll back on a running ``ltgcast run`` through its admin endpoint (token from the environment)."""
    if getattr(args, "holdout", None):
        msg = ("--holdout cannot go with --service: the running service gates with its own rules (signatures, "
               "golden batch, warm-up); run `ltgcast models validate --holdout` first")  # fmt: skip
        raise ConfigError(msg)
    token = args.admin_token
    if not token:
        msg = "--service: set LTGCAST_ADMIN_TOKEN to the token the service was started with"
        raise ConfigError(msg)
    body = {"version": int(args.version), "reason": args.reason} if args.action == "promote" else {}
    request = urllib.request.Request(
        f"{args.service.rstrip('/')}/v1/admin/models/{args.action}",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as reply:
            answer: dict[str, Any] = json.loads(reply.read())
            return answer
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace").strip()
        msg = f"the service at {args.service} refused {args.action} (HTTP {exc.code}): {detail}"
        raise ModelRejected(msg) from exc
    except (urllib.error.URLError, OSError) as exc:
        msg = f"--service: cannot reach {args.service}: {exc}"
        raise ConfigError(msg) from exc


def _convert(args: argparse.Namespace, repo: Any) -> dict[str, Any]:
    """(Re)write an existing version's ``model.onnx`` and vouch for it in its card (hash, Δp per runtime)."""
    from models.export import add_converted

    version = args.version if args.version is not None else repo.current(args.name)
    if version not in repo.versions(args.name):
        msg = f"--version: {args.name} has no version {version}; versions: {repo.versions(args.name)}"
        raise ConfigError(msg)
    entry = add_converted(repo.path(args.name, version), repo.card(args.name, version))
    repo.annotate(args.name, version, "onnx", entry["onnx"])
    return {"name": args.name, "version": version} | entry


#: Sectors scanned alike (cadence and size): a calibration of one holds for the others.
ALIKE = {"M1": ("M1", "M2"), "M2": ("M1", "M2")}


def _calibrate_drift(args: argparse.Namespace, repo: Any) -> dict[str, Any]:
    """Calibrate the version's per-feature drift thresholds on ``--archive``; write them into its card.

    The calibration is stored for the replayed sector and the sectors scanned alike (M1 and M2); the card's
    calibrations of other sectors are kept.
    """
    from ltgcast.datasets import utc_flag
    from ltgcast.driftcal import DriftCalibration, calibrate_drift

    if args.version is None:  # the newest version: the one `models add` just wrote
        args.version = max(repo.versions(args.name), default=None)
    if args.version not in repo.versions(args.name):
        msg = f"--version: {args.name} has no version {args.version}; versions: {repo.versions(args.name)}"
        raise ConfigError(msg)
    card = repo.card(args.name, args.version)
    sector = args.sector or card.get("training_data", {}).get("sector", "M1")
    settings = DriftCalibration(
        archive=args.archive,
        start=utc_flag(args.start, "--start"),
        end=utc_flag(args.end, "--end"),
        cache=Path(args.cache),
        sector=sector,
        window=args.window,
        margin=args.margin,
    )
    block = calibrate_drift(card, settings)
    sectors = ALIKE.get(sector, (sector,))
    thresholds = {**(card.get("drift_thresholds") or {}), **dict.fromkeys(sectors, block)}
    repo.annotate(args.name, args.version, "drift_thresholds", thresholds)
    return {"name": args.name, "version": args.version, "sectors": list(sectors), "drift_thresholds": block}


def models_command(args: argparse.Namespace) -> int:
    """Run one repository action and print its result as JSON."""
    from models.repository import ModelRepository

    if getattr(args, "service", None):
        sys.stdout.write(json.dumps(_on_service(args)) + "\n")
        return 0

    base = Path(args.base)
    repo = ModelRepository(base)
    if args.action == "list":
        result: Any = [{"name": n, "versions": repo.versions(n), "current": repo.current(n)} for n in repo.names()]
    elif args.action == "add":
        result = _add(args, base)
    elif args.action == "validate":
        result = _validate(args, base)
    elif args.action == "calibrate-drift":
        result = _calibrate_drift(args, repo)
    elif args.action == "convert":
        result = _convert(args, repo)
    elif args.action == "promote":
        _validate(args, base)  # the gate: only a version that passes may be served
        repo.promote(args.name, int(args.version), reason=args.reason)
        result = {"name": args.name, "current": repo.current(args.name)}
    else:
        result = {"name": args.name, "current": repo.rollback(args.name)}
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


def add_models_arguments(parser: argparse.ArgumentParser) -> None:
    """Sub-actions of ``ltgcast models``."""
    actions = parser.add_subparsers(dest="action", required=True)
    for action, text in (
        ("list", "models, versions and the version served"),
        ("add", "export a training run as the next version (verified signatures, model card, warm-up)"),
        ("validate", "signatures, golden batch, behaviour (the physics contract), held-out skill"),
        ("promote", "validate, then serve this version"),
        ("rollback", "serve the previously promoted version"),
        ("calibrate-drift", "per-feature PSI thresholds from an archive of normal weather, into the card"),
        ("convert", "(re)write a version's model.onnx for the fast embedded scorer, checked against TensorFlow"),
    ):
        sub = actions.add_parser(action, help=text)
        add_model_base_argument(sub, dest="base")
        add_old_spelling(sub, "--base", "--model-base")
        if action != "list":
            sub.add_argument("--model-name", dest="name", default="lightning", help="model name in the repository")
            add_old_spelling(sub, "--name", "--model-name")
        if action == "add":
            sub.add_argument("--run", required=True, help="a folder written by `ltgcast train`")
            sub.add_argument(
                "--evaluation", help="an `ltgcast evaluate` output that scored this run: copied into the model card"
            )
            sub.add_argument("--notes", help="free text for the model card (what it is for, its limits)")
        if action in ("validate", "promote"):
            sub.add_argument("--version", type=int, required=action == "promote",
                             help="the version to check" + (" and serve" if action == "promote" else
                                                            " (default: the served one)"))  # fmt: skip
            sub.add_argument("--holdout", help="a dataset folder whose test split measures skill")
            sub.add_argument("--margin", type=float, default=0.02, help="allowed loss of Brier skill vs current")
        if action == "convert":
            sub.add_argument("--version", type=int, help="the version to convert (default: the current one)")
        if action == "calibrate-drift":
            sub.add_argument("--version", type=int, help="the version to calibrate (default: the newest)")
            sub.add_argument("--archive", required=True, help="dir:PATH or s3://bucket: days the model should accept")
            sub.add_argument("--start", required=True, help="ISO 8601 UTC, e.g. 2024-07-26T00:00Z")
            sub.add_argument("--end", required=True, help="ISO 8601 UTC, exclusive")
            sub.add_argument("--sector", help="sector to replay (default: the card's training sector)")
            sub.add_argument("--window", type=int, default=12, help="frames per rolling window, as the live monitor")
            sub.add_argument("--margin", type=float, default=1.1, help="threshold = margin x largest normal PSI")
            sub.add_argument("--cache", default="var/cache/drift", help="where remote archive files are cached")
        if action in ("promote", "rollback"):
            sub.add_argument(
                "--service",
                help="act on a running `ltgcast run` at this URL through its admin endpoint (token from "
                "LTGCAST_ADMIN_TOKEN); the service gates, warms up and swaps between two frames",
            )
            sub.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the service")
        if action == "promote":
            sub.add_argument("--reason", default="", help="why, for the promotion log (default: none)")
    parser.set_defaults(func=models_command, admin_token=env_of(parser).get("LTGCAST_ADMIN_TOKEN", ""))
    from ltgcast.comparing import add_compare_arguments, compare_command

    compare = actions.add_parser("compare", help="models and baselines on held-out frames, with bootstrap intervals")
    add_compare_arguments(compare)
    compare.set_defaults(func=compare_command)
