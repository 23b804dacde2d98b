"""The validation gate a version passes before it may be promoted.

1. **Signatures**: ``serving_default`` takes ``tile`` ``[N, H + 64, W + 64, C]`` and
   ``patch`` takes ``patch`` ``[N, 64, 64, C]``, both returning ``probability``;
   ``C`` matches the model card's channels.
2. **Golden batch**: on fixed inputs (zeros, a cold storm, random fields) every
   output is finite and within [0, 1], and the two signatures agree (≤ 1e-5).
3. **Behaviour** (:mod:`models.behaviour`): the physics contract on designed
   scenes (more lightning or a colder top never lowers the probability,
   persistence, no moat around a storm, no edge stripes, translation
   equivariance, locality, no quiet cold cell above a storm); one problem per
   failed check, with its numbers, and every result in ``checks["behaviour"]``.
4. **Converted artefact** (``model.onnx``, when the version has one or its card
   names one): the file's SHA-256 must be the card's, and on every runtime the
   card vouches for (and that is installed here) its probabilities must agree
   with ``serving_default`` within 1e-5 on :func:`models.export.check_tiles`. A
   tampered, swapped or inexact artefact rejects the version, naming which; a
   version without one passes (it is scored by TensorFlow).
5. **Skill** (when a held-out dataset is given): the Brier skill score on its
   test split is not worse than the current version's by more than ``margin``.
   The dataset must hold the version's feature set (its patches carry that
   set's scaling and edges); a current version of another feature set is not
   compared (``ltgcast models compare`` compares across feature sets).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from models.architectures import PATCH
from models.data import manifest, split_dataset
from models.export import agreement
from models.metrics import brier_skill
from models.repository import ModelRepository


@dataclass
class ValidationReport:
    """What each check found; ``passed`` only when every check passed."""

    name: str
    version: int
    checks: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """No problem found."""
        return not self.problems


def golden_batch(channels: int) -> np.ndarray:
    """Fixed tiles ``[3, 16 + 64, 16 + 64, C]`` (16 × 16 outputs): zeros, a cold storm with flashes, random fields."""
    size = 16 + PATCH
    batch = np.zeros((3, size, size, channels), np.float32)
    batch[1, 30:50, 30:50, 0] = 1.0
    if channels > 1:
        batch[1, 38:42, 38:42, 1] = 5.0
    batch[2] = np.random.default_rng(7).uniform(0, 1, (size, size, channels))
    return batch


def _signatures(loaded: Any, channels: int, report: ValidationReport) -> bool:
    wanted = {"serving_default": "tile", "patch": "patch"}
    for signature, input_name in wanted.items():
        if signature not in loaded.signatures:
            report.problems.append(f"signature {signature!r} is missing; found {sorted(loaded.signatures)}")
            return False
        inputs = loaded.signatures[signature].structured_input_signature[1]
        outputs = loaded.signatures[signature].structured_outputs
        if set(inputs) != {input_name} or set(outputs) != {"probability"}:
            report.problems.append(
                f"{signature}: expected {input_name} -> probability, found {set(inputs)} -> {set(outputs)}"
            )
            return False
        if inputs[input_name].shape[-1] != channels:
            report.problems.append(f"{signature}: expected {channels} channels, found {inputs[input_name].shape[-1]}")
            return False
    report.checks["signatures"] = "ok"
    return True


def _golden(loaded: Any, channels: int, report: ValidationReport) -> None:
    batch = golden_batch(channels)
    out = loaded.signatures["serving_default"](tile=tf.constant(batch))["probability"].numpy()
    expected = (batch.shape[0], batch.shape[1] - PATCH, batch.shape[2] - PATCH)
    if out.shape != expected:
        report.problems.append(f"serving_default: a tile {batch.shape} must give {expected}; found {out.shape}")
    report.checks["golden_range"] = [float(out.min()), float(out.max())]
    if not (np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1):
        report.problems.append(
            f"golden batch: outputs must be finite in [0, 1]; found range {report.checks['golden_range']}"
        )
    difference = agreement(loaded.signatures["serving_default"], loaded.signatures["patch"], channels, pixels=32)
    report.checks["dense_patch_max_difference"] = difference
    if not difference <= 1e-5:
        report.problems.append(f"dense and patch signatures disagree by {difference:.3g}")


def _behaviour(loaded: Any, card: dict[str, Any], report: ValidationReport) -> None:
    from models.behaviour import problems, run_checks

    if "feature_set" not in card:
        report.problems.append("behaviour: the model card names no feature_set; the suite cannot build inputs")
        return
    results = run_checks(
        loaded.signatures["serving_default"], card["feature_set"], persistence_rate=card.get("persistence_rate")
    )
    report.checks["behaviour"] = results
    report.problems.extend(problems(results))


def _converted(loaded: Any, path: Path, card: dict[str, Any], report: ValidationReport) -> None:
    from models.export import converted_agreement
    from models.onnx import CARD_KEY, EXACT_TOLERANCE, ONNX_FILE

    entry, artefact = card.get(CARD_KEY), path / ONNX_FILE
    if entry is None and not artefact.exists():
        report.checks["converted"] = "none (scored by TensorFlow)"
        return
    if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
        report.problems.append(f"{ONNX_FILE}: present but the model card records no sha256 for it")
        return
    if not artefact.is_file():
        report.problems.append(f"{ONNX_FILE}: the model card names it but the version folder has none")
        return
    data = artefact.read_bytes()  # hashed and measured as these bytes: a file swapped meanwhile is not what passes
    found = hashlib.sha256(data).hexdigest()
    if found != entry["sha256"]:
        report.problems.append(f"{ONNX_FILE}: sha256 {found} is not the card's {entry['sha256']} (altered or swapped)")
        return
    vouched = entry.get("max_abs_difference")
    runtimes = sorted(vouched) if isinstance(vouched, dict) else []
    measured = converted_agreement(loaded.signatures["serving_default"], data, card["feature_set"], runtimes)
    report.checks["converted"] = {"sha256": found, "max_abs_difference": measured}
    if not measured:  # a card vouching for no runtime installed here would otherwise pass unmeasured
        report.problems.append(f"{ONNX_FILE}: none of the runtimes its card vouches for ({runtimes}) is installed here")
    for runtime, difference in measured.items():
        if not difference <= EXACT_TOLERANCE:
            report.problems.append(
                f"{ONNX_FILE} on {runtime}: probabilities differ from serving_default by {difference:.3g} "
                f"(allowed {EXACT_TOLERANCE:g})"
            )


def holdout_skill(path: Path, data: Path, batch: int = 256) -> float:
    """Brier skill score of a SavedModel's patch signature on a dataset's test split, weighted to the frames' pixels."""
    loaded = tf.saved_model.load(str(path))
    probabilities, labels, weights = [], [], []
    for tile, label, weight in split_dataset(data, "test", batch=batch, shuffle_batches=0, sampling_weights=True):
        probabilities.append(loaded.signatures["patch"](patch=tile)["probability"].numpy())
        labels.append(label.numpy().ravel())
        weights.append(weight.numpy().ravel())
    return brier_skill(np.concatenate(probabilities), np.concatenate(labels), np.concatenate(weights))


