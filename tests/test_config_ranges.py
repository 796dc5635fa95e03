"""Range checks of numeric config values: each bad value fails in ``resolve`` with a message that
names the key and the value, and the boundary values that must still work are accepted.

Each case starts from a small TOML text and sets keys as ``section.key=value`` overrides, whose
values are parsed as TOML (so ``inf``, ``nan`` and inline tables are TOML literals).
"""
from __future__ import annotations

import math
import os
import re
import sys
import tomllib

import pytest

from meanfield_sim import config
from meanfield_sim.config import ConfigError

sys.path.insert(0, os.path.dirname(__file__))
from minimal_configs import FINAL_LAYER, NETWORK  # noqa: E402


INTERVALS = """\
[run]
t_end = 1.0
[model]
width = 4
[data]
kind = "intervals"
classes = [{label = -1, interval = [-2.0, -1.0], points = 3},
           {label = 1, interval = [1.0, 2.0], points = 3}]
"""

MIXTURE = """\
[run]
t_end = 1.0
[model]
width = 4
[data]
kind = "gaussian_mixture"
"""


PENULTIMATE = FINAL_LAYER.replace("final_layer", "penultimate_layer")

SOFTMAX = ["model.loss='softmax_ce'", "data.labels=[0, 1]"]
EXPLICIT_INIT = ["model.width=2", "init.kind='explicit'", "init.a=[1.0, -1.0]",
                 "init.w=[1.0, 2.0]"]
GRID_1D = ["record.grid_min=[-1.0]", "record.grid_max=[1.0]", "record.grid_points=[3]"]

BIG = 2**63
INT64 = "signed 64-bit integer"
MAGNITUDE = "|v| <= 1e150 (larger values overflow float64 in h = a sigma(w x + b))"
MEMORY = "more than any machine's memory"


def resolved(text: str, *overrides: str) -> dict:
    raw = tomllib.loads(text)
    for item in overrides:
        config.apply_override(raw, item)
    return config.resolve(raw)


def assert_rejected(text, overrides, named, allowed):
    """``named`` (key and value) starts a clause of the message; ``allowed`` appears in it."""
    with pytest.raises(ConfigError, match=re.escape(named)) as info:
        resolved(text, *overrides)
    assert allowed in str(info.value), str(info.value)


# ---------------------------------------------------------------------------------------------
# 1. Integers fit in int64; arrays fit in 2**50 numbers
# ---------------------------------------------------------------------------------------------
INT64_CASES = [
    (NETWORK, [f"run.seed={2**64}"], f"run.seed = {2**64}"),
    (NETWORK, [f"run.seed={BIG}"], f"run.seed = {BIG}"),
    (NETWORK, [f"run.seed={-2**64}"], f"run.seed = {-2**64}"),
    (NETWORK, [f"data.seed={2**64}"], f"data.seed = {2**64}"),
    (NETWORK, [f"run.replicas={BIG}"], f"run.replicas = {BIG}"),
    (NETWORK, [f"run.first_replica={BIG}"], f"run.first_replica = {BIG}"),
    (NETWORK, [f"run.threads={BIG}"], f"run.threads = {BIG}"),
    (NETWORK, [f"model.width={BIG}"], f"model.width = {BIG}"),
    (MIXTURE, [f"data.num_classes={BIG}"], f"data.num_classes = {BIG}"),
    (MIXTURE, [f"data.dim={BIG}"], f"data.dim = {BIG}"),
    (MIXTURE, [f"data.points_per_class={BIG}"], f"data.points_per_class = {BIG}"),
    (PENULTIMATE, [f"toy.feature_dim={BIG}"], f"toy.feature_dim = {BIG}"),
    (NETWORK, [f"record.count={BIG}"], f"record.count = {BIG}"),
    (NETWORK, [f"record.particle_count={BIG}"], f"record.particle_count = {BIG}"),
    (NETWORK, [f"record.flush_every={BIG}"], f"record.flush_every = {BIG}"),
    (NETWORK, [f"integrator.max_steps={BIG}"], f"integrator.max_steps = {BIG}"),
    (NETWORK, [f"record.grid_points=[{BIG}]"], f"record.grid_points[0] = {BIG}"),
    (NETWORK, [f"data.labels=[-1, {BIG}]"], f"data.labels[1] = {BIG}"),
    (NETWORK, [f"data.x=[-1.0, {BIG}]"], f"data.x[1] = {BIG}"),
    (NETWORK, [f"run.t_end={2**70}"], f"run.t_end = {2**70}"),
    (INTERVALS, [f"data.classes=[{{label = -1, interval = [0, 1], points = {BIG}}}]"],
     f"data.classes[0].points = {BIG}"),
    (INTERVALS, [f"data.classes=[{{label = {BIG}, interval = [0, 1], points = 3}}]"],
     f"data.classes[0].label = {BIG}"),
]


