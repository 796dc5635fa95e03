"""Config schema: defaults, every kind of bad value, overrides, and the TOML round trip.

Every bad config must raise ``ConfigError`` whose message names the key (dotted path), the
offending value and what is allowed; each case below lists message fragments for those three.
"""
from __future__ import annotations

import copy
import math
import tomllib
import os
import sys
from pathlib import Path

import pytest

from meanfield_sim import config as C
from meanfield_sim.config import ConfigError

sys.path.insert(0, os.path.dirname(__file__))
from io_helpers import TINY_TOML  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

INTERVALS = {"kind": "intervals",
             "classes": [{"label": -1, "interval": [-2.0, -1.0], "points": 3},
                         {"label": 1, "interval": [1.0, 2.0], "points": 3}]}
BASE = {"run": {"t_end": 1.0}, "model": {"width": 20}, "data": INTERVALS}
EXPLICIT_2D = {"kind": "explicit", "x": [[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]],
               "labels": [1, -1, 1]}


def raw_with(*changes) -> dict:
    """BASE with changes applied; each change is (section, key, value) or (section, table),
    value DELETE removes the key."""
    raw = copy.deepcopy(BASE)
    for change in changes:
        if len(change) == 2:
            raw[change[0]] = copy.deepcopy(change[1])
        else:
            section, key, value = change
            table = raw.setdefault(section, {})
            if value is DELETE:
                del table[key]
            else:
                table[key] = copy.deepcopy(value)
    return raw


DELETE = object()

MINIMAL_TOML = """\
[run]
t_end = 1.0
[model]
width = 20
[data]
kind = "intervals"
classes = [{label = -1, interval = [-2.0, -1.0], points = 3},
           {label = 1, interval = [1.0, 2.0], points = 3}]
"""


def same(a, b, where="cfg") -> None:
    """Equality that also compares types (1 == 1.0 and True == 1 would hide a changed type)."""
    assert type(a) is type(b), f"{where}: {a!r} ({type(a).__name__}) vs {b!r} ({type(b).__name__})"
    if isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys {list(a)} vs {list(b)}"
        for k in a:
            same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), f"{where}: {a!r} vs {b!r}"
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), where
    else:
        assert a == b, f"{where}: {a!r} vs {b!r}"


# ---------------------------------------------------------------------------------------------
# Defaults
# ---------------------------------------------------------------------------------------------
def test_defaults_are_filled_in():
    cfg = C.resolve(copy.deepcopy(BASE))
    assert set(cfg) == set(C.SCHEMA) | {"derived"}
    for section, keys in C.SCHEMA.items():
        assert set(cfg[section]) == set(keys), section
        for name, key in keys.items():
            if name in BASE.get(section, {}) or key.default is C.REQUIRED:
                continue
            expected = float(key.default) if key.types == C._NUM else key.default
            same(cfg[section][name], expected, f"{section}.{name}")
    # a few spelled out, so that a changed default is noticed here and not only in the docs
    assert cfg["run"]["seed"] == 0 and cfg["run"]["replicas"] == 1
    assert cfg["model"]["activation"] == "relu" and cfg["model"]["loss"] == "logistic"
    assert cfg["model"]["train"] == ["a", "w", "b"] and cfg["model"]["bias"] is True
    assert cfg["integrator"]["method"] == "dopri5" and cfg["integrator"]["dt_max"] == math.inf
    assert cfg["record"]["schedule"] == "log" and cfg["record"]["particles"] == "none"
    assert cfg["derived"] == {"input_dim": 1, "outputs": 1, "class_labels": [-1, 1],
                              "kernel": "auto"}


def test_integer_given_for_a_number_becomes_float():
    cfg = C.loads("[run]\nt_end = 3\n[model]\nwidth = 4\n[data]\nkind = \"gaussian_mixture\"\n"
                  "[integrator]\ndt = 1\n")
    same(cfg["run"]["t_end"], 3.0)
    same(cfg["integrator"]["dt"], 1.0)
    same(cfg["model"]["width"], 4)


