"""The command line: ``meanfield-sim run`` and ``meanfield-sim info``."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from meanfield_sim import config as config_mod
from meanfield_sim.cli import main

sys.path.insert(0, os.path.dirname(__file__))
import io_helpers as io  # noqa: E402
from meanfield_sim.io.h5file import text_of


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def config_in_file(path) -> dict:
    with h5py.File(path, "r") as f:
        return config_mod.loads(f["parameters/config"][()].decode())


@pytest.fixture
def cfg_path(tmp_path):
    return io.write_config(tmp_path)


# ---------------------------------------------------------------------------------------------
# run
# ---------------------------------------------------------------------------------------------
def test_run_writes_the_file_and_prints_a_summary(cfg_path, tmp_path):
    out = tmp_path / "out.h5"
    result = invoke("run", cfg_path, "-o", out)
    assert result.exit_code == 0, result.output
    assert out.exists()
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    summary = lines[0]
    assert summary.startswith(f"wrote {out}: t = 1 in ")
    assert "steps" in summary and "gradient evaluations" in summary
    assert "final risk" in summary and "margin" in summary
    assert "mean of 2 replicas" in summary  # TINY_TOML has replicas = 2
    with h5py.File(out, "r") as f:
        assert f.attrs["status"] == "complete"
        n = int(f.attrs["n_records"])
        risk = f["observables/risk"][n - 1]
    # the printed mean risk is the file's final mean risk
    printed = float(summary.split("final risk ")[1].split()[0])
    assert printed == pytest.approx(risk.mean(), rel=1e-5)
    assert config_in_file(out) == config_mod.load(cfg_path)


def test_set_seed_and_replicas_reach_the_file(cfg_path, tmp_path):
    out = tmp_path / "out.h5"
    result = invoke("run", cfg_path, "-o", out, "--set", "model.width=12",
                    "--set", "model.activation=tanh", "--set", "record.particles=all",
                    "--seed", "42", "--replicas", "3")
    assert result.exit_code == 0, result.output
    assert "mean of 3 replicas" in result.stdout
    cfg = config_in_file(out)
    assert cfg["model"]["width"] == 12 and cfg["model"]["activation"] == "tanh"
    assert cfg["run"]["seed"] == 42 and cfg["run"]["replicas"] == 3
    with h5py.File(out, "r") as f:
        assert f.attrs["seed"] == 42 and f.attrs["replicas"] == 3
        n = int(f.attrs["n_records"])
        assert f["observables/risk"].shape == (n, 3)
        assert np.array_equal(f["observables/replica"][()], [3, 4, 5])  # first_replica = 3
        assert f["particles/network/a"].shape == (n, 3, 12, 1)


def test_seed_option_wins_over_set(cfg_path, tmp_path):
    out = tmp_path / "out.h5"
    result = invoke("run", cfg_path, "-o", out, "--set", "run.seed=1", "--seed", "9", "-q")
    assert result.exit_code == 0, result.output
    assert config_in_file(out)["run"]["seed"] == 9


def test_different_seeds_give_different_runs_and_equal_seeds_equal_runs(cfg_path, tmp_path):
    finals = []
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        out = tmp_path / f"{name}.h5"
        assert invoke("run", cfg_path, "-o", out, "--seed", seed, "-q").exit_code == 0
        with h5py.File(out, "r") as f:
            finals.append(f["particles/network/w"][-1])
    np.testing.assert_array_equal(finals[0], finals[1])
    assert not np.array_equal(finals[0], finals[2])


def test_default_output_is_config_name_in_current_folder(cfg_path, tmp_path, monkeypatch):
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    result = invoke("run", cfg_path, "-q")
    assert result.exit_code == 0, result.output
    assert (workdir / "tiny.h5").exists()
    assert not (tmp_path / "tiny.h5").exists()


def test_quiet_prints_nothing(cfg_path, tmp_path):
    result = invoke("run", cfg_path, "-o", tmp_path / "q.h5", "--quiet")
    assert result.exit_code == 0, result.output
    assert result.output == ""


def test_existing_output_is_refused_without_force(cfg_path, tmp_path):
    out = tmp_path / "out.h5"
    out.write_bytes(b"precious")
    result = invoke("run", cfg_path, "-o", out)
    assert result.exit_code == 2
    assert "exists" in result.output and "--force" in result.output
    assert out.read_bytes() == b"precious"
    result = invoke("run", cfg_path, "-o", out, "--force", "-q")
    assert result.exit_code == 0, result.output
    with h5py.File(out, "r") as f:
        assert f.attrs["status"] == "complete"


@pytest.mark.parametrize("args, edit, fragments", [
    (["--set", "model.width=-5"], None, ["model.width", "-5", ">= 1"]),
    (["--set", "model.activation=relux"], None, ["model.activation", "'relux'", "tanh"]),
    (["--replicas", "0"], None, ["run.replicas", "0", ">= 1"]),
    (["--set", "model.width"], None, ["model.width", "section.key=value"]),
    (["--set", "nosuch.key=1"], None, ["nosuch.key", "section"]),
    ([], ("width = 20", "width = 20\nwidht = 3"), ["model.widht", "3", "allowed keys"]),
    ([], ("t_end = 1.0", 't_end = "soon"'), ["run.t_end", "'soon'", "a number"]),
    ([], ("[run]", "[run\n"), ["not valid TOML"]),
])
def test_bad_config_is_a_usage_error_and_writes_nothing(tmp_path, args, edit, fragments):
    text = io.TINY_TOML if edit is None else io.TINY_TOML.replace(*edit, 1)
    cfg_path = io.write_config(tmp_path, text, "bad.toml")
    out = tmp_path / "out.h5"
    result = invoke("run", cfg_path, "-o", out, *args)
    assert result.exit_code == 2, result.output
    assert "Error" in result.output and "bad.toml" in result.output
    missing = [f for f in fragments if f not in result.output]
    assert not missing, (missing, result.output)
    assert not out.exists()
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]


def test_missing_config_file(tmp_path):
    out = tmp_path / "out.h5"
    result = invoke("run", tmp_path / "nope.toml", "-o", out)
    assert result.exit_code == 2
    assert "nope.toml" in result.output and "does not exist" in result.output
    assert not out.exists()


def test_output_folder_must_exist(cfg_path, tmp_path):
    out = tmp_path / "missing" / "out.h5"
    result = invoke("run", cfg_path, "-o", out)
    assert result.exit_code == 2
    assert "does not exist" in result.output
    assert not out.parent.exists()


def test_binary_config_is_a_usage_error(tmp_path):
    cfg_path = tmp_path / "binary.toml"
    cfg_path.write_bytes(b"\xff\xfe\x00\x01")
    result = invoke("run", cfg_path, "-o", tmp_path / "out.h5")
    assert result.exit_code == 2, repr(result.exception)


def test_failing_run_exits_nonzero_and_marks_the_file(cfg_path, tmp_path):
    out = tmp_path / "out.h5"
    result = invoke("run", cfg_path, "-o", out, "--set", "integrator.max_steps=3")
    assert result.exit_code == 1
    assert "run failed" in result.output and "max_steps" in result.output
    assert "marked 'failed'" in result.output
    assert "wrote" not in result.output
    assert not out.exists()  # the final name is only ever a complete file
    with h5py.File(str(out) + ".part", "r") as f:
        assert text_of(f.attrs["status"]) == "failed"
        assert "max_steps = 3" in text_of(f.attrs["message"])


# ---------------------------------------------------------------------------------------------
# info
# ---------------------------------------------------------------------------------------------
def test_info_describes_a_run(cfg_path, tmp_path):
    out = tmp_path / "out.h5"
    assert invoke("run", cfg_path, "-o", out, "-q").exit_code == 0
    result = invoke("info", out)
    assert result.exit_code == 0, result.output
    text = result.output
    with h5py.File(out, "r") as f:
        n = int(f.attrs["n_records"])
        final_risk = f["observables/risk"][n - 1]
        steps = int(f.attrs["steps"])
    assert "status:      complete" in text
    assert f"records:     {n} of {n}, t = 0 .. 1" in text
    assert f"integration: t = 1 of 1, {steps} steps" in text
    assert "model:       network, 2 replica(s), seed 5" in text
    assert "data:        n = 6 points in d = 1" in text
    assert "grid_outputs" in text and "snapshots of network (particle 5)" in text
    risk_line = next(line for line in text.splitlines() if line.strip().startswith("risk "))
    shown = [float(v) for v in risk_line.split(None, 1)[1].replace(",", " ").split()
             if v != "..."]
    np.testing.assert_allclose(shown, final_risk, rtol=1e-5)
    assert "margin/path_norm" in text


def test_info_shows_failure_message(cfg_path, tmp_path):
    out = tmp_path / "out.h5"
    invoke("run", cfg_path, "-o", out, "--set", "integrator.max_steps=3")
    result = invoke("info", out)
    assert result.exit_code == 0, result.output
    assert "status:      failed (IntegrationError: integrator.max_steps = 3" in result.output


def test_info_on_a_file_that_is_not_hdf5(tmp_path):
    path = tmp_path / "notes.h5"
    path.write_text("not an HDF5 file\n")
    result = invoke("info", path)
    assert result.exit_code == 1
    assert "not a readable HDF5 file" in result.output and "notes.h5" in result.output
    assert isinstance(result.exception, SystemExit)  # a clean error, not a crash


def test_info_on_an_hdf5_file_that_is_not_a_run(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.arange(3)
    result = invoke("info", path)
    assert result.exit_code == 1
    assert "not a meanfield-sim run file" in result.output
    assert isinstance(result.exception, SystemExit)


def test_info_on_a_missing_file(tmp_path):
    result = invoke("info", tmp_path / "nope.h5")
    assert result.exit_code == 2
    assert "nope.h5" in result.output and "does not exist" in result.output


# ---------------------------------------------------------------------------------------------
# help
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, example", [
    ([], "meanfield-sim run runs/paper/section5_1_relu.toml -o section5_1.h5"),
    (["run"], "meanfield-sim run runs/paper/section5_1_relu.toml -o out.h5 --set model.width=200"),
])
def test_help_shows_an_example(args, example):
    result = invoke(*args, "--help")
    assert result.exit_code == 0
    assert "Example:" in result.output
    assert example in result.output  # \b keeps the example on its own line, unwrapped
    if args == ["run"]:
        for option in ("--set", "--seed", "--replicas", "--force", "--quiet", "--output"):
            assert option in result.output


def test_help_examples_use_configs_that_exist():
    root = Path(__file__).resolve().parents[1]
    text = invoke("--help").output + invoke("run", "--help").output
    for word in text.split():
        if word.startswith("runs/") and word.endswith(".toml"):
            assert (root / word).is_file(), word


# ---------------------------------------------------------------------------------------------
# end to end, through a real process
# ---------------------------------------------------------------------------------------------
def test_end_to_end_subprocess_quiet(cfg_path, tmp_path):
    out = tmp_path / "e2e.h5"
    proc = subprocess.run(io.cli_command("run", str(cfg_path), "-o", str(out), "--quiet",
                                         "--set", "run.replicas=1"),
                          capture_output=True, text=True, env=io.subprocess_env(), timeout=300,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    with h5py.File(out, "r") as f:
        assert f.attrs["status"] == "complete"
        assert f.attrs["replicas"] == 1
        n = int(f.attrs["n_records"])
        assert f["observables/time"][n - 1] == 1.0
    info = subprocess.run(io.cli_command("info", str(out)), capture_output=True, text=True,
                          env=io.subprocess_env(), timeout=300, stdin=subprocess.DEVNULL)
    assert info.returncode == 0, info.stderr
    assert "status:      complete" in info.stdout


def test_force_replaces_a_file_open_elsewhere_atomically(cfg_path, tmp_path):
    """--force renames the new file over the old one: a program that has the old file open
    keeps reading the old contents; a fresh open sees the new run."""
    out = tmp_path / "held.h5"
    with h5py.File(out, "w") as old:
        old.attrs["marker"] = "old"
        old.flush()
        result = CliRunner().invoke(main, ["run", str(cfg_path), "-o", str(out), "--force"])
        assert result.exit_code == 0, result.output
        assert old.attrs["marker"] == "old"
    with h5py.File(out, "r") as f:
        assert f.attrs["status"] == "complete" and "marker" not in f.attrs
