"""Agreement of a peer's step with this project's step.

Both start from the same state theta_0 and make one step. The difference of the new states is
measured relative to the size of the step, not of the state, so that it reads as the relative
error of the velocity dt v whatever dt is (relative to the state it would be smaller by
|theta| / |dt v|), in two norms:

    max_error = max |theta_peer - theta_ours| / max |theta_ours - theta_0|
    rms_error = ||theta_peer - theta_ours||_2 / ||theta_ours - theta_0||_2

A peer agrees when both are within the tolerances of the dtype. The max norm sees an error in a
single particle; the rms norm sees a small error shared by many (a wrong scale, a dropped
block of points).
"""
from __future__ import annotations

import numpy as np

MAX_TOLERANCE = {
    # float64: both sides sum the same n or m terms in different orders (BLAS blocks, Numba
    # tiles with reassociation), with rounding errors of order n * 1e-16 relative to the terms;
    # observed <= 7e-15 over the full shapes. 1e-9 leaves a margin of 1e5 and still catches a
    # perturbation of 1e-6.
    "float64": 1e-9,
    # float32 (eps = 6e-8): the peers compute and keep their state in float32, the project
    # computes in float32 and keeps its state in float64; sums and rounding differ by <= 3e-6
    # (observed). Larger: wherever a pre-activation z_ij lies within float32 rounding of ReLU's
    # kink, sigma'(z_ij) is 1 on one side and 0 on the other, changing one term
    # p_j (g_j . a_i) x_j of one particle's velocity, about 1/n of the largest velocity.
    # Observed: 4.6e-4 between the project and JAX (m = 1e4, n = 1e3, d = 32, k = 1), and 9.3e-4
    # between float32 and float64 arithmetic at k = 10 (for the project and NumPy alike), so an
    # implementation that forms z more accurately may differ by that much. 1e-2 covers such
    # flips; a wrong formula errs by O(1).
    "float32": 1e-2,
}
RMS_TOLERANCE = {
    "float64": 1e-9,  # as for the max norm
    # float32: a kink flip touches one particle of m, so it weighs less in the rms norm:
    # observed <= 2.8e-5 between implementations, 5.0e-5 between float32 and float64 arithmetic,
    # <= 7e-6 without flips (sigmoid). 1e-3 leaves a margin of 20 and catches a systematic
    # error above 1e-3 in every particle, which the max tolerance would let pass.
    "float32": 1e-3,
}


def disagreement(ours: np.ndarray, peer: np.ndarray, initial: np.ndarray) -> dict:
    """{"max_error", "rms_error"} of a peer's new state against ours (inf where the peer's state
    has another shape or is not finite)."""
    ours, peer, initial = (np.asarray(t, dtype=np.float64) for t in (ours, peer, initial))
    if peer.shape != ours.shape or not np.isfinite(peer).all():
        return {"max_error": float("inf"), "rms_error": float("inf")}
    difference, step = peer - ours, ours - initial
    return {"max_error": float(np.abs(difference).max() / np.abs(step).max()),
            "rms_error": float(np.linalg.norm(difference) / np.linalg.norm(step))}


def check(errors: dict, dtype: str) -> dict:
    """The errors with the tolerances of ``dtype`` and the verdict ``ok``."""
    max_tolerance, rms_tolerance = MAX_TOLERANCE[dtype], RMS_TOLERANCE[dtype]
    return {**errors, "max_tolerance": max_tolerance, "rms_tolerance": rms_tolerance,
            "ok": errors["max_error"] <= max_tolerance and errors["rms_error"] <= rms_tolerance}


def perturbed(ours: np.ndarray, initial: np.ndarray, relative: float) -> np.ndarray:
    """The state after the step scaled by (1 + relative): a stand-in for a wrong result, whose
    max and rms errors against the true one are both ``relative``."""
    initial = initial.astype(np.float64)
    return initial + (1.0 + relative) * (ours.astype(np.float64) - initial)