@pytest.mark.parametrize("text, overrides, named", INT64_CASES, ids=[c[2] for c in INT64_CASES])
def test_integers_beyond_int64_are_rejected(text, overrides, named):
    assert_rejected(text, overrides, named, INT64)


def test_integer_boundaries_are_accepted():
    cfg = resolved(NETWORK, f"run.seed={BIG - 1}", f"data.seed={BIG - 1}",
                   f"integrator.max_steps={BIG - 1}", f"run.first_replica={BIG - 2}")
    assert cfg["run"]["seed"] == BIG - 1 and cfg["data"]["seed"] == BIG - 1
    assert resolved(NETWORK, f"data.x=[{-BIG}, {BIG - 1}]")["data"]["x"] == [[-2.0**63], [2.0**63]]


def test_last_replica_index_must_fit_in_int64():
    assert_rejected(NETWORK, [f"run.first_replica={BIG - 1}", "run.replicas=1"],
                    f"run.first_replica = {BIG - 1}, run.replicas = 1", "< 2**63")
    assert_rejected(NETWORK, [f"run.first_replica={2**62}", f"run.replicas={2**62}"],
                    f"run.first_replica = {2**62}, run.replicas = {2**62}", "< 2**63")


SIZE_CASES = [
    (NETWORK, [f"model.width={2**40}", f"run.replicas={2**10}"],
     f"model.width = {2**40}, run.replicas = {2**10}", "the particle state would hold"),
    (NETWORK, [*SOFTMAX, f"data.labels=[0, {2**55}]"], "model.width = 4, run.replicas = 1",
     "the particle state"),
    (FINAL_LAYER, [f"data.points_per_class={2**49}"],
     f"data.points_per_class = {2**49}, run.replicas = 1", "the particle state"),
    (PENULTIMATE, [f"toy.feature_dim={2**30}", f"data.points_per_class={2**20}"],
     f"toy.feature_dim = {2**30}", "the particle state"),
    (MIXTURE, [f"data.dim={2**30}", f"data.points_per_class={2**20}"],
     f"data.points_per_class = {2**20}", "the data would hold"),
    (MIXTURE, ["model.loss='softmax_ce'", f"data.num_classes={2**13}",
               f"data.points_per_class={2**24}", "data.dim=1", "model.width=1"],
     f"data.num_classes = {2**13}", "the outputs of one record"),
    (MIXTURE, ["record.grid_min=[0.0, 0.0]", "record.grid_max=[1.0, 1.0]",
               f"record.grid_points=[{2**25}, {2**25}]"],
     f"record.grid_points = [{2**25}, {2**25}]", "the evaluation grid"),
    (NETWORK, [f"record.count={2**50}"], f"record.count = {2**50}", "disk"),
]


@pytest.mark.parametrize("text, overrides, named, what", SIZE_CASES,
                         ids=[c[2] for c in SIZE_CASES])
def test_arrays_no_machine_can_hold_are_rejected(text, overrides, named, what):
    with pytest.raises(ConfigError, match=re.escape(named)) as info:
        resolved(text, *overrides)
    message = str(info.value)
    assert what in message and "bytes" in message and "more than any machine's" in message


def test_the_memory_message_counts_numbers_and_bytes():
    with pytest.raises(ConfigError) as info:
        resolved(NETWORK, f"model.width={2**50}")
    entries = 2**50 * (1 + 1 + 1)  # m (k + d + 1) with k = d = 1
    assert f"would hold {entries} numbers ({8 * entries:.3g} bytes), {MEMORY}" in str(info.value)


# ---------------------------------------------------------------------------------------------
# 2. Weights whose sum overflows
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides, named", [
    (["data.weights=[1e308, 1e308]"], "data.weights = [1e+308, 1e+308]"),
    (["data.class_weights=[1e308, 1e308]"], "data.class_weights = [1e+308, 1e+308]"),
    (["data.x=[-1.0, 0.0, 1.0]", "data.labels=[-1, 1, 1]",
      "data.weights=[1.7e308, 1e300, 1.7e308]"], "data.weights = [1.7e+308, 1e+300, 1.7e+308]"),
])
def test_weights_whose_sum_overflows_are_rejected(overrides, named):
    assert_rejected(NETWORK, overrides, named, "the sum overflows float64; rescale")


