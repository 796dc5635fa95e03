"""Rules that involve several config keys: dimensions that must agree, labels that must suit
the loss, explicit particle lists, record and grid settings. They run once, inside
``resolve``, after every key passed its own check; nothing downstream re-validates.
"""
from __future__ import annotations

import math

from .schema import (ADAPTIVE_METHODS, BINARY_LOSSES, SORTED_ACTIVATIONS, ConfigError, _is_number,
                     _is_real, _magnitude)

MAX_ENTRIES = 2**50  # float64 numbers in one array: 8 PiB, more than any machine's memory


def _require_bounded(dotted: str, v) -> None:
    problem = _magnitude(v)
    if problem:
        raise ConfigError(f"{dotted} = {v!r}: {problem}")


def _vector_list(dotted: str, value, length: int | None, what: str) -> list[list[float]]:
    """Turn a list of numbers (dimension 1) or of equal-length number lists into rows."""
    rows = []
    for i, v in enumerate(value):
        scalar = _is_real(v)
        row = [v] if scalar else v
        if not isinstance(row, list) or not row or not all(_is_real(c) for c in row):
            raise ConfigError(f"{dotted}[{i}] = {v!r}: expected a number or a list of numbers "
                              f"({what})")
        for j, c in enumerate(row):
            _require_bounded(f"{dotted}[{i}]" if scalar else f"{dotted}[{i}][{j}]", c)
        rows.append([float(c) for c in row])
    widths = {len(r) for r in rows}
    if len(widths) > 1:
        raise ConfigError(f"{dotted}: entries have different lengths {sorted(widths)}; all must "
                          f"have the same length ({what})")
    if length is not None and rows and len(rows[0]) != length:
        raise ConfigError(f"{dotted}: entries have length {len(rows[0])}, expected {length} "
                          f"({what})")
    return rows


def check_consistency(cfg: dict) -> None:
    """Apply every cross-key rule (normalising explicit lists to rows of floats) and record the
    derived values under ``cfg['derived']``: input_dim d, outputs k, class_labels and the
    network kernels run.kernel allows."""
    _model_kind_rules(cfg)
    _replica_rules(cfg["run"])
    d, k = _data_rules(cfg)
    _test_set_rules(cfg, d, k)
    _explicit_init_rules(cfg, d, k)
    _integrator_and_record_rules(cfg, d)
    _size_rules(cfg, d, k)
    class_labels = [-1, 1] if k == 1 else list(range(k))
    _weight_rules(cfg["data"], class_labels)
    model = cfg["model"]
    if not model["bias"] and "b" in model["train"]:
        model["train"] = [g for g in model["train"] if g != "b"]
    if model["kind"] == "network" and not model["train"]:
        raise ConfigError("model.train = []: nothing would move; name at least one of a, w "
                          "(and b with model.bias = true)")
    cfg["derived"] = {"input_dim": d, "outputs": k, "class_labels": class_labels,
                      "kernel": _kernel_rules(cfg, d)}


def _kernel_rules(cfg: dict, d: int) -> str:
    """The network kernels run.kernel allows: 'sorted' where asked for (refused where it does
    not apply), 'pairwise' where asked for or where the sorted kernels do not apply, and 'auto'
    where they apply and the choice is left to the flow (by the number of data points:
    kernels.resolve_kernel)."""
    run, model = cfg["run"], cfg["model"]
    why_not = None
    if model["kind"] != "network":
        why_not = f"model.kind = {model['kind']!r} has no network kernels"
    elif d != 1:
        why_not = f"the data have d = {d} inputs; it needs d = 1"
    elif model["activation"] not in SORTED_ACTIVATIONS:
        why_not = (f"model.activation = {model['activation']!r}; it serves "
                   f"{' and '.join(SORTED_ACTIVATIONS)}")
    elif run["backend"] != "cpu":
        why_not = f"run.backend = {run['backend']!r}; it runs on the CPU"
    if run["kernel"] == "sorted" and why_not:
        raise ConfigError(f"run.kernel = 'sorted' does not apply: {why_not} (use 'pairwise' or "
                          "'auto')")
    if run["kernel"] == "pairwise" or why_not:
        return "pairwise"
    return run["kernel"]


