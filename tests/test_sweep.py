"""Sweeps and batches: expanding a ``[sweep]`` table into tasks, its errors, ``sweep --list /
--index / --jobs``, idempotent reruns (skip, resume, foreign files left alone), ``collect``,
the SLURM scripts of ``slurm`` (run with bash, a stand-in ``srun`` / ``scontrol`` on PATH) and
``warmup`` into an empty Numba cache.

Expansion is checked in process; everything a user does on the command line is a real
``meanfield-sim`` process (``python -m meanfield_sim.cli``). The configs are tiny: every task
takes a fraction of a second once the kernels are loaded, except the two "long" ones of
:data:`SWEEP_TOML` (about 2 s), which are stopped midway. The only slow part is the warmup
fixture, which compiles the kernels from scratch in three processes at once (two warmups
and a cold run: 15-20 s each on an idle 2-core machine).
"""
from __future__ import annotations

import csv
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import h5py
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import crash_helpers as ch  # noqa: E402
import io_helpers as io  # noqa: E402
from minimal_configs import NETWORK  # noqa: E402

from meanfield_sim import config as C  # noqa: E402
from meanfield_sim.batch.sweep import MANIFEST, Sweep, output_of  # noqa: E402
from meanfield_sim.config import ConfigError  # noqa: E402
from meanfield_sim.config import sweep as sweep_mod  # noqa: E402
from meanfield_sim.io.checkpoint import checkpoint_path  # noqa: E402
from meanfield_sim.model.data import build_dataset  # noqa: E402

# Four tasks: a zipped axis "size" (width and t_end move together) times two seeds, in the
# order size=60_seed=0, size=60_seed=1, size=150_seed=0, size=150_seed=1. The size=60 tasks
# take about 0.3 s, the size=150 ones about 2 s (60000 Heun steps at about 0.035 ms each),
# so that a test can stop them midway; a checkpoint every 0.25 s so that a SIGKILL finds one.
# (At 15000 steps a task ended in 0.5 s once the d = 1 kernels were fused, before its SIGTERM.)
SWEEP_TOML = """\
[run]
t_end = 10.0
checkpoint_seconds = 0.25

[model]
width = 60

[data]
kind = "intervals"
classes = [
  { label = -1, interval = [-2.0, -1.0], points = 4 },
  { label = 1, interval = [1.0, 2.0], points = 4 },
]

[integrator]
method = "heun"
dt = 0.01

[record]
schedule = "linear"
count = 40
particles = "subsample"
particle_count = 10

[sweep]
seeds = 2

[sweep.axes.size]
model.width = [60, 150]
run.t_end = [10.0, 600.0]
"""
SHORT, LONG = (0, 1), (2, 3)   # task indices of the quick and the slow tasks
NAMES = ["size=60_seed=0", "size=60_seed=1", "size=150_seed=0", "size=150_seed=1"]

# Four tasks as explicit cases: one completes, one is deleted afterwards (missing), one fails
# (max_steps reached after 5 of its 100 steps), one runs "forever" and is stopped by SIGTERM.
COLLECT_TOML = NETWORK.replace("width = 4", "width = 8") + """\
[integrator]
method = "heun"
dt = 0.01
[record]
schedule = "linear"
count = 10

[[sweep.axes.case]]
label = "ok"
run.t_end = 1.0
integrator.max_steps = 100000000
[[sweep.axes.case]]
label = "gone"
run.t_end = 2.0
integrator.max_steps = 100000000
[[sweep.axes.case]]
label = "fails"
run.t_end = 1.0
integrator.max_steps = 5
[[sweep.axes.case]]
label = "stopped"
run.t_end = 1.0e6
integrator.max_steps = 100000000
"""


# ---------------------------------------------------------------------------------- helpers

def env_of(**extra: str) -> dict:
    """io.subprocess_env without any SLURM variables of the machine the tests run on."""
    env = {k: v for k, v in io.subprocess_env().items() if not k.startswith("SLURM_")}
    env.update(extra)
    return env


def cli(*args: str, cwd=None, timeout: float = 180, **extra_env: str) -> \
        subprocess.CompletedProcess:
    return subprocess.run(io.cli_command(*map(str, args)), capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, env=env_of(**extra_env), cwd=cwd,
                          timeout=timeout)


