"""The hidden layer of a recorded network: features phi_i(x) = sigma(w_i . x + b_i) per particle.

In the mean-field picture the hidden representation of a point x is the function
i -> sigma(w_i . x + b_i) on the particles, and distances between representations are taken in
L^2 of the particle distribution: |phi(x) - phi(x')|^2 = (1/m) sum_i (phi_i(x) - phi_i(x'))^2.
Features are computed from the particle snapshots in the file, so from every particle with
``record.particles = "all"`` and from the kept ones (an unbiased estimate of that L^2 distance)
with a subsample.

The activations are NumPy mirrors of ``meanfield_sim.model.activations`` (which are Numba
functions, not imported here); ``tests/test_analysis_quantities.py`` checks they agree.
"""
from __future__ import annotations

import tomllib

import numpy as np
import xarray as xr


def _flat_sigmoid(z):
    u = np.clip(z, 0.0, 1.0)
    return u * u * (3.0 - 2.0 * u)


def _sigmoid(z):
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


ACTIVATIONS = {
    "relu": lambda z, slope: np.maximum(z, 0.0),
    "leaky_relu": lambda z, slope: np.where(z > 0, z, slope * z),
    "sigmoid": lambda z, slope: _sigmoid(z),
    "tanh": lambda z, slope: np.tanh(z),
    "softplus": lambda z, slope: np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z))),
    "flat_sigmoid": lambda z, slope: _flat_sigmoid(z),
}


def activation_of(ds: xr.Dataset):
    """sigma of the run (from the config stored in the file), as a NumPy function of z."""
    model = tomllib.loads(ds.attrs["config"])["model"]
    act, slope = ACTIVATIONS[model["activation"]], model["leaky_slope"]
    return lambda z: act(z, slope)


def hidden_features(ds: xr.Dataset) -> xr.DataArray:
    """phi_i(x_j) = sigma(w_i . x_j + b_i), dims (time, replica, sample, particle), for the
    particles in the snapshots. Raises ValueError if the run recorded no network snapshots."""
    if "w" not in ds or "particle" not in ds.dims:
        raise ValueError("this run recorded no particle snapshots (record.particles = 'none'); "
                         "rerun with record.particles = 'all' for hidden-layer features")
    z = xr.dot(ds.w, ds.x, dim="input") + ds.b
    phi = xr.apply_ufunc(activation_of(ds), z)
    phi.attrs["long_name"] = "hidden features sigma(w_i . x_j + b_i)"
    return phi.transpose("time", "replica", "sample", "particle")