def test_resolve_leaves_input_and_schema_defaults_alone():
    raw = raw_with(("data", dict(EXPLICIT_2D)), ("model", "width", 3))
    before = copy.deepcopy(raw)
    cfg = C.resolve(raw)
    assert raw == before
    cfg["model"]["train"].append("mutated")
    cfg["data"]["classes"].append("mutated")
    again = C.resolve(copy.deepcopy(BASE))
    assert again["model"]["train"] == ["a", "w", "b"]
    assert again["data"]["classes"] == INTERVALS["classes"]
    assert C.SCHEMA["model"]["train"].default == ["a", "w", "b"]


def test_no_bias_drops_b_from_the_trained_groups():
    cfg = C.resolve(raw_with(("model", "bias", False)))
    assert cfg["model"]["train"] == ["a", "w"]


def test_explicit_data_and_softmax_derive_dimensions():
    cfg = C.resolve(raw_with(("model", "loss", "softmax_ce"),
                             ("data", {"kind": "explicit", "x": [[0, 1], [1, 0], [2, 2]],
                                       "labels": [0, 2, 1]})))
    assert cfg["derived"] == {"input_dim": 2, "outputs": 3, "class_labels": [0, 1, 2],
                              "kernel": "pairwise"}
    same(cfg["data"]["x"], [[0.0, 1.0], [1.0, 0.0], [2.0, 2.0]])


def test_one_dimensional_explicit_points_become_rows():
    cfg = C.resolve(raw_with(("data", {"kind": "explicit", "x": [-1, 0.5], "labels": [1, -1]})))
    same(cfg["data"]["x"], [[-1.0], [0.5]])
    assert cfg["derived"]["input_dim"] == 1


# ---------------------------------------------------------------------------------------------
# Bad configs: (id, raw, fragments that must all appear in the message)
# ---------------------------------------------------------------------------------------------
SOFTMAX_3 = [("model", "loss", "softmax_ce"),
             ("data", {"kind": "explicit", "x": [[0.0], [1.0], [2.0]], "labels": [0, 1, 2]})]

