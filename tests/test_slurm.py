"""A sweep on a real SLURM cluster, end to end: ``meanfield-sim slurm --submit``, one task
requeued midway (SIGTERM, checkpoint, requeue, resume), another told to checkpoint with
SIGUSR1 (exit 75, the job script requeues it), ``collect``, and every output compared bit for
bit with the same task run here.

Needs a running cluster reachable through ``SLURM_CONF``: ``.ci/run`` starts a one-node one
from Debian's packages (``.ci/slurm-local.sh``); on a workstation run
``bash .ci/slurm-local.sh up`` and export the ``SLURM_CONF`` it prints. Without one the tests
are skipped, saying why; in CI (``CI=true``) or with ``MEANFIELD_SLURM=1`` they fail instead.
"""
from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import crash_helpers as ch  # noqa: E402
import io_helpers as io  # noqa: E402

from meanfield_sim.batch.sweep import Sweep, output_of  # noqa: E402

REQUIRED = os.environ.get("CI") == "true" or os.environ.get("MEANFIELD_SLURM") == "1"
WAIT_SECONDS = 420          # the whole array, warmup job included (about 60 s on 2 cores)
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
            "BOOT_FAIL", "DEADLINE", "PREEMPTED"}

# four tasks of 5-10 s each; a checkpoint every second so that a stop lands midway
SWEEP_TOML = """\
[run]
t_end = 300.0
replicas = 4
checkpoint_seconds = 1.0

[model]
activation = "relu"
loss = "logistic"

[data]
kind = "intervals"
classes = [
  { label = -1, interval = [-2.0, -1.0], points = 5 },
  { label = 1, interval = [1.0, 2.0], points = 5 },
]

[integrator]
method = "heun"
dt = 0.01

[record]
schedule = "linear"
count = 100

[sweep]
seeds = 2

[sweep.axes.width]
model.width = [150, 250]
"""
REQUEUED, SIGNALLED = 1, 2   # the tasks stopped midway


def _cluster_problem() -> str | None:
    """Why no cluster can be used here, or None."""
    if shutil.which("sbatch") is None:
        return "sbatch is not on PATH"
    try:
        done = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                              timeout=30)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 30 s"
    states = done.stdout.split()
    if done.returncode != 0 or not any(s in ("idle", "mixed", "allocated") for s in states):
        return f"sinfo finds no usable node (rc {done.returncode}: " \
               f"{(done.stdout + done.stderr).strip()[:300]})"
    return None


@pytest.fixture(scope="module")
def cluster():
    problem = _cluster_problem()
    if problem is not None:
        message = (f"no SLURM cluster: {problem}; start one with `bash .ci/slurm-local.sh up` "
                   "and export the SLURM_CONF it prints")
        if REQUIRED:
            pytest.fail(message + " (CI=true or MEANFIELD_SLURM=1: SLURM is required)")
        pytest.skip(message)


def slurm_cmd(*args: str) -> str:
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{' '.join(args)}: {done.stderr}"
    return done.stdout


def task_states(job: str) -> dict:
    """{array index: (state, reason)} of every task of array job ``job``, finished ones too."""
    out = {}
    for line in slurm_cmd("squeue", "-h", "--states=all", "-j", job, "-o", "%i|%T|%r")\
            .splitlines():
        ident, state, reason = line.split("|")
        if "_" in ident and "[" not in ident:
            out[int(ident.split("_")[1])] = (state, reason)
        else:                            # tasks not yet split off the array: "JOB_[0-3]"
            for i in _expand_range(ident.split("_", 1)[1] if "_" in ident else ""):
                out[i] = (state, reason)
    return out


def _expand_range(text: str) -> list:
    found = []
    for part in text.strip("[]").split("%")[0].split(","):
        if "-" in part:
            lo, hi = part.split("-")
            found += range(int(lo), int(hi) + 1)
        elif part:
            found.append(int(part))
    return found


def release_requeued(job: str, states: dict, released: set) -> None:
    """SLURM holds a requeued job for about two minutes (reason BeginTime) before it may start
    again; the test lets each start 5 s after its requeue instead. (Sooner fails: slurmd refuses
    to launch a job within the second its previous credential was revoked in.)"""
    for i, (state, reason) in states.items():
        if state == "PENDING" and reason == "BeginTime" and i not in released:
            subprocess.run(["scontrol", "update", f"jobid={job}_{i}", "StartTime=now+5"],
                           capture_output=True, timeout=60)
            released.add(i)


