"""Inputs that used to fail late or confusingly: each now gets one clear message."""
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from meanfield_sim import config
from meanfield_sim.cli import main
from meanfield_sim.config import ConfigError
from meanfield_sim.model.data import build_dataset

NETWORK = """
[run]
t_end = 1.0
[model]
width = 4
[data]
kind = "explicit"
x = [-1.0, 1.0]
labels = [-1, 1]
"""


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
