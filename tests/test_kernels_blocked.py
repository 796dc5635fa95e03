"""kernels.blocked (tiled matrix products, for large d + k) against the Numba loops of
kernels.cpu, an independent implementation of the same passes (itself checked against finite
differences in test_gradients, which also runs the blocked kernels through the flow at d = 11).

m = 1100 particles and n = 2100 points span three particle tiles and three data tiles each,
the last ones partial, so every tile boundary is crossed. float64: both sum the same terms in
different orders, 1e-12 relative to the largest entry (sums of ~2000 terms of size O(1)).
float32: the blocked products run in float32 (each tile's sum of up to 1024 float32 terms, then
float64 across tiles) while the loops accumulate in float64; a float32 sum of N terms errs by
about sqrt(N) 6e-8 relative (2e-6 at N = 1024, worst case N 6e-8 = 6e-5): 3e-5 allowed.
"""
from __future__ import annotations

import numpy as np
import pytest

from meanfield_sim.kernels import blocked, cpu, get_backend
from meanfield_sim.model.activations import ACTIVATION_IDS

R, M, N, D, K = 2, 1100, 2100, 9, 3
TRAIN = {"awb": (True, True, True), "a": (True, False, False), "wb": (False, True, True)}


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(5)
    thetaT = rng.normal(size=(R, K + D + 1, M)) / np.sqrt([1] * K + [D] * D + [1])[:, None]
    x = rng.normal(size=(N, D))
    dual = rng.uniform(-1.0, 1.0, size=(R, K, N))
    log_scale = np.array([0.3, -1.2])
    return thetaT, x, dual, log_scale


def test_tiles_cover_the_boundaries():
    assert M > 2 * blocked.PARTICLE_TILE and M % blocked.PARTICLE_TILE
    assert N > 2 * blocked.DATA_TILE and N % blocked.DATA_TILE


def test_the_switch_picks_blocked_for_large_d_plus_k():
    assert get_backend("cpu", 1, 1) is cpu and get_backend("cpu", 32, 1) is blocked
    assert get_backend("cpu", D, K) is blocked and get_backend("cpu", 2, 3) is cpu


def _both(fn_name, problem, dtype, act, train):
    thetaT, x, dual, log_scale = problem
    thetaT, x = thetaT.astype(dtype), x.astype(dtype)
    act_id, param = ACTIVATION_IDS[act], 0.1
    results = []
    for module in (cpu, blocked):
        if fn_name == "forward":
            out = np.empty((R, N, K))
            module.forward(thetaT, x, K, act_id, param, 1.0 / M, out)
        else:
            out = np.full((R, M, K + D + 1), np.nan, dtype=dtype)
            module.velocity(thetaT, np.ascontiguousarray(x.T), dual, log_scale, K, act_id,
                            param, *TRAIN[train], out)
        results.append(out.astype(np.float64))
    return results


@pytest.mark.parametrize("dtype", (np.float64, np.float32))
@pytest.mark.parametrize("act", sorted(ACTIVATION_IDS))
def test_forward_matches_the_loops(problem, dtype, act):
    loops, tiled = _both("forward", problem, dtype, act, "awb")
    rtol = 1e-12 if dtype == np.float64 else 3e-5
    np.testing.assert_allclose(tiled, loops, rtol=0, atol=rtol * np.abs(loops).max())


@pytest.mark.parametrize("train", sorted(TRAIN))
@pytest.mark.parametrize("dtype", (np.float64, np.float32))
@pytest.mark.parametrize("act", sorted(ACTIVATION_IDS))
def test_velocity_matches_the_loops(problem, dtype, act, train):
    loops, tiled = _both("velocity", problem, dtype, act, train)
    rtol = 1e-12 if dtype == np.float64 else 3e-5
    for lo, hi, group in ((0, K, "a"), (K, K + D, "w"), (K + D, K + D + 1, "b")):
        if group in train:
            scale = np.abs(loops[..., lo:hi]).max()
            assert scale > 1e-3
            np.testing.assert_allclose(tiled[..., lo:hi], loops[..., lo:hi], rtol=0,
                                       atol=rtol * scale, err_msg=group)
        else:
            assert np.all(tiled[..., lo:hi] == 0.0), group


@pytest.mark.parametrize("train", sorted(TRAIN))
@pytest.mark.parametrize("dtype", (np.float64, np.float32))
@pytest.mark.parametrize("act", sorted(ACTIVATION_IDS))
def test_particle_tile_loops_match_the_data_tile_loops(dtype, act, train):
    """The two loop orders of kernels.cpu for general d, k (n < TILES_BELOW_N picks the
    particle-tile one): m = 600 spans three particle tiles, the last partial; same tolerances
    as above (both sum in the storage type over short blocks, float64 across them)."""
    rng = np.random.default_rng(8)
    m, n, d, k = 600, 20, 3, 2
    thetaT = rng.normal(size=(R, k + d + 1, m)).astype(dtype)
    xT = rng.normal(size=(d, n)).astype(dtype)
    dual = rng.uniform(-1.0, 1.0, size=(R, k, n)).astype(dtype)
    args = (thetaT, xT, dual, np.array([0.1, -0.4]), k, ACTIVATION_IDS[act], 0.1, *TRAIN[train])
    tiles, general = (np.full((R, m, k + d + 1), np.nan) for _ in range(2))
    cpu._velocity_tiles(*args, tiles)
    cpu._velocity_general(*args, general)
    rtol = 1e-12 if dtype == np.float64 else 3e-5
    assert np.abs(general).max() > 1e-3
    np.testing.assert_allclose(tiles, general, rtol=0, atol=rtol * np.abs(general).max())
