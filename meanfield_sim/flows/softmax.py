"""Softmax cross-entropy on free outputs, shared by the toy flows (NumPy, float64).

R(h) = sum_j p_j (log sum_q exp(h_jq) - h_{j,y_j}), dR/dh_j = p_j (softmax(h_j) - e_{y_j}).
"""
from __future__ import annotations

import numpy as np


def softmax_risk(h: np.ndarray, label: np.ndarray, weight: np.ndarray):
    """(risk (R,), log risk (R,), dR/dh (R, n, k)) for outputs h of shape (R, n, k)."""
    top = h.max(axis=-1, keepdims=True)
    shifted = np.exp(h - top)
    total = shifted.sum(axis=-1, keepdims=True)
    lse = top[..., 0] + np.log(total[..., 0])
    idx = np.arange(h.shape[1])
    loss = lse - h[:, idx, label]
    risk = (weight * loss).sum(axis=1)
    grad = shifted / total
    grad[:, idx, label] -= 1.0
    grad *= weight[None, :, None]
    with np.errstate(divide="ignore"):
        log_risk = np.log(risk)
    return risk, log_risk, grad


def class_spread(values: np.ndarray, label: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """(R,) largest Euclidean distance of a point's value (R, n, c) to its class's mean, over
    the points of positive weight: 0 exactly when every class has collapsed to a point."""
    spread = np.zeros(values.shape[0])
    for c in np.unique(label[weight > 0]):
        members = values[:, (label == c) & (weight > 0), :]
        centre = members.mean(axis=1, keepdims=True)
        spread = np.maximum(spread, np.linalg.norm(members - centre, axis=-1).max(axis=1))
    return spread


def class_offsets_plus_spread(rng, labels: np.ndarray, dim: int, offset: float, spread: float):
    """(n, dim) initial values: one N(0, offset^2 I) draw per class plus N(0, spread^2 I) per
    point (initial spread within classes)."""
    classes = np.unique(labels)
    centre = {c: offset * rng.normal(size=dim) for c in classes}
    return np.stack([centre[c] for c in labels]) + spread * rng.normal(size=(labels.shape[0], dim))
