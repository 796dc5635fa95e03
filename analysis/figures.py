"""PNG figures of one run, readable without the code: every axis labelled with its quantity and
convention, replicas shown as the median with a band from the smallest to the largest.

``plot_run(ds, folder)`` writes the figures that apply to the run and returns their paths:

    risk.png        risk R(t) (log-log); with a test set also test risk and both errors
    margins.png     binary: margin; margin / path norm and / Euclidean norm with the maximum
                    margin of the run's data (ReLU, d <= 2; ``maxmargin``) as dashed lines
    classifier.png  binary, d = 1 with a grid: h / path norm at the last record against a
                    max-margin classifier, and the paper's f_b that fits best (Lemma 16)
    spread.png      class spread of the outputs and, with snapshots, of the hidden features
    particles.png   network snapshots, d = 1: |a_i| (w_i, b_i) coloured by the sign of a_i, with
                    trails from the first record (replica 0)
    simplex.png     k = 3: points and class means at the last record, projected onto the plane
                    orthogonal to (1, 1, 1) (the simplex's plane)
    collapse.png    k >= 2: NC1, NC2 and simplex errors over time

``mean_field_limit_figure(ds, companions, path)`` draws a large run against runs at a smaller
width (the report's mean-field-limit claim).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from . import maxmargin  # noqa: E402
from . import quantities as q  # noqa: E402

TIME_LABEL = "time t (flow time, log scale)"
FLOOR = 1e-35  # exact zeros on a log axis


def _band(ax, series: xr.DataArray, label: str, **style) -> None:
    """Median over replicas as a line, min..max as a shaded band."""
    line, = ax.plot(series.time, series.median("replica"), label=label, **style)
    if series.sizes.get("replica", 1) > 1:
        ax.fill_between(series.time, series.min("replica"), series.max("replica"), alpha=0.25,
                        color=line.get_color(), linewidth=0)


def _save(fig, axes, path: Path, title: str, log_time: bool = True) -> Path:
    for ax in np.atleast_1d(axes):
        if log_time:
            ax.set_xscale("log")
            ax.set_xlabel(TIME_LABEL)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _later(ds: xr.Dataset) -> xr.Dataset:
    """Records at t > 0 (log time axes)."""
    return ds.isel(time=np.flatnonzero(ds.time.values > 0))


def risk_figure(ds, path, title):
    """Risk on the training data; with a held-out test set also the test risk, and the
    training and test errors in a second panel."""
    later = _later(ds)
    held_out = "test_risk" in ds
    fig, axes = plt.subplots(1, 2 if held_out else 1, figsize=(11 if held_out else 6, 4))
    ax = np.atleast_1d(axes)[0]
    _band(ax, later.risk, "training risk")
    if held_out:
        _band(ax, later.test_risk, f"test risk ({ds.sizes['test_sample']} held-out points)")
        err = axes[1]
        _band(err, later.error, "training error")
        _band(err, later.test_error, "test error")
        err.set_ylim(-0.02, 1.02)
        err.set_ylabel("error: weighted fraction misclassified")
    ax.set_yscale("log")
    ax.set_ylabel("risk R = sum_j p_j loss(h(x_j), y_j)")
    return _save(fig, axes, path, title)


def margins_figure(ds, path, title, reference: dict):
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    later = _later(ds)
    _band(left, later.margin, "margin min_j y_j h(x_j)")
    left.set_ylabel("margin")
    for (name, series), norm in zip(q.normalised_margins(later).data_vars.items(),
                                    ("path", "euclidean")):
        _band(right, series, series.attrs["long_name"])
        if norm in reference:
            right.axhline(reference[norm], linestyle="--", color=right.lines[-1].get_color(),
                          linewidth=1, label=f"maximum margin, {norm} norm: "
                                             f"{reference[norm]:.4g}")
    right.set_ylabel("normalised margin")
    return _save(fig, (left, right), path, title)


def classifier_figure(ds, path, title):
    """h / path norm on the grid at the last record, a max-margin classifier (LP) and the
    paper's best-fitting f_b; the data as markers."""
    grid = ds.grid_x.values[:, 0]
    h = q.normalised_classifier(ds.isel(time=-1)).grid_outputs.isel(output=0)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in range(h.sizes["replica"]):
        ax.plot(grid, h.isel(replica=r), color="C0", alpha=0.8,
                label="h / path norm (run)" if r == 0 else None)
    x, y = ds.x.values, ds.label.values.astype(float)
    best = q.max_margin_classifier(ds, "path")
    ax.plot(grid, best(grid[:, None]), "k--", linewidth=1, label="a max-margin classifier (LP)")
    data_h = q.normalised_classifier(ds.isel(time=-1)).outputs.isel(output=0, replica=0)
    b, dev = maxmargin.fit_paper_f_b(x, data_h.values)
    ax.plot(grid, maxmargin.paper_f_b(b, grid), "C3:", label=f"paper's f_b, best b = {b:.3g} "
                                                              f"(max dev. on data {dev:.2g})")
    ax.scatter(x[:, 0], data_h, c=np.where(y > 0, "C2", "C1"), zorder=3, s=18,
               label="data (colour = label)")
    ax.set_xlabel("x")
    ax.set_ylabel("normalised classifier")
    return _save(fig, ax, path, title, log_time=False)