def _model_kind_rules(cfg: dict) -> None:
    """A network needs a width and inputs; the toy models need softmax_ce and have no inputs,
    neurons or evaluation grid."""
    model, data, rec = cfg["model"], cfg["data"], cfg["record"]
    if model["kind"] == "network":
        if model["width"] < 1:
            raise ConfigError(f"model.width = {model['width']}: model.kind = 'network' needs the "
                              "number of neurons m >= 1")
        if data["kind"] == "classes":
            raise ConfigError("data.kind = 'classes' gives labelled points without inputs x; a "
                              "network needs inputs (explicit, intervals or gaussian_mixture)")
        return
    kind = model["kind"]
    if cfg["run"]["backend"] != "cpu":
        raise ConfigError(f"run.backend = {cfg['run']['backend']!r}: model.kind = {kind!r} runs "
                          "on the CPU only (its flow is NumPy); use 'cpu'")
    if cfg["run"]["dtype"] != "float64":
        raise ConfigError(f"run.dtype = {cfg['run']['dtype']!r}: model.kind = {kind!r} runs in "
                          "float64 only")
    if model["loss"] != "softmax_ce":
        raise ConfigError(f"model.loss = {model['loss']!r}: model.kind = {kind!r} is a softmax "
                          "cross-entropy model; use 'softmax_ce'")
    if rec["grid_points"] or rec["grid_min"] or rec["grid_max"]:
        raise ConfigError(f"record.grid_points = {rec['grid_points']!r}: model.kind = {kind!r} "
                          "has no inputs to evaluate on a grid; leave the grid keys empty")
    if rec["particles"] == "subsample":
        raise ConfigError(f"record.particles = 'subsample': model.kind = {kind!r} has no "
                          "neurons; use 'all' (features and A) or 'none'")


def _replica_rules(run: dict) -> None:
    """Global replica indices first_replica .. first_replica + replicas - 1 fit in int64."""
    if run["first_replica"] + run["replicas"] >= 2**63:
        raise ConfigError(f"run.first_replica = {run['first_replica']}, run.replicas = "
                          f"{run['replicas']}: first_replica + replicas must be < 2**63 (global "
                          "replica indices are signed 64-bit integers)")


def _data_rules(cfg: dict) -> tuple[int, int]:
    """Points and labels against each other and against the loss: (d, k)."""
    model, data = cfg["model"], cfg["data"]
    binary = model["loss"] in BINARY_LOSSES
    if data["kind"] in ("gaussian_mixture", "classes"):
        sizes = data["class_sizes"]
        if sizes and (len(sizes) != data["num_classes"] or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in sizes)):
            raise ConfigError(f"data.class_sizes = {sizes!r}: must list one integer >= 1 per "
                              f"class (data.num_classes = {data['num_classes']}), or be []")
        if binary and data["num_classes"] != 2:
            raise ConfigError(f"data.num_classes = {data['num_classes']}: model.loss = "
                              f"{model['loss']!r} is binary and needs exactly 2 classes")
        d = data["dim"] if data["kind"] == "gaussian_mixture" else 0
        return d, 1 if binary else data["num_classes"]
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
    else:
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
            if not isinstance(iv, list) or len(iv) != 2 or not all(map(_is_real, iv)):
                raise ConfigError(f"{where}.interval = {iv!r}: must be [lo, hi] with lo <= hi")
            for j, end in enumerate(iv):
                _require_bounded(f"{where}.interval[{j}]", end)
            if iv[0] > iv[1]:
                raise ConfigError(f"{where}.interval = {iv!r}: must be [lo, hi] with lo <= hi")
            if not isinstance(c["points"], int) or isinstance(c["points"], bool) or c["points"] < 1:
                raise ConfigError(f"{where}.points = {c['points']!r}: must be an integer >= 1")
            labels.append(c["label"])
        label_keys = [f"data.classes[{i}].label" for i in range(len(labels))]

    _label_rules(label_keys, labels, model["loss"])
    if binary:
        return d, 1
    k = max(labels) + 1
    if k < 2:
        raise ConfigError(f"labels {sorted(set(labels))}: model.loss = 'softmax_ce' needs "
                          "at least 2 classes (labels 0..k-1)")
    return d, k