def test_large_weights_with_a_finite_sum_are_accepted():
    cfg = resolved(NETWORK, "data.weights=[1e300, 1e300]", "data.class_weights=[1e300, 1e300]")
    assert cfg["data"]["weights"] == [1e300, 1e300]


# ---------------------------------------------------------------------------------------------
# 3. toy.norm_p
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, shown", [("-inf", "-inf"), ("1.0", "1.0"), ("100.5", "100.5"),
                                          ("-2.0", "-2.0")])
def test_norm_p_outside_its_range_is_rejected(value, shown):
    assert_rejected(FINAL_LAYER, [f"toy.norm_p={value}"], f"toy.norm_p = {shown}",
                    "must be in (1, 100] or inf")


@pytest.mark.parametrize("value", ["inf", "100", "1.5"])
def test_norm_p_boundaries_are_accepted(value):
    assert resolved(FINAL_LAYER, f"toy.norm_p={value}")["toy"]["norm_p"] == float(value)


# ---------------------------------------------------------------------------------------------
# 4. Magnitudes that overflow in a forward pass; times must be finite
# ---------------------------------------------------------------------------------------------
MAGNITUDE_CASES = [
    (INTERVALS, ["data.classes=[{label = -1, interval = [-1e308, 1e308], points = 3}]"],
     "data.classes[0].interval[0] = -1e+308"),
    (INTERVALS, ["data.classes=[{label = -1, interval = [0.0, 1e151], points = 3}]"],
     "data.classes[0].interval[1] = 1e+151"),
    (NETWORK, ["record.grid_min=[-1e308]", "record.grid_max=[1e308]", "record.grid_points=[3]"],
     "record.grid_min[0] = -1e+308"),
    (NETWORK, ["record.grid_min=[0.0]", "record.grid_max=[1e200]", "record.grid_points=[3]"],
     "record.grid_max[0] = 1e+200"),
    (NETWORK, ["init.scale_a=1e200"], "init.scale_a = 1e+200"),
    (NETWORK, ["init.scale_w=1e151"], "init.scale_w = 1e+151"),
    (NETWORK, ["init.scale_b=1e300"], "init.scale_b = 1e+300"),
    (NETWORK, ["model.leaky_slope=1e200"], "model.leaky_slope = 1e+200"),
    (MIXTURE, ["data.separation=1e200"], "data.separation = 1e+200"),
    (MIXTURE, ["data.spread=1e200"], "data.spread = 1e+200"),
    (FINAL_LAYER, ["toy.radius=1e200"], "toy.radius = 1e+200"),
    (FINAL_LAYER, ["toy.init_offset=1e200"], "toy.init_offset = 1e+200"),
    (FINAL_LAYER, ["toy.init_spread=1e200"], "toy.init_spread = 1e+200"),
    (PENULTIMATE, ["toy.init_scale_A=1e200"], "toy.init_scale_A = 1e+200"),
    (PENULTIMATE, ["toy.operator_bound=1e200"], "toy.operator_bound = 1e+200"),
    (PENULTIMATE, ["toy.weight_decay_A=1e200"], "toy.weight_decay_A = 1e+200"),
    (PENULTIMATE, ["toy.weight_decay_Y=1e200"], "toy.weight_decay_Y = 1e+200"),
    (NETWORK, ["data.x=[-1.0, 1e200]"], "data.x[1] = 1e+200"),
    (NETWORK, ["data.x=[[-1.0, 0.0], [1.0, -1e200]]"], "data.x[1][1] = -1e+200"),
    (NETWORK, [*EXPLICIT_INIT, "init.a=[1.0, 1e200]"], "init.a[1] = 1e+200"),
    (NETWORK, [*EXPLICIT_INIT, "init.w=[1e200, 2.0]"], "init.w[0] = 1e+200"),
    (NETWORK, [*EXPLICIT_INIT, "init.b=[0.0, 1e200]"], "init.b[1] = 1e+200"),
]


@pytest.mark.parametrize("text, overrides, named", MAGNITUDE_CASES,
                         ids=[c[2] for c in MAGNITUDE_CASES])
def test_magnitudes_beyond_1e150_are_rejected(text, overrides, named):
    assert_rejected(text, overrides, named, MAGNITUDE)