def spread_figure(ds, path, title):
    fig, ax = plt.subplots(figsize=(6, 4))
    later = _later(ds)
    _band(ax, np.maximum(q.output_spread(later), FLOOR), "outputs (final layer)")
    if "y" in ds or ("w" in ds and "particle" in ds.dims):
        _band(ax, np.maximum(q.feature_spread(later), FLOOR), "features (hidden layer)")
    ax.set_yscale("log")
    ax.set_ylabel("class spread\nmax |v - class mean| / min |mean - mean'|", fontsize=9)
    return _save(fig, ax, path, title)


def particles_figure(ds, path, title):
    """|a_i| (w_i, b_i) for replica 0, the sign of a_i as colour, trails over the records."""
    a = ds.a.isel(replica=0, output=0).values
    w = ds.w.isel(replica=0, input=0).values
    b = ds.b.isel(replica=0).values
    pw, pb = np.abs(a) * w, np.abs(a) * b
    fig, ax = plt.subplots(figsize=(6, 5.5))
    ax.plot(pw, pb, color="0.75", linewidth=0.5, zorder=1)
    colours = np.where(a[-1] > 0, "C3", "C0")
    ax.scatter(pw[-1], pb[-1], c=colours, s=10, zorder=2)
    ax.scatter([], [], c="C3", s=10, label="a_i > 0 (last record)")
    ax.scatter([], [], c="C0", s=10, label="a_i < 0")
    ax.set_xlabel("|a_i| w_i")
    ax.set_ylabel("|a_i| b_i")
    return _save(fig, ax, path, title, log_time=False)


def simplex_figure(ds, path, title):
    """The last record's outputs (or penultimate features mapped by A) in the plane orthogonal
    to (1, 1, 1), where the simplex of Lemma 4 lies."""
    v = ds.outputs.isel(time=-1, replica=0).values  # (n, 3)
    basis = np.array([[1, -1, 0], [1, 1, -2]], dtype=float)
    basis /= np.linalg.norm(basis, axis=1, keepdims=True)
    xy = v @ basis.T
    labels = ds.label.values
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    for c in range(3):
        pts = xy[labels == c]
        ax.scatter(pts[:, 0], pts[:, 1], s=60, alpha=0.6, label=f"class {c}")
        ax.scatter(*pts.mean(axis=0), marker="x", s=30, color="k", linewidth=1)
    ax.set_aspect("equal")
    ax.set_xlabel("(h_0 - h_1) / sqrt 2")
    ax.set_ylabel("(h_0 + h_1 - 2 h_2) / sqrt 6")
    return _save(fig, ax, path, title + " (x: class means, replica 0)", log_time=False)


def collapse_figure(ds, path, title):
    c = q.collapse_over_time(_later(ds))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in ("nc1_trace_ratio", "cdnv", "equinorm_cov", "equiangularity", "etf_gram_error",
                 "simplex_cos_error_max"):
        _band(ax, np.maximum(c[name], FLOOR), name)
    ax.set_yscale("log")
    ax.set_ylabel(f"collapse error (0 = regular simplex; shown >= {FLOOR:g})")
    return _save(fig, ax, path, title)