def validate(
    repo: ModelRepository, name: str, version: int, *, holdout: Path | None = None, margin: float = 0.02
) -> ValidationReport:
    """Run the gate on one version."""
    report = ValidationReport(name, version)
    card = repo.card(name, version)
    channels = len(card["channels"])
    loaded = tf.saved_model.load(str(repo.path(name, version)))
    if not _signatures(loaded, channels, report):
        return report
    _golden(loaded, channels, report)
    _converted(loaded, repo.path(name, version), card, report)
    _behaviour(loaded, card, report)
    current = repo.current(name)
    if holdout is not None:
        data_set = manifest(holdout)["feature_set"]  # its patches are scaled and edged by that set, and no other
        if card["feature_set"] != data_set:
            report.problems.append(
                f"--holdout {holdout} holds feature set {data_set}; version {version} takes {card['feature_set']} "
                "(compare models of different feature sets with `ltgcast models compare`)"
            )
            return report
        skill = holdout_skill(repo.path(name, version), holdout)
        report.checks["holdout_brier_skill"] = skill
        current_set = repo.card(name, current)["feature_set"] if current is not None else None
        if current is not None and current != version and current_set != data_set:
            report.checks["current_holdout_skipped"] = (
                f"version {current} takes {current_set}, not the hold-out's {data_set}: see `ltgcast models compare`"
            )
        elif current is not None and current != version:
            reference = holdout_skill(repo.path(name, current), holdout)
            report.checks["current_version"] = current
            report.checks["current_holdout_brier_skill"] = reference
            if skill < reference - margin:
                report.problems.append(
                    f"Brier skill {skill:.4f} is worse than version {current}'s {reference:.4f} by more than {margin}"
                )
    return report
