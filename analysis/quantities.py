"""Quantities over time from a run's Dataset (``open_run``): normalised margins and classifiers,
class spread in the final and the hidden layer, neural-collapse measures, and a summary.

Conventions (binary runs, k = 1, labels +-1; see the README's Conventions):

- margin            min_j y_j h(x_j) over points of positive weight (recorded);
- normalised margin margin / ||h|| under the paper's path norm ||h||_P = (1/m) sum_i |a_i|
                    (|w_i| + |b_i|) and under ||h||_E = (1/m) sum_i |a_i| sqrt(|w_i|^2 + b_i^2),
                    both recorded from all particles. ReLU is positively homogeneous, so h/||h||
                    is the classifier the paper's Section 5.1 says converges (Lemma 16);
- class spread      per class, max_j |v_j - mu_c| / min_{c != c'} |mu_c - mu_c'| (0 when every
                    class sits at its mean), the largest over classes; v_j the outputs h(x_j) (final
                    layer) or the hidden features phi(x_j) = (sigma(w_i . x_j + b_i))_i (hidden
                    layer, L^2 over the recorded particles, see ``features``).

Every function returns an ``xarray.DataArray`` or ``Dataset`` with dims (time, replica, ...).
"""
from __future__ import annotations

import math
import tomllib

import numpy as np
import xarray as xr

from meanfield_sim.theory import three_neuron_limit

from . import collapse, maxmargin
from .features import hidden_features

NORMS = {"path": "path_norm", "euclidean": "euclidean_norm"}


def width(ds: xr.Dataset) -> int:
    """The run's number of particles m (model.width of its config)."""
    return tomllib.loads(ds.attrs["config"])["model"]["width"]


