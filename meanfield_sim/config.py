"""Run configuration: TOML in, one validated, fully resolved nested dict out.

Every key a run reads is declared once in :data:`SCHEMA` with its type, default and allowed
values. :func:`resolve` checks a user's TOML against it and fills in defaults, so that the rest of
the package can index the result without checking anything again. A bad value raises
:class:`ConfigError` naming the key, the value and what is allowed. The resolved dict is written
verbatim (as TOML) into every output file, so that a file alone reproduces its run.

Cross-section rules (dimensions that must agree, labels that must match the loss) live in
:func:`_check_consistency`; the model-building code re-checks nothing.
"""
from __future__ import annotations

import copy
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

ACTIVATIONS = ("relu", "leaky_relu", "sigmoid", "tanh", "softplus", "flat_sigmoid")
LOSSES = ("logistic", "exponential", "softmax_ce")
BINARY_LOSSES = ("logistic", "exponential")
METHODS = ("euler", "heun", "rk4", "bs3", "dopri5")
ADAPTIVE_METHODS = ("bs3", "dopri5")
GROUPS = ("a", "w", "b")


class ConfigError(ValueError):
    """A config value is missing, unknown, of the wrong type or impossible. The message names the
    key (dotted path), the offending value and what is allowed."""


# ----------------------------------------------------------------------------------------------
# Schema
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Key:
    """One config key: its Python type(s), default (``REQUIRED`` if none) and an optional check
    returning an error text (what is allowed) or None."""

    types: tuple
    default: Any
    doc: str
    check: Callable[[Any], str | None] | None = None
    choices: tuple | None = None


REQUIRED = object()
_NUM = (int, float)


def _positive(v):
    return None if v > 0 else "must be > 0"


def _nonneg(v):
    return None if v >= 0 else "must be >= 0"


def _finite_nonneg(v):
    return None if math.isfinite(v) and v >= 0 else "must be a finite number >= 0"


def _finite_positive(v):
    return None if math.isfinite(v) and v > 0 else "must be a finite number > 0"


def _int_at_least(lo):
    return lambda v: None if v >= lo else f"must be an integer >= {lo}"


def _prob(v):
    return None if 0 < v < 1 else "must lie strictly between 0 and 1"


def _groups(v):
    bad = [g for g in v if g not in GROUPS]
    if bad or len(set(v)) != len(v):
        return f"must be a list of distinct names from {list(GROUPS)}"
    return None


