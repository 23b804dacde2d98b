"""Training: a frozen settings object, then named steps (seed, data, model, fit, save).

* Loss: binary cross-entropy **from logits** (the model's last layer has no
  activation). Class imbalance is explicit, one of two ``weighting`` modes:
  ``balanced`` weights positives by ``positive_weight`` (default: negatives /
  positives of the training split, so both classes carry equal total weight);
  ``population`` weights every example by its sampling weight, so the model
  learns the probability over the frames' pixels (calibrated for the live
  field). The mode and weight are reported in ``training.json``.
* Adam with gradient clipping (``clipnorm``), early stopping on validation loss
  with the best weights restored, TensorBoard logs in ``OUT/tensorboard``.
* NaN guard: every input batch passes ``tf.debugging.check_numerics`` after the
  fill policy (:mod:`models.data`), and :class:`NanGuard` stops at the first
  non-finite loss, naming the epoch, the step and the batch; both become a
  :class:`~foundation.errors.TrainingError`. ``keras.callbacks.TerminateOnNaN`` runs too.
* Calibration (default on): Platt scaling fitted on the validation split with
  the sampling weights and appended as a last affine layer
  (:mod:`models.calibration`), so probabilities describe the frames' pixels even
  after class-balanced training. Dropout (default 0.2) on the trunk's output.
* Deterministic: one seed for weights, shuffling and TensorFlow's ops
  (``enable_op_determinism``).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from foundation.errors import TrainingError
from models.architectures import build, with_persistence_floor
from models.data import manifest, split_dataset, with_class_weights

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainSettings:
    """What ``ltgcast train`` needs."""

    data: Path
    out: Path
    arch: str = "combined"
    width: int = 16
    epochs: int = 10
    batch: int = 64
    learning_rate: float = 1e-3
    clipnorm: float = 1.0
    patience: int = 3
    seed: int = 0
    positive_weight: float | None = None
    weighting: str = "balanced"
    dropout: float = 0.2
    calibrate: bool = True
    persistence_floor: float = 0.5  # share of the data's persistence rate; 0: no floor


class NanGuard(keras.callbacks.Callback):
    """Stops training at the first non-finite loss and remembers where."""

    def __init__(self) -> None:
        super().__init__()
        self.epoch = 0
        self.where: str | None = None

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:  # noqa: D102
        self.epoch = epoch + 1

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:  # noqa: D102
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss):
            self.where = f"epoch {self.epoch}, step {batch + 1} (batch index {batch}): loss {loss}"
            self.model.stop_training = True


def _positive_weight(doc: dict[str, Any], settings: TrainSettings) -> float:
    if settings.positive_weight is not None:
        return settings.positive_weight
    train = doc["splits"]["train"]
    positives, total = int(train["positives"]), int(train["examples"])
    if positives == 0 or positives == total:
        msg = f"the training split needs both classes; found {positives} positives in {total} examples"
        raise TrainingError(msg)
    return (total - positives) / positives


def fit(model: keras.Model, train: tf.data.Dataset, validation: tf.data.Dataset | None, settings: TrainSettings) -> Any:
    """Compile and fit with the guard, clipping, early stopping and TensorBoard."""
    model.compile(
        optimizer=keras.optimizers.Adam(settings.learning_rate, clipnorm=settings.clipnorm),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
        weighted_metrics=[],
        metrics=[
            keras.metrics.AUC(from_logits=True, name="auc"),
            keras.metrics.AUC(curve="PR", from_logits=True, name="pr_auc"),
        ],
    )
    guard = NanGuard()
    monitor = "val_loss" if validation is not None else "loss"
    callbacks = [
        guard,
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.EarlyStopping(monitor=monitor, patience=settings.patience, restore_best_weights=True),
        keras.callbacks.TensorBoard(log_dir=str(settings.out / "tensorboard")),
    ]
    try:
        history = model.fit(
            train, validation_data=validation, epochs=settings.epochs, callbacks=callbacks, shuffle=False, verbose=2
        )  # shuffled by the input pipeline
    except tf.errors.InvalidArgumentError as exc:
        lines = [line.strip() for line in exc.message.splitlines() if "Tensor had" in line]
        where = lines[0].rsplit("Map:", 1)[-1].strip() if lines else exc.message.splitlines()[0]
        msg = f"training stopped: a non-finite value reached the model ({where})"
        raise TrainingError(msg) from exc
    if guard.where is not None:
        msg = f"training stopped: the loss became non-finite at {guard.where}"
        raise TrainingError(msg)
    return history


def _calibrate(model: keras.Model, settings: TrainSettings) -> tuple[keras.Model, dict[str, Any]]:
    """Platt scaling on the validation split, weighted to the frames' pixels (:mod:`models.calibration`)."""
    import numpy as np

    from models.calibration import calibrated, fit_platt, validation_logits
    from models.metrics import brier

    data = split_dataset(settings.data, "validation", batch=256, shuffle_batches=0, sampling_weights=True)
    z, y, w = validation_logits(model, data)
    scale, offset = fit_platt(z, y, w)

    def sigmoid(v: Any) -> Any:
        return 1.0 / (1.0 + np.exp(-v))

    report = {
        "method": "platt",
        "fitted_on": "validation split, sampling-weighted",
        "scale": scale,
        "offset": offset,
        "validation_brier_before": brier(sigmoid(z), y, w),
        "validation_brier_after": brier(sigmoid(scale * z + offset), y, w),
    }
    log.info("calibration: %s", report)
    return calibrated(model, scale, offset), report


