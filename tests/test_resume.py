"""Checkpoint and resume: a run killed at a random moment and resumed ends with the file an
uninterrupted run writes, bit for bit, whatever the integrator and the record schedule.

Every run is a real ``meanfield-sim run`` process; kills land at random moments, with
checkpoints every 50 ms, so they fall inside record writes and inside checkpoint writes.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import crash_helpers as ch  # noqa: E402
import io_helpers as io  # noqa: E402
from minimal_configs import FINAL_LAYER, NETWORK  # noqa: E402

from meanfield_sim.io.checkpoint import checkpoint_path, read_checkpoint  # noqa: E402
from meanfield_sim.io.h5file import text_of  # noqa: E402

contents, differences = ch.file_contents, ch.differences

RNG_SEED = 20261203

# dopri5 (FSAL, adaptive) on the Section 5.1 data, a record every few steps, flushed in
# batches of 7 so that checkpoints must commit a partial buffer first
DOPRI_TOML = """\
[run]
seed = 2
replicas = 3
t_end = 300.0
checkpoint_seconds = 0.05
[model]
width = 200
[data]
kind = "intervals"
classes = [
  { label = -1, interval = [-2.0, -1.0], points = 5 },
  { label = 1, interval = [1.0, 2.0], points = 5 },
]
[integrator]
method = "dopri5"
rtol = 1e-9
atol = 1e-12
[record]
schedule = "log"
count = 400
particles = "subsample"
particle_count = 20
flush_every = 7
"""

ADAM_TOML = DOPRI_TOML.replace('method = "dopri5"\nrtol = 1e-9\natol = 1e-12',
                               'method = "adam"\ndt = 0.01').replace("t_end = 300.0",
                                                                      "t_end = 300.0")

TOY_TOML = FINAL_LAYER.replace("t_end = 1.0", "t_end = 10.0\ncheckpoint_seconds = 0.05\n"
                                              "replicas = 64") + """\
num_classes = 5
points_per_class = 6
[toy]
radius = 2.0
norm_p = 3.0
[integrator]
method = "rk4"
dt = 0.01
[record]
schedule = "linear"
count = 200
"""

HEAVY_TOML = (ch.IO_HEAVY_TOML.replace("[run]\n", "[run]\ncheckpoint_seconds = 0.05\n", 1)
              .replace("t_end = 12.0", "t_end = 5.0").replace("count = 1200", "count = 500"))

CASES = {"heun_every_step": HEAVY_TOML, "dopri5_batched": DOPRI_TOML, "adam": ADAM_TOML,
         "final_layer_rk4": TOY_TOML}


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(io.cli_command(*args), capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, env=io.subprocess_env(), timeout=timeout)


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    cfg = folder / "run.toml"
    cfg.write_text(CASES[request.param])
    ref = folder / "reference.h5"
    proc = ch.start(cfg, ref)
    try:
        began = ch.wait_for(ch.partial(ref), proc)
        rc, err = ch.finish(proc, timeout=300)
        seconds = time.monotonic() - began  # from the .part file's creation to the exit
    finally:
        io.stop(proc)
    assert rc == 0, err
    assert seconds > 1.0, f"{request.param}: {seconds:.2f} s is too short to stop it midway"
    return {"name": request.param, "cfg": cfg, "reference": ref,
            "contents": contents(ref), "seconds": seconds, "folder": folder}


def test_sigkill_then_resume_is_bitwise_the_uninterrupted_run(case):
    """SIGKILL at random moments (inside record and checkpoint writes), possibly twice, then
    ``run --resume``: the complete file equals the uninterrupted run's in every dataset and
    every attribute but the clocks; the checkpoint file is never left unreadable."""
    rng = random.Random(f"{RNG_SEED}-{case['name']}")
    for trial in range(3):
        out = case["folder"] / f"killed{trial}.h5"
        kills = 1 + trial % 2
        resumed_from = []
        for _ in range(kills):
            proc = ch.start(case["cfg"], out, *(["--resume"] if out.exists() or
                                                ch.partial(out).exists() else []))
            try:
                ch.wait_for(ch.partial(out), proc)
                time.sleep(rng.uniform(0.1, 0.7) * case["seconds"] / kills)
                ch.send(proc, signal.SIGKILL)
                rc, err = ch.finish(proc)
            finally:
                io.stop(proc)
            if rc == 0:  # finished before the kill: nothing to resume
                break
            assert rc == -signal.SIGKILL, err
            if checkpoint_path(out).exists():
                resumed_from.append(read_checkpoint(checkpoint_path(out)).t)
        done = run_cli("run", str(case["cfg"]), "-o", str(out), "--resume")
        assert done.returncode == 0, done.stderr
        assert differences(contents(out), case["contents"]) == [], (trial, resumed_from)
        assert not checkpoint_path(out).exists()  # a complete run removes its checkpoint
        with h5py.File(out, "r") as f:
            assert f.attrs["status"] == "complete"


def test_sigterm_checkpoints_and_resume_continues_from_there(case, tmp_path):
    """SIGTERM: exit 143, the message says where the checkpoint is and how to continue; the
    checkpoint's records are in the file; --resume says it resumed and ends bitwise equal."""
    out = tmp_path / "term.h5"
    stopped = ch.kill_trial(case["cfg"], out, 0.4 * case["seconds"], signal.SIGTERM)
    rc, err = stopped["rc"], stopped["stderr"]
    assert rc == 143, err
    assert "checkpoint at t =" in err and "--resume" in err, err
    ckpt = read_checkpoint(checkpoint_path(out))
    with h5py.File(ch.partial(out), "r", locking=False) as f:
        assert text_of(f.attrs["status"]) == "interrupted"
        assert int(f.attrs["n_records"]) == ckpt.n_records  # stopped right after checkpointing
        assert ckpt.run_id == text_of(f.attrs["run_id"])
    done = run_cli("run", str(case["cfg"]), "-o", str(out), "--resume")
    assert done.returncode == 0, done.stderr
    assert f"resumed from the checkpoint at t = {ckpt.t:.6g}" in done.stdout
    assert differences(contents(out), case["contents"]) == []