SCHEMA: dict[str, dict[str, Key]] = {
    "run": {
        "seed": Key((int,), 0, "root seed; replica r draws from SeedSequence(seed, spawn_key=(r,))",
                    _nonneg),
        "replicas": Key((int,), 1, "number R of independent replicas integrated together",
                        _int_at_least(1)),
        "first_replica": Key((int,), 0, "global index of replica 0 (split one ensemble over jobs)",
                             _nonneg),
        "t_end": Key(_NUM, REQUIRED, "final physical time", _finite_positive),
        "dtype": Key((str,), "float64", "storage precision of particles and data",
                     choices=("float64", "float32")),
        "backend": Key((str,), "cpu", "kernel implementation", choices=("cpu",)),
        "threads": Key((int,), 0, "most threads the kernels use; 0 = all Numba has (small "
                       "problems use fewer: see kernels.choose_threads)", _nonneg),
    },
    "model": {
        "width": Key((int,), REQUIRED, "number of neurons m (with explicit init: the number listed)",
                     _int_at_least(1)),
        "activation": Key((str,), "relu", "activation sigma", choices=ACTIVATIONS),
        "leaky_slope": Key(_NUM, 0.01, "slope of leaky_relu for z < 0", _finite_nonneg),
        "loss": Key((str,), "logistic", "loss function", choices=LOSSES),
        "bias": Key((bool,), True, "whether neurons have a bias b_i"),
        "scaling": Key((str,), "mean_field", "output scale s_m: 1/m (mean_field) or 1 (standard)",
                       choices=("mean_field", "standard")),
        "train": Key((list,), ["a", "w", "b"], "parameter groups that move", _groups),
    },
    "data": {
        "kind": Key((str,), REQUIRED, "how the points are made",
                    choices=("explicit", "intervals", "gaussian_mixture")),
        "seed": Key((int,), -1, "seed for random data; -1 uses run.seed", _int_at_least(-1)),
        # explicit
        "x": Key((list,), [], "explicit points: list of numbers (d = 1) or of d-vectors"),
        "labels": Key((list,), [], "explicit labels: +-1 (binary losses) or 0..k-1 (softmax_ce)"),
        "weights": Key((list,), [], "explicit point weights p_j (normalised to sum 1); [] = equal"),
        # intervals (d = 1)
        "classes": Key((list,), [], "intervals: list of tables {label, interval = [lo, hi], points}"),
        "placement": Key((str,), "grid", "intervals: evenly spaced with both ends, or uniform random",
                         choices=("grid", "random")),
        # gaussian mixture
        "num_classes": Key((int,), 2, "gaussian_mixture: number of classes K", _int_at_least(2)),
        "dim": Key((int,), 2, "gaussian_mixture: input dimension d", _int_at_least(1)),
        "points_per_class": Key((int,), 10, "gaussian_mixture: points per class", _int_at_least(1)),
        "separation": Key(_NUM, 2.0, "gaussian_mixture: norm of each class mean", _finite_nonneg),
        "spread": Key(_NUM, 0.5, "gaussian_mixture: standard deviation within a class",
                      _finite_nonneg),
        # modifiers, all kinds
        "class_weights": Key((list,), [], "total weight of each class (in label order); [] = by count"),
        "random_labels": Key((bool,), False, "replace the labels by uniformly random ones"),
    },
    "init": {
        "kind": Key((str,), "gaussian", "initial particles",
                    choices=("gaussian", "balanced", "explicit")),
        "scale_a": Key(_NUM, 1.0, "gaussian: standard deviation of a_i", _finite_nonneg),
        "scale_w": Key(_NUM, 1.0, "standard deviation of w_i (gaussian, balanced)", _finite_nonneg),
        "scale_b": Key(_NUM, 1.0, "standard deviation of b_i (gaussian, balanced)", _finite_nonneg),
        "a": Key((list,), [], "explicit: one a_i per neuron (number, or k-vector)"),
        "w": Key((list,), [], "explicit: one w_i per neuron (number, or d-vector)"),
        "b": Key((list,), [], "explicit: one b_i per neuron; [] = zeros"),
    },
    "integrator": {
        "method": Key((str,), "dopri5", "time stepper", choices=METHODS),
        "dt": Key(_NUM, 1e-2, "fixed step, or first trial step of an adaptive method",
                  _finite_positive),
        "rtol": Key(_NUM, 1e-6, "adaptive: relative tolerance per step", _finite_positive),
        "atol": Key(_NUM, 1e-9, "adaptive: absolute tolerance per step", _finite_positive),
        "dt_max": Key(_NUM, math.inf, "adaptive: largest step allowed", _positive),
        "dt_min": Key(_NUM, 1e-12, "adaptive: smallest step before giving up", _finite_positive),
        "safety": Key(_NUM, 0.9, "adaptive: safety factor of the step controller", _prob),
        "max_steps": Key((int,), 100_000_000, "abort after this many steps", _int_at_least(1)),
    },
    "record": {
        "schedule": Key((str,), "log", "record times: log-spaced, linear or an explicit list",
                        choices=("log", "linear", "list")),
        "count": Key((int,), 50, "log, linear: number of records after t = 0", _int_at_least(1)),
        "t_first": Key(_NUM, 1e-2, "log: first positive record time", _finite_positive),
        "times": Key((list,), [], "list: record times (t = 0 and t_end are always added)"),
        "particles": Key((str,), "none", "particle snapshots: none, all, or subsample",
                         choices=("none", "all", "subsample")),
        "particle_count": Key((int,), 100, "subsample: particles kept (fixed, seeded)",
                              _int_at_least(1)),
        "grid_min": Key((list,), [], "evaluation grid lower corner (d = 1 or 2); [] = no grid"),
        "grid_max": Key((list,), [], "evaluation grid upper corner"),
        "grid_points": Key((list,), [], "evaluation grid points per axis"),
        "flush_every": Key((int,), 1, "write buffered records to disk every N records",
                           _int_at_least(1)),
    },
}