def wait_until(predicate, what: str, job: str, deadline: float) -> None:
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {task_states(job)}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def submitted(cluster, tmp_path_factory):
    """Submit the sweep, stop two tasks midway, wait for the array to finish."""
    root = tmp_path_factory.mktemp("slurm")
    cfg = root / "sweep.toml"
    cfg.write_text(SWEEP_TOML)
    folder = root / "out"
    began = time.monotonic()
    done = subprocess.run(io.cli_command("slurm", str(cfg), "-o", str(folder), "--time",
                                         "00:20:00", "--mem", "1G", "--submit"),
                          capture_output=True, text=True, timeout=120,
                          env=io.subprocess_env())
    assert done.returncode == 0, done.stderr
    found = re.search(r"submitted warmup job (\d+) and array job (\d+)", done.stdout)
    assert found, done.stdout
    job = found.group(2)
    sweep = Sweep.load(cfg, ())
    outputs = [output_of(folder, t.name) for t in sweep.tasks]
    deadline = began + WAIT_SECONDS

    def checkpointed(i):
        return task_states(job).get(i, ("",))[0] == "RUNNING" and \
            Path(str(outputs[i]) + ".ckpt").exists()

    wait_until(lambda: checkpointed(REQUEUED), f"task {REQUEUED} to checkpoint", job, deadline)
    slurm_cmd("scontrol", "requeue", f"{job}_{REQUEUED}")       # SIGTERM, then requeued
    wait_until(lambda: checkpointed(SIGNALLED), f"task {SIGNALLED} to checkpoint", job,
               deadline)
    slurm_cmd("scancel", "--signal=USR1", f"{job}_{SIGNALLED}")  # as ahead of a time limit

    released = set()

    def finished():
        states = task_states(job)
        release_requeued(job, states, released)
        return len(states) == len(outputs) and all(s in TERMINAL for s, _ in states.values())

    wait_until(finished, "the array to finish", job, deadline)
    return {"job": job, "cfg": cfg, "folder": folder, "outputs": outputs, "sweep": sweep,
            "seconds": time.monotonic() - began, "root": root}


def log_of(submitted, i: int) -> str:
    return (submitted["folder"] / "logs" / f"slurm-{submitted['job']}_{i}.out").read_text()


def test_every_task_completes_after_a_requeue_and_a_usr1(submitted):
    states = task_states(submitted["job"])
    assert {s for s, _ in states.values()} == {"COMPLETED"}, states
    for i, out in enumerate(submitted["outputs"]):
        with h5py.File(out, "r") as f:
            assert ch.text(f.attrs["status"]) == "complete", out
            assert int(f.attrs["resumes"]) == (1 if i in (REQUEUED, SIGNALLED) else 0), out
        assert not Path(str(out) + ".ckpt").exists() and not Path(str(out) + ".part").exists()
    requeued = log_of(submitted, REQUEUED)
    assert "interrupted by SIGTERM" in requeued and "restart 1" in requeued, requeued
    assert "resumed from the checkpoint at t =" in requeued, requeued
    signalled = log_of(submitted, SIGNALLED)
    assert "checkpointed on SIGUSR1" in signalled, signalled
    assert "requeueing task" in signalled and "restart 1" in signalled, signalled
    assert "resumed from the checkpoint at t =" in signalled, signalled


def test_outputs_equal_the_same_tasks_run_here(submitted):
    """Each output, stopped and resumed on SLURM or not, is bitwise the task run locally."""
    here = submitted["root"] / "here"
    done = subprocess.run(io.cli_command("sweep", str(submitted["cfg"]), "-o", str(here),
                                         "--jobs", "2", "-q"),
                          capture_output=True, text=True, timeout=300, env=io.subprocess_env())
    assert done.returncode == 0, done.stderr
    for task, out in zip(submitted["sweep"].tasks, submitted["outputs"]):
        local = output_of(here, task.name)
        assert ch.differences(ch.file_contents(out), ch.file_contents(local)) == [], task.name


def test_collect_lists_every_task_complete(submitted):
    summary = submitted["root"] / "summary.csv"
    done = subprocess.run(io.cli_command("collect", str(submitted["folder"]), "-o",
                                         str(summary)),
                          capture_output=True, text=True, timeout=120, env=io.subprocess_env())
    assert done.returncode == 0, done.stderr
    with open(summary, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["index"]) for r in rows] == list(range(len(submitted["outputs"])))
    assert {r["status"] for r in rows} == {"complete"}, rows
    assert [r["model.width"] for r in rows] == ["150", "150", "250", "250"]
