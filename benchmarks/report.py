"""The Markdown report of a benchmark run (every number also goes to the JSON file).

Tables: agreement; step times with the ratios peer / project and fastest peer / project, and
the integrator overhead (step - velocity) / step of this project; achieved FLOP/s
F / t with F = 2 m n (2d + 3k) R against the GEMM rate; first calls (compilation); replica
scaling t(R) / t(R = 1); peak memory.
"""
from __future__ import annotations

from cases import PAIRWISE


def markdown(results: dict) -> str:
    peers = results["peers"]
    parts = ["# meanfield-sim: one gradient-descent step against peers", "",
             "ours = meanfield-sim (this project); the peers: numpy (vectorised, m x n "
             "matrices), torch (autograd), torch-compile (hand-written gradient, "
             "torch.compile), jax (jit of value_and_grad, vmap over replicas).", "",
             machine_line(results["machine"])]
    if "gemm_flops" in results:
        gemm = results["gemm_flops"]
        parts.append(f"GEMM rate (np.matmul, 2048 x 2048): float64 {gemm['float64'] / 1e9:.1f}"
                     f" GFLOP/s, float32 {gemm['float32'] / 1e9:.1f} GFLOP/s.")
    for name, why in results["missing"].items():
        parts.append(f"Peer {name}: missing ({why}).")
    parts += ["", "## Agreement", "",
              "After one step from the same theta_0: max |peer - ours| / max |ours - theta_0| "
              "and, in brackets, the same ratio in the rms norm (tolerances: float64 1e-9 "
              "both; float32 1e-2 max, for ReLU's kink, and 1e-3 rms; see agreement.py).", ""]
    columns = ([PAIRWISE] if any(PAIRWISE in c["agreement"] for c in results["cases"])
               else []) + peers
    parts += table(["case", *columns],
                   [[c["case"]["label"], *(agreement_cell(c["agreement"][p])
                                           if p in c["agreement"] else "-" for p in columns)]
                    for c in results["cases"]])
    if results["failures"]:
        parts += ["", "**FAILED: the peers disagree with this project:**", ""]
        parts += [f"- {line}" for line in results["failures"]]
    else:
        checked = sum(len(c["agreement"]) for c in results["cases"])
        parts += ["", f"All {checked} checks agree ({', '.join(columns) or 'no peers'})."]
    timed = [c for c in results["cases"] if "timing" in c]
    if timed:
        parts += timing_sections(timed, peers, results["gemm_flops"])
    if results.get("memory"):
        parts += memory_section(results["memory"])
    return "\n".join(parts)


def machine_line(machine: dict) -> str:
    versions = ", ".join(f"{name} {v}" for name, v in machine["versions"].items() if v)
    return (f"Machine: {machine['cpu']}, {machine['cores']} cores; Python {machine['python']}, "
            f"{versions}; {machine['date']}.")


def agreement_cell(check: dict) -> str:
    if "exception" in check:
        return f"**FAIL** ({check['exception']})"
    cell = f"{check['max_error']:.1e} ({check['rms_error']:.1e})"
    return cell + ("" if check["ok"] else " **FAIL**")


