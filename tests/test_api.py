"""The Python API: simulate and open_run, and the README's snippet."""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import meanfield_sim as mf
from meanfield_sim import config as config_mod
from meanfield_sim import runner

sys.path.insert(0, os.path.dirname(__file__))
import io_helpers as io  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_simulate_equals_the_file_of_the_same_run(tmp_path):
    cfg_path = io.write_config(tmp_path)
    ds = mf.simulate(cfg_path)
    runner.run(config_mod.load(cfg_path), tmp_path / "cli.h5")
    with h5py.File(tmp_path / "cli.h5", "r") as f:
        np.testing.assert_array_equal(ds.risk.values, f["observables/risk"][()])
        np.testing.assert_array_equal(ds.a.values, f["particles/network/a"][()])
        np.testing.assert_array_equal(ds.time.values, f["observables/time"][()])
    assert ds.risk.dims == ("time", "replica") and list(ds.replica.values) == [3, 4]
    assert ds.outputs.dims == ("time", "replica", "sample", "output")
    assert ds.grid_outputs.dims == ("time", "replica", "grid_point", "output")
    assert ds.a.dims == ("time", "replica", "particle", "output")
    assert ds.x.dims == ("sample", "input") and ds.grid_x.dims == ("grid_point", "input")
    assert ds.attrs["status"] == "complete" and ds.attrs["seed"] == 5
    assert config_mod.loads(ds.attrs["config"]) == config_mod.load(cfg_path)
    assert ds.risk.attrs["long_name"].startswith("risk")
    assert ds.time.attrs["units"] == "flow time"
    # every other axis is a named, dimensionless index; every variable has units and a name
    for dim in ds.dims:
        assert ds[dim].attrs["long_name"] and ds[dim].attrs["units"], dim
    for name in ds.data_vars:
        assert ds[name].attrs["long_name"] and ds[name].attrs["units"] == "1", name


def test_simulate_overrides_by_section_and_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    cfg_path = io.write_config(tmp_path / "..", name=f"{tmp_path.name}.toml")
    ds = mf.simulate(cfg_path, model={"width": 7}, run={"replicas": 1, "seed": 9})
    assert ds.sizes["replica"] == 1 and ds.attrs["seed"] == 9
    assert config_mod.loads(ds.attrs["config"])["model"]["width"] == 7
    assert ds.sizes["particle"] == 5  # the tiny config's subsample of 5 particles
    assert list(tmp_path.iterdir()) == []  # the temporary file is gone


def test_simulate_keeps_the_file_with_out_and_reads_dicts(tmp_path):
    import tomllib
    raw = tomllib.loads(io.TINY_TOML)
    out = tmp_path / "kept.h5"
    ds = mf.simulate(raw, out=out, record={"particles": "none"})
    assert out.exists() and "particle" not in ds.sizes
    again = mf.open_run(out)
    np.testing.assert_array_equal(again.outputs.values, ds.outputs.values)
    assert raw["record"]["particles"] == "subsample"  # the caller's dict is not changed


@pytest.mark.parametrize("overrides, fragment", [
    ({"model": {"widht": 3}}, "model.widht"),
    ({"model": 3}, "model=3"),
    ({"nosuch": {"a": 1}}, "[nosuch]"),
])
def test_simulate_rejects_bad_overrides_with_the_key(tmp_path, overrides, fragment):
    with pytest.raises(config_mod.ConfigError) as info:
        mf.simulate(io.write_config(tmp_path), **overrides)
    assert fragment in str(info.value)


def test_open_run_reads_the_committed_records_of_a_stopped_run(tmp_path):
    cfg = config_mod.loads(io.TINY_TOML)
    path = tmp_path / "stopped.h5"

    def progress(t, t_end, risk):
        if t > 0.15:  # records at t = 0, 0.1, 0.2 (0.215 on the dt = 0.05 grid)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.run(cfg, path, progress=progress)
    ds = mf.open_run(path)  # finds stopped.h5.part
    assert ds.attrs["status"] == "interrupted" and ds.attrs["file"].endswith(".part")
    n = ds.attrs["n_records"]
    assert ds.sizes["time"] == n == 3 and np.isfinite(ds.risk.values).all()


def test_open_run_of_a_toy_model(tmp_path):
    out = tmp_path / "toy.h5"
    mf.simulate(ROOT / "runs/paper/final_layer_k3.toml", out=out, run={"t_end": 10.0})
    ds = mf.open_run(out)
    assert ds.outputs.dims == ("time", "replica", "sample", "output")
    assert ds.sizes["output"] == 3 and "vertex_error" in ds


def test_readme_python_snippet_runs_with_several_replicas(tmp_path, monkeypatch):
    """The README's snippet as written, on a file with two replicas (the old snippet failed for
    more than one), in the repository root so that its relative config path resolves."""
    import matplotlib
    matplotlib.use("Agg")
    text = (ROOT / "README.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(ROOT)
    out = tmp_path / "section5_1.h5"
    mf.simulate("runs/paper/section5_1_relu.toml", out=out, model={"width": 20},
                run={"replicas": 2, "t_end": 10.0})
    exec(snippet.replace('"section5_1.h5"', repr(str(out))), {})