@pytest.fixture()
def long_run(tmp_path):
    cfg = tmp_path / "long.toml"
    cfg.write_text(HEAVY_TOML.replace("t_end = 5.0", "t_end = 1000.0")
                   .replace("count = 500", "count = 100000"))
    return cfg


def test_sigusr1_checkpoints_and_asks_for_a_requeue(long_run, tmp_path):
    """SIGUSR1 (a batch system's warning before the time limit) ends the run with exit 75,
    checkpointed, and says so."""
    out = tmp_path / "usr1.h5"
    stopped = ch.kill_trial(long_run, out, 0.5, signal.SIGUSR1)
    rc, err = stopped["rc"], stopped["stderr"]
    assert rc == 75, err
    assert "checkpointed on SIGUSR1" in err and "--resume" in err
    assert read_checkpoint(checkpoint_path(out)).n_records > 0


def test_resume_without_a_checkpoint_starts_again_and_says_why(tmp_path):
    """A partial file killed before its first checkpoint: --resume starts from t = 0, says
    why, and ends with the uninterrupted run's file."""
    cfg = io.write_config(tmp_path, HEAVY_TOML.replace("checkpoint_seconds = 0.05",
                                                       "checkpoint_seconds = 600"))
    out = tmp_path / "out.h5"
    assert ch.kill_trial(cfg, out, 0.3)["rc"] == -signal.SIGKILL and ch.partial(out).exists()
    assert not checkpoint_path(out).exists()
    done = run_cli("run", str(cfg), "-o", str(out), "--resume")
    assert done.returncode == 0, done.stderr
    assert "started from t = 0" in done.stderr and "does not exist" in done.stderr
    reference = tmp_path / "reference.h5"
    assert run_cli("run", str(cfg), "-o", str(reference), "-q").returncode == 0
    assert differences(contents(out), contents(reference)) == []


def test_resume_leaves_a_foreign_partial_file_alone(tmp_path):
    """A partial file of another config is never overwritten by --resume: exit 1, named."""
    cfg = io.write_config(tmp_path, NETWORK)
    other = io.write_config(tmp_path, NETWORK.replace("width = 4", "width = 5"), "other.toml")
    out = tmp_path / "out.h5"
    assert run_cli("run", str(other), "-o", str(out), "-q").returncode == 0
    os.replace(out, ch.partial(out))
    before = ch.partial(out).read_bytes()
    done = run_cli("run", str(cfg), "-o", str(out), "--resume")
    assert done.returncode == 1
    assert "not this run" in done.stderr and "left alone" in done.stderr
    assert ch.partial(out).read_bytes() == before and not out.exists()


def test_resume_of_a_complete_run_does_nothing(tmp_path):
    cfg = io.write_config(tmp_path, NETWORK)
    out = tmp_path / "out.h5"
    assert run_cli("run", str(cfg), "-o", str(out), "-q").returncode == 0
    before = out.read_bytes()
    done = run_cli("run", str(cfg), "-o", str(out), "--resume")
    assert done.returncode == 0 and "complete already" in done.stdout
    assert out.read_bytes() == before


def test_operational_keys_do_not_change_the_config_key():
    """threads, checkpoint interval and flush batching change no number a run computes: a run
    may be resumed with other values of them; anything else makes it another run."""
    from meanfield_sim import config

    base = config.loads(NETWORK)
    same = config.loads(NETWORK.replace("[run]\n", "[run]\nthreads = 1\ncheckpoint_seconds = 5\n"))
    other = config.loads(NETWORK.replace("t_end = 1.0", "t_end = 2.0"))
    assert config.config_key(base) == config.config_key(same) != config.config_key(other)
