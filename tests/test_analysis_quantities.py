"""Quantities over time from run Datasets: hidden features, normalised margins, spreads,
collapse, trends, and the `analyze` command."""
from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

import meanfield_sim as mf
from meanfield_sim.analysis import quantities as q
from meanfield_sim.analysis.features import ACTIVATIONS, hidden_features
from meanfield_sim.cli import main

sys.path.insert(0, os.path.dirname(__file__))
import io_helpers as io  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

K3_NETWORK = """
[run]
t_end = 20.0
replicas = 2
[model]
width = 30
loss = "softmax_ce"
activation = "tanh"
[data]
kind = "gaussian_mixture"
num_classes = 3
dim = 2
points_per_class = 4
[integrator]
method = "rk4"
dt = 0.05
[record]
schedule = "linear"
count = 4
particles = "all"
"""


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    folder = tmp_path_factory.mktemp("binary")
    cfg = io.write_config(folder, io.TINY_TOML.replace('particles = "subsample"',
                                                       'particles = "all"'))
    return mf.simulate(cfg)


@pytest.fixture(scope="module")
def k3():
    import tomllib
    return mf.simulate(tomllib.loads(K3_NETWORK))


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_numpy_activations_mirror_the_kernels(name):
    from meanfield_sim.model import activations as model_acts
    scalar = {"relu": model_acts._relu, "leaky_relu": model_acts._leaky,
              "sigmoid": model_acts._sigmoid, "tanh": model_acts._tanh,
              "softplus": model_acts._softplus, "flat_sigmoid": model_acts._flat}[name]
    z = np.concatenate([np.linspace(-40, 40, 801), [-1e3, -0.5, 0.0, 0.5, 1.0, 1e3]])
    expected = np.array([scalar.py_func(float(v), 0.07) for v in z])
    np.testing.assert_allclose(ACTIVATIONS[name](z, 0.07), expected, rtol=1e-15, atol=1e-300)


@pytest.mark.parametrize("run", ["binary", "k3"])
def test_hidden_features_reproduce_the_recorded_outputs(run, request):
    """With every particle recorded, h(x_j) = (1/m) sum_i a_i phi_i(x_j): the features of the
    analysis and the simulator's outputs agree (mean-field scaling)."""
    ds = request.getfixturevalue(run)
    phi = hidden_features(ds)
    m = ds.sizes["particle"]
    h = xr.dot(phi, ds.a, dim="particle") / m
    np.testing.assert_allclose(h.transpose(*ds.outputs.dims).values, ds.outputs.values,
                               rtol=1e-12, atol=1e-13)


def test_normalised_margins_and_classifier(binary):
    nm = q.normalised_margins(binary)
    np.testing.assert_array_equal(nm.margin_over_path_norm, binary.margin / binary.path_norm)
    np.testing.assert_array_equal(nm.margin_over_euclidean_norm,
                                  binary.margin / binary.euclidean_norm)
    assert (binary.euclidean_norm <= binary.path_norm).all()  # sqrt(w^2+b^2) <= |w| + |b|
    nc = q.normalised_classifier(binary, "euclidean")
    np.testing.assert_array_equal(nc.grid_outputs, binary.grid_outputs / binary.euclidean_norm)
    with pytest.raises(ValueError, match="norm = 'l1'"):
        q.normalised_classifier(binary, "l1")


def _frames(values, labels):
    """A Dataset with outputs (time=1, replica=1, sample, output) and the labels."""
    values = np.asarray(values, dtype=float)[None, None]
    return xr.Dataset({"outputs": (("time", "replica", "sample", "output"), values),
                       "label": (("sample",), np.asarray(labels)),
                       "weight": (("sample",), np.full(len(labels), 1.0 / len(labels)))},
                      coords={"time": [1.0]})


def test_output_spread_by_hand():
    """Classes at -1 (points -1.2, -0.8) and +1 (0.9, 1.1): the largest distance to a class mean
    is 0.2, the class means are 2 apart: spread 0.1. Binary labels +-1."""
    ds = _frames([[-1.2], [-0.8], [0.9], [1.1]], [-1, -1, 1, 1])
    assert q.output_spread(ds).item() == pytest.approx(0.1, rel=1e-14)
    collapsed = _frames([[-1.0], [-1.0], [1.0], [1.0]], [-1, -1, 1, 1])
    assert q.output_spread(collapsed).item() == 0.0


def test_trend_of_log_and_of_a_constant():
    t = np.geomspace(1e-2, 1e6, 81)
    grow = xr.DataArray(np.log(t)[:, None] * [1.0, 2.0], dims=("time", "replica"),
                        coords={"time": t})
    np.testing.assert_allclose(q.trend(grow).values, [1.0, 2.0], rtol=1e-12)
    flat = xr.full_like(grow, 3.0)
    np.testing.assert_array_equal(q.trend(flat).values, [0.0, 0.0])


