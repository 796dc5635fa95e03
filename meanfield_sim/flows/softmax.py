"""Softmax cross-entropy on free outputs, shared by the toy flows (NumPy, float64).

R(h) = sum_j p_j (log sum_q exp(h_jq) - h_{j,y_j}), dR/dh_j = p_j (softmax(h_j) - e_{y_j}).
"""
from __future__ import annotations

import numpy as np


def softmax_risk(h: np.ndarray, label: np.ndarray, weight: np.ndarray):
    """(risk (R,), log risk (R,), dR/dh (R, n, k)) for outputs h of shape (R, n, k).

    Exact in the tail, as ``model.losses.softmax_ce``: with v_j = logsumexp_{q != y_j} h_jq -
    h_{j,y_j}, the loss is softplus(v_j) and log loss = log softplus(v_j) (finite where the loss
    underflows); the label's derivative is -sum_{q != y} pi_q, not the cancelling pi_y - 1."""
    idx = np.arange(h.shape[1])
    own = h[:, idx, label]
    other = h.copy()
    other[:, idx, label] = -np.inf
    top = other.max(axis=-1)
    lse_other = top + np.log(np.exp(other - top[..., None]).sum(axis=-1))
    v = lse_other - own
    loss = np.logaddexp(0.0, v)
    with np.errstate(divide="ignore"):
        log_loss = np.where(v < -30.0, v - 0.5 * np.exp(v), np.log(loss))
        log_terms = np.log(weight)[None, :] + log_loss
    risk = (weight * loss).sum(axis=1)
    peak = log_terms.max(axis=1, keepdims=True)
    log_risk = peak[:, 0] + np.log(np.exp(log_terms - peak).sum(axis=1))
    top_all = h.max(axis=-1, keepdims=True)
    pi = np.exp(h - top_all)
    pi /= pi.sum(axis=-1, keepdims=True)
    grad = pi.copy()
    pi[:, idx, label] = 0.0
    grad[:, idx, label] = -pi.sum(axis=-1)
    grad *= weight[None, :, None]
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