def _label_rules(keys: list, labels: list, loss: str, k: int | None = None) -> None:
    """Labels are integers: +-1 for the binary losses, class indices (below k if given) for
    softmax_ce."""
    for key, lab in zip(keys, labels):
        if not isinstance(lab, int) or isinstance(lab, bool):
            raise ConfigError(f"{key} = {lab!r}: labels must be integers")
        if loss in BINARY_LOSSES and lab not in (-1, 1):
            raise ConfigError(f"{key} = {lab!r}: model.loss = {loss!r} is binary and needs "
                              "labels -1 or +1")
        if loss not in BINARY_LOSSES and (lab < 0 or (k is not None and lab >= k)):
            top = f"{k - 1}, the classes of data.labels" if k is not None else "k-1"
            raise ConfigError(f"{key} = {lab!r}: model.loss = 'softmax_ce' needs class indices "
                              f"0, 1, ..., {top}")


def _test_set_rules(cfg: dict, d: int, k: int) -> None:
    """A held-out test set belongs to a network: drawn (data.test_points, for the generated
    kinds) or listed (data.test_x, data.test_labels, for explicit data), never both."""
    model, data = cfg["model"], cfg["data"]
    if not (data["test_points"] or data["test_x"] or data["test_labels"]):
        return
    if model["kind"] != "network":
        raise ConfigError(f"data.test_points = {data['test_points']}, data.test_x = "
                          f"{data['test_x']!r}: model.kind = {model['kind']!r} has no inputs to "
                          "generalise over; a held-out test set needs model.kind = 'network'")
    if data["test_points"] and data["kind"] not in ("intervals", "gaussian_mixture"):
        raise ConfigError(f"data.test_points = {data['test_points']}: drawn test points need "
                          "data.kind = 'intervals' or 'gaussian_mixture'; for explicit data "
                          "list them in data.test_x and data.test_labels")
    if data["test_x"] or data["test_labels"]:
        if data["kind"] != "explicit":
            raise ConfigError(f"data.test_x = {data['test_x']!r}: listed test points go with "
                              f"data.kind = 'explicit' (here {data['kind']!r}: use "
                              "data.test_points)")
        if not data["test_x"]:
            raise ConfigError("data.test_labels is given but data.test_x = []: list the test "
                              "points too")
        data["test_x"] = _vector_list("data.test_x", data["test_x"], d,
                                      f"d = {d} input dimension(s), like data.x")
        if len(data["test_labels"]) != len(data["test_x"]):
            raise ConfigError(f"data.test_labels has {len(data['test_labels'])} entries, "
                              f"data.test_x has {len(data['test_x'])}: one label per point")
        _label_rules([f"data.test_labels[{i}]" for i in range(len(data["test_labels"]))],
                     data["test_labels"], model["loss"], None if k == 1 else k)
        cw, classes = data["class_weights"], [-1, 1] if k == 1 else list(range(k))
        if cw and len(cw) == len(classes):
            weighted = {c for c, v in zip(classes, cw) if _is_number(v) and v > 0}
            if not weighted & set(data["test_labels"]):
                raise ConfigError(f"data.test_labels = {data['test_labels']!r}: under "
                                  f"data.class_weights = {cw!r} no test point carries weight; "
                                  "list test points of a class of positive weight")