def test_collapse_of_the_penultimate_simplex(tmp_path):
    """Corollary 9 on the shipped config, shortened: features collapse (NC1 -> 0), onto a
    regular simplex of norm R = 1.5 centred at 0."""
    ds = mf.simulate(ROOT / "runs/paper/penultimate_simplex.toml", run={"t_end": 2000.0})
    c = q.collapse_over_time(ds).isel(time=-1)
    assert float(c.nc1_trace_ratio.max()) < 1e-10
    assert float(c.simplex_cos_error_max.max()) < 1e-6
    np.testing.assert_allclose(c.simplex_norm_mean, 1.5, rtol=1e-8)
    assert float(c.simplex_centroid_norm.max()) < 1e-6
    assert (c.nc4_agreement == 1.0).all()
    first = q.collapse_over_time(ds).isel(time=0)
    assert float(first.nc1_trace_ratio.min()) > 1e-3  # it was not collapsed to begin with
    assert float(q.feature_spread(ds).isel(time=-1).max()) < 1e-6


def test_collapse_of_a_network_uses_its_hidden_layer(k3):
    c = q.collapse_over_time(k3)
    assert set(c.dims) == {"time", "replica"}
    assert np.isfinite(c.nc1_trace_ratio).all() and ((0 <= c.nc4_agreement) &
                                                     (c.nc4_agreement <= 1)).all()


def test_binary_runs_have_no_collapse_measures(binary):
    with pytest.raises(ValueError, match="k >= 2"):
        q.collapse_over_time(binary)


def test_analyze_command(tmp_path, binary):
    cfg = io.write_config(tmp_path)
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    mf.simulate(cfg, out=a)
    mf.simulate(cfg, out=b, run={"seed": 6})
    one = CliRunner().invoke(main, ["analyze", str(a)])
    assert one.exit_code == 0, one.output
    assert "margin_over_path_norm" in one.output and "final" in one.output
    data = json.loads(CliRunner().invoke(main, ["analyze", str(a), "--json"]).output)
    ds = mf.open_run(a)
    assert data["margin"]["final"] == pytest.approx(float(ds.margin.isel(time=-1).median()))
    assert data["status"] == "complete" and data["records"] == 5
    csv = CliRunner().invoke(main, ["analyze", str(a), str(b), "--csv"]).output.splitlines()
    assert len(csv) == 3 and csv[0].startswith("file,status,records,t,")
    assert csv[1].split(",")[0] == str(a) and csv[2].split(",")[0] == str(b)
    bad = CliRunner().invoke(main, ["analyze", str(tmp_path / "nothing.h5")])
    assert bad.exit_code == 1 and "not a readable run file" in bad.output


@pytest.mark.parametrize("run, expected", [
    ("binary", {"risk", "margins", "classifier", "spread", "particles"}),
    ("k3", {"risk", "spread", "simplex", "collapse"}),
])
def test_plot_writes_the_figures_that_apply(run, expected, request, tmp_path):
    ds = request.getfixturevalue(run)
    out = tmp_path / "figs"
    path = tmp_path / f"{run}.h5"
    ds.attrs["file"] = str(path)
    from meanfield_sim.analysis.figures import plot_run
    written = plot_run(ds, out)
    assert {p.stem for p in written} == expected
    for p in written:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000


def test_plot_command(tmp_path):
    out = tmp_path / "run.h5"
    mf.simulate(ROOT / "runs/paper/section5_1_relu.toml", out=out,
                model={"width": 40}, run={"t_end": 100.0})
    result = CliRunner().invoke(main, ["plot", str(out), "-o", str(tmp_path / "figs")])
    assert result.exit_code == 0, result.output
    assert "margins.png" in result.output and (tmp_path / "figs" / "classifier.png").exists()


def test_reference_margins_gap_and_distance_on_section_5_1_data(tmp_path):
    """The LP optimum for the run's own data (5 + 5 points) is Lemma 16's 1/2 under the path
    norm and 1/sqrt 2 under the Euclidean norm; the gap to it is never negative (h / ||h|| is
    feasible) and shrinks; the distance to the maximisers shrinks too."""
    ds = mf.simulate(ROOT / "runs/paper/section5_1_relu.toml", model={"width": 40},
                     run={"t_end": 1.0e3}, record={"count": 12})
    ref = q.max_margin_reference(ds)
    assert ref["path"] == pytest.approx(0.5, abs=1e-12)
    assert ref["euclidean"] == pytest.approx(1 / math.sqrt(2), abs=1e-6)
    gap = q.margin_gap(ds, ref)
    for name in ("margin_gap_path", "margin_gap_euclidean"):
        assert float(gap[name].min()) >= -1e-6, name
        assert float(gap[name].isel(time=-1).max()) < float(gap[name].isel(time=0).min())
    distance = q.distance_to_maximisers(ds)
    assert distance.dims == ("time", "replica") and (distance >= 0).all()
    assert float(distance.isel(time=-1).max()) < float(distance.isel(time=2).min())
    # no reference for other activations or the toy models
    assert q.max_margin_reference(mf.simulate(ROOT / "runs/paper/section5_1_relu.toml",
                                              model={"width": 10, "activation": "tanh"},
                                              run={"t_end": 1.0})) == {}