def test_magnitudes_up_to_1e150_are_accepted():
    cfg = resolved(NETWORK, *EXPLICIT_INIT, "init.a=[1e150, -1e150]", "init.b=[0.0, 1e150]",
                   "init.scale_a=1e150", "model.leaky_slope=1e150", "data.x=[-1e150, 1e150]",
                   "record.grid_min=[-1e150]", "record.grid_max=[1e150]",
                   "record.grid_points=[3]")
    assert cfg["init"]["a"] == [[1e150], [-1e150]] and cfg["data"]["x"] == [[-1e150], [1e150]]
    resolved(INTERVALS, "data.classes=[{label = -1, interval = [-1e150, 1e150], points = 3}]")
    resolved(PENULTIMATE, "toy.operator_bound=1e150", "toy.radius=1e150")


@pytest.mark.parametrize("overrides, named, allowed", [
    (["run.t_end=inf"], "run.t_end = inf", "finite"),
    (["integrator.dt=inf"], "integrator.dt = inf", "finite"),
    (["record.t_first=inf"], "record.t_first = inf", "finite"),
    (["integrator.dt_max=-inf"], "integrator.dt_max = -inf", "> 0"),
    (["integrator.dt_max=nan"], "integrator.dt_max = nan", "number"),
    (["record.schedule='list'", "record.times=[0.5, inf]"], "record.times[1] = inf", "finite"),
])
def test_times_must_be_finite(overrides, named, allowed):
    assert_rejected(NETWORK, overrides, named, allowed)


def test_large_finite_times_and_unlimited_dt_max_are_accepted():
    cfg = resolved(NETWORK, "run.t_end=1e300", "integrator.dt_max=inf")
    assert cfg["run"]["t_end"] == 1e300 and cfg["integrator"]["dt_max"] == math.inf


# ---------------------------------------------------------------------------------------------
# 5. NaN and inf inside lists, as TOML literals
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides, named", [
    (["data.x=[-1.0, 0.0, 1.0, inf]", "data.labels=[-1, 1, 1, 1]"], "data.x[3] = inf"),
    (["data.x=[[-1.0, nan], [1.0, 0.0]]"], "data.x[0][1] = nan"),
    (["data.weights=[1.0, inf]"], "data.weights[1] = inf"),
    (["data.weights=[nan, 1.0]"], "data.weights[0] = nan"),
    (["data.class_weights=[1.0, -inf]"], "data.class_weights[1] = -inf"),
    ([*EXPLICIT_INIT, "init.a=[inf, 1.0]"], "init.a[0] = inf"),
    ([*EXPLICIT_INIT, "init.w=[[1.0], [nan]]"], "init.w[1][0] = nan"),
    ([*EXPLICIT_INIT, "init.b=[0.0, -inf]"], "init.b[1] = -inf"),
    (["record.schedule='list'", "record.times=[nan]"], "record.times[0] = nan"),
    (["record.times=[0.5, inf]"], "record.times[1] = inf"),  # even when schedule is not list
    (["record.grid_min=[nan]", "record.grid_max=[1.0]", "record.grid_points=[3]"],
     "record.grid_min[0] = nan"),
    (["record.grid_min=[0.0]", "record.grid_max=[inf]", "record.grid_points=[3]"],
     "record.grid_max[0] = inf"),
])
def test_non_finite_list_elements_are_rejected(overrides, named):
    assert_rejected(NETWORK, overrides, named, "must be a finite number")


def test_non_finite_in_an_inline_table_is_rejected():
    assert_rejected(INTERVALS, ["data.classes=[{label = -1, interval = [-inf, 1.0], points = 3}]"],
                    "data.classes[0].interval[0] = -inf", "must be a finite number")


def test_non_finite_literals_in_toml_text():
    text = NETWORK.replace("x = [-1.0, 1.0]", "x = [-1.0, inf]")
    with pytest.raises(ConfigError, match=re.escape("data.x[1] = inf: must be a finite number")):
        config.loads(text)
    with pytest.raises(ConfigError, match=re.escape("toy.norm_p = -inf: must be in (1, 100]")):
        config.loads(FINAL_LAYER + "[toy]\nnorm_p = -inf\n")
    assert config.loads(FINAL_LAYER + "[toy]\nnorm_p = inf\n")["toy"]["norm_p"] == math.inf
    assert config.loads(NETWORK.replace("t_end = 1.0", "t_end = 1e300\nseed = 9223372036854775807")
                        )["run"]["seed"] == BIG - 1


def test_the_boundary_configs_round_trip():
    cfg = resolved(NETWORK, f"run.seed={BIG - 1}", "run.t_end=1e300", "integrator.dt_max=inf",
                   "data.weights=[1e300, 1e300]", "init.scale_w=1e150")
    assert config.loads(config.to_toml(cfg)) == cfg