def start(*args: str, **extra_env: str) -> subprocess.Popen:
    return subprocess.Popen(io.cli_command(*map(str, args)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            env=env_of(**extra_env))


def tasks_of(text: str, overrides=()) -> list:
    raw, table = sweep_mod.split_sweep(tomllib.loads(text))
    return sweep_mod.expand(raw, table, overrides)


def error_of(text: str, overrides=()) -> str:
    with pytest.raises(ConfigError) as info:
        tasks_of(text, overrides)
    return str(info.value)


def status_of(path: Path) -> str:
    with h5py.File(path, "r", locking=False) as f:
        return ch.text(f.attrs["status"])


def attr_of(path: Path, name: str):
    with h5py.File(path, "r", locking=False) as f:
        return f.attrs[name]


def logs(folder: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')}"
                     for p in sorted((Path(folder) / "logs").glob("*.log")))


def assert_clean_usage_error(done: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit status 2 (a usage error), every fragment in stderr, no traceback."""
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    for fragment in fragments:
        assert fragment in done.stderr, (fragment, done.stderr)


def snapshot(paths) -> dict:
    return {Path(p).name: Path(p).read_bytes() for p in paths}


# ------------------------------------------------------------------------------- expansion

def test_cartesian_order_first_axis_slowest_seeds_fastest():
    """The index -> overrides mapping, explicitly: axes in the order written, the first
    slowest, the seeds last and fastest (even though ``seeds`` is written first)."""
    text = NETWORK + """\
[sweep]
seeds = [0, 7]
[sweep.axes.width]
model.width = [10, 20]
[sweep.axes.act]
model.activation = ["relu", "tanh"]
"""
    tasks = tasks_of(text)
    expected = [((("model.width", w), ("model.activation", a), ("run.seed", s)),
                 f"width={w}_act={a}_seed={s}")
                for w in (10, 20) for a in ("relu", "tanh") for s in (0, 7)]
    assert [t.index for t in tasks] == list(range(8))
    assert [(t.overrides, t.name) for t in tasks] == expected
    for task in tasks:  # the overrides are what the resolved config holds
        settings = dict(task.overrides)
        assert task.cfg["model"]["width"] == settings["model.width"]
        assert task.cfg["model"]["activation"] == settings["model.activation"]
        assert task.cfg["run"]["seed"] == settings["run.seed"]
    # swapping the two axes in the file swaps their roles
    swapped = NETWORK + """\
[sweep]
seeds = [0, 7]
[sweep.axes.act]
model.activation = ["relu", "tanh"]
[sweep.axes.width]
model.width = [10, 20]
"""
    assert [t.name for t in tasks_of(swapped)][:4] == [
        "act=relu_width=10_seed=0", "act=relu_width=10_seed=7", "act=relu_width=20_seed=0",
        "act=relu_width=20_seed=7"]
    # expanding again gives the same tasks: the index is stable
    assert [(t.index, t.name, t.key) for t in tasks_of(text)] == \
        [(t.index, t.name, t.key) for t in tasks]
    # and the documentation says so
    assert "the first varies slowest" in sweep_mod.__doc__ and "seeds fastest" in \
        sweep_mod.__doc__


def test_zipped_axis_pairs_its_keys_and_labels_name_the_values():
    text = NETWORK + """\
[sweep.axes.size]
model.width = [10, 20, 30]
run.t_end = [1.0, 2.0, 3.0]
"""
    tasks = tasks_of(text)
    assert [t.overrides for t in tasks] == [
        (("model.width", w), ("run.t_end", t)) for w, t in ((10, 1.0), (20, 2.0), (30, 3.0))]
    assert [(t.cfg["model"]["width"], t.cfg["run"]["t_end"]) for t in tasks] == \
        [(10, 1.0), (20, 2.0), (30, 3.0)]
    assert [t.name for t in tasks] == ["size=10", "size=20", "size=30"]  # the first key's value
    labelled = tasks_of(text.replace("[sweep.axes.size]\n",
                                     '[sweep.axes.size]\nlabels = ["s", "m", "l"]\n'))
    assert [t.name for t in labelled] == ["size=s", "size=m", "size=l"]
    assert [t.key for t in labelled] == [t.key for t in tasks]  # labels name, change nothing


def test_zipped_axis_of_unequal_lengths_names_the_axis_keys_and_lengths():
    message = error_of(NETWORK + """\
[sweep.axes.size]
model.width = [10, 20]
run.t_end = [1.0, 2.0, 3.0]
""")
    for fragment in ("sweep.axes.size", "model.width", "run.t_end", "[2, 3]"):
        assert fragment in message, message


def test_case_axis_sets_several_keys_together():
    text = NETWORK + """\
[[sweep.axes.case]]
label = "relu-heun"
model.activation = "relu"
integrator.method = "heun"
integrator.dt = 0.05
[[sweep.axes.case]]
label = "tanh-rk4"
model.activation = "tanh"
integrator.method = "rk4"
integrator.dt = 0.1
[sweep]
seeds = 2
"""
    tasks = tasks_of(text)
    assert [t.name for t in tasks] == ["case=relu-heun_seed=0", "case=relu-heun_seed=1",
                                       "case=tanh-rk4_seed=0", "case=tanh-rk4_seed=1"]
    picked = [(t.cfg["model"]["activation"], t.cfg["integrator"]["method"],
               t.cfg["integrator"]["dt"], t.cfg["run"]["seed"]) for t in tasks]
    assert picked == [("relu", "heun", 0.05, 0), ("relu", "heun", 0.05, 1),
                      ("tanh", "rk4", 0.1, 0), ("tanh", "rk4", 0.1, 1)]
    # without labels a case is named by its number
    unlabelled = tasks_of(text.replace('label = "relu-heun"\n', "")
                          .replace('label = "tanh-rk4"\n', ""))
    assert [t.name for t in unlabelled][::2] == ["case=0_seed=0", "case=1_seed=0"]
    # every case must set the same keys
    message = error_of(NETWORK + """\
[[sweep.axes.case]]
model.activation = "relu"
[[sweep.axes.case]]
model.activation = "tanh"
integrator.method = "rk4"
""")
    assert "sweep.axes.case[1]" in message and "integrator.method" in message, message
    assert "same keys" in message, message


@pytest.mark.parametrize("form", [
    '[sweep.axes.w]\nmodel.width = [10, 20]\n',             # dotted key
    '[sweep.axes.w]\n"model.width" = [10, 20]\n',           # one quoted key with a dot
    '[sweep.axes.w.model]\nwidth = [10, 20]\n',              # nested table
    '[sweep.axes]\nw = { model = { width = [10, 20] } }\n',  # inline tables
], ids=["dotted", "quoted", "nested", "inline"])
def test_key_spellings_resolve_to_one_config_key(form):
    reference = tasks_of(NETWORK + '[sweep.axes.w]\nmodel.width = [10, 20]\n')
    tasks = tasks_of(NETWORK + form)
    assert [(t.name, t.overrides, t.key) for t in tasks] == \
        [(t.name, t.overrides, t.key) for t in reference]
    assert [t.overrides for t in tasks] == [(("model.width", 10),), (("model.width", 20),)]


def test_case_key_spellings_resolve_to_one_config_key():
    dotted = tasks_of(NETWORK + '[[sweep.axes.c]]\nmodel.width = 10\n'
                                '[[sweep.axes.c]]\nmodel.width = 20\n')
    quoted = tasks_of(NETWORK + '[[sweep.axes.c]]\n"model.width" = 10\n'
                                '[[sweep.axes.c]]\n"model.width" = 20\n')
    assert [(t.overrides, t.key) for t in dotted] == [(t.overrides, t.key) for t in quoted]
    assert [t.cfg["model"]["width"] for t in quoted] == [10, 20]


RANDOM_DATA = """\
[run]
t_end = 1.0
seed = 11
[model]
width = 4
[data]
kind = "intervals"
placement = "random"
classes = [
  { label = -1, interval = [-2.0, -1.0], points = 5 },
  { label = 1, interval = [1.0, 2.0], points = 5 },
]
[sweep]
seeds = 3
"""


def test_seeds_change_run_seed_but_not_the_data():
    """``seeds = 3``: run.seed 0, 1, 2 (the config's own run.seed is replaced); data.seed stays
    0, so random data are the same in every task."""
    tasks = tasks_of(RANDOM_DATA)
    assert [t.name for t in tasks] == ["seed=0", "seed=1", "seed=2"]
    assert [t.cfg["run"]["seed"] for t in tasks] == [0, 1, 2]
    assert [t.cfg["data"]["seed"] for t in tasks] == [0, 0, 0]
    xs = [build_dataset(t.cfg).x for t in tasks]
    assert all(np.array_equal(xs[0], x) for x in xs[1:])
    assert len({t.key for t in tasks}) == 3


def test_data_seed_minus_one_ties_the_data_to_the_seed():
    tasks = tasks_of(RANDOM_DATA.replace('placement = "random"\n',
                                         'placement = "random"\nseed = -1\n'))
    assert [t.cfg["data"]["seed"] for t in tasks] == [-1, -1, -1]
    xs = [build_dataset(t.cfg).x for t in tasks]
    assert not np.array_equal(xs[0], xs[1]) and not np.array_equal(xs[1], xs[2])
    # a list of seeds is taken as given
    listed = tasks_of(RANDOM_DATA.replace("seeds = 3", "seeds = [4, 9]"))
    assert [(t.name, t.cfg["run"]["seed"]) for t in listed] == [("seed=4", 4), ("seed=9", 9)]


def test_every_task_config_validates_and_its_key_is_that_of_its_config():
    """Each task's cfg is a resolved config (resolving it again changes nothing); its key is
    config_key of it, survives the round trip through the TOML text stored in an output file
    (which is what a rerun compares), and differs between tasks."""
    tasks = tasks_of(SWEEP_TOML)
    assert [t.name for t in tasks] == NAMES
    for task in tasks:
        plain = {s: v for s, v in task.cfg.items() if s != "derived"}
        assert C.resolve(plain) == task.cfg
        assert task.key == C.config_key(task.cfg)
        stored = C.to_toml(task.cfg)               # what the run writes to parameters/config
        assert C.config_key(C.loads(stored)) == task.key, stored[-400:]
    assert len({t.key for t in tasks}) == len(tasks)


def test_overrides_apply_to_every_task_but_not_to_a_swept_key():
    tasks = tasks_of(SWEEP_TOML, ["integrator.dt=0.02", "record.count=7"])
    assert {(t.cfg["integrator"]["dt"], t.cfg["record"]["count"]) for t in tasks} == {(0.02, 7)}
    assert [t.name for t in tasks] == NAMES
    assert not {t.key for t in tasks} & {t.key for t in tasks_of(SWEEP_TOML)}
    message = error_of(SWEEP_TOML, ["model.width=5"])
    assert "model.width" in message and "axis of the sweep" in message, message
    message = error_of(SWEEP_TOML, ["run.seed=3"])
    assert "run.seed" in message and "axis of the sweep" in message, message


def test_names_are_readable_file_names_and_unique():
    tasks = tasks_of(NETWORK + """\
[sweep.axes.dt]
integrator.dt = [0.05, 0.001, 1.0e-5]
[sweep.axes.bias]
model.bias = [true, false]
[sweep.axes.train]
model.train = [["a", "w"], ["a"]]
""")
    names = [t.name for t in tasks]
    assert names[:4] == ["dt=0.05_bias=true_train=a-w", "dt=0.05_bias=true_train=a",
                         "dt=0.05_bias=false_train=a-w", "dt=0.05_bias=false_train=a"]
    assert {n.split("_")[0] for n in names} == {"dt=0.05", "dt=0.001", "dt=1e-05"}
    assert len(set(names)) == len(names)
    assert all(re.fullmatch(r"[A-Za-z0-9._+=-]+", n) for n in names), names


def test_names_fit_in_a_file_name():
    """A name is 'file-name safe': NAME.h5.part.new (the longest file a task makes) must fit
    in 255 bytes, whatever the swept values. An axis over explicit data sets (here data.x
    lists of 60 points each) would otherwise give names of ~500 characters: no task could
    write its output and ``--jobs`` crashes opening its log. Either the name is shortened or
    expanding the sweep says to give labels."""
    n = 60
    xs = [[(-1) ** i * (1 + i / 64) for i in range(n)], [(-1) ** i * (1 + i) for i in range(n)]]
    labels = [(-1) ** (i + 1) for i in range(n)]
    text = (NETWORK.replace("x = [-1.0, 1.0]\nlabels = [-1, 1]\n", f"labels = {labels}\n")
            + f"[sweep.axes.points]\ndata.x = {xs}\n")
    try:
        tasks = tasks_of(text)
    except ConfigError as exc:
        assert "sweep.axes.points" in str(exc) and "labels" in str(exc), str(exc)
        return
    for task in tasks:
        assert len(f"{task.name}.h5.part.new".encode()) <= 255, \
            f"task {task.index}: a name of {len(task.name)} characters: {task.name[:60]}..."
    assert len({t.name for t in tasks}) == len(tasks)


@pytest.mark.parametrize("table, fragments", [
    ("[sweep]\nseeds = 2\n[sweep.axes.w]\nmodel.width = [10, 10]\n",
     ["sweep tasks 0 and 2", "w=10_seed=0.h5", "labels"]),
    ('[sweep.axes.w]\nlabels = ["a", "a"]\nmodel.width = [10, 20]\n',
     ["sweep tasks 0 and 1", "w=a.h5"]),
    ('[[sweep.axes.c]]\nlabel = "x"\nmodel.width = 10\n'
     '[[sweep.axes.c]]\nlabel = "x"\nmodel.width = 20\n',
     ["sweep tasks 0 and 1", "c=x.h5"]),
    # two values with one label: %g keeps 6 digits
    ("[sweep.axes.dt]\nintegrator.dt = [0.1, 0.1000000001]\n",
     ["sweep tasks 0 and 1", "dt=0.1.h5"]),
    ('[sweep.axes.act]\nmodel.activation = ["relu", "re lu"]\n', ["sweep tasks 0 and 1"]),
], ids=["duplicate-value", "duplicate-labels", "duplicate-case-labels", "float-labels",
        "sanitised-labels"])
def test_two_tasks_with_one_output_name_are_an_error_naming_them(table, fragments):
    message = error_of(NETWORK + table)
    for fragment in fragments:
        assert fragment in message, message


def test_a_config_without_sweep_is_one_task_named_run():
    tasks = tasks_of(NETWORK)
    assert [(t.index, t.name, t.overrides) for t in tasks] == [(0, "run", ())]
    assert tasks[0].key == C.config_key(C.loads(NETWORK))


def test_the_shipped_example_sweep_expands_as_documented():
    path = Path(__file__).resolve().parents[1] / "runs" / "open" / "sweep_width_seed.toml"
    sweep = Sweep.load(path)
    assert len(sweep.tasks) == 16
    assert [t.name for t in sweep.tasks[:5]] == ["width=50_seed=0", "width=50_seed=1",
                                                 "width=50_seed=2", "width=50_seed=3",
                                                 "width=100_seed=0"]
    assert {t.cfg["data"]["seed"] for t in sweep.tasks} == {0}
    assert len({t.key for t in sweep.tasks}) == 16


# ------------------------------------------------------------------------------- bad input

BAD_SWEEPS = {
    "unknown-sweep-key": ("[sweep]\nseed = 3\n", ["unknown key sweep.seed", "seeds, axes"]),
    "no-such-key": ("[sweep.axes.d]\nmodel.depth = [1, 2]\n",
                    ["sweep.axes.d", "'model.depth'", "is not a config key",
                     "run, model, data"]),
    "no-such-section": ("[sweep.axes.d]\nnetwork.width = [1, 2]\n",
                        ["'network.width'", "is not a config key"]),
    "empty-list": ("[sweep.axes.w]\nmodel.width = []\n",
                   ["sweep.axes.w.model.width = []", "must be a non-empty list of values"]),
    "not-a-list": ("[sweep.axes.w]\nmodel.width = 100\n",
                   ["sweep.axes.w.model.width = 100", "must be a non-empty list of values"]),
    "bad-value": ("[sweep.axes.w]\nmodel.width = [10, -3]\n",
                  ["sweep task 1", "model.width = -3", "must be an integer >= 1"]),
    "bad-choice": ('[[sweep.axes.c]]\nmodel.activation = "relu"\n'
                   '[[sweep.axes.c]]\nmodel.activation = "nope"\n',
                   ["sweep task 1", "model.activation = 'nope'", "must be one of", "tanh"]),
    "zero-seeds": ("[sweep]\nseeds = 0\n", ["sweep.seeds = 0", ">= 1"]),
    "repeated-seeds": ("[sweep]\nseeds = [1, 1]\n", ["sweep.seeds = [1, 1]", "distinct"]),
    "negative-seed": ("[sweep]\nseeds = [-1, 2]\n", ["sweep.seeds = [-1, 2]", ">= 0"]),
    "no-axes": ("[sweep]\n", ["[sweep] has no axes"]),
    "key-swept-twice": ("[sweep]\nseeds = 2\n[sweep.axes.s]\nrun.seed = [3, 4]\n",
                        ["run.seed is swept by two axes", "'s'", "'seed'"]),
    "bad-labels": ('[sweep.axes.w]\nlabels = ["a b", "c"]\nmodel.width = [10, 20]\n',
                   ["sweep.axes.w.labels", "'a b'", "2 names of letters"]),
    "bad-axis-name": ('[sweep.axes."a/b"]\nmodel.width = [10, 20]\n',
                      ["sweep.axes.a/b", "axis name"]),
}


@pytest.mark.parametrize("case", sorted(BAD_SWEEPS))
def test_bad_sweep_is_an_error_naming_key_value_and_what_is_allowed(case):
    table, fragments = BAD_SWEEPS[case]
    message = error_of(NETWORK + table)
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize("case", ["unknown-sweep-key", "no-such-key", "empty-list",
                                  "not-a-list", "bad-value"])
def test_bad_sweep_on_the_command_line_is_a_usage_error_without_traceback(case, tmp_path):
    """Exit status 2, the message in stderr, no traceback, nothing written: for ``sweep
    --list`` in every case, and for ``sweep --jobs`` and ``slurm`` too in one."""
    table, fragments = BAD_SWEEPS[case]
    cfg = io.write_config(tmp_path, NETWORK + table, "bad.toml")
    commands = [["sweep", cfg, "--list"]]
    if case == "bad-value":
        commands += [["sweep", cfg, "-o", tmp_path / "out", "--jobs", "2"], ["slurm", cfg]]
    for command in commands:
        done = cli(*command, cwd=tmp_path)
        assert_clean_usage_error(done, str(cfg), *fragments)
    assert not (tmp_path / "out").exists() and not (tmp_path / "bad").exists()


# ---------------------------------------------------------------------- sweep --list/--index

def test_list_shows_index_output_overrides_and_key(tmp_path):
    cfg = io.write_config(tmp_path, SWEEP_TOML, "sweep.toml")
    done = cli("sweep", cfg, "--list", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    tasks = Sweep.load(cfg).tasks
    assert len(lines) == 4, done.stdout
    for line, task in zip(lines, tasks):
        found = re.fullmatch(r"\s*(\d+)\s+(\S+)\s+(.*?)\s+key ([0-9a-f]{16})", line)
        assert found, line
        index, output, overrides, key = found.groups()
        assert int(index) == task.index and key == task.key
        assert output == f"sweep/{task.name}.h5"   # default folder: the config's name
        assert overrides.split() == [f"{k}={C.toml_value(v)}" for k, v in task.overrides]
    assert lines[2].split()[2:5] == ["model.width=150", "run.t_end=600.0", "run.seed=0"]
    assert not (tmp_path / "sweep").exists()  # --list writes nothing
    with_o = cli("sweep", cfg, "--list", "-o", tmp_path / "elsewhere", cwd=tmp_path)
    assert f"{tmp_path / 'elsewhere' / NAMES[3]}.h5" in with_o.stdout.splitlines()[3]


def test_index_out_of_range_names_the_range(tmp_path):
    cfg = io.write_config(tmp_path, SWEEP_TOML, "sweep.toml")
    for bad in ("4", "-1"):
        done = cli("sweep", cfg, "-o", tmp_path / "out", "--index", bad)
        assert_clean_usage_error(done, f"task index {bad} is out of range",
                                 "this sweep has 4 tasks, 0 to 3")
    done = cli("sweep", cfg, "-o", tmp_path / "out", SLURM_ARRAY_TASK_ID="9")
    assert_clean_usage_error(done, "task index 9 is out of range", "0 to 3")
    done = cli("sweep", cfg, "-o", tmp_path / "out", SLURM_ARRAY_TASK_ID="x1")
    assert_clean_usage_error(done, "SLURM_ARRAY_TASK_ID = 'x1' is not an integer")
    done = cli("sweep", cfg, "-o", tmp_path / "out")
    assert_clean_usage_error(done, "no task index", "--index", "SLURM_ARRAY_TASK_ID")
    done = cli("sweep", cfg, "-o", tmp_path / "out", "--jobs", "0")
    assert_clean_usage_error(done, "--jobs 0: must be at least 1")
    done = cli("sweep", cfg, "-o", tmp_path / "out", "--jobs", "2", "--index", "1")
    assert_clean_usage_error(done, "--jobs", "--index")
    assert not (tmp_path / "out").exists()  # nothing written for a bad index


def test_index_comes_from_slurm_array_task_id(tmp_path):
    cfg = io.write_config(tmp_path, SWEEP_TOML, "sweep.toml")
    folder = tmp_path / "out"
    done = cli("sweep", cfg, "-o", folder, SLURM_ARRAY_TASK_ID="1")
    assert done.returncode == 0, done.stderr
    assert f"task 1 ({NAMES[1]}): wrote" in done.stdout, done.stdout
    assert sorted(p.name for p in folder.glob("*.h5*")) == [f"{NAMES[1]}.h5"]
    assert status_of(folder / f"{NAMES[1]}.h5") == "complete"
    manifest = json.loads((folder / MANIFEST).read_text())
    assert [t["name"] for t in manifest["tasks"]] == NAMES
    assert [t["key"] for t in manifest["tasks"]] == [t.key for t in Sweep.load(cfg).tasks]


def test_unwritable_output_folder_is_a_clear_error(tmp_path):
    cfg = io.write_config(tmp_path, SWEEP_TOML, "sweep.toml")
    if os.geteuid() == 0:  # root writes through any mode bits: a folder under a file fails
        blocker = tmp_path / "a-file"
        blocker.write_text("not a folder")
        target, why = blocker / "out", "Not a directory"
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        target, why = locked / "out", "Permission denied"
    try:
        for command in (["--index", "0"], ["--jobs", "2"]):
            done = cli("sweep", cfg, "-o", target, *command)
            assert_clean_usage_error(done, f"cannot create the output folder {target}", why)
        done = cli("slurm", cfg, "-o", target)
        assert_clean_usage_error(done, f"cannot create the output folder {target}")
    finally:
        if os.geteuid() != 0:
            (tmp_path / "locked").chmod(0o700)


def test_a_folder_of_another_sweep_is_refused(tmp_path):
    cfg = io.write_config(tmp_path, SWEEP_TOML, "sweep.toml")
    folder = tmp_path / "out"
    assert cli("slurm", cfg, "-o", folder).returncode == 0
    before = (folder / MANIFEST).read_bytes()
    other = io.write_config(tmp_path, SWEEP_TOML.replace("seeds = 2", "seeds = 3"), "other.toml")
    done = cli("sweep", other, "-o", folder, "--index", "0")
    assert_clean_usage_error(done, f"{folder} holds another sweep", "4 tasks")
    assert (folder / MANIFEST).read_bytes() == before
    assert not list(folder.glob("*.h5*"))


# ------------------------------------------------------------------- --jobs and idempotency

@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """SWEEP_TOML run with --jobs 2 into a fresh folder: the reference outputs. Tests copy
    the folder before changing anything in it."""
    root = tmp_path_factory.mktemp("swept")
    cfg = io.write_config(root, SWEEP_TOML, "sweep.toml")
    folder = root / "out"
    done = cli("sweep", cfg, "-o", folder, "--jobs", "2", timeout=300)
    assert done.returncode == 0, done.stderr + logs(folder)
    tasks = Sweep.load(cfg).tasks
    outputs = [output_of(folder, t.name) for t in tasks]
    return {"cfg": cfg, "folder": folder, "tasks": tasks, "outputs": outputs,
            "stderr": done.stderr, "contents": [ch.file_contents(o) for o in outputs]}


def copy_of(swept, where: Path) -> tuple[Path, list]:
    shutil.copytree(swept["folder"], where)
    return where, [output_of(where, t.name) for t in swept["tasks"]]


def test_jobs_runs_every_task_to_completion(swept):
    folder = swept["folder"]
    for task, out in zip(swept["tasks"], swept["outputs"]):
        assert status_of(out) == "complete", out
        assert ch.text(attr_of(out, "status")) == "complete"
        assert re.search(rf"\[\d/4\] task {task.index} {re.escape(task.name)}: done",
                         swept["stderr"]), swept["stderr"]
        assert (folder / "logs" / f"{task.name}.log").exists()
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["logs", MANIFEST, *(f"{n}.h5" for n in NAMES)])  # no .part, .ckpt left over
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["config_path"] == str(swept["cfg"].resolve())
    assert [(t["index"], t["name"], t["key"]) for t in manifest["tasks"]] == \
        [(t.index, t.name, t.key) for t in swept["tasks"]]
    assert manifest["tasks"][3]["overrides"] == {"model.width": 150, "run.t_end": 600.0,
                                                 "run.seed": 1}


def test_jobs_equals_each_index_run_in_turn(swept, tmp_path):
    folder = tmp_path / "one-by-one"
    for task in swept["tasks"]:
        done = cli("sweep", swept["cfg"], "-o", folder, "--index", task.index, "-q")
        assert done.returncode == 0, done.stderr
    for task, reference in zip(swept["tasks"], swept["contents"]):
        mine = ch.file_contents(output_of(folder, task.name))
        assert ch.differences(mine, reference) == [], task.name
    # the tasks differ from each other, so the comparison can fail
    assert ch.differences(swept["contents"][0], swept["contents"][1])


def test_rerun_skips_complete_tasks_and_changes_no_byte(swept, tmp_path):
    folder, outputs = copy_of(swept, tmp_path / "again")
    before = snapshot(outputs)
    done = cli("sweep", swept["cfg"], "-o", folder, "--jobs", "2")
    assert done.returncode == 0, done.stderr + logs(folder)
    for task in swept["tasks"]:
        assert re.search(rf"task {task.index} {re.escape(task.name)}: complete already, "
                         "skipped", done.stderr), done.stderr
    assert snapshot(outputs) == before
    one = cli("sweep", swept["cfg"], "-o", folder, "--index", "2")
    assert one.returncode == 0, one.stderr
    assert f"{outputs[2]} is complete already: nothing to do" in one.stdout, one.stdout
    assert snapshot(outputs) == before
    assert sorted(p.name for p in folder.glob("*.h5*")) == sorted(f"{n}.h5" for n in NAMES)


def test_interrupted_and_killed_tasks_are_resumed_bitwise(swept, tmp_path):
    """Task 3 stopped by SIGTERM (interrupted, checkpointed) and task 2 by SIGKILL after its
    first checkpoint: the next sweep resumes both from their checkpoints and ends with the
    uninterrupted run's files, bit for bit; the complete tasks are left as they are."""
    folder, outputs = copy_of(swept, tmp_path / "stopped")
    for i in LONG:
        outputs[i].unlink()
    kept = snapshot(outputs[i] for i in SHORT)
    termed = start("sweep", swept["cfg"], "-o", folder, "--index", "3", "-q")
    killed = start("sweep", swept["cfg"], "-o", folder, "--index", "2", "-q")
    try:
        ch.wait_for(ch.partial(outputs[3]), termed)
        ch.wait_for(checkpoint_path(outputs[2]), killed)
        time.sleep(0.3)
        ch.send(killed, signal.SIGKILL)
        ch.send(termed, signal.SIGTERM)
        rc_term, err_term = ch.finish(termed)
        rc_kill, _ = ch.finish(killed)
    finally:
        io.stop(termed)
        io.stop(killed)
    assert rc_term == 143, err_term
    assert rc_kill == -signal.SIGKILL
    assert status_of(ch.partial(outputs[3])) == "interrupted"
    assert status_of(ch.partial(outputs[2])) == "running"      # killed: never marked
    assert checkpoint_path(outputs[2]).exists() and checkpoint_path(outputs[3]).exists()
    assert not outputs[2].exists() and not outputs[3].exists()

    done = cli("sweep", swept["cfg"], "-o", folder, "--jobs", "2")
    assert done.returncode == 0, done.stderr + logs(folder)
    for i in LONG:
        assert status_of(outputs[i]) == "complete"
        assert int(attr_of(outputs[i], "resumes")) == 1, i   # continued, not started again
        assert ch.differences(ch.file_contents(outputs[i]), swept["contents"][i]) == [], i
        assert not ch.partial(outputs[i]).exists() and not checkpoint_path(outputs[i]).exists()
    assert snapshot(outputs[i] for i in SHORT) == kept


def test_foreign_and_corrupt_outputs_are_reported_and_left_alone(swept, tmp_path):
    """At task 2's output a complete file of another config (task 0's), at task 3's random
    bytes; tasks 0 and 1 have no output. The sweep runs 0 and 1, reports 2 and 3, exits 1, and
    never touches the two files."""
    folder, outputs = copy_of(swept, tmp_path / "foreign")
    for i in SHORT:
        outputs[i].unlink()
    shutil.copyfile(swept["outputs"][0], outputs[2])
    outputs[3].write_bytes(random.Random(7).randbytes(20000))
    before = snapshot([outputs[2], outputs[3]])
    done = cli("sweep", swept["cfg"], "-o", folder, "--jobs", "2")
    assert done.returncode == 1, done.stderr + logs(folder)
    for i in LONG:
        assert re.search(rf"task {i} {re.escape(NAMES[i])}: failed \(exit 1", done.stderr), \
            done.stderr
        log = (folder / "logs" / f"{NAMES[i]}.log").read_text()
        assert "left alone" in log and str(outputs[i]) in log, log
    assert f"config key {swept['tasks'][0].key}" in \
        (folder / "logs" / f"{NAMES[2]}.log").read_text()
    assert snapshot([outputs[2], outputs[3]]) == before
    assert not ch.partial(outputs[2]).exists() and not ch.partial(outputs[3]).exists()
    for i in SHORT:   # the other tasks still ran
        assert status_of(outputs[i]) == "complete"
        assert ch.differences(ch.file_contents(outputs[i]), swept["contents"][i]) == []
    # and --index says the same, with exit status 1
    one = cli("sweep", swept["cfg"], "-o", folder, "--index", "3")
    assert one.returncode == 1 and "left alone" in one.stderr, one.stderr
    assert "Traceback" not in one.stderr
    assert snapshot([outputs[2], outputs[3]]) == before


# --------------------------------------------------------------------------------- collect

def test_collect_lists_every_task_with_its_state(tmp_path):
    cfg = io.write_config(tmp_path, COLLECT_TOML, "cases.toml")
    folder = tmp_path / "out"
    tasks = Sweep.load(cfg).tasks
    assert [t.name for t in tasks] == ["case=ok", "case=gone", "case=fails", "case=stopped"]
    outputs = [output_of(folder, t.name) for t in tasks]
    procs = [start("sweep", cfg, "-o", folder, "--index", str(i), "-q") for i in range(4)]
    try:
        ch.wait_for(ch.partial(outputs[3]), procs[3])
        time.sleep(0.3)
        ch.send(procs[3], signal.SIGTERM)
        results = [ch.finish(p) for p in procs]
    finally:
        for p in procs:
            io.stop(p)
    assert [rc for rc, _ in results] == [0, 0, 1, 143], results
    outputs[1].unlink()
    with h5py.File(outputs[0], "r", locking=False) as f:
        n = int(f.attrs["n_records"])
        final_risk = float(f["observables/risk"][n - 1, 0])
        final_margin = float(f["observables/margin"][n - 1, 0])

    summary = tmp_path / "summary.csv"
    done = cli("collect", folder, "-o", summary)
    assert done.returncode == 0, done.stderr
    assert "4 tasks: 1 complete, 1 failed, 1 interrupted, 1 missing" in done.stderr, done.stderr
    with open(summary, newline="") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames
        rows = list(reader)
    assert columns[:4] == ["index", "name", "run.t_end", "integrator.max_steps"], columns
    for column in ("status", "t", "records", "checkpoint", "file", "message", "risk",
                   "margin"):
        assert column in columns, columns
    assert [(r["index"], r["name"], r["status"]) for r in rows] == [
        ("0", "case=ok", "complete"), ("1", "case=gone", "missing"),
        ("2", "case=fails", "failed"), ("3", "case=stopped", "interrupted")]
    assert [r["run.t_end"] for r in rows] == ["1", "2", "1", "1000000"]
    assert [r["integrator.max_steps"] for r in rows] == ["100000000", "100000000", "5",
                                                        "100000000"]
    ok, gone, fails, stopped = rows
    assert float(ok["t"]) == 1.0 and int(ok["records"]) == 11 and ok["file"] == "case=ok.h5"
    assert float(ok["risk"]) == pytest.approx(final_risk, rel=1e-9)
    assert float(ok["margin"]) == pytest.approx(final_margin, rel=1e-9)
    assert gone["file"] == gone["t"] == gone["risk"] == ""
    assert "max_steps" in fails["message"] and fails["file"] == "case=fails.h5.part"
    assert 0 < float(fails["t"]) < 1 and fails["checkpoint"] in ("yes", "no")
    assert stopped["file"] == "case=stopped.h5.part" and stopped["checkpoint"] == "yes"
    assert float(stopped["t"]) > 0 and int(stopped["records"]) >= 1
    assert stopped["risk"] == ""   # final figures only for complete tasks
    # without -o the same table goes to stdout
    printed = cli("collect", folder)
    assert printed.returncode == 0 and printed.stdout == summary.read_text()


def test_collect_of_a_folder_that_is_no_sweep_is_a_usage_error(tmp_path):
    done = cli("collect", tmp_path)
    assert_clean_usage_error(done, "is not a sweep folder", MANIFEST)


# ----------------------------------------------------------------------------------- slurm

def sbatch_options(script: str) -> list:
    """The #SBATCH options as sbatch reads them: those before the first command."""
    found = []
    for line in script.splitlines()[1:]:
        if line.startswith("#SBATCH"):
            found.append(line.split(None, 1)[1])
        elif line.strip() and not line.startswith("#"):
            break
    return found


def test_slurm_writes_an_array_script_with_the_options_given(tmp_path):
    cfg = io.write_config(tmp_path, SWEEP_TOML, "sweep.toml")
    folder = tmp_path / "out"
    done = cli("slurm", cfg, "-o", folder, "--partition", "debug", "--time", "00:30:00",
               "--mem", "1G", "--cpus", "2", "--throttle", "3", "--signal-seconds", "90",
               "--set", "integrator.dt=0.02")
    assert done.returncode == 0, done.stderr
    assert "(4 tasks)" in done.stdout
    script = (folder / "sweep.sbatch").read_text()
    options = sbatch_options(script)
    for option in ("--array=0-3%3", "--time=00:30:00", "--mem=1G", "--cpus-per-task=2",
                   "--partition=debug", "--signal=USR1@90", "--requeue",
                   f"--output={folder}/logs/slurm-%A_%a.out"):
        assert option in options, (option, options)
    assert script.startswith("#!/bin/bash\n")
    body = script.split("\n\n", 1)[1]
    run_line = next(line for line in body.splitlines() if " sweep " in line)
    assert str(cfg.resolve()) in run_line and f"-o {folder}" in run_line, run_line
    assert "--set integrator.dt=0.02" in run_line, run_line
    assert "--jobs" not in run_line   # one task per array task, chosen by SLURM_ARRAY_TASK_ID
    assert re.search(r"if \[ \$rc -eq 75 \]", script) and "scontrol requeue" in script
    warmup = (folder / "warmup.sbatch").read_text()
    assert " warmup " in warmup and "--partition=debug" in sbatch_options(warmup)
    assert f"NUMBA_CACHE_DIR={folder / '.numba-cache'}" in script and \
        f"NUMBA_CACHE_DIR={folder / '.numba-cache'}" in warmup
    assert json.loads((folder / MANIFEST).read_text())["overrides"] == ["integrator.dt=0.02"]
    # no throttle, no %: --throttle 0 means no limit
    again = cli("slurm", cfg, "-o", tmp_path / "plain", "--throttle", "0")
    assert again.returncode == 0, again.stderr
    assert "--array=0-3" in sbatch_options((tmp_path / "plain" / "sweep.sbatch").read_text())


@pytest.mark.parametrize("option, value, fragments", [
    ("--time", "abc", ["--time 'abc'", "HH:MM:SS"]),
    ("--mem", "2X", ["--mem '2X'", "4G"]),
    ("--cpus", "0", ["--cpus 0", "at least 1"]),
    ("--throttle", "-1", ["--throttle -1", "at least 0"]),
    ("--signal-seconds", "0", ["--signal-seconds 0", "at least 1"]),
    ("--signal-seconds", "3600", ["--signal-seconds 3600", "less than --time 01:00:00"]),
    ("--partition", "a b", ["--partition 'a b'", "not a partition name"]),
])
def test_slurm_bad_options_name_the_option(tmp_path, option, value, fragments):
    cfg = io.write_config(tmp_path, SWEEP_TOML, "sweep.toml")
    done = cli("slurm", cfg, "-o", tmp_path / "out", option, value)
    assert_clean_usage_error(done, *fragments)
    assert not (tmp_path / "out").exists()  # nothing written before the options are checked


def test_slurm_refuses_a_folder_with_spaces(tmp_path):
    cfg = io.write_config(tmp_path, SWEEP_TOML, "sweep.toml")
    done = cli("slurm", cfg, "-o", tmp_path / "my sweep")
    assert_clean_usage_error(done, "my sweep", "spaces")
    assert not (tmp_path / "my sweep").exists()


def stand_ins(folder: Path, srun_exit: int | None = None, requeue_works: bool = True) -> Path:
    """A bin folder with stand-ins for SLURM's commands: ``srun`` runs its command (or exits
    ``srun_exit``); ``scontrol`` notes its arguments in ``scontrol.calls`` and, as a requeue
    does, has the job's processes sent SIGTERM shortly after it returned 0 (or fails, exit 1,
    when not ``requeue_works``)."""
    bin_dir = folder / "bin"
    bin_dir.mkdir(parents=True)
    srun = ('#!/bin/bash\nwhile [[ "$1" == --* ]]; do shift; done\nexec "$@"\n'
            if srun_exit is None else f"#!/bin/bash\nexit {srun_exit}\n")
    scontrol = f'#!/bin/bash\necho "$@" >> {folder}/scontrol.calls\n' + (
        "( sleep 0.5; kill -TERM 0 ) </dev/null >/dev/null 2>&1 &\nexit 0\n"  # the job's group
        if requeue_works else "echo 'scontrol: error: Invalid job id' >&2\nexit 1\n")
    (bin_dir / "srun").write_text(srun)
    (bin_dir / "scontrol").write_text(scontrol)
    for name in ("srun", "scontrol"):
        (bin_dir / name).chmod(0o755)
    return bin_dir


def run_script(script: Path, bin_dir: Path, timeout: float = 120, **extra: str) -> \
        subprocess.CompletedProcess:
    """``bash SCRIPT`` in a process group of its own, as SLURM runs a batch script; whatever
    of that group is left when it ends (or times out) is killed."""
    env = env_of(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", SLURM_JOB_ID="1007",
                 SLURM_ARRAY_JOB_ID="1000", SLURM_CPUS_PER_TASK="1", **extra)
    proc = subprocess.Popen(["bash", str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"{script.name} still running after {timeout} s: {out!r} {err!r}")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return subprocess.CompletedProcess(proc.args, proc.returncode, out.decode(), err.decode())


def test_slurm_scripts_run_one_task_and_requeue_on_75(tmp_path, warm_cache):
    """The scripts, run by bash as SLURM would (srun and scontrol stand-ins on PATH): warmup
    finds the cache; the array script with SLURM_ARRAY_TASK_ID=1 finishes task 1 and nothing
    else, and requeues nothing. When the step exits 75 it calls ``scontrol requeue`` with the
    job's id and waits for the requeue to stop it (SIGTERM) rather than ending on its own;
    when the requeue fails it exits 75 at once."""
    cfg = io.write_config(tmp_path, SWEEP_TOML, "sweep.toml")
    folder = tmp_path / "out"
    assert cli("slurm", cfg, "-o", folder).returncode == 0
    shutil.copytree(warm_cache["cache"], folder / ".numba-cache")  # as if warmup.sbatch ran
    bin_dir = stand_ins(tmp_path / "ok")
    warmup = run_script(folder / "warmup.sbatch", bin_dir)
    assert warmup.returncode == 0, warmup.stderr
    assert f"kernels cached in {folder / '.numba-cache'}" in warmup.stdout, warmup.stdout

    done = run_script(folder / "sweep.sbatch", bin_dir, SLURM_ARRAY_TASK_ID="1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "task 1 (job 1007, restart 0)" in done.stdout, done.stdout
    assert f"task 1 ({NAMES[1]}): wrote" in done.stdout, done.stdout
    assert sorted(p.name for p in folder.glob("*.h5*")) == [f"{NAMES[1]}.h5"]
    assert status_of(folder / f"{NAMES[1]}.h5") == "complete"
    assert not (tmp_path / "ok" / "scontrol.calls").exists()

    requeued = run_script(folder / "sweep.sbatch", stand_ins(tmp_path / "requeue", srun_exit=75),
                          SLURM_ARRAY_TASK_ID="2")
    assert requeued.returncode in (-signal.SIGTERM, 128 + signal.SIGTERM), \
        (requeued.returncode, requeued.stdout, requeued.stderr)   # stopped by it, not 75
    assert "checkpointed; requeueing task 2" in requeued.stdout, requeued.stdout
    assert (tmp_path / "requeue" / "scontrol.calls").read_text().split() == ["requeue", "1007"]

    began = time.monotonic()
    refused = run_script(folder / "sweep.sbatch",
                         stand_ins(tmp_path / "refused", srun_exit=75, requeue_works=False),
                         timeout=60, SLURM_ARRAY_TASK_ID="2")
    assert refused.returncode == 75, (refused.returncode, refused.stdout, refused.stderr)
    assert time.monotonic() - began < 30
    assert (tmp_path / "refused" / "scontrol.calls").read_text().split() == ["requeue", "1007"]
    assert not list(folder.glob(f"{NAMES[2]}.h5*"))


# ---------------------------------------------------------------------------------- warmup

@pytest.fixture(scope="module")
def warm_cache(tmp_path_factory):
    """Two ``warmup`` processes at once on an empty NUMBA_CACHE_DIR and, meanwhile, task 0 on
    another empty cache (a cold run); then task 1 on the cache the warmups filled."""
    root = tmp_path_factory.mktemp("warmup")
    cfg = io.write_config(root, SWEEP_TOML, "sweep.toml")
    cache, cold_cache = root / "cache", root / "cold-cache"
    cache.mkdir()
    cold_cache.mkdir()
    procs = [start("warmup", cfg, NUMBA_CACHE_DIR=str(cache)) for _ in range(2)]
    procs.append(start("sweep", cfg, "-o", root / "cold", "--index", "0", "-q",
                       NUMBA_CACHE_DIR=str(cold_cache)))
    try:
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=400)
            results.append((proc.returncode, out.decode(), err.decode(errors="replace")))
    finally:
        for proc in procs:
            io.stop(proc)
    warm = cli("sweep", cfg, "-o", root / "warm", "--index", "1", "-q",
               NUMBA_CACHE_DIR=str(cache))
    return {"cfg": cfg, "cache": cache, "warmups": results[:2], "cold": results[2],
            "cold_out": output_of(root / "cold", NAMES[0]), "warm": warm,
            "warm_out": output_of(root / "warm", NAMES[1])}


def test_concurrent_warmups_fill_the_cache_and_a_task_then_loads_it(warm_cache):
    """Both warmups exit 0 and say what they compiled and where; the task run afterwards on
    that cache spends less than half the time of the cold run (and of the warmups' own cold
    compilation) before its first step."""
    cold = []
    for rc, out, err in warm_cache["warmups"]:
        assert rc == 0, err
        assert "Traceback" not in err, err
        lines = out.splitlines()
        found = re.fullmatch(r"network float64 cpu: (\d+\.\d\d) s", lines[0])
        assert found and len(lines) == 2, out   # four tasks, one signature
        assert lines[1] == f"kernels cached in {warm_cache['cache']}", out
        cold.append(float(found.group(1)))
    assert any(warm_cache["cache"].rglob("*.nbi")) and any(warm_cache["cache"].rglob("*.nbc"))
    assert warm_cache["warm"].returncode == 0, warm_cache["warm"].stderr
    assert status_of(warm_cache["warm_out"]) == "complete"
    cold_rc, _, cold_err = warm_cache["cold"]
    assert cold_rc == 0, cold_err
    cold.append(float(attr_of(warm_cache["cold_out"], "compile_seconds")))
    warm = float(attr_of(warm_cache["warm_out"], "compile_seconds"))
    assert warm < 0.5 * min(cold), (warm, cold)   # cold: the two warmups', the cold run's
