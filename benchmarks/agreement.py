"""Agreement of a peer's step with this project's step.

Both start from the same state theta_0 and make one step. The disagreement is measured relative
to the size of the step, not of the state:

    error = max |theta_peer - theta_ours| / max |theta_ours - theta_0|,

so that it reads as the relative error of the velocity dt v, whatever dt is (relative to the
state it would be smaller by |theta| / |dt v|).
"""
from __future__ import annotations

import numpy as np

TOLERANCE = {
    # float64: both sides sum the same n or m terms in different orders (BLAS blocks, Numba
    # tiles with reassociation), each with rounding error of order n * 1e-16 relative to the
    # terms, i.e. <= 1e-12 here since the step is as large as its terms (the classes are
    # separated, so the sums do not cancel). 1e-9 leaves a margin of 1e3 and still catches a
    # perturbation of 1e-6 or any error in a formula.
    "float64": 1e-9,
    # float32: the peers compute and sum entirely in float32 (eps = 6e-8) over up to m = 1e5
    # particles (the outputs h) and n = 4096 points (the velocities); the project stores float32
    # and accumulates in float64. Blocked float32 sums of that length err by up to ~1e-5; where a
    # pre-activation z_ij lies within float32 rounding of ReLU's kink, sigma'(z_ij) is 1 on one
    # side and 0 on the other, which changes one term p_j a_i x_j of v_w, about 1/n of the
    # largest velocity (observed: a few 1e-5 at n = 1000). 1e-3 covers both; a wrong formula
    # errs by O(1).
    "float32": 1e-3,
}


def disagreement(ours: np.ndarray, peer: np.ndarray, initial: np.ndarray) -> float:
    """max |peer - ours| / max |ours - initial| in float64 (inf where the peer is not finite)."""
    ours, peer, initial = (np.asarray(t, dtype=np.float64) for t in (ours, peer, initial))
    if peer.shape != ours.shape or not np.isfinite(peer).all():
        return float("inf")
    return float(np.abs(peer - ours).max() / np.abs(ours - initial).max())


def perturbed(ours: np.ndarray, initial: np.ndarray, relative: float) -> np.ndarray:
    """The state after the step scaled by (1 + relative): a stand-in for a wrong result, whose
    disagreement with the true one is ``relative``."""
    initial = initial.astype(np.float64)
    return initial + (1.0 + relative) * (ours.astype(np.float64) - initial)
