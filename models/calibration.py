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


def fit_platt(
    logits: ArrayLike, labels: ArrayLike, weights: ArrayLike, *, iterations: int = 100
) -> tuple[float, float]:
    """``(a, b)`` minimising the weighted log loss of ``sigmoid(a · logit + b)``.

    Platt's smoothed targets (``(N₊ + 1) / (N₊ + 2)`` for positives and
    ``1 / (N₋ + 2)`` for negatives, ``N`` the classes' total weights) keep the
    optimum finite even when the logits separate the classes; Newton steps are
    halved until the loss decreases.

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
    positive = y > 0.5
    n_pos, n_neg = float(w[positive].sum()), float(w[~positive].sum())
    if n_pos <= 0 or n_neg <= 0:
        msg = (
            "calibration needs positive and negative examples with weight; found "
            f"{int(positive.sum())} positives (weight {n_pos:g}) and "
            f"{int((~positive).sum())} negatives (weight {n_neg:g})"
        )
        raise ValueError(msg)
    target = np.where(positive, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
    w = w / w.mean()
    design = np.stack([z, np.ones_like(z)], axis=1)

    def loss(theta: np.ndarray) -> float:
        s = design @ theta
        return float(np.sum(w * (np.logaddexp(0.0, s) - target * s)))

    theta = np.array([1.0, 0.0])
    current = loss(theta)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(design @ theta)))
        gradient = design.T @ (w * (p - target))
        hessian = (design * (w * p * (1 - p))[:, None]).T @ design + 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        scale = 1.0
        while scale > 1e-6 and loss(theta - scale * step) > current:
            scale /= 2
        theta = theta - scale * step
        previous, current = current, loss(theta)
        if np.max(np.abs(scale * step)) < 1e-10 or previous - current < 1e-12 * max(1.0, abs(current)):
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
