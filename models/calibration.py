"""Calibration: a trained logit model's probabilities made to match the frames' pixels.

A model trained on a class-balanced sample ranks pixels well but says
"lightning" far too often: its probabilities describe the sample, not the
frames. Platt scaling fixes that with two numbers: ``logit' = a · logit + b``,
fitted by weighted logistic regression of the labels on the model's logits over
the validation split, each example weighted by its sampling weight (the pixels
it stands for). The affine map is appended to the network as a last layer
without activation, so the dense and patch outputs stay identical and the
served probability is still ``sigmoid(logit')``.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from numpy.typing import ArrayLike

from models.architectures import Calibration


def fit_platt(logits: ArrayLike, labels: ArrayLike, weights: ArrayLike, *, iterations: int = 50) -> tuple[float, float]:
    """``(a, b)`` minimising the weighted log loss of ``sigmoid(a · logit + b)`` (Newton's method).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(size=20000)
    >>> y = rng.uniform(size=z.size) < 1 / (1 + np.exp(-(0.5 * z - 2.0)))
    >>> a, b = fit_platt(z, y, np.ones(z.size))
    >>> round(a, 1), round(b, 1)
    (0.5, -2.0)
    """
    z = np.asarray(logits, np.float64).ravel()
    y = np.asarray(labels, np.float64).ravel()
    w = np.asarray(weights, np.float64).ravel()
    if not (z.size == y.size == w.size) or z.size == 0:
        msg = f"logits, labels and weights must be equal, non-empty lengths; found {z.size}, {y.size}, {w.size}"
        raise ValueError(msg)
    if not (np.any((y > 0.5) & (w > 0)) and np.any((y < 0.5) & (w > 0))):
        msg = "calibration needs positive and negative examples with weight"
        raise ValueError(msg)
    w = w / w.mean()
    design = np.stack([z, np.ones_like(z)], axis=1)
    theta = np.array([1.0, 0.0])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(design @ theta)))
        gradient = design.T @ (w * (p - y))
        hessian = (design * (w * p * (1 - p))[:, None]).T @ design + 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        theta -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return float(theta[0]), float(theta[1])


def calibrated(model: keras.Model, scale: float, offset: float) -> keras.Model:
    """``model`` followed by the affine :class:`Calibration` layer (named ``calibration``)."""
    logit = Calibration(scale, offset, name="calibration")(model.output)
    return keras.Model(model.input, logit, name=model.name)


def validation_logits(model: keras.Model, data: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits, labels and weights over a dataset of ``(tile, label, weight)`` batches."""
    logits, labels, weights = [], [], []
    for x, y, w in data:
        logits.append(np.asarray(model(x, training=False)).reshape(-1))
        labels.append(np.asarray(y).reshape(-1))
        weights.append(np.asarray(w).reshape(-1))
    return np.concatenate(logits), np.concatenate(labels), np.concatenate(weights)
