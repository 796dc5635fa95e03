"""Peak memory of one implementation's step, each (implementation, case) in a fresh process.

The child process imports the implementation's library, builds the problem (this project's
flow, whose initial particles and data every peer copies) and the implementation, and reads
its resident set size RSS_0 from /proc/self/statm. It makes one step (for the compiled peers
and for Numba this includes compiling or loading the cache), resets the peak
(``measure.reset_peak``), reads RSS_1 and makes a second step. It reports, in bytes,

    first_step_peak = peak RSS after the first step - RSS_0     (compilation included)
    retained        = RSS_1 - RSS_0          (compiled code, caches and pools kept afterwards)
    step_peak       = peak RSS after the second step - RSS_1    (what a warm step needs)

i.e. the memory beyond the inputs: materialised m x n matrices, autograd's saved tensors,
compiled code, thread pools. ``state_and_data`` is the size of theta, x, labels and weights,
for scale. Peak RSS is VmHWM (see ``measure.peak_bytes``). step_peak is None where the kernel
does not allow resetting the peak; memory that an allocator keeps from the first step and
reuses in the second is in ``retained``, not in step_peak.

    python benchmarks/memory_probe.py IMPLEMENTATION M,N,D,K,R DTYPE ACTIVATION
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cases import Case, parse_shape


def probe(implementation: str, case: Case, timeout_s: float = 600) -> dict:
    """Run this script for one (implementation, case) in a fresh interpreter; its JSON result,
    or {"error": ...} if the child failed."""
    command = [sys.executable, str(Path(__file__).resolve()), implementation, case.shape.spec(),
               case.dtype, case.activation]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": f"no result within {timeout_s:.0f} s"}
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["exit %d" % done.returncode])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(implementation: str, shape: str, dtype: str, activation: str) -> None:
    import measure
    import ours
    from peers import load_peers

    case = Case(parse_shape(shape), dtype, activation)
    problem, impl, _ = ours.make_step(case)
    if implementation != "ours":
        factories, missing = load_peers([implementation])
        if missing:
            raise SystemExit(f"{implementation}: {missing[implementation]}")
        del impl
        impl = factories[implementation](problem)
    before = measure.resident_bytes()
    impl.step()
    first_peak = measure.peak_bytes() - before
    step_peak = None
    resettable = measure.reset_peak()
    after_first = measure.resident_bytes()
    if resettable:
        impl.step()
        step_peak = measure.peak_bytes() - after_first
    print(json.dumps({"first_step_peak": first_peak, "retained": after_first - before,
                      "step_peak": step_peak, "state_and_data": problem.state_and_data_bytes()}))


if __name__ == "__main__":
    main(*sys.argv[1:])
