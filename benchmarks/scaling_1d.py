"""How the step time of the d = 1 kernels grows with the problem: sorted against pairwise
against a peer, in one run.

One step is bench.py's (Euler step of the mean-field flow, ReLU, logistic loss, float64,
k = 1, R = 1). Two series:

- against m at n = 1000: m = 1e3, 3e3, ..., 1e6;
- against m = n: 1e3, 3e3, ..., 1e6.

Implementations: this project with run.kernel = 'sorted' (what 'auto' picks here), with
run.kernel = 'pairwise', and the peers asked for (default jax and torch-compile, the fastest
in bench.py's tables). The pairwise kernel and the peers cost O(m n) a step and are timed only
up to ``--max-pairs`` m n (default 2e8); the sorted kernels cost O((m + n) log n) and are timed
everywhere. Where the pairwise kernel runs, the sorted step is checked against it first (the
agreement test of bench.py, 1e-9 relative to the step).

Each implementation's time t(m) is fitted by log t = slope log m + c over its points of a series
with m >= ``--fit-from`` (default 1e4: below it, fixed costs of a few microseconds flatten the
curve); the slope is 1 for cost proportional to m (or to m + n on m = n), 2 for m n on m = n.

    python benchmarks/scaling_1d.py                 # both series, about 5 minutes on 2 cores
    python benchmarks/scaling_1d.py --quick         # m up to 1e4, no peers (seconds)

Output: a Markdown table and the fitted slopes on stdout and in OUT.md, a log-log plot in
OUT.png, every number in OUT.json (default OUT: benchmarks/results/<date>-<time>-scaling-1d).
"""
from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import numpy as np

import agreement
import measure
import ours
from cases import Case, Shape, _short
from peers import load_peers

SIZES = (1000, 3000, 10_000, 30_000, 100_000, 300_000, 1_000_000)
QUICK_SIZES = (1000, 3000, 10_000)
SERIES = {"n = 1000": lambda size: Shape(size, 1000, 1, 1),
          "m = n": lambda size: Shape(size, size, 1, 1)}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="m up to 1e4 and no peers")
    ap.add_argument("--peers", default="jax,torch-compile", help="comma-separated")
    ap.add_argument("--max-pairs", type=float, default=2e8,
                    help="largest m n at which the O(m n) implementations are timed")
    ap.add_argument("--fit-from", type=float, default=1e4, help="smallest m in the fits")
    ap.add_argument("--seconds", type=float, default=0.5,
                    help="time budget of each measurement")
    ap.add_argument("--out", type=Path, help="output path without suffix")
    args = ap.parse_args(argv)
    args.sizes = QUICK_SIZES if args.quick else SIZES
    args.peers = [] if args.quick else [p for p in args.peers.split(",") if p]
    if args.out is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        args.out = Path(__file__).parent / "results" / f"{stamp}-scaling-1d"
    return args


def time_shape(shape: Shape, factories: dict, args) -> dict:
    """{"times_s": {name: median}, "agreement": {...}} for one shape."""
    case = Case(shape, "float64", "relu")
    problem, sorted_step, _ = ours.make_step(case, "sorted")
    steps = {"sorted": sorted_step}
    checks = {}
    if shape.width * shape.points <= args.max_pairs:
        candidates = {"pairwise": lambda p: ours.make_step(case, "pairwise")[1], **factories}
        reference = None
        for name, factory in candidates.items():
            impl = factory(problem)
            impl.step()
            if reference is None:  # sorted against pairwise, from the same initial state
                sorted_step.step()
                reference = sorted_step.state().copy()
                checks["sorted vs pairwise"] = agreement.check(
                    agreement.disagreement(impl.state(), reference, problem.theta), "float64")
            steps[name] = impl
    else:
        sorted_step.step()
    warm = {name: measure.time_call(impl.step) for name, impl in steps.items()}
    timing = measure.interleaved_medians({n: i.step for n, i in steps.items()}, warm,
                                         args.seconds, 3)
    return {"m": shape.width, "n": shape.points, "agreement": checks,
            "times_s": {name: t["median_s"] for name, t in timing.items()}}