def three_neuron_gap_figure(runs: list, path: str | Path) -> Path:
    """Section 5.2 (Lemma 18) across runs that differ in the weights p: the final
    h(1) - h(-1) against the predicted limit log(p3 / (2 p1)) (0 iff p3 = 2 p1, i.e. collapse),
    and, over time, the distance to that limit beside the rate (1 + log t) / t of the ODE's
    corrections."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    limits = []
    for ds in runs:
        gap, limit = q.three_neuron_gap(ds)
        limits.append(limit)
        label = f"p = ({', '.join(f'{v:.3g}' for v in ds.weight.values)})"
        left.scatter([limit], [float(gap[-1])], s=50, label=label, zorder=3)
        later = gap.isel(time=np.flatnonzero(gap.time.values > 0))
        right.plot(later.time, np.maximum(np.abs(later - limit), FLOOR), label=label)
    span = np.array([min(limits + [0.0]) - 0.1, max(limits + [0.0]) + 0.1])
    left.plot(span, span, "k--", linewidth=1, label="Lemma 18: h(1) - h(-1) = log(p3 / 2 p1)")
    left.set_xlabel("log(p3 / (2 p1))  (0: p3 = 2 p1)")
    left.set_ylabel("h(1) - h(-1) at the last record")
    t = np.geomspace(max(1.0, float(later.time[0])), float(later.time[-1]), 100)
    right.plot(t, (1 + np.log(t)) / t, "k:", label="(1 + log t) / t, t >= 1")
    right.set_yscale("log")
    right.set_ylabel("|h(1) - h(-1) - log(p3 / 2 p1)|")
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    right.set_xscale("log")
    return _save(fig, right, Path(path), "Section 5.2: the gap h(1) - h(-1) and its limit",
                 log_time=True)


def mean_field_limit_figure(ds: xr.Dataset, companions: list, path: str | Path) -> Path:
    """A large binary d = 1 run against runs of the same config at a smaller width (other
    seeds), at the last record: h / path norm on the grid (left), and each run's deviation from
    the smaller runs' mean (right), where the seed-to-seed spread shows and the large run should
    lie inside it."""
    def final(run):
        g = q.normalised_classifier(run.isel(time=-1)).grid_outputs.isel(output=0, replica=0)
        return g.values

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    x, big = ds.grid_x.values[:, 0], final(ds)
    small = np.array([final(run) for run in companions])
    mean = small.mean(axis=0)
    seeds = ", ".join(str(run.attrs["seed"]) for run in companions)
    for i, g in enumerate(small):
        label = f"m = {q.width(companions[0])}, seeds {seeds}" if i == 0 else None
        left.plot(x, g, color="tab:blue", linewidth=0.8, alpha=0.6, label=label)
        right.plot(x, g - mean, color="tab:blue", linewidth=0.8, alpha=0.6, label=label)
    right.fill_between(x, small.min(axis=0) - mean, small.max(axis=0) - mean, color="tab:blue",
                       alpha=0.15, linewidth=0, label="their range (seed to seed)")
    label = f"m = {q.width(ds)}, seed {ds.attrs['seed']}"
    left.plot(x, big, color="k", linewidth=1.5, label=label)
    right.plot(x, big - mean, color="k", linewidth=1.5, label=label)
    left.set_ylabel("h / path norm at the last record")
    right.set_ylabel("h / path norm minus their mean")
    for ax in (left, right):
        ax.set_xlabel("x (grid; data in the shaded intervals)")
        for lo, hi in _class_intervals(ds):
            ax.axvspan(lo, hi, color="0.92", zorder=0)
    return _save(fig, (left, right), Path(path),
                 f"Mean-field limit at t = {float(ds.time[-1]):.3g}: m = {q.width(ds)} "
                 f"against {len(companions)} seeds at m = {q.width(companions[0])}",
                 log_time=False)


def _class_intervals(ds: xr.Dataset) -> list[tuple[float, float]]:
    """[min, max] of the data of each class (d = 1)."""
    x, label = ds.x.values[:, 0], ds.label.values
    return [(float(x[label == c].min()), float(x[label == c].max())) for c in np.unique(label)]


def plot_run(ds: xr.Dataset, folder: str | Path) -> list[Path]:
    """Write every figure that applies to the run into ``folder``; returns the paths."""
    if int((ds.time > 0).sum()) < 2:
        raise ValueError(f"{ds.attrs.get('file', 'this run')} has {ds.sizes['time']} record(s): "
                         "figures over time need at least two after t = 0")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = Path(ds.attrs.get("file", "run")).name
    title = f"{name}: {ds.attrs['model']}, {ds.sizes['replica']} replica(s)"
    out = [risk_figure(ds, folder / "risk.png", title)]
    if "path_norm" in ds and ds.sizes["output"] == 1:
        reference = q.max_margin_reference(ds)
        out.append(margins_figure(ds, folder / "margins.png", title, reference))
        if "grid_x" in ds and ds.sizes["input"] == 1 and reference:
            out.append(classifier_figure(ds, folder / "classifier.png", title))
    out.append(spread_figure(ds, folder / "spread.png", title))
    if "w" in ds and "particle" in ds.dims and ds.sizes["input"] == 1 and ds.sizes["output"] == 1:
        out.append(particles_figure(ds, folder / "particles.png", title))
    if ds.sizes["output"] == 3:
        out.append(simplex_figure(ds, folder / "simplex.png", title))
    if ds.sizes["output"] >= 2:
        out.append(collapse_figure(ds, folder / "collapse.png", title))
    return out