def timing_sections(cases: list, peers: list, gemm: dict) -> list:
    lines = ["", "## Step time", "",
             "Median of interleaved repeats, ms per step; (x) = peer time / project time, so "
             "above 1 the project is faster. Kernel: what run.kernel = 'auto' picked; where it "
             "is 'sorted', the pairwise column times run.kernel = 'pairwise' on the same case. "
             "Velocity: the project's velocity evaluation alone; overhead = (step - velocity) / "
             "step, the integrator's share (it is small, and below 0 where timing noise exceeds "
             "it).", ""]
    rows = []
    for c in cases:
        t = {name: v["median_s"] for name, v in c["timing"].items()}
        ours = t["ours"]
        peer_cells = [f"{t[p] * 1e3:.3g} ({t[p] / ours:.2g}x)" if p in t else "-"
                      for p in [PAIRWISE, *peers]]
        fastest = min((t[p] for p in peers if p in t), default=None)
        rows.append([c["case"]["label"], c.get("kernel", "pairwise"), f"{ours * 1e3:.3g}",
                     f"{t['ours-velocity'] * 1e3:.3g}", f"{(ours - t['ours-velocity']) / ours:.0%}",
                     *peer_cells, f"{fastest / ours:.2g}" if fastest else "-"])
    lines += table(["case", "kernel", "ours", "velocity", "overhead", "pairwise", *peers,
                    "fastest peer / ours"], rows)

    lines += ["", "## Achieved FLOP/s", "",
              "F / t with F = 2 m n (2d + 3k) R, in GFLOP/s, and as a fraction of the GEMM rate "
              "of the case's dtype.", ""]
    names = ["ours", PAIRWISE, *peers]
    rows = []
    for c in cases:
        flops, rate = c["matmul_flops"], gemm[c["case"]["dtype"]]
        cells = []
        for name in names:
            if name not in c["timing"]:
                cells.append("-")
                continue
            achieved = flops / c["timing"][name]["median_s"]
            cells.append(f"{achieved / 1e9:.3g} ({achieved / rate:.1%})")
        rows.append([c["case"]["label"], f"{flops / 1e9:.3g}", *cells])
    lines += table(["case", "F (GFLOP)", *names], rows)

    lines += ["", "## First call", "",
              "Seconds for the first step of each implementation: compilation or JIT plus one "
              "step. Numba and torch.compile (Inductor) keep on-disk caches, so a repeated run "
              "compiles less than the first; JAX recompiles in every process.", ""]
    lines += table(["case", *names],
                   [[c["case"]["label"], *(f"{c['first_call_s'][n]:.3g}"
                                           if n in c["first_call_s"] else "-" for n in names)]
                    for c in cases])
    scaling = replica_scaling(cases, names)
    if scaling:
        lines += ["", "## Replicas", "", "Step time with R replicas / step time with R = 1.", ""]
        lines += table(["case", *names], scaling)
    return lines


def replica_scaling(cases: list, names: list) -> list:
    """Rows t(R) / t(1) for every case with R > 1 whose R = 1 twin was timed too."""
    def key(c, replicas):
        cd = c["case"]
        return (cd["m"], cd["n"], cd["d"], cd["k"], replicas, cd["dtype"], cd["activation"])
    by_key = {key(c, c["case"]["R"]): c for c in cases}
    rows = []
    for c in cases:
        single = by_key.get(key(c, 1))
        if c["case"]["R"] == 1 or single is None:
            continue
        cells = [f"{c['timing'][n]['median_s'] / single['timing'][n]['median_s']:.3g}"
                 if n in c["timing"] and n in single["timing"] else "-" for n in names]
        rows.append([c["case"]["label"], *cells])
    return rows


def memory_section(rows: list) -> list:
    lines = ["", "## Peak memory", "",
             "MB, each in a fresh process (memory_probe.py): peak RSS growth over the first "
             "step (compilation included), RSS kept after it, and peak RSS growth of a warm "
             "step; next to the size of the project's state (float64) and the data. An "
             "allocator that keeps its buffers between steps (XLA's) shows its working memory "
             "under retained, not under warm step.", ""]
    body = []
    for r in rows:
        label = f"{r['case']['label']}"
        if "error" in r:
            body.append([label, r["implementation"], "-", f"error: {r['error']}", "-", "-"])
            continue
        warm = "-" if r["step_peak"] is None else f"{max(r['step_peak'], 0) / 1e6:.1f}"
        body.append([label, r["implementation"], f"{r['state_and_data'] / 1e6:.2f}",
                     f"{r['first_step_peak'] / 1e6:.1f}", f"{r['retained'] / 1e6:.1f}", warm])
    lines += table(["case", "implementation", "state + data", "first step peak", "retained",
                    "warm step peak"], body)
    return lines


def table(header: list, rows: list) -> list:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
