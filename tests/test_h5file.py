"""The HDF5 run file: layout, round trip, xarray access, and what interrupted runs leave behind."""
from __future__ import annotations

import datetime as dt
import os
import signal
import sys

import h5py
import numpy as np
import pytest

from meanfield_sim import config as config_mod
from meanfield_sim import runner
from meanfield_sim.integrate.stepper import grid_times
from meanfield_sim.integrate.stepper import IntegrationError
from meanfield_sim.io import h5file
from meanfield_sim.io.publish import partial_path
from meanfield_sim.io.reader import read_observables
from meanfield_sim.model.data import build_dataset
from meanfield_sim.recorder import record_times
from meanfield_sim.signals import Interrupted

sys.path.insert(0, os.path.dirname(__file__))
import io_helpers as io  # noqa: E402
from meanfield_sim.io.h5file import text_of

SERIES = ("risk", "log_risk", "margin", "error", "path_norm", "euclidean_norm")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A complete run of the tiny config: (cfg, path, RunResult)."""
    cfg = config_mod.loads(io.TINY_TOML)
    path = tmp_path_factory.mktemp("tiny") / "tiny.h5"
    result = runner.run(cfg, path)
    return cfg, path, result


# ---------------------------------------------------------------------------------------------
# A complete run
# ---------------------------------------------------------------------------------------------
def test_status_and_record_times(tiny):
    cfg, path, result = tiny
    expected = record_times(cfg["record"], cfg["run"]["t_end"])
    with h5py.File(path, "r") as f:
        assert f.attrs["status"] == "complete" == result.status
        n = int(f.attrs["n_records"])
        t = f["observables/time"][()]
        step = f["observables/step"][()]
        evals = f["observables/grad_evals"][()]
        assert np.array_equal(f["particles/network/time"][()], t)
        assert np.array_equal(f["particles/network/step"][()], step)
        assert np.array_equal(f["particles/network/grad_evals"][()], evals)
        steps_attr, evals_attr = int(f.attrs["steps"]), int(f.attrs["grad_evals"])
        t_reached = float(f.attrs["t_reached"])
    # log schedule: t = 0, then `count` log-spaced times from t_first to t_end
    assert n == len(expected) == cfg["record"]["count"] + 1 == len(t)
    assert t[0] == 0.0 and t[-1] == cfg["run"]["t_end"] == t_reached == result.t
    assert np.all(np.diff(t) > 0)
    # fixed-step heun records at the step nearest each requested time (dt = 0.05)
    assert np.array_equal(t, grid_times(expected, cfg["integrator"]["dt"]))
    assert np.allclose(t, expected, rtol=0, atol=cfg["integrator"]["dt"] / 2)
    assert np.isclose(t[1], cfg["record"]["t_first"])
    assert step[0] == 0 and np.all(np.diff(step) > 0)
    assert step[-1] == steps_attr == result.steps
    assert evals[-1] == evals_attr == result.grad_evals >= result.steps  # Heun: 2 per step
    assert np.all(np.diff(evals) >= 0)


def test_dataset_shapes(tiny):
    cfg, path, _ = tiny
    n_rec = cfg["record"]["count"] + 1
    R, m, n, k, d = 2, 20, 6, 1, 1
    P, G = cfg["record"]["particle_count"], cfg["record"]["grid_points"][0]
    expected = {
        "data/sample": (n,), "data/input": (d,), "data/x": (n, d), "data/label": (n,),
        "data/weight": (n,),
        "observables/time": (n_rec,), "observables/step": (n_rec,),
        "observables/grad_evals": (n_rec,), "observables/replica": (R,),
        "observables/sample": (n,), "observables/output": (k,),
        "observables/risk": (n_rec, R), "observables/log_risk": (n_rec, R),
        "observables/margin": (n_rec, R), "observables/path_norm": (n_rec, R),
        "observables/euclidean_norm": (n_rec, R), "observables/error": (n_rec, R),
        "observables/outputs": (n_rec, R, n, k), "observables/grid_point": (G,),
        "observables/input": (d,), "observables/grid_x": (G, d),
        "observables/grid_outputs": (n_rec, R, G, k),
        "particles/network/time": (n_rec,), "particles/network/step": (n_rec,),
        "particles/network/grad_evals": (n_rec,), "particles/network/replica": (R,),
        "particles/network/particle": (P,), "particles/network/output": (k,),
        "particles/network/input": (d,), "particles/network/a": (n_rec, R, P, k),
        "particles/network/w": (n_rec, R, P, d), "particles/network/b": (n_rec, R, P),
        "parameters/config": (),
    }
    found = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: found.__setitem__(name, obj.shape)
                     if isinstance(obj, h5py.Dataset) else None)
        # preallocated at the final length, contiguous and unfiltered (crash safety)
        assert f["observables/risk"].maxshape == (n_rec, R)
        assert f["observables/risk"].chunks is None and f["observables/risk"].compression is None
        assert np.array_equal(f["observables/replica"][()], [3, 4])  # first_replica = 3
        pids = f["particles/network/particle"][()]
    assert found == expected
    assert len(set(pids)) == P and np.all(np.diff(pids) > 0) and 0 <= pids[0] and pids[-1] < m


def test_config_in_file_parses_back(tiny):
    cfg, path, _ = tiny
    with h5py.File(path, "r") as f:
        text = f["parameters/config"][()]
    text = text.decode() if isinstance(text, bytes) else text
    assert text == config_mod.to_toml(cfg)
    assert config_mod.loads(text) == cfg


def test_root_attributes(tiny):
    cfg, path, result = tiny
    with h5py.File(path, "r") as f:
        attrs = dict(f.attrs)
        assert "h5md" not in f  # the layout is H5MD-like, not H5MD: no claim
    for key, value in h5file.versions().items():
        assert attrs[key] == value, key
    assert attrs["seed"] == cfg["run"]["seed"] == 5
    assert attrs["replicas"] == 2
    assert attrs["t_end"] == cfg["run"]["t_end"]
    assert attrs["message"] == ""
    started = dt.datetime.fromisoformat(attrs["started"])
    finished = dt.datetime.fromisoformat(attrs["finished"])
    assert started.tzinfo is not None and started <= finished
    assert 0 < attrs["wall_seconds"] < 600
    assert attrs["creator"] == "meanfield-sim"


def test_data_group_equals_the_dataset(tiny):
    cfg, path, _ = tiny
    data = build_dataset(cfg)
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["data/x"][()], data.x)
        np.testing.assert_array_equal(f["data/label"][()], data.label)
        np.testing.assert_array_equal(f["data/weight"][()], data.weight)
    np.testing.assert_array_equal(data.x[:, 0], [-2, -1.5, -1, 1, 1.5, 2])
    np.testing.assert_array_equal(data.label, [-1, -1, -1, 1, 1, 1])


def test_recorded_values_match_the_model(tiny):
    """t = 0 frame against a fresh evaluation; consistency between the observables."""
    cfg, path, result = tiny
    flow, theta0 = runner.build_flow(cfg)
    ev = flow.evaluate(theta0)
    with h5py.File(path, "r") as f:
        obs, net = f["observables"], f["particles/network"]
        pids = net["particle"][()]
        np.testing.assert_allclose(obs["outputs"][0], ev.outputs, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(obs["risk"][0], ev.risk, rtol=1e-12)
        # both norms over all m particles (not the snapshot's subsample), by their formulas;
        # d = k = 1: theta rows are (a, w, b)
        a, w, b = (np.abs(theta0[:, :, j]) for j in range(3))
        m = theta0.shape[1]
        np.testing.assert_allclose(obs["path_norm"][0], (a * (w + b)).sum(axis=1) / m, rtol=1e-12)
        np.testing.assert_allclose(obs["euclidean_norm"][0],
                                   (a * np.sqrt(w ** 2 + b ** 2)).sum(axis=1) / m, rtol=1e-12)
        np.testing.assert_allclose(obs["grid_outputs"][0],
                                   flow.outputs_at(theta0, obs["grid_x"][()]), rtol=1e-12,
                                   atol=1e-14)
        np.testing.assert_array_equal(obs["grid_x"][:, 0], np.linspace(-3, 3, 7))
        # particle snapshot at t = 0: the initial particles, a | w | b in that order
        np.testing.assert_array_equal(net["a"][0], theta0[:, pids, 0:1])
        np.testing.assert_array_equal(net["w"][0], theta0[:, pids, 1:2])
        np.testing.assert_array_equal(net["b"][0], theta0[:, pids, 2])
        assert not np.array_equal(net["w"][-1], net["w"][0])  # particles moved
        risk, log_risk = obs["risk"][()], obs["log_risk"][()]
        np.testing.assert_allclose(log_risk, np.log(risk), rtol=1e-12)
        np.testing.assert_array_equal(risk[-1], result.risk)
        np.testing.assert_array_equal(obs["margin"][-1], result.margin)
        assert np.all(risk[-1] < risk[0])  # gradient flow decreases the risk
        for name in SERIES + ("outputs", "grid_outputs"):
            assert np.isfinite(obs[name][()]).all(), name
    # the reader returns exactly the committed frames
    back = read_observables(path)
    assert set(back) == {"time", "step", "grad_evals", *SERIES, "outputs", "grid_outputs"}
    np.testing.assert_array_equal(back["risk"], risk)


GROUP_DIMS = {
    "observables": {
        "time": ("time",), "step": ("time",), "grad_evals": ("time",),
        **{name: ("time", "replica") for name in SERIES},
        "outputs": ("time", "replica", "sample", "output"),
        "grid_outputs": ("time", "replica", "grid_point", "output"),
        "grid_x": ("grid_point", "input"),
        "replica": ("replica",), "sample": ("sample",), "output": ("output",),
        "grid_point": ("grid_point",), "input": ("input",)},
    "particles/network": {
        "time": ("time",), "step": ("time",), "grad_evals": ("time",),
        "a": ("time", "replica", "particle", "output"),
        "w": ("time", "replica", "particle", "input"),
        "b": ("time", "replica", "particle"),
        "replica": ("replica",), "particle": ("particle",), "output": ("output",),
        "input": ("input",)},
    "data": {"x": ("sample", "input"), "label": ("sample",), "weight": ("sample",),
             "sample": ("sample",), "input": ("input",)},
}


@pytest.mark.parametrize("group", list(GROUP_DIMS))
def test_xarray_opens_each_group_without_phony_dims(tiny, group):
    import xarray as xr  # runtime dependencies now, never skipped
    _, path, _ = tiny
    with xr.open_dataset(path, group=group, engine="h5netcdf") as ds:
        assert not [d for d in ds.dims if str(d).startswith("phony_dim")], dict(ds.sizes)
        names = set(ds.variables)
        assert names == set(GROUP_DIMS[group]), names
        with h5py.File(path, "r") as f:
            g = f[group]
            assert set(ds.sizes) == {d for dims in GROUP_DIMS[group].values() for d in dims}
            for name, dims in GROUP_DIMS[group].items():
                assert ds[name].dims == dims, name
                np.testing.assert_array_equal(ds[name].values, g[name][()], err_msg=name)
            for dim, size in ds.sizes.items():
                assert size == g[dim].shape[0]
        if group != "data":
            assert ds.indexes["time"].is_monotonic_increasing
            assert ds["time"].values[-1] == 1.0


# ---------------------------------------------------------------------------------------------
# Runs that do not finish, in process
# ---------------------------------------------------------------------------------------------
def test_failed_run_is_marked_failed(tmp_path):
    cfg = config_mod.load(io.write_config(tmp_path), ["integrator.max_steps=3"])
    path = tmp_path / "failed.h5"
    with pytest.raises(IntegrationError, match="max_steps") as caught:
        runner.run(cfg, path)
    assert not path.exists()  # only a complete file gets the final name
    assert caught.value.run_file == partial_path(path) and caught.value.run_status == "failed"
    with h5py.File(partial_path(path), "r") as f:
        assert text_of(f.attrs["status"]) == "failed"
        message = text_of(f.attrs["message"])
        assert message.startswith("IntegrationError") and "max_steps = 3" in message
        assert int(f.attrs["steps"]) == 3
        assert text_of(f.attrs["finished"]) != ""
        n = int(f.attrs["n_records"])
        # records at t = 0 and t = 0.1 (two Heun steps of 0.05); the third step never reaches
        # the next record time
        assert n == 2
        np.testing.assert_allclose(f["observables/time"][:n], [0.0, 0.1])
        assert np.isfinite(f["observables/risk"][:n]).all()


@pytest.mark.parametrize("flush_every", [1, 3])
def test_keyboard_interrupt_marks_interrupted_and_keeps_buffered_records(tmp_path, flush_every):
    cfg = config_mod.load(io.write_config(tmp_path), [f"record.flush_every={flush_every}"])
    path = tmp_path / "interrupted.h5"
    seen = []

    def progress(t, t_end, risk):
        seen.append(t)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.run(cfg, path, progress=progress)
    with h5py.File(partial_path(path), "r") as f:
        assert text_of(f.attrs["status"]) == "interrupted"
        assert text_of(f.attrs["message"]) == "interrupted by KeyboardInterrupt"
        n = int(f.attrs["n_records"])
        assert n == 2  # with flush_every = 3 the second record was still buffered: close wrote it
        np.testing.assert_array_equal(f["observables/time"][:n], seen)
        assert np.isnan(f["observables/time"][n:]).all()  # planned records never reached
        assert np.isnan(f["particles/network/a"][n:]).all()


def test_sigterm_in_process_marks_interrupted_and_restores_handler(tmp_path):
    """The signal only sets a flag: the run stops at the next step boundary with
    signals.Interrupted, the file says 'interrupted', and the caller's handler is back."""
    cfg = config_mod.loads(io.TINY_TOML)
    path = tmp_path / "term.h5"

    class Unexpected(Exception):
        pass

    def ours(signum, frame):  # must never run: the runner's handler is installed meanwhile
        raise Unexpected

    def progress(t, t_end, risk):
        if t > 0:
            os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, ours)
    try:
        with pytest.raises(Interrupted) as caught:
            runner.run(cfg, path, progress=progress)
        assert signal.getsignal(signal.SIGTERM) is ours
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert caught.value.exit_code == 143 and caught.value.run_status == "interrupted"
    with h5py.File(partial_path(path), "r") as f:
        assert text_of(f.attrs["status"]) == "interrupted"
        assert text_of(f.attrs["message"]) == "interrupted by SIGTERM"
        assert int(f.attrs["n_records"]) == 2