def floored(model: keras.Model, doc: dict[str, Any], share: float) -> tuple[keras.Model, dict[str, Any] | None]:
    """``model`` with a persistence floor of ``share`` × the dataset's persistence rate (after calibration).

    The rate is P(lightning in the next 30 min | lightning in the 16×16 box now) of the training split's pixels
    (``dataset.json``); the floor, max(share × rate, 0.25) rounded up to the next 0.01, is what the behavioural
    gate's ``persistence`` check asks of the weakest such pixel (:mod:`models.behaviour`), made a property of the graph
    (:func:`models.architectures.with_persistence_floor`). ``share`` 0, or a dataset without the rate or
    without ``ltg``, gives the model unchanged and ``None``.
    """
    rate = doc.get("persistence_rate")
    if share <= 0 or not rate or "ltg" not in doc["channels"]:
        return model, None
    from models.behaviour import persistence_bar

    floor = min(math.ceil(100 * persistence_bar(float(rate), share)) / 100, 0.95)  # the gate's bar, up to 0.01
    report = {"share": share, "persistence_rate": float(rate), "floor": floor}
    log.info("persistence floor: %s", report)
    return with_persistence_floor(model, doc["channels"], floor), report


def train(settings: TrainSettings) -> dict[str, Any]:
    """Train one model on a dataset folder; save it and ``training.json`` under ``settings.out``."""
    keras.utils.set_random_seed(settings.seed)
    tf.config.experimental.enable_op_determinism()
    doc = manifest(settings.data)
    population = settings.weighting == "population"
    weight = None if population else _positive_weight(doc, settings)
    data = split_dataset(settings.data, "train", batch=settings.batch, seed=settings.seed, sampling_weights=population)
    if weight is not None:
        data = with_class_weights(data, weight)
    has_validation = int(doc["splits"]["validation"]["examples"]) > 0
    validation = None
    if has_validation:  # weighted as the training loss is, so early stopping watches the same quantity
        validation = split_dataset(
            settings.data, "validation", batch=settings.batch, shuffle_batches=0, sampling_weights=population
        )
        validation = validation if weight is None else with_class_weights(validation, weight)
    else:
        log.warning("the dataset has no validation split; early stopping watches the training loss")
    model = build(settings.arch, doc["channels"], width=settings.width, seed=settings.seed, dropout=settings.dropout)
    settings.out.mkdir(parents=True, exist_ok=True)
    history = fit(model, data, validation, settings)
    calibration = None
    if settings.calibrate and has_validation:
        try:
            model, calibration = _calibrate(model, settings)
        except ValueError as exc:  # the trained weights are kept either way
            log.warning("the model is saved uncalibrated: %s", exc)
            calibration = {"method": "platt", "error": str(exc)}
    elif settings.calibrate:
        log.warning("no validation split: the model is not calibrated")
    model, floor = floored(model, doc, settings.persistence_floor)
    model.save(settings.out / "model.keras")
    report = {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(settings).items()},
        "feature_set": doc["feature_set"],
        "channels": doc["channels"],
        "weighting": settings.weighting,
        "positive_weight": weight,
        "early_stopping_on": "val_loss" if has_validation else "loss",
        "calibration": calibration,
        "persistence_floor": floor,
        "epochs_run": len(history.history["loss"]),
        "history": {k: [float(v) for v in values] for k, values in history.history.items()},
    }
    (settings.out / "training.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return report