BAD = [
    # structure
    ("unknown section", raw_with(("runn", {"seed": 1})), ["[runn]", "allowed sections", "run"]),
    ("unknown key", raw_with(("model", "widht", 3)),
     ["model.widht", "3", "allowed keys", "width"]),
    ("section not a table", raw_with(("integrator", 3)), ["[integrator]", "3", "table"]),
    ("missing required key", raw_with(("run", "t_end", DELETE)), ["run.t_end", "missing"]),
    ("missing data.kind", raw_with(("data", {})), ["data.kind", "missing"]),
    # wrong types
    ("string for number", raw_with(("run", "t_end", "1")), ["run.t_end", "'1'", "a number"]),
    ("string for int", raw_with(("model", "width", "20")), ["model.width", "'20'", "an integer"]),
    ("bool for int", raw_with(("model", "width", True)), ["model.width", "True", "an integer"]),
    ("bool for number", raw_with(("run", "t_end", True)), ["run.t_end", "True", "a number"]),
    ("float for int", raw_with(("model", "width", 2.5)), ["model.width", "2.5", "an integer"]),
    ("int for string", raw_with(("model", "activation", 3)),
     ["model.activation", "3", "a string"]),
    ("string for bool", raw_with(("model", "bias", "yes")),
     ["model.bias", "'yes'", "true or false"]),
    ("int for bool", raw_with(("model", "bias", 1)), ["model.bias", "1", "true or false"]),
    ("string for list", raw_with(("model", "train", "a")), ["model.train", "'a'", "a list"]),
    ("list for number", raw_with(("integrator", "dt", [0.1])),
     ["integrator.dt", "[0.1]", "a number"]),
    # impossible values
    ("negative width", raw_with(("model", "width", -3)), ["model.width", "-3", ">= 1"]),
    ("zero width", raw_with(("model", "width", 0)), ["model.width", "0", ">= 1"]),
    ("zero replicas", raw_with(("run", "replicas", 0)), ["run.replicas", "0", ">= 1"]),
    ("negative seed", raw_with(("run", "seed", -1)), ["run.seed", "-1", ">= 0"]),
    ("t_end zero", raw_with(("run", "t_end", 0)), ["run.t_end", "0", "> 0"]),
    ("t_end negative", raw_with(("run", "t_end", -1.5)), ["run.t_end", "-1.5", "> 0"]),
    ("t_end nan", raw_with(("run", "t_end", math.nan)), ["run.t_end", "nan", "number"]),
    ("t_end inf", raw_with(("run", "t_end", math.inf)), ["run.t_end", "inf", "finite"]),
    ("dt nan", raw_with(("integrator", "dt", math.nan)), ["integrator.dt", "nan", "number"]),
    ("dt_max nan", raw_with(("integrator", "dt_max", math.nan)),
     ["integrator.dt_max", "nan", "number"]),
    ("negative rtol", raw_with(("integrator", "rtol", -1e-6)),
     ["integrator.rtol", "-1e-06", "> 0"]),
    ("safety above 1", raw_with(("integrator", "safety", 1.5)),
     ["integrator.safety", "1.5", "between 0 and 1"]),
    ("negative spread", raw_with(("data", "spread", -0.5)), ["data.spread", "-0.5", ">= 0"]),
    ("zero flush_every", raw_with(("record", "flush_every", 0)),
     ["record.flush_every", "0", ">= 1"]),
    ("dt_min >= dt_max", raw_with(("integrator", "dt_max", 1e-13)),
     ["integrator.dt_min", "integrator.dt_max", "1e-13", "<"]),
    # choices
    ("activation", raw_with(("model", "activation", "gelu")),
     ["model.activation", "'gelu'", "relu", "flat_sigmoid"]),
    ("loss", raw_with(("model", "loss", "hinge")), ["model.loss", "'hinge'", "softmax_ce"]),
    ("method", raw_with(("integrator", "method", "rk45")),
     ["integrator.method", "'rk45'", "dopri5"]),
    ("dtype", raw_with(("run", "dtype", "float16")), ["run.dtype", "'float16'", "float32"]),
    ("data kind", raw_with(("data", "kind", "moons")), ["data.kind", "'moons'", "intervals"]),
    ("particles", raw_with(("record", "particles", "some")),
     ["record.particles", "'some'", "subsample"]),
    ("train group", raw_with(("model", "train", ["a", "q"])),
     ["model.train", "'q'", "'a', 'w', 'b'"]),
    ("train repeated", raw_with(("model", "train", ["a", "a"])), ["model.train", "distinct"]),
    # dimensions that must agree
    ("explicit x ragged", raw_with(("data", {**EXPLICIT_2D, "x": [[0.0, 1.0], [1.0], [2.0, 2.0]]})),
     ["data.x", "different lengths", "[1, 2]"]),
    ("explicit x not numbers", raw_with(("data", {**EXPLICIT_2D, "x": [[0.0, "a"], [1.0, 0.0],
                                                                      [1.0, 1.0]]})),
     ["data.x[0]", "'a'", "number"]),
    ("explicit x empty", raw_with(("data", {"kind": "explicit"})), ["data.x", "at least one"]),
    ("labels count", raw_with(("data", {**EXPLICIT_2D, "labels": [1, -1]})),
     ["data.labels", "2", "data.x", "3", "one label per point"]),
    ("weights count", raw_with(("data", {**EXPLICIT_2D, "weights": [1.0, 2.0]})),
     ["data.weights", "2", "3"]),
    ("negative weight", raw_with(("data", {**EXPLICIT_2D, "weights": [1.0, -2.0, 1.0]})),
     ["data.weights[1]", "-2.0", ">= 0"]),
    ("init.w dimension", raw_with(("data", EXPLICIT_2D), ("model", "width", 2),
                                  ("init", {"kind": "explicit", "a": [1.0, -1.0],
                                            "w": [1.0, 2.0]})),
     ["init.w", "length 1", "expected 2"]),
    ("init.a length for softmax k", raw_with(*SOFTMAX_3, ("model", "width", 2),
                                             ("init", {"kind": "explicit", "a": [1.0, 2.0],
                                                       "w": [1.0, 2.0]})),
     ["init.a", "length 1", "expected 3"]),
    ("init.a and init.w counts", raw_with(("model", "width", 2),
                                          ("init", {"kind": "explicit", "a": [1.0, -1.0],
                                                    "w": [1.0, 2.0, 3.0]})),
     ["init.w", "3"]),
    ("init.b count", raw_with(("model", "width", 2),
                              ("init", {"kind": "explicit", "a": [1.0, -1.0], "w": [1.0, 2.0],
                                        "b": [0.0]})),
     ["init.b", "[0.0]", "2 numbers"]),
    ("explicit init without a", raw_with(("init", {"kind": "explicit", "w": [1.0]})),
     ["init.a", "init.w"]),
    ("grid dimensions", raw_with(("record", {"grid_min": [0.0, 0.0], "grid_max": [1.0],
                                             "grid_points": [3]})),
     ["record.grid_min", "[0.0, 0.0]", "d = 1"]),
    ("grid points", raw_with(("record", {"grid_min": [0.0], "grid_max": [1.0],
                                         "grid_points": [1]})),
     ["record.grid_points", "[1]", ">= 2"]),
    ("grid min >= max", raw_with(("record", {"grid_min": [1.0], "grid_max": [0.0],
                                             "grid_points": [3]})),
     ["record.grid_min", "[1.0]", "min < max"]),
    # classes and labels
    ("label 0 for logistic (explicit)", raw_with(("data", {**EXPLICIT_2D, "labels": [1, 0, 1]})),
     ["data.labels[1] = 0", "-1 or +1", "logistic"]),
    ("label 2 for exponential (intervals)",
     raw_with(("model", "loss", "exponential"),
              ("data", {"kind": "intervals",
                        "classes": [{"label": -1, "interval": [-2.0, -1.0], "points": 3},
                                    {"label": 2, "interval": [1.0, 2.0], "points": 3}]})),
     ["data.classes[1].label = 2", "-1 or +1", "exponential"]),
    ("label not an integer", raw_with(("data", {**EXPLICIT_2D, "labels": [1, -1, 1.0]})),
     ["data.labels[2] = 1.0", "integers"]),
    ("negative class index for softmax", raw_with(*SOFTMAX_3[:1],
                                                  ("data", {**SOFTMAX_3[1][1],
                                                            "labels": [0, -1, 1]})),
     ["data.labels[1] = -1", "0, 1, ..., k-1"]),
    ("three classes for a binary loss", raw_with(("data", {"kind": "gaussian_mixture",
                                                           "num_classes": 3})),
     ["data.num_classes", "3", "exactly 2 classes"]),
    ("class_weights length", raw_with(("data", "class_weights", [1.0, 2.0, 3.0])),
     ["data.class_weights", "3", "2 classes"]),
    ("class_weights length softmax", raw_with(*SOFTMAX_3, ("data", "class_weights", [1.0, 1.0])),
     ["data.class_weights", "2", "3 classes"]),
    ("class_weights negative", raw_with(("data", "class_weights", [1.0, -1.0])),
     ["data.class_weights", "-1.0", ">= 0"]),
    ("interval reversed", raw_with(("data", {"kind": "intervals",
                                             "classes": [{"label": -1, "interval": [-1.0, -2.0],
                                                          "points": 3}]})),
     ["data.classes[0].interval", "[-1.0, -2.0]", "lo <= hi"]),
    ("interval points", raw_with(("data", {"kind": "intervals",
                                           "classes": [INTERVALS["classes"][0],
                                                       {"label": 1, "interval": [1.0, 2.0],
                                                        "points": 0}]})),
     ["data.classes[1].points", "0", ">= 1"]),
    ("interval table keys", raw_with(("data", {"kind": "intervals",
                                               "classes": [{"label": 1, "interval": [1.0, 2.0]}]})),
     ["data.classes[0]", "label, interval, points"]),
    # record
    ("t_first == t_end", raw_with(("record", "t_first", 1.0)),
     ["record.t_first", "1.0", "run.t_end"]),
    ("t_first > t_end", raw_with(("record", "t_first", 5.0)),
     ["record.t_first", "5.0", "< run.t_end"]),
    ("record time beyond t_end", raw_with(("record", {"schedule": "list", "times": [0.5, 2.0]})),
     ["record.times[1]", "2.0", "t_end"]),
    ("list schedule without times", raw_with(("record", "schedule", "list")),
     ["record.times", "record.schedule"]),
]