# ----------------------------------------------------------------------------------------------
# Loading and validation
# ----------------------------------------------------------------------------------------------
def load(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Read a TOML config, apply ``key=value`` overrides (TOML values, dotted keys), validate."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {str(path)!r} is not UTF-8 text (a TOML file is)") \
            from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    for item in overrides:
        apply_override(raw, item)
    return resolve(raw)


def loads(text: str) -> dict:
    """Validate a config given as TOML text."""
    try:
        return resolve(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config is not valid TOML: {exc}") from None


def apply_override(raw: dict, item: str) -> None:
    """Apply one ``section.key=value`` override; the value is parsed as TOML (bare words as strings)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must have the form section.key=value")
    dotted, text = (s.strip() for s in item.split("=", 1))
    parts = dotted.split(".")
    if len(parts) != 2 or parts[0] not in SCHEMA:
        raise ConfigError(f"override key {dotted!r} must be section.key with section one of "
                          f"{sorted(SCHEMA)}")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text  # a bare word such as relu
    section = raw.setdefault(parts[0], {})
    if not isinstance(section, dict):
        raise ConfigError(f"override {item!r}: [{parts[0]}] in the config is {section!r}, not a "
                          "table")
    section[parts[1]] = value


def resolve(raw: dict) -> dict:
    """Check ``raw`` against :data:`SCHEMA` and return a new dict with every default filled in."""
    if not isinstance(raw, dict):
        raise ConfigError("config must be a TOML table")
    unknown = sorted(set(raw) - set(SCHEMA))
    if unknown:
        raise ConfigError(f"unknown config section [{unknown[0]}]; allowed sections: "
                          f"{', '.join(sorted(SCHEMA))}")
    out: dict[str, dict] = {}
    for section, keys in SCHEMA.items():
        given = raw.get(section, {})
        if not isinstance(given, dict):
            raise ConfigError(f"[{section}] must be a table, got {given!r}")
        unknown = sorted(set(given) - set(keys))
        if unknown:
            raise ConfigError(f"unknown key {section}.{unknown[0]} = {given[unknown[0]]!r}; "
                              f"allowed keys in [{section}]: {', '.join(keys)}")
        out[section] = {}
        for name, key in keys.items():
            out[section][name] = _check_key(f"{section}.{name}", key, given.get(name, key.default))
    _check_consistency(out)
    return out


def _check_key(dotted: str, key: Key, value):
    if value is REQUIRED:
        raise ConfigError(f"missing required key {dotted} ({key.doc})")
    if isinstance(value, bool) and bool not in key.types:
        raise ConfigError(f"{dotted} = {value!r}: expected {_type_names(key.types)}")
    if not isinstance(value, key.types):
        raise ConfigError(f"{dotted} = {value!r}: expected {_type_names(key.types)}")
    if key.types == _NUM:
        value = float(value)
        if math.isnan(value):
            raise ConfigError(f"{dotted} = nan: must be a number")
    if key.choices is not None and value not in key.choices:
        raise ConfigError(f"{dotted} = {value!r}: must be one of {', '.join(key.choices)}")
    if key.check is not None:
        problem = key.check(value)
        if problem:
            raise ConfigError(f"{dotted} = {value!r}: {problem}")
    return copy.deepcopy(value)


def _type_names(types) -> str:
    if types == _NUM:
        return "a number"
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
             list: "a list"}
    return " or ".join(dict.fromkeys(names[t] for t in types))


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _vector_list(dotted: str, value, length: int | None, what: str) -> list[list[float]]:
    """Turn a list of numbers (dimension 1) or of equal-length number lists into rows."""
    rows = []
    for i, v in enumerate(value):
        row = [v] if _is_number(v) else v
        if not isinstance(row, list) or not row or not all(_is_number(c) for c in row):
            raise ConfigError(f"{dotted}[{i}] = {v!r}: expected a number or a list of numbers "
                              f"({what})")
        rows.append([float(c) for c in row])
    widths = {len(r) for r in rows}
    if len(widths) > 1:
        raise ConfigError(f"{dotted}: entries have different lengths {sorted(widths)}; all must "
                          f"have the same length ({what})")
    if length is not None and rows and len(rows[0]) != length:
        raise ConfigError(f"{dotted}: entries have length {len(rows[0])}, expected {length} "
                          f"({what})")
    return rows


def _check_consistency(cfg: dict) -> None:
    """Rules that involve several keys; sets a few derived keys under ``cfg['derived']``."""
    model, data, init, rec, integ = (cfg[s] for s in ("model", "data", "init", "record",
                                                      "integrator"))
    binary = model["loss"] in BINARY_LOSSES

    # --- data: dimension d and classes
    if data["kind"] == "explicit":
        if not data["x"]:
            raise ConfigError("data.x = []: data.kind = 'explicit' needs at least one point")
        x = _vector_list("data.x", data["x"], None, "one point per entry")
        data["x"] = x
        d = len(x[0])
        if len(data["labels"]) != len(x):
            raise ConfigError(f"data.labels has {len(data['labels'])} entries, data.x has "
                              f"{len(x)}: one label per point is required")
        if data["weights"] and len(data["weights"]) != len(x):
            raise ConfigError(f"data.weights has {len(data['weights'])} entries, data.x has "
                              f"{len(x)}: give one weight per point or none")
        labels = data["labels"]
        label_keys = [f"data.labels[{i}]" for i in range(len(labels))]
    elif data["kind"] == "intervals":
        d = 1
        if not data["classes"]:
            raise ConfigError("data.classes = []: data.kind = 'intervals' needs a list of "
                              "{label, interval = [lo, hi], points}")
        labels = []
        for i, c in enumerate(data["classes"]):
            where = f"data.classes[{i}]"
            if not isinstance(c, dict) or set(c) != {"label", "interval", "points"}:
                raise ConfigError(f"{where} = {c!r}: must be a table with exactly the keys "
                                  "label, interval, points")
            iv = c["interval"]
            if (not isinstance(iv, list) or len(iv) != 2 or not all(map(_is_number, iv))
                    or iv[0] > iv[1]):
                raise ConfigError(f"{where}.interval = {iv!r}: must be [lo, hi] with lo <= hi")
            if not isinstance(c["points"], int) or isinstance(c["points"], bool) or c["points"] < 1:
                raise ConfigError(f"{where}.points = {c['points']!r}: must be an integer >= 1")
            labels.append(c["label"])
        label_keys = [f"data.classes[{i}].label" for i in range(len(labels))]
    else:
        d = data["dim"]
        labels = [-1, 1] if (binary and data["num_classes"] == 2) else list(
            range(data["num_classes"]))
        label_keys = [f"data.num_classes (class {i})" for i in range(len(labels))]
        if binary and data["num_classes"] != 2:
            raise ConfigError(f"data.num_classes = {data['num_classes']}: model.loss = "
                              f"{model['loss']!r} is binary and needs exactly 2 classes")

    for key, lab in zip(label_keys, labels):
        if not isinstance(lab, int) or isinstance(lab, bool):
            raise ConfigError(f"{key} = {lab!r}: labels must be integers")
        if binary and lab not in (-1, 1):
            raise ConfigError(f"{key} = {lab!r}: model.loss = {model['loss']!r} is binary and "
                              "needs labels -1 or +1")
        if not binary and lab < 0:
            raise ConfigError(f"{key} = {lab!r}: model.loss = 'softmax_ce' needs class indices "
                              "0, 1, ..., k-1")
    if binary:
        k = 1
        class_labels = [-1, 1]
    else:
        k = max(labels) + 1
        if k < 2:
            raise ConfigError(f"labels {sorted(set(labels))}: model.loss = 'softmax_ce' needs "
                              "at least 2 classes (labels 0..k-1)")
        class_labels = list(range(k))
    if data["weights"]:
        for i, wgt in enumerate(data["weights"]):
            if not _is_number(wgt) or wgt < 0:
                raise ConfigError(f"data.weights[{i}] = {wgt!r}: weights must be numbers >= 0")
        if sum(data["weights"]) <= 0:
            raise ConfigError("data.weights: at least one weight must be > 0")
    if data["class_weights"]:
        cw = data["class_weights"]
        if len(cw) != len(class_labels):
            raise ConfigError(f"data.class_weights has {len(cw)} entries; there are "
                              f"{len(class_labels)} classes {class_labels}")
        if not all(_is_number(v) and v >= 0 for v in cw) or sum(cw) <= 0:
            raise ConfigError(f"data.class_weights = {cw!r}: must be numbers >= 0, not all 0")

    # --- initialisation: width from explicit particle lists
    m = model["width"]
    if init["kind"] == "explicit":
        if not init["a"] or not init["w"]:
            raise ConfigError("init.kind = 'explicit' needs init.a and init.w (one entry per "
                              "neuron)")
        init["a"] = _vector_list("init.a", init["a"], k, f"k = {k} output(s) per neuron")
        init["w"] = _vector_list("init.w", init["w"], d, f"d = {d} input dimension(s)")
        if len(init["a"]) != m or len(init["w"]) != m:
            raise ConfigError(f"model.width = {m}, but init.a lists {len(init['a'])} neurons and "
                              f"init.w {len(init['w'])}: all three must agree")
        if init["b"]:
            if len(init["b"]) != m or not all(map(_is_number, init["b"])):
                raise ConfigError(f"init.b = {init['b']!r}: must be {m} numbers (one per neuron)")
            init["b"] = [float(v) for v in init["b"]]
            if not model["bias"] and any(init["b"]):
                raise ConfigError("init.b has non-zero entries but model.bias = false")

    # --- integrator and record
    if integ["dt_min"] >= integ["dt_max"]:
        raise ConfigError(f"integrator.dt_min = {integ['dt_min']} must be < integrator.dt_max = "
                          f"{integ['dt_max']}")
    t_end = cfg["run"]["t_end"]
    if rec["schedule"] == "log" and rec["t_first"] >= t_end:
        raise ConfigError(f"record.t_first = {rec['t_first']} must be < run.t_end = {t_end}")
    if rec["schedule"] == "list":
        if not rec["times"]:
            raise ConfigError("record.schedule = 'list' needs record.times")
        for i, t in enumerate(rec["times"]):
            if not _is_number(t) or not 0 <= t <= t_end:
                raise ConfigError(f"record.times[{i}] = {t!r}: must be a number in [0, t_end = "
                                  f"{t_end}]")
    if rec["particles"] == "subsample" and rec["particle_count"] > m:
        raise ConfigError(f"record.particle_count = {rec['particle_count']}: must be <= "
                          f"model.width = {m}")
    if rec["grid_min"] or rec["grid_max"] or rec["grid_points"]:
        lists = {n: rec[n] for n in ("grid_min", "grid_max", "grid_points")}
        if any(len(v) != d for v in lists.values()) or d > 2:
            raise ConfigError(f"record.grid_min/grid_max/grid_points = {list(lists.values())}: an "
                              f"evaluation grid needs one entry per input dimension (d = {d}), "
                              "and d must be 1 or 2")
        if not all(isinstance(p, int) and not isinstance(p, bool) and p >= 2
                   for p in rec["grid_points"]):
            raise ConfigError(f"record.grid_points = {rec['grid_points']!r}: integers >= 2")
        if not all(_is_number(lo) and _is_number(hi) and lo < hi
                   for lo, hi in zip(rec["grid_min"], rec["grid_max"])):
            raise ConfigError(f"record.grid_min = {rec['grid_min']!r}, record.grid_max = "
                              f"{rec['grid_max']!r}: need numbers with min < max on every axis")
    if not model["bias"] and "b" in model["train"]:
        model["train"] = [g for g in model["train"] if g != "b"]

    cfg["derived"] = {"input_dim": d, "outputs": k, "class_labels": class_labels}


def to_toml(cfg: dict) -> str:
    """Serialise a resolved config (without ``derived``) as TOML; ``loads`` of it gives it back."""
    lines = []
    for section, values in cfg.items():
        if section == "derived":
            continue
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {v!r} as TOML")


def reference_markdown() -> str:
    """Every config key with its type, default and meaning, as Markdown (docs/config.md)."""
    lines = ["# Config reference", "",
             "Generated from `meanfield_sim/config.py` by `python -m meanfield_sim.config`; "
             "a test keeps it current.", ""]
    for section, keys in SCHEMA.items():
        lines += [f"## [{section}]", "", "| key | type | default | meaning |", "|---|---|---|---|"]
        for name, key in keys.items():
            default = "required" if key.default is REQUIRED else f"`{_toml_value(key.default)}`"
            meaning = key.doc + (f"; one of {', '.join(key.choices)}" if key.choices else "")
            lines.append(f"| `{name}` | {_type_names(key.types)} | {default} | {meaning} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(reference_markdown(), end="")