def _point_count(data: dict) -> tuple[int, str]:
    """The number n of data points and the keys that set it."""
    if data["kind"] == "explicit":
        return len(data["x"]), f"data.x ({len(data['x'])} points)"
    if data["kind"] == "intervals":
        n = sum(c["points"] for c in data["classes"])
        return n, f"data.classes (points summing to {n})"
    if data["class_sizes"]:
        n = sum(data["class_sizes"])
        return n, f"data.class_sizes (summing to {n})"
    n = data["num_classes"] * data["points_per_class"]
    return n, (f"data.num_classes = {data['num_classes']}, data.points_per_class = "
               f"{data['points_per_class']}")


def _test_count(data: dict) -> tuple[int, str]:
    """The number of held-out test points and the keys that set it."""
    if data["test_x"]:
        return len(data["test_x"]), f"data.test_x ({len(data['test_x'])} points)"
    classes = len(data["classes"]) if data["kind"] == "intervals" else data["num_classes"]
    return data["test_points"] * classes, f"data.test_points = {data['test_points']}"


def _state_size(cfg: dict, n: int, points: str, d: int, k: int) -> tuple[str, int]:
    """The keys that set one replica's particle state, and its number of entries."""
    model = cfg["model"]
    if model["kind"] == "network":
        return f"model.width = {model['width']}", model["width"] * (k + d + 1)
    if model["kind"] == "final_layer":
        return points, n * k
    m = cfg["toy"]["feature_dim"]
    return f"toy.feature_dim = {m}, {points}", n * m + k * m + k


def _record_count(rec: dict) -> tuple[int, str]:
    """The most records a run writes (t = 0 and t_end included) and the key that sets it."""
    if rec["schedule"] == "list":
        return len(rec["times"]) + 2, f"record.times ({len(rec['times'])} times)"
    return rec["count"] + 1, f"record.count = {rec['count']}"


def _size_rules(cfg: dict, d: int, k: int) -> None:
    """The particle state, the data, the grid, one record's outputs and the output file's
    outputs of all records each hold fewer than MAX_ENTRIES numbers."""
    R, grid_points = cfg["run"]["replicas"], cfg["record"]["grid_points"]
    n, points = _point_count(cfg["data"])
    reps, sizes = f"run.replicas = {R}", f"(k = {k} outputs, d = {d} inputs)"
    state_keys, state = _state_size(cfg, n, points, d, k)
    grid = math.prod(grid_points) if grid_points else 0
    grid_keys = f"record.grid_points = {grid_points}"
    frames, frame_keys = _record_count(cfg["record"])
    n_test, test_keys = _test_count(cfg["data"])
    arrays = [(f"{state_keys}, {reps} {sizes}", R * state, "the particle state", "memory"),
              (f"{points} {sizes}", n * d, "the data", "memory"),
              (f"{points}, {reps} {sizes}", R * n * k, "the outputs of one record", "memory"),
              (f"{grid_keys} {sizes}", grid * d, "the evaluation grid", "memory"),
              (f"{grid_keys}, {reps} {sizes}", R * grid * k, "the grid outputs of one record",
               "memory"),
              (f"{frame_keys}, {points}, {reps} {sizes}", frames * R * n * k,
               "the output file's outputs of all records", "disk"),
              (f"{frame_keys}, {test_keys}, {reps} {sizes}", frames * R * n_test * k,
               "the output file's test outputs of all records", "disk")]
    for keys, entries, what, store in arrays:
        if entries >= MAX_ENTRIES:
            raise ConfigError(f"{keys}: {what} would hold {entries} numbers ({8 * entries:.3g} "
                              f"bytes), more than any machine's {store}")