@pytest.mark.parametrize("raw, fragments", [pytest.param(r, f, id=i) for i, r, f in BAD])
def test_bad_config_names_key_value_and_allowed(raw, fragments):
    with pytest.raises(ConfigError) as info:
        C.resolve(copy.deepcopy(raw))
    message = str(info.value)
    missing = [frag for frag in fragments if frag not in message]
    assert not missing, f"message {message!r} lacks {missing}"


def test_particle_count_beyond_width_is_clipped():
    """A width sweep of a config with a subsample: more particles than there are means all."""
    cfg = C.resolve(raw_with(("record", {"particles": "subsample", "particle_count": 21})))
    assert cfg["record"]["particle_count"] == cfg["model"]["width"] == 20


def test_good_variants_of_the_bad_cases_pass():
    """The bad cases fail for the reason given, not because BASE itself is wrong."""
    C.resolve(copy.deepcopy(BASE))
    C.resolve(raw_with(*SOFTMAX_3))
    C.resolve(raw_with(("data", EXPLICIT_2D), ("model", "width", 2),
                       ("init", {"kind": "explicit", "a": [1.0, -1.0],
                                 "w": [[1.0, 2.0], [0.0, 1.0]]})))
    C.resolve(raw_with(("record", {"particles": "subsample", "particle_count": 20})))
    C.resolve(raw_with(("record", "t_first", 0.999)))
    C.resolve(raw_with(("record", {"schedule": "list", "times": [0.0, 0.5, 1.0]})))
    C.resolve(raw_with(("record", {"grid_min": [0.0], "grid_max": [1.0], "grid_points": [2]})))


