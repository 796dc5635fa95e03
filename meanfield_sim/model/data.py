"""The data distribution P = sum_j p_j delta_{x_j} with labels, built from a resolved config.

Labels are +-1 for the binary losses and class indices 0..k-1 for softmax cross-entropy. The
weights p_j are normalised to sum to 1. Random generators draw from ``data.seed`` (default 0;
-1 ties the data to ``run.seed``), so a sweep over ``run.seed`` changes the initialisation and
keeps the data. Their spawn keys have two entries and so never equal a replica's key ``(r,)``:
every replica of a run sees the same data, drawn independently of every replica's particles.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import ConfigError

DATA_STREAM = (0xDA7A, 0)  # two entries: never a replica's key (r,)
TEST_STREAM = (0xDA7A, 0x7E57)  # two entries: never a replica's key (r,) nor the data's


@dataclass(frozen=True)
class Dataset:
    x: np.ndarray        # (n, d) points
    label: np.ndarray    # (n,) int64: +-1 (binary) or 0..k-1
    weight: np.ndarray   # (n,) float64, p_j >= 0, sum 1
    class_labels: tuple  # the label values, in class order

    @property
    def n(self) -> int:
        return self.x.shape[0]


def build_dataset(cfg: dict) -> Dataset:
    """Make the dataset described by ``cfg['data']`` (already validated by ``config.resolve``)."""
    data = cfg["data"]
    seed = cfg["run"]["seed"] if data["seed"] < 0 else data["seed"]
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=DATA_STREAM))
    class_labels = tuple(cfg["derived"]["class_labels"])
    weights = None
    if data["kind"] == "explicit":
        x = np.asarray(data["x"], dtype=np.float64)
        label = np.asarray(data["labels"], dtype=np.int64)
        if data["weights"]:
            weights = np.asarray(data["weights"], dtype=np.float64)
    elif data["kind"] == "intervals":
        xs, ls = [], []
        for c in data["classes"]:
            lo, hi = c["interval"]
            if data["placement"] == "grid":
                pts = np.linspace(lo, hi, c["points"])
            else:
                pts = np.sort(rng.uniform(lo, hi, c["points"]))
            xs.append(pts)
            ls.append(np.full(c["points"], c["label"]))
        x = np.concatenate(xs)[:, None]
        label = np.concatenate(ls).astype(np.int64)
    elif data["kind"] == "classes":
        label = np.repeat(np.asarray(class_labels, dtype=np.int64), class_sizes(data))
        x = np.zeros((label.shape[0], 0))
    else:
        x, label = _gaussian_mixture(rng, data, class_labels)

    if data["random_labels"]:
        label = rng.choice(np.asarray(class_labels, dtype=np.int64), size=label.shape[0])
    if weights is None:
        weights = np.ones(label.shape[0])
    if data["class_weights"]:
        weights = _reweight_classes(weights, label, class_labels, data["class_weights"])
    if not weights.sum() > 0:
        raise ConfigError(f"data.class_weights = {data['class_weights']!r}: every class with "
                          "points has weight 0, so the data carry no weight at all")
    weights = weights / weights.sum()
    return Dataset(x=np.ascontiguousarray(x, dtype=np.float64), label=label, weight=weights,
                   class_labels=class_labels)


def build_test_set(cfg: dict) -> Dataset | None:
    """The held-out test set of ``cfg['data']``, or None.

    ``data.test_points`` points per class from the training distribution (uniform on each
    class's interval, whatever ``placement`` the training points have; or the same Gaussian
    clusters), drawn from their own stream so that adding a test set leaves the training data as
    they were; or the listed ``data.test_x`` / ``data.test_labels``. With ``random_labels`` the
    test labels are random too (so the best test error is that of guessing). Point weights are
    equal, rescaled by ``class_weights`` like the training weights, so the test risk estimates
    the population risk under the same class weighting."""
    data = cfg["data"]
    if not (data["test_points"] or data["test_x"]):
        return None
    seed = cfg["run"]["seed"] if data["seed"] < 0 else data["seed"]
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=TEST_STREAM))
    class_labels = tuple(cfg["derived"]["class_labels"])
    count = data["test_points"]
    if data["kind"] == "explicit":
        x = np.asarray(data["test_x"], dtype=np.float64)
        label = np.asarray(data["test_labels"], dtype=np.int64)
    elif data["kind"] == "intervals":
        x = np.concatenate([np.sort(rng.uniform(*c["interval"], count))
                            for c in data["classes"]])[:, None]
        label = np.repeat(np.asarray([c["label"] for c in data["classes"]], dtype=np.int64),
                          count)
    else:
        x, label = _gaussian_mixture(rng, dict(data, class_sizes=[count] * data["num_classes"]),
                                     class_labels)
    if data["random_labels"]:
        label = rng.choice(np.asarray(class_labels, dtype=np.int64), size=label.shape[0])
    weights = np.ones(label.shape[0])
    if data["class_weights"]:
        weights = _reweight_classes(weights, label, class_labels, data["class_weights"])
    if not weights.sum() > 0:
        raise ConfigError(f"data.random_labels = true: the random test labels all fell in "
                          f"classes of weight 0 under data.class_weights = "
                          f"{data['class_weights']!r}; use more test points")
    weights = weights / weights.sum()
    return Dataset(x=np.ascontiguousarray(x, dtype=np.float64), label=label, weight=weights,
                   class_labels=class_labels)


def _gaussian_mixture(rng, data, class_labels):
    """K Gaussian clusters in R^d with isotropic standard deviation ``spread``: for d >= 2 the
    means lie evenly on a circle of radius ``separation`` in the first two coordinates; for
    d = 1 they are evenly spaced on [-separation, separation]."""
    K, d, sizes = data["num_classes"], data["dim"], class_sizes(data)
    means = np.zeros((K, d))
    if d >= 2:
        angles = 2 * np.pi * np.arange(K) / K
        means[:, 0], means[:, 1] = np.cos(angles), np.sin(angles)
    else:
        means[:, 0] = np.linspace(-1.0, 1.0, K)
    means *= data["separation"]
    x = np.concatenate([means[c] + data["spread"] * rng.normal(size=(sizes[c], d))
                        for c in range(K)])
    label = np.repeat(np.asarray(class_labels, dtype=np.int64), sizes)
    return x, label


def class_sizes(data: dict) -> list[int]:
    """Points of each class for the generated kinds: data.class_sizes, or points_per_class each."""
    return list(data["class_sizes"]) or [data["points_per_class"]] * data["num_classes"]


def _reweight_classes(weights, label, class_labels, class_weights):
    """Scale point weights so that class c carries total mass proportional to class_weights[c]."""
    out = weights.copy()
    for lab, cw in zip(class_labels, class_weights):
        mask = label == lab
        total = weights[mask].sum()
        out[mask] = weights[mask] / total * cw if total > 0 else 0.0
    return out
