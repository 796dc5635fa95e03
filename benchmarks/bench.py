"""Time one full gradient-descent step of meanfield-sim against NumPy, PyTorch and JAX peers.

One step is forward pass, loss, gradient and update of the mean-field two-layer network
(``cases`` states the mathematics; ``ours``, ``peers_numpy``, ``peers_torch`` and ``peers_jax``
implement it). For every case (shape, dtype, activation) the run

1. checks agreement: every available peer makes one step from this project's initial state and
   must match the project's step (``agreement``: relative to the step, 1e-9 in float64; in
   float32 1e-2 in the max norm, for ReLU's kink, and 1e-3 in the rms norm); a disagreement is a
   failure and the exit status is 1;
2. times the step of each implementation (medians of interleaved repeats; first calls, which
   include compilation, reported apart) and this project's velocity evaluation alone, whose
   ratio to the step gives the integrator's overhead;
3. reports achieved FLOP/s of the step's matrix products against np.matmul's GEMM rate,
   measured in the same run, and every peer's time relative to the project's.

Peak memory is probed for each (implementation, shape) in a fresh process at the first dtype
and activation listed (float64, relu by default; ``memory_probe``). ``--quick`` probes the first
shape only.

Threads: every implementation may use all cores: PyTorch gets torch.set_num_threads(cores),
Numba, NumPy's BLAS and XLA keep their defaults (the project picks its own thread count for
small problems). torch.compile compiles every case (measured 0.1 to 5 s a case, about 10 s for
the first in a process with a cold Inductor cache), so no subset is needed.

    python benchmarks/bench.py                     # the full run (8 to 10 minutes on 2 cores)
    python benchmarks/bench.py --quick             # tiny shapes, few repeats
    python benchmarks/bench.py --quick --check-only  # agreement only (what CI runs)
    python benchmarks/bench.py --shapes 1e4,1e3,32,10 4096,4096,128,10 --peers numpy,jax

Output: Markdown on stdout and in OUT.md, every number in OUT.json (default OUT:
benchmarks/results/<date>-<time>[-quick]).
"""
from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import agreement
import measure
import ours
import report
from cases import ACTIVATIONS, DTYPES, FULL_SHAPES, PAIRWISE, QUICK_SHAPES, Case, parse_shape
from memory_probe import probe
from peers import PEERS, load_peers


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="tiny shapes and few repeats (under a minute)")
    ap.add_argument("--check-only", action="store_true",
                    help="agreement only: no timing, no memory probes")
    ap.add_argument("--shapes", nargs="+", type=shape_argument, metavar="M,N,D,K[,R]",
                    help="shapes instead of the default list (1e3-style numbers allowed)")
    ap.add_argument("--dtypes", default=",".join(DTYPES), help="comma-separated")
    ap.add_argument("--activations", default=",".join(ACTIVATIONS), help="comma-separated")
    ap.add_argument("--peers", default=",".join(PEERS),
                    help=f"comma-separated subset of {', '.join(PEERS)}")
    ap.add_argument("--seconds", type=float,
                    help="time budget of each step measurement (default 1, --quick 0.05)")
    ap.add_argument("--min-repeats", type=int, default=3)
    ap.add_argument("--no-memory", action="store_true", help="skip the memory probes")
    ap.add_argument("--perturb", type=float, default=0.0, metavar="EPS",
                    help="scale this project's step by 1 + EPS before the agreement check, to "
                         "see the check fail")
    ap.add_argument("--out", type=Path, help="output path without suffix")
    args = ap.parse_args(argv)
    args.peers = [p for p in args.peers.split(",") if p]
    unknown = set(args.peers) - set(PEERS)
    if unknown:
        ap.error(f"unknown peers {sorted(unknown)}; choose from {', '.join(PEERS)}")
    args.dtypes = args.dtypes.split(",")
    args.activations = args.activations.split(",")
    for given, allowed in ((args.dtypes, DTYPES), (args.activations, ACTIVATIONS)):
        if not set(given) <= set(allowed):
            ap.error(f"{','.join(given)}: choose from {', '.join(allowed)}")
    args.shapes = tuple(args.shapes or (QUICK_SHAPES if args.quick else FULL_SHAPES))
    if args.seconds is None:
        args.seconds = 0.05 if args.quick else 1.0
    if args.out is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        args.out = Path(__file__).parent / "results" / (stamp + ("-quick" if args.quick else ""))
    return args