def test_nan_and_inf_from_toml_text():
    base = "[model]\nwidth = 2\n[data]\nkind = \"gaussian_mixture\"\n[run]\n"
    with pytest.raises(ConfigError, match=r"run\.t_end = nan"):
        C.loads(base + "t_end = nan\n")
    with pytest.raises(ConfigError, match=r"run\.t_end = inf: must be a finite number > 0"):
        C.loads(base + "t_end = inf\n")
    assert C.loads(base + "t_end = 1\n[integrator]\ndt_max = inf\n")["integrator"]["dt_max"] \
        == math.inf


def test_override_into_a_section_that_is_not_a_table(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("integrator = 3\n" + MINIMAL_TOML)
    with pytest.raises(ConfigError, match="integrator"):
        C.load(path)  # without override: a ConfigError, as it should be
    with pytest.raises(ConfigError, match="integrator"):
        C.load(path, ["integrator.dt=0.1"])


def test_load_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match=r"does not exist") as info:
        C.load(tmp_path / "nope.toml")
    assert "nope.toml" in str(info.value)
    bad = tmp_path / "bad.toml"
    bad.write_text("[run\nt_end = 1\n")
    with pytest.raises(ConfigError, match=r"not valid TOML") as info:
        C.load(bad)
    assert "bad.toml" in str(info.value)
    with pytest.raises(ConfigError, match=r"not valid TOML"):
        C.loads("[run]\nt_end = = 1\n")
    with pytest.raises(ConfigError, match=r"not valid TOML"):
        C.loads("[run]\nt_end = 1\n[run]\nseed = 2\n")  # a table defined twice