def class_indices(ds: xr.Dataset) -> np.ndarray:
    """Labels as class indices 0..K-1 (binary labels -1, +1 become 0, 1)."""
    label = ds.label.values
    return ((label + 1) // 2).astype(np.int64) if ds.sizes["output"] == 1 else label


def normalised_margins(ds: xr.Dataset) -> xr.Dataset:
    """margin / path norm and margin / Euclidean norm (network runs), dims (time, replica)."""
    if "path_norm" not in ds:
        raise ValueError("normalised margins need a network run (path_norm is not recorded)")
    out = {}
    for short, name in NORMS.items():
        if name in ds:
            q = ds.margin / ds[name]
            q.attrs["long_name"] = f"margin / {name.replace('_', ' ')}"
            out[f"margin_over_{name}"] = q
    return xr.Dataset(out)


def normalised_classifier(ds: xr.Dataset, norm: str = "path") -> xr.Dataset:
    """h / ||h|| on the data (``outputs``) and, if recorded, on the grid (``grid_outputs``)."""
    if norm not in NORMS:
        raise ValueError(f"norm = {norm!r}: must be one of {', '.join(NORMS)}")
    scale = ds[NORMS[norm]]
    out = {"outputs": ds.outputs / scale}
    if "grid_outputs" in ds:
        out["grid_outputs"] = ds.grid_outputs / scale
    return xr.Dataset(out)


def max_margin_reference(ds: xr.Dataset) -> dict:
    """{norm: gamma*}: the maximum margin of the run's own data (points of positive weight) in
    Barron space, by the LP of ``maxmargin``, for "path" and "euclidean"; {} where it does not
    apply (only binary ReLU networks with d <= 2 have this reference)."""
    model = tomllib.loads(ds.attrs["config"])["model"]
    if not (model["kind"] == "network" and model["activation"] == "relu"
            and ds.sizes["output"] == 1 and ds.sizes["input"] <= 2):
        return {}
    return {norm: max_margin_classifier(ds, norm).margin for norm in maxmargin.NORMS}


def max_margin_classifier(ds: xr.Dataset, norm: str = "path") -> maxmargin.MaxMarginResult:
    """The LP's maximiser for the run's points of positive weight (callable on any points)."""
    x, y = _weighted_points(ds)
    return maxmargin.max_margin(x, y, norm=norm, resolution=256)


def _weighted_points(ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """x (n, d) and labels +-1 as floats of the points of positive weight: the margin's points."""
    keep = ds.weight.values > 0
    return ds.x.values[keep], ds.label.values[keep].astype(float)


def margin_gap(ds: xr.Dataset, reference: dict | None = None) -> xr.Dataset:
    """gamma*_N - margin / ||h||_N for both norms N (time, replica): how far the normalised
    margin is from the optimum of the run's data (>= 0 up to the LP's precision, since h/||h||
    is feasible); empty where ``max_margin_reference`` does not apply."""
    reference = max_margin_reference(ds) if reference is None else reference
    out = {}
    for norm, gamma in reference.items():
        gap = gamma - ds.margin / ds[NORMS[norm]]
        gap.attrs["long_name"] = f"max margin - margin / {NORMS[norm].replace('_', ' ')}"
        out[f"margin_gap_{norm}"] = gap
    return xr.Dataset(out)


def distance_to_maximisers(ds: xr.Dataset, norm: str = "path") -> xr.DataArray:
    """max_j |h(x_j)/||h|| - f(x_j)| minimised over the maximisers f of the run's data (one LP
    per record and replica, ``maxmargin.distance_to_maximisers``), dims (time, replica)."""
    x, y = _weighted_points(ds)
    g = normalised_classifier(ds, norm).outputs.isel(output=0).values[:, :, ds.weight.values > 0]
    values = np.array([[maxmargin.distance_to_maximisers(x, y, frame, norm=norm)
                        for frame in record] for record in g])
    return xr.DataArray(values, dims=("time", "replica"), coords={"time": ds.time},
                        attrs={"long_name": f"distance of h / {norm} norm to the maximisers"})


def _spread_over_time(values: np.ndarray, labels, weights) -> np.ndarray:
    """(time, replica) largest class spread ratio of values (time, replica, n, p)."""
    T, R = values.shape[:2]
    out = np.full((T, R), np.nan)
    for t in range(T):
        for r in range(R):
            out[t, r] = collapse.class_spread_ratio(values[t, r], labels, weights).max()
    return out


def output_spread(ds: xr.Dataset) -> xr.DataArray:
    """Class spread of the outputs h(x_j) (or the toy models' free outputs z_j)."""
    values = ds.outputs.transpose("time", "replica", "sample", "output").values
    spread = _spread_over_time(values, class_indices(ds), ds.weight.values)
    return xr.DataArray(spread, dims=("time", "replica"), coords={"time": ds.time},
                        attrs={"long_name": "class spread of the outputs"})


def feature_spread(ds: xr.Dataset) -> xr.DataArray:
    """Class spread of the hidden features phi(x_j) (network runs with particle snapshots) or
    of the penultimate-layer features y_j (toy model with snapshots)."""
    if "y" in ds:
        values = ds.y.transpose("time", "replica", "sample", "feature").values
    else:
        values = hidden_features(ds).values / math.sqrt(ds.sizes["particle"])
    spread = _spread_over_time(values, class_indices(ds), ds.weight.values)
    return xr.DataArray(spread, dims=("time", "replica"), coords={"time": ds.time},
                        attrs={"long_name": "class spread of the hidden features"})


def collapse_over_time(ds: xr.Dataset) -> xr.Dataset:
    """NC1-NC4 and simplex geometry over time for k-class runs: of the penultimate features y
    with the map A and bias b (toy model), of the hidden features with A = a^T / m (network with
    all particles recorded), or of the outputs without a classifier (otherwise)."""
    if ds.sizes["output"] < 2:
        raise ValueError("neural-collapse measures need k >= 2 classes; this run is binary")
    labels, weights = class_indices(ds), ds.weight.values
    if "y" in ds and "A" in ds:
        measures = collapse.collapse_over_time(
            ds.y.transpose("time", "replica", "sample", "feature").values, labels, weights,
            ds.A.transpose("time", "replica", "output", "feature").values,
            ds.b.values if "b" in ds else None)
    elif "a" in ds and "particle" in ds.dims:
        m = ds.sizes["particle"]
        measures = collapse.collapse_over_time(
            hidden_features(ds).values, labels, weights,
            ds.a.transpose("time", "replica", "output", "particle").values / m)
    else:
        measures = collapse.collapse_over_time(
            ds.outputs.transpose("time", "replica", "sample", "output").values, labels, weights,
            n_classes=ds.sizes["output"])
    return xr.Dataset({name: (("time", "replica"), values) for name, values in measures.items()},
                      coords={"time": ds.time})


def trend(q: xr.DataArray) -> xr.DataArray:
    """d q / d log t over the last decade of the run (per replica): the change from the first
    record at or after t_end / 10 to the last, divided by the log of their time ratio. A
    quantity converging like 1/t has trend -> 0; one growing like log t has trend -> 1."""
    t = q.time.values
    start = int(np.searchsorted(t, t[-1] / 10.0))
    start = min(start, len(t) - 2)
    if len(t) < 2 or t[start] <= 0:
        return xr.full_like(q.isel(time=-1), np.nan)
    return (q.isel(time=-1) - q.isel(time=start)) / math.log(t[-1] / t[start])


def summary(ds: xr.Dataset) -> dict:
    """Final value and trend (median over replicas) of every scalar series and of the derived
    quantities that apply to the run, as plain floats: {name: {"final": .., "trend": ..}}."""
    series = {name: ds[name] for name in ds.data_vars if ds[name].dims == ("time", "replica")}
    if "path_norm" in ds:
        series.update(normalised_margins(ds).data_vars)
        series.update(margin_gap(ds).data_vars)
    series["output_spread"] = output_spread(ds)
    out = {"status": ds.attrs["status"], "records": int(ds.sizes["time"]),
           "t": float(ds.time[-1]) if ds.sizes["time"] else math.nan}
    if not ds.sizes["time"]:
        return out
    for name, q in series.items():
        out[name] = {"final": float(q.isel(time=-1).median()),
                     "trend": float(trend(q).median()) if ds.sizes["time"] > 2 else math.nan}
    return out


def three_neuron_gap(ds: xr.Dataset) -> tuple:
    """Section 5.2 (Lemma 18): h(1) - h(-1) of replica 0 over time, and its predicted limit
    log(p3 / (2 p1)) from the run's weights p1 (at x = -1) and p3 (at x = 1)."""
    x, p = ds.x.values[:, 0], ds.weight.values
    minus, plus = int(np.flatnonzero(x == -1)[0]), int(np.flatnonzero(x == 1)[0])
    h = ds.outputs.isel(replica=0, output=0)
    return h.isel(sample=plus) - h.isel(sample=minus), three_neuron_limit(p[minus], p[plus])