def shape_argument(text: str):
    try:
        return parse_shape(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run_case(case: Case, factories: dict, args) -> dict:
    """Agreement of every peer with the project on one step, then (unless --check-only) the
    interleaved step timings."""
    problem, project, velocity = ours.make_step(case)
    impls = {"ours": project}
    first_call = {"ours": measure.time_call(project.step)}
    reference = project.state().copy()
    if args.perturb:
        reference = agreement.perturbed(reference, problem.theta, args.perturb)
    checks = {}
    kernel = ours.resolved_kernel(case)
    if kernel != "pairwise":  # the pairwise kernel is timed too, as if it were a peer
        factories = {PAIRWISE: lambda _: ours.make_step(case, "pairwise")[1], **factories}
    for name, factory in factories.items():
        try:
            impl = factory(problem)
            first_call[name] = measure.time_call(impl.step)
            errors = agreement.disagreement(reference, impl.state(), problem.theta)
        except Exception as exc:  # a peer that crashes (out of memory, say) fails its check
            checks[name] = {**agreement.check({"max_error": float("inf"),
                                               "rms_error": float("inf")}, case.dtype),
                            "exception": f"{type(exc).__name__}: {exc}"}
            continue
        checks[name] = agreement.check(errors, case.dtype)
        impls[name] = impl
    result = {"case": case_dict(case), "kernel": kernel, "agreement": checks,
              "first_call_s": first_call,
              "matmul_flops": case.shape.matmul_flops,
              "state_and_data_bytes": problem.state_and_data_bytes()}
    if args.check_only:
        return result
    steps = {name: impl.step for name, impl in impls.items()}
    steps["ours-velocity"] = velocity
    first_call["ours-velocity"] = measure.time_call(velocity)
    warm = {name: measure.time_call(step) for name, step in steps.items()}
    result["timing"] = measure.interleaved_medians(steps, warm, args.seconds, args.min_repeats)
    return result


def case_dict(case: Case) -> dict:
    s = case.shape
    return {"m": s.width, "n": s.points, "d": s.input_dim, "k": s.outputs, "R": s.replicas,
            "dtype": case.dtype, "activation": case.activation, "label": case.label()}


def memory_rows(args, implementations) -> list[dict]:
    shapes = args.shapes[:1] if args.quick else args.shapes
    rows = []
    for shape in shapes:
        case = Case(shape, args.dtypes[0], args.activations[0])
        for name in implementations:
            rows.append({"case": case_dict(case), "implementation": name, **probe(name, case)})
            print(f"  memory {case.label()} {name}", file=sys.stderr, flush=True)
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    factories, missing = load_peers(args.peers)
    results = {"machine": measure.machine(), "peers": list(factories), "missing": missing,
               "options": {"quick": args.quick, "check_only": args.check_only,
                           "seconds": args.seconds, "min_repeats": args.min_repeats,
                           "perturb": args.perturb}}
    if not args.check_only:
        results["gemm_flops"] = measure.gemm_rates()
    cases = [Case(shape, dtype, activation) for shape in args.shapes for dtype in args.dtypes
             for activation in args.activations]
    results["cases"] = []
    for case in cases:
        print(f"  {case.label()}", file=sys.stderr, flush=True)
        results["cases"].append(run_case(case, factories, args))
    if not (args.check_only or args.no_memory):
        results["memory"] = memory_rows(args, ["ours", *factories])
    failures = [f"{c['case']['label']}: {name} " + (
                    check.get("exception") or
                    f"differs by {check['max_error']:.2e} max, {check['rms_error']:.2e} rms "
                    f"(tolerances {check['max_tolerance']:.0e}, {check['rms_tolerance']:.0e})")
                for c in results["cases"] for name, check in c["agreement"].items()
                if not check["ok"]]
    results["failures"] = failures
    text = report.markdown(results)
    print(text)
    markdown_path, json_path = measure.write_results(args.out, text, results)
    print(f"wrote {markdown_path} and {json_path}", file=sys.stderr)
    if failures:
        print(f"FAILED: {len(failures)} peer checks disagree with this project", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