def fitted_slopes(rows: list, names: list, fit_from: float) -> dict:
    """{name: slope of log t against log m} over the rows with m >= fit_from (None if fewer
    than two points)."""
    slopes = {}
    for name in names:
        points = [(r["m"], r["times_s"][name]) for r in rows
                  if name in r["times_s"] and r["m"] >= fit_from]
        if len(points) >= 2:
            m, t = np.log(np.array(points)).T
            slopes[name] = float(np.polyfit(m, t, 1)[0])
        else:
            slopes[name] = None
    return slopes


def markdown(results: dict, names: list) -> str:
    lines = ["# meanfield-sim: d = 1 step time against the problem size", "",
             f"ReLU, float64, k = 1, R = 1, one Euler step. {machine_line(results['machine'])}",
             "", "Median ms per step; (x) = time / sorted time. '-': not timed (m n above "
             f"{results['max_pairs']:.0e}). Slopes: least-squares fit of log t against log m "
             f"for m >= {results['fit_from']:.0e}.", ""]
    for series, rows in results["series"].items():
        lines += [f"## {series}", "",
                  "| m | n | " + " | ".join(names) + " | sorted vs pairwise |",
                  "|---" * (len(names) + 3) + "|"]
        for r in rows:
            t = r["times_s"]
            cells = [f"{t['sorted'] * 1e3:.3g}"] + [
                f"{t[n] * 1e3:.3g} ({t[n] / t['sorted']:.3g}x)" if n in t else "-"
                for n in names[1:]]
            check = r["agreement"].get("sorted vs pairwise")
            agree = f"{check['max_error']:.1e}" if check else "-"
            lines.append(f"| {_short(r['m'])} | {_short(r['n'])} | " + " | ".join(cells) +
                         f" | {agree} |")
        slopes = results["slopes"][series]
        lines += ["", "Fitted slopes: " + ", ".join(
            f"{n} {s:.2f}" if s is not None else f"{n} -" for n, s in slopes.items()), ""]
    return "\n".join(lines)


def machine_line(machine: dict) -> str:
    return f"Machine: {machine['cpu']}, {machine['cores']} cores; {machine['date']}."


def plot(results: dict, names: list, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results["series"]), figsize=(11, 4.2), sharey=True)
    for ax, (series, rows) in zip(np.atleast_1d(axes), results["series"].items()):
        for name in names:
            pts = [(r["m"], r["times_s"][name]) for r in rows if name in r["times_s"]]
            if not pts:
                continue
            m, t = np.array(pts).T
            slope = results["slopes"][series][name]
            label = f"{name} (slope {slope:.2f})" if slope is not None else name
            ax.loglog(m, t * 1e3, "o-", label=label)
        ax.set_title(f"d = 1, ReLU: {series}")
        ax.set_xlabel("m (particles)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    np.atleast_1d(axes)[0].set_ylabel("ms per step")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    args = parse_args(argv)
    factories, missing = load_peers(args.peers)
    names = ["sorted", "pairwise", *factories]
    results = {"machine": measure.machine(), "missing": missing, "max_pairs": args.max_pairs, "fit_from": args.fit_from,
               "series": {}, "slopes": {}}
    for series, shape_of in SERIES.items():
        rows = []
        for size in args.sizes:
            shape = shape_of(size)
            print(f"  {series}: m={shape.width} n={shape.points}", file=sys.stderr, flush=True)
            rows.append(time_shape(shape, factories, args))
        results["series"][series] = rows
        results["slopes"][series] = fitted_slopes(rows, names, args.fit_from)
    failures = [f"{s}: m={r['m']} n={r['n']}" for s, rows in results["series"].items()
                for r in rows for c in r["agreement"].values() if not c["ok"]]
    text = markdown(results, names)
    print(text)
    measure.write_results(args.out, text, results)
    plot(results, names, Path(f"{args.out}.png"))
    print(f"wrote {args.out}.md, .json and .png", file=sys.stderr)
    if failures:
        print(f"FAILED: sorted and pairwise disagree at {failures}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