def test_load_binary_file_is_a_config_error(tmp_path):
    path = tmp_path / "binary.toml"
    path.write_bytes(b"\xff\xfe\x00\x01 not text")
    with pytest.raises(ConfigError):
        C.load(path)


# ---------------------------------------------------------------------------------------------
# to_toml round trip
# ---------------------------------------------------------------------------------------------
ROUND_TRIP = {
    "base": copy.deepcopy(BASE),
    "tiny": tomllib.loads(TINY_TOML),
    "explicit softmax": raw_with(
        ("run", {"t_end": 5, "seed": 7, "replicas": 3}),
        ("model", {"width": 4, "loss": "softmax_ce", "activation": "leaky_relu",
                   "leaky_slope": 0.25, "bias": False, "scaling": "standard"}),
        ("data", {"kind": "explicit", "x": [[0, 1], [1, 0], [1.5, -2e-3]], "labels": [0, 2, 1],
                  "weights": [1, 2.5, 0], "class_weights": [1, 2, 3]}),
        ("init", {"kind": "explicit", "a": [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]],
                  "w": [[1, 0], [0, 1], [1, 1], [-1, 0]], "b": [0, 0, 0, 0]}),
        ("integrator", {"dt_max": 0.5, "rtol": 1e-10, "method": "bs3"}),
        ("record", {"schedule": "list", "times": [1, 2.5, 0.125], "grid_min": [-1, -1.5],
                    "grid_max": [1, 1], "grid_points": [3, 4]})),
    "gaussian mixture": raw_with(
        ("model", "loss", "softmax_ce"),
        ("data", {"kind": "gaussian_mixture", "num_classes": 4, "dim": 3, "seed": 11,
                  "random_labels": True, "separation": 1e-300, "spread": 1e150}),
        ("record", {"schedule": "linear", "count": 7, "particles": "all"})),
}
for _path in sorted((ROOT / "runs").glob("*.toml")):
    ROUND_TRIP[f"runs/{_path.name}"] = tomllib.loads(_path.read_text())


@pytest.mark.parametrize("raw", list(ROUND_TRIP.values()), ids=list(ROUND_TRIP))
def test_to_toml_round_trip(raw):
    cfg = C.resolve(copy.deepcopy(raw))
    text = C.to_toml(cfg)
    assert "derived" not in text
    back = C.loads(text)
    same(back, cfg)  # 'derived' included: loads recomputes it from the rest
    assert C.to_toml(back) == text
    # the written config is complete: nothing in it relies on a default
    written = tomllib.loads(text)
    assert {s: set(v) for s, v in written.items()} == {s: set(k) for s, k in C.SCHEMA.items()}


def test_resolve_is_idempotent_on_its_output():
    cfg = C.loads(TINY_TOML)
    again = C.resolve({s: copy.deepcopy(v) for s, v in cfg.items() if s != "derived"})
    same(again, cfg)


@pytest.mark.parametrize("value", [0.1, 1e-12, 1.0e16, 123456789.123456789, -0.0, 2.0 ** -1074,
                                   math.inf, 5e-324, 1.7976931348623157e308])
def test_float_values_survive_the_round_trip_exactly(value):
    text = C.toml_value(value)
    parsed = tomllib.loads(f"v = {text}")["v"]
    same(parsed, value)
    assert math.copysign(1.0, parsed) == math.copysign(1.0, value)
