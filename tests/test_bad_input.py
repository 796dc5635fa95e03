"""Inputs that used to fail late or confusingly: each now gets one clear message."""
import os
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from meanfield_sim import config
from meanfield_sim.cli import main
from meanfield_sim.config import ConfigError
from meanfield_sim.model.data import build_dataset

sys.path.insert(0, os.path.dirname(__file__))
from minimal_configs import NETWORK  # noqa: E402
from meanfield_sim.io.h5file import text_of



@pytest.mark.parametrize("overrides, fragments", [
    (["model.train=[]"], ["model.train = []", "nothing would move"]),
    (["model.bias=false", 'model.train=["b"]'], ["model.train = []"]),  # b needs a bias
    (["integrator.dt_min=0.5"], ["integrator.dt_min = 0.5", "integrator.dt = 0.01"]),
])
def test_config_rejects(overrides, fragments):
    raw = tomllib.loads(NETWORK)
    for item in overrides:
        config.apply_override(raw, item)
    with pytest.raises(ConfigError) as info:
        config.resolve(raw)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_data_without_weight_is_rejected():
    """All points in class -1, whose class weight is 0: nothing left to learn from."""
    raw = tomllib.loads(NETWORK)
    raw["data"].update(labels=[-1, -1], class_weights=[0.0, 1.0])
    with pytest.raises(ConfigError, match="carry no weight"):
        build_dataset(config.resolve(raw))


def test_toy_models_refuse_float32():
    with pytest.raises(ConfigError, match="float64 only"):
        config.loads("[run]\nt_end = 1.0\ndtype = 'float32'\n[model]\nkind = 'final_layer'\n"
                     "loss = 'softmax_ce'\n[data]\nkind = 'classes'\n")


def test_interrupt_before_the_file_exists_says_so(tmp_path, monkeypatch):
    """Ctrl-C while the kernels compile: no file was created, and the message says so."""
    from meanfield_sim.flows import network

    def interrupted(self):
        raise KeyboardInterrupt
    monkeypatch.setattr(network.ParticleFlow, "warm_up", interrupted)
    cfg = tmp_path / "c.toml"
    cfg.write_text(NETWORK)
    out = tmp_path / "never.h5"
    result = CliRunner().invoke(main, ["run", str(cfg), "-o", str(out)])
    assert result.exit_code == 130  # 128 + SIGINT, as the shell reports Ctrl-C
    assert "no output file was written" in result.output
    assert not Path(out).exists() and not Path(str(out) + ".part").exists()


def test_overflowing_outputs_stop_the_run_with_the_quantity_and_time(tmp_path):
    """Values within the config's bounds whose product overflows (a w x ~ 1e310 for every
    neuron, all of one sign, so that h itself is beyond float64 and no kernel can cancel it):
    the run stops at t = 0 with status 'failed', naming what became non-finite, instead of
    completing with inf observables."""
    cfg = tmp_path / "overflow.toml"
    cfg.write_text(NETWORK.replace("x = [-1.0, 1.0]", "x = [-1e10, 1e10]") + """
[init]
kind = "explicit"
a = [1e150, 1e150, 1e150, 1e150]
w = [1e150, 1e150, -1e150, -1e150]
""")
    out = tmp_path / "overflow.h5"
    result = CliRunner().invoke(main, ["run", str(cfg), "-o", str(out)])
    assert result.exit_code == 1, result.output
    assert "became non-finite" in result.output and "at t = 0 (step 0)" in result.output
    assert "marked 'failed'" in result.output and not out.exists()
    import h5py
    with h5py.File(str(out) + ".part", "r") as f:
        assert text_of(f.attrs["status"]) == "failed" and "non-finite" in text_of(f.attrs["message"])
        assert int(f.attrs["n_records"]) == 0


@pytest.mark.parametrize("option, fragment", [
    ("run.seed=18446744073709551616", "run.seed = 18446744073709551616"),
    ("model.width=9223372036854775808", "model.width = 9223372036854775808"),
    ("data.weights=[1e308, 1e308]", "data.weights"),
])
def test_huge_numbers_are_usage_errors_naming_the_key(tmp_path, option, fragment):
    cfg = tmp_path / "c.toml"
    cfg.write_text(NETWORK)
    result = CliRunner().invoke(main, ["run", str(cfg), "-o", str(tmp_path / "x.h5"),
                                       "--set", option])
    assert result.exit_code == 2, result.output
    assert fragment in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == [cfg]
