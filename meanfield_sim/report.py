"""The paper reproduced: run (or reuse) the configs of its claims and write ``report.md`` with the
figures and a claim-by-claim table of what the paper states, what was measured and the error.

Each :class:`Claim` names a config in the report's folder (``runs/paper``), overrides (the
three-neuron example runs with several weightings), shorter settings for ``--quick``, further
runs to compare with (the mean-field limit against seeds at a tenth of the width), and a check
that turns the run's Dataset (and its companions') into table rows. A row passes when its error is within the
tolerance given beside it, and says why that tolerance (method order, asymptotic rate).
Finished runs are reused when their file holds exactly the config that would be run.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import config as config_mod
from .analysis import collapse, maxmargin
from .analysis import quantities as q
from .analysis.dataset import open_run
from .analysis.figures import mean_field_limit_figure, plot_run, three_neuron_gap_figure


@dataclass
class Row:
    source: str        # where in the paper
    statement: str     # what the paper states
    quantity: str      # what was measured
    measured: float
    error: float       # distance from the statement (0 = exactly as stated)
    tolerance: float
    why: str           # why this tolerance

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.error) and self.error <= self.tolerance)


@dataclass(frozen=True)
class Claim:
    key: str
    config: str
    check: Callable  # (Dataset, quick, companions: list[Dataset]) -> list[Row]
    overrides: dict = field(default_factory=dict)
    quick: dict = field(default_factory=dict)
    companions: Callable | None = None  # the run's config -> overrides of each companion run


def _last(ds, name) -> np.ndarray:
    return ds[name].isel(time=-1).values


def _final_layer(source, statement):
    def check(ds, quick, companions):
        tol = 1e-4 if quick else 1e-6
        why = "projected dopri5 at rtol 1e-8; exponential approach"
        spread, vertex = (float(_last(ds, name).max()) for name in ("class_spread",
                                                                      "vertex_error"))
        return [Row("Lemma 2", "every class collapses to one point", "max class spread",
                    spread, spread, tol, why),
                Row(source, statement, "max distance of z_j to its predicted vertex",
                    vertex, vertex, tol, why)]
    return check


def _penultimate(ds, quick, companions):
    c = q.collapse_over_time(ds).isel(time=-1)
    cfg = config_mod.loads(ds.attrs["config"])
    radius = cfg["toy"]["radius"]
    y = ds.y.isel(time=-1).transpose("replica", "sample", "feature").values
    norms = np.array([np.linalg.norm(collapse.class_statistics(
        frame, q.class_indices(ds), ds.weight.values)["means"], axis=1) for frame in y])
    tol, why = (1e-4, "t_end 2e3") if quick else (1e-6, "explicit steps near the optimum")
    src = "Corollary 9"
    rows = [("features of a class collapse", "max feature spread", _last(ds, "feature_spread").max()),
            ("class means have norm R", f"max over classes | |mu_c| - R | (R = {radius})",
             np.abs(norms - radius).max()),
            ("the means form a regular simplex", "max |cos(mu_c, mu_c') + 1/(K-1)|",
             c.simplex_cos_error_max.max()),
            ("centred at 0", "|mean of the class means|", c.simplex_centroid_norm.max()),
            ("A is an isometry (x operator bound) on their span", "||P A^T A P - s^2 P||_op",
             c.simplex_isometry_error.max())]
    return [Row(src, s, name, float(v), float(v), tol, why) for s, name, v in rows]


def _lemma16(ds, quick, companions):
    nm = (ds.margin / ds.path_norm).isel(replica=0)
    x, y = ds.x.values, ds.label.values
    optimum = q.max_margin_reference(ds)["path"]
    distance = float(q.distance_to_maximisers(ds.isel(time=[-1])).isel(time=0, replica=0))
    g = q.normalised_classifier(ds.isel(time=-1)).outputs.isel(output=0, replica=0).values
    plus = g[y > 0]
    b, dev = maxmargin.fit_paper_f_b(x, g)
    t_end = float(ds.time[-1])
    src = "Lemma 16, (7)"
    return [
        Row(src, "the max-margin problem (7) has value 1/2 on these data", "LP optimum",
            optimum, abs(optimum - 0.5), 1e-9, "exact LP for the path norm in d = 1"),
        Row(src, "h/||h|| never beats the optimum", "max_t margin / path norm - 1/2",
            float(nm.max()), max(0.0, float(nm.max()) - optimum), 1e-9,
            "a hard inequality: h/||h|| is feasible for (7)"),
        Row(src, "h/||h|| approaches a maximiser as t -> inf",
            f"distance to the maximisers on the data at t = {t_end:.3g}", distance, distance,
            0.05, "convergence is like 1/log t: 0.034 at 1e4, 0.023 at 1e6 measured"),
        Row(src, "the limit is not constant on a class (f_b: slope 1/(2(1+b)))",
            "spread of h/||h|| over class +1 (error: how far below 1/8)",
            float(plus.max() - plus.min()), max(0.0, 0.125 - float(plus.max() - plus.min())),
            0.0, "every maximiser rises by >= 1/4 across [1, 2]; the run must not collapse"),
        Row(src, "the maximisers include the family f_b", f"best b = {b:.3g}: max deviation",
            dev, dev, 0.05, "distance to the set bounds it from below; f_b are symmetric"),
    ]


def _lemma18(ds, quick, companions):
    p = ds.weight.values
    gaps, limit = q.three_neuron_gap(ds)
    gap = float(gaps[-1])
    t = float(ds.time[-1])
    moved = float(np.abs(ds.w - ds.w.isel(time=0)).max() + np.abs(ds.b - ds.b.isel(time=0)).max())
    statement = ("h(1) - h(-1) -> 0 iff p3 = 2 p1" + (" (here it does)" if limit == 0 else
                                                       f" (here -> log(p3/2p1) = {limit:.4g})"))
    return [Row("Lemma 18", statement, f"h(1) - h(-1) at t = {t:.3g}, p = ({', '.join(f'{v:.3g}' for v in p)})",
                gap, abs(gap - limit), (1 + math.log(t)) / t,
                "corrections decay like log(t)/t (from the ODE)"),
            Row("Section 5.2", "w and b never move (sigma' = 0 at the data)",
                "max |w(t) - w(0)| + |b(t) - b(0)|", moved, moved, 0.0, "exactly, bit for bit")]


def _seeds_at_a_tenth_of_the_width(cfg: dict) -> list[dict]:
    """Five runs of the config at m / 10 with seeds other than its own."""
    seed, width = cfg["run"]["seed"], cfg["model"]["width"]
    return [{"model": {"width": width // 10}, "run": {"seed": seed + 1 + s}} for s in range(5)]


def _mean_field_limit(ds, quick, companions):
    """h / path norm of the large run at its end against the seed-to-seed spread of the
    companion runs at a tenth of the width."""
    def final(run):
        g = q.normalised_classifier(run.isel(time=-1)).grid_outputs.isel(output=0, replica=0)
        return g.values, float((run.margin / run.path_norm).isel(time=-1, replica=0))

    big, big_margin = final(ds)
    small = [final(run) for run in companions]
    grids, margins = np.array([g for g, _ in small]), np.array([nm for _, nm in small])
    m, m_small, t = q.width(ds), q.width(companions[0]), float(ds.time[-1])
    src, why = "mean-field limit", (f"the spread (max - min) of {len(small)} seeds at "
                                    f"m = {m_small}: fluctuations are O(m^-1/2)")
    deviation = float(np.abs(big - grids.mean(axis=0)).max())
    deviation_margin = abs(big_margin - float(margins.mean()))
    return [
        Row(src, f"h / ||h|| at m = {m} agrees with m = {m_small}",
            f"max over the grid of |h/||h|| - seeds' mean| at t = {t:.3g}", deviation,
            deviation, float((grids.max(axis=0) - grids.min(axis=0)).max()), why),
        Row(src, f"margin / path norm at m = {m} agrees with m = {m_small}",
            f"|margin / path norm - seeds' mean| at t = {t:.3g}", big_margin,
            deviation_margin, float(margins.max() - margins.min()), why),
    ]


CLAIMS = (
    Claim("final_layer_k3", "final_layer_k3.toml",
          _final_layer("Lemma 4, (4)", "the classes sit at the simplex vertices of (4)")),
    Claim("final_layer_lp", "final_layer_lp.toml",
          _final_layer("Remark 5", "in an l^4 ball: the vertices of that p (Lemma 4's argument)")),
    Claim("penultimate_simplex", "penultimate_simplex.toml", _penultimate,
          quick={"run": {"t_end": 2.0e3}}),
    Claim("section5_1", "section5_1_relu.toml", _lemma16,
          quick={"run": {"t_end": 1.0e4}, "record": {"count": 40}}),
    Claim("section5_1_million", "section5_1_million.toml", _mean_field_limit,
          quick={"model": {"width": 10000}, "run": {"t_end": 1.0e4}, "record": {"count": 40}},
          companions=_seeds_at_a_tenth_of_the_width),
    Claim("section5_2_collapse", "section5_2_three_neurons.toml", _lemma18),
    Claim("section5_2_p3_below", "section5_2_three_neurons.toml", _lemma18,
          overrides={"data": {"weights": [0.3, 0.3, 0.4]}}),
    Claim("section5_2_p3_above", "section5_2_three_neurons.toml", _lemma18,
          overrides={"data": {"weights": [0.2, 0.2, 0.6]}}),
)


def _config(folder: Path, claim: Claim, quick: bool, companion: dict | None = None) -> dict:
    raw = config_mod.read(folder / claim.config)
    config_mod.apply_sections(raw, claim.overrides)
    if quick:
        config_mod.apply_sections(raw, claim.quick)
    if companion is not None:
        config_mod.apply_sections(raw, companion)
    return config_mod.resolve(raw)


def _run_or_reuse(cfg: dict, path: Path) -> tuple:
    """(Dataset, 'reused' | 'ran') for the run of ``cfg`` at ``path``."""
    from .runner import run
    if path.exists():
        ds = open_run(path)
        if ds.attrs["status"] == "complete" and ds.attrs["config"] == config_mod.to_toml(cfg):
            return ds, "reused"
    run(cfg, path, force=True)
    return open_run(path), "ran"


def _companions_note(key: str, companions: list) -> str:
    if not companions:
        return ""
    seeds = ", ".join(str(run.attrs["seed"]) for run in companions)
    return (f", companions `runs/{key}_1.h5` to `_{len(companions)}.h5` at "
            f"m = {q.width(companions[0])}, seeds {seeds}")


def make_report(folder: str | Path, out: str | Path, quick: bool = False,
                log: Callable[[str], None] = print) -> tuple[Path, list[Row]]:
    """Run every claim's config from ``folder`` (or reuse it), write figures and report.md to
    ``out``; returns the report's path and the rows."""
    folder, out = Path(folder), Path(out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    rows, sections, three_neuron_runs = [], [], []
    for claim in CLAIMS:
        cfg = _config(folder, claim, quick)
        ds, how = _run_or_reuse(cfg, out / "runs" / f"{claim.key}.h5")
        companions = []
        for i, extra in enumerate(claim.companions(cfg) if claim.companions else []):
            companion, companion_how = _run_or_reuse(_config(folder, claim, quick, extra),
                                                     out / "runs" / f"{claim.key}_{i + 1}.h5")
            companions.append(companion)
            how = how if companion_how == "reused" else "ran"
        figures = plot_run(ds, out / "figures" / claim.key)
        if companions:
            figures.append(mean_field_limit_figure(
                ds, companions, out / "figures" / claim.key / "mean_field_limit.png"))
        claim_rows = claim.check(ds, quick, companions)
        rows += claim_rows
        sections.append((claim.key, f"`{claim.config}`" + (
            f" with {claim.overrides}" if claim.overrides else "")
            + f" ({how}; file `runs/{claim.key}.h5`"
            + _companions_note(claim.key, companions) + ")", figures))
        log(f"{claim.key}: {how}, {sum(r.passed for r in claim_rows)}/{len(claim_rows)} rows pass")
        if claim.check is _lemma18:
            three_neuron_runs.append(ds)
    if three_neuron_runs:
        gap = three_neuron_gap_figure(three_neuron_runs, out / "figures" / "section5_2_gap.png")
        sections.append(("section5_2_gap", "h(1) - h(-1) of the Section 5.2 runs above "
                         "against the limit log(p3 / (2 p1)) of Lemma 18", [gap]))
    path = out / "report.md"
    path.write_text(_markdown(folder, out, quick, rows, sections, time.perf_counter() - start))
    return path, rows


def _markdown(folder, out, quick, rows, sections, seconds) -> str:
    passed = sum(r.passed for r in rows)
    lines = ["# The paper's claims, measured", "",
             f"E & Wojtowytsch, *On the emergence of simplex symmetry in the final and "
             f"penultimate layers of neural network classifiers*. Configs from `{folder}`"
             f"{' (--quick: shorter runs, looser tolerances)' if quick else ''}; "
             f"{passed} of {len(rows)} rows within tolerance; {seconds:.0f} s wall time.", "",
             "| claim | the paper states | measured | value | error | tolerance | why | ok |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [r.source, r.statement, r.quantity, f"{r.measured:.6g}", f"{r.error:.3g}",
                 f"{r.tolerance:.3g}", r.why, "yes" if r.passed else "**no**"]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    for heading, description, figures in sections:
        lines += ["", f"## {heading}", "", description, ""]
        lines += [f"![{p.stem}]({p.relative_to(out)})" for p in figures]
    return "\n".join(lines) + "\n"