def _weight_rules(data: dict, class_labels: list) -> None:
    """Point and class weights: numbers >= 0, not all 0, with a finite sum."""
    if data["weights"]:
        for i, wgt in enumerate(data["weights"]):
            if not _is_number(wgt) or wgt < 0:
                raise ConfigError(f"data.weights[{i}] = {wgt!r}: weights must be numbers >= 0")
        if _finite_sum("data.weights", data["weights"]) <= 0:
            raise ConfigError("data.weights: at least one weight must be > 0")
    if data["class_weights"]:
        cw = data["class_weights"]
        if len(cw) != len(class_labels):
            raise ConfigError(f"data.class_weights has {len(cw)} entries; there are "
                              f"{len(class_labels)} classes {class_labels}")
        if not all(_is_number(v) and v >= 0 for v in cw) or _finite_sum(
                "data.class_weights", cw) <= 0:
            raise ConfigError(f"data.class_weights = {cw!r}: must be numbers >= 0, not all 0")


def _finite_sum(dotted: str, values: list) -> float:
    """math.fsum of finite numbers, or ConfigError if it overflows float64."""
    try:
        total = math.fsum(values)
    except OverflowError:
        total = math.inf
    if not math.isfinite(total):
        raise ConfigError(f"{dotted} = {values!r}: the sum overflows float64; rescale the "
                          "weights (they are normalised to sum 1 anyway)")
    return total


def _explicit_init_rules(cfg: dict, d: int, k: int) -> None:
    """Explicit particle lists: k-vectors a_i, d-vectors w_i, as many as model.width."""
    model, init = cfg["model"], cfg["init"]
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
            if len(init["b"]) != m or not all(map(_is_real, init["b"])):
                raise ConfigError(f"init.b = {init['b']!r}: must be {m} numbers (one per neuron)")
            for i, v in enumerate(init["b"]):
                _require_bounded(f"init.b[{i}]", v)
            init["b"] = [float(v) for v in init["b"]]
            if not model["bias"] and any(init["b"]):
                raise ConfigError("init.b has non-zero entries but model.bias = false")


def _integrator_and_record_rules(cfg: dict, d: int) -> None:
    """Step bounds, record times within [0, t_end], snapshot size, evaluation grid of dim d."""
    integ, rec, m = cfg["integrator"], cfg["record"], cfg["model"]["width"]
    if cfg["run"]["backend"] == "cuda" and integ["method"] in ("momentum", "adam"):
        raise ConfigError(f"integrator.method = {integ['method']!r} runs on the CPU only; with "
                          "run.backend = 'cuda' use a Runge-Kutta method (euler, heun, rk4, bs3,"
                          " dopri5)")
    if integ["method"] in ADAPTIVE_METHODS and integ["dt_min"] >= integ["dt"]:
        raise ConfigError(f"integrator.dt_min = {integ['dt_min']} must be < integrator.dt = "
                          f"{integ['dt']} (the first trial step)")
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
        rec["particle_count"] = m  # a sample of more than all is all: width sweeps just work
    if rec["grid_min"] or rec["grid_max"] or rec["grid_points"]:
        lists = {n: rec[n] for n in ("grid_min", "grid_max", "grid_points")}
        if any(len(v) != d for v in lists.values()) or d > 2:
            raise ConfigError(f"record.grid_min/grid_max/grid_points = {list(lists.values())}: an "
                              f"evaluation grid needs one entry per input dimension (d = {d}), "
                              "and d must be 1 or 2")
        if not all(isinstance(p, int) and not isinstance(p, bool) and p >= 2
                   for p in rec["grid_points"]):
            raise ConfigError(f"record.grid_points = {rec['grid_points']!r}: integers >= 2")
        for name in ("grid_min", "grid_max"):
            for i, v in enumerate(rec[name]):
                _require_bounded(f"record.{name}[{i}]", v)
        if not all(_is_number(lo) and _is_number(hi) and lo < hi
                   for lo, hi in zip(rec["grid_min"], rec["grid_max"])):
            raise ConfigError(f"record.grid_min = {rec['grid_min']!r}, record.grid_max = "
                              f"{rec['grid_max']!r}: need numbers with min < max on every axis")
