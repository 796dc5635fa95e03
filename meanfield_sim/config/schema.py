"""The config schema: every key a run reads, with its type, default, allowed values and meaning.

The allowed names of activations, losses and integrators are declared here, at the top of the
package's dependency order; tests check them against the model's and integrator's registries.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

ACTIVATIONS = ("relu", "leaky_relu", "sigmoid", "tanh", "softplus", "flat_sigmoid")
SORTED_ACTIVATIONS = ("relu", "leaky_relu", "flat_sigmoid")
"""The activations of the exact sort-and-sweep kernels for d = 1 (kernels.sorted1d)."""
KERNELS = ("auto", "pairwise", "sorted")
LOSSES = ("logistic", "exponential", "softmax_ce")
BINARY_LOSSES = ("logistic", "exponential")
METHODS = ("euler", "heun", "rk4", "bs3", "dopri5", "momentum", "adam")
ADAPTIVE_METHODS = ("bs3", "dopri5")
MODEL_KINDS = ("network", "final_layer", "penultimate_layer")
GROUPS = ("a", "w", "b")


class ConfigError(ValueError):
    """A config value is missing, unknown, of the wrong type or impossible. The message names the
    key (dotted path), the offending value and what is allowed."""


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
INT64_MIN, INT64_MAX = -2**63, 2**63 - 1
MAX_MAGNITUDE = 1e150


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


def _magnitude(v):
    """What is allowed, unless ``v`` is a number with |v| <= MAX_MAGNITUDE: a product of two such
    numbers stays below 1e300, so a forward pass cannot overflow float64."""
    if _is_real(v) and abs(v) <= MAX_MAGNITUDE:
        return None
    return ("must be a number with |v| <= 1e150 (larger values overflow float64 in "
            "h = a sigma(w x + b))")


def _bounded(check):
    """``check``, then |v| <= MAX_MAGNITUDE."""
    return lambda v: check(v) or _magnitude(v)


def _norm_p(v):
    if 1 < v <= 100 or v == math.inf:
        return None
    return ("must be in (1, 100] or inf (beyond p = 100 use inf: the balls differ by a factor "
            "k^(1/p) < 1.05 for k <= 100)")


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
        "dtype": Key((str,), "float64",
                     "precision of the network kernels' arithmetic and of the stored data "
                     "(the state stays float64)",
                     choices=("float64", "float32")),
        "backend": Key((str,), "cpu", "where the network's kernels run: 'cpu' (Numba) or "
                       "'cuda' (numba-cuda on a GPU: the 'cuda' extra; network models with "
                       "Runge-Kutta integrators)", choices=("cpu", "cuda")),
        "kernel": Key((str,), "auto", "the network kernels' algorithm: 'pairwise' (a pass over "
                      "every particle-data pair; any network), 'sorted' (exact sort-and-sweep, "
                      "O(m + n) per evaluation: d = 1, relu, leaky_relu or flat_sigmoid, backend "
                      "'cpu'), 'auto' = sorted where it applies and is the faster: n >= 200 "
                      "(relu, leaky_relu), n >= 400 (flat_sigmoid)",
                      choices=KERNELS),
        "threads": Key((int,), 0, "most threads the kernels use; 0 = all Numba has (small "
                       "problems use fewer: see kernels.choose_threads)", _nonneg),
        "checkpoint_seconds": Key(_NUM, 600.0, "wall-clock seconds between checkpoints "
                                  "(OUT.ckpt, for run --resume); a stop signal checkpoints too; "
                                  "0 = on stop signals only", _finite_nonneg),
    },
    "model": {
        "kind": Key((str,), "network", "the flow: two-layer network, or a toy model of Section 3 "
                    "(final_layer) or 4 (penultimate_layer), configured in [toy]",
                    choices=MODEL_KINDS),
        "width": Key((int,), 0, "network: number of neurons m (with explicit init: the number "
                     "listed); 0 = unset, for the toy models",
                     lambda v: None if v >= 0 else "must be an integer >= 1 (0 = unset, for the "
                     "toy models)"),
        "activation": Key((str,), "relu", "activation sigma", choices=ACTIVATIONS),
        "leaky_slope": Key(_NUM, 0.01, "slope of leaky_relu for z < 0", _bounded(_finite_nonneg)),
        "loss": Key((str,), "logistic", "loss function", choices=LOSSES),
        "bias": Key((bool,), True, "whether neurons have a bias b_i"),
        "scaling": Key((str,), "mean_field", "output scale s_m: 1/m (mean_field) or 1 (standard)",
                       choices=("mean_field", "standard")),
        "train": Key((list,), ["a", "w", "b"], "parameter groups that move", _groups),
    },
    "data": {
        "kind": Key((str,), REQUIRED, "how the points are made; 'classes' gives labelled points "
                    "without inputs, for the toy models", choices=("explicit", "intervals",
                                                                    "gaussian_mixture", "classes")),
        "seed": Key((int,), 0, "seed for random data (random placement, gaussian_mixture, "
                    "random_labels), independent of run.seed so that seed sweeps keep the data; "
                    "-1 ties it to run.seed", _int_at_least(-1)),
        # explicit
        "x": Key((list,), [], "explicit points: list of numbers (d = 1) or of d-vectors"),
        "labels": Key((list,), [], "explicit labels: +-1 (binary losses) or 0..k-1 (softmax_ce)"),
        "weights": Key((list,), [], "explicit point weights p_j (normalised to sum 1); [] = equal"),
        # intervals (d = 1)
        "classes": Key((list,), [], "intervals: list of tables {label, interval = [lo, hi], points}"),
        "placement": Key((str,), "grid", "intervals: evenly spaced with both ends, or uniform random",
                         choices=("grid", "random")),
        # gaussian mixture
        "num_classes": Key((int,), 2, "gaussian_mixture, classes: number of classes K",
                           _int_at_least(2)),
        "dim": Key((int,), 2, "gaussian_mixture: input dimension d", _int_at_least(1)),
        "class_sizes": Key((list,), [], "gaussian_mixture, classes: points of each class (one "
                           "integer >= 1 per class, for unequal classes); [] = points_per_class "
                           "each"),
        "points_per_class": Key((int,), 10, "gaussian_mixture, classes: points per class",
                                _int_at_least(1)),
        "separation": Key(_NUM, 2.0, "gaussian_mixture: norm of each class mean",
                          _bounded(_finite_nonneg)),
        "spread": Key(_NUM, 0.5, "gaussian_mixture: standard deviation within a class",
                      _bounded(_finite_nonneg)),
        # held-out test set (network only)
        "test_points": Key((int,), 0, "intervals, gaussian_mixture: held-out test points per "
                           "class, drawn from the training distribution (uniform on each class's "
                           "interval, or the same Gaussian cluster) from their own random "
                           "stream; 0 = no test set", _nonneg),
        "test_x": Key((list,), [], "explicit: held-out test points, like data.x; [] = none"),
        "test_labels": Key((list,), [], "explicit: labels of data.test_x"),
        # modifiers, all kinds
        "class_weights": Key((list,), [], "total weight of each class (in label order); [] = by count"),
        "random_labels": Key((bool,), False, "replace the labels (and those of a test set) by "
                             "uniformly random ones"),
    },
    "init": {
        "kind": Key((str,), "gaussian", "initial particles",
                    choices=("gaussian", "balanced", "explicit")),
        "scale_a": Key(_NUM, 1.0, "gaussian: standard deviation of a_i",
                       _bounded(_finite_nonneg)),
        "scale_w": Key(_NUM, 1.0, "standard deviation of w_i (gaussian, balanced)",
                       _bounded(_finite_nonneg)),
        "scale_b": Key(_NUM, 1.0, "standard deviation of b_i (gaussian, balanced)",
                       _bounded(_finite_nonneg)),
        "a": Key((list,), [], "explicit: one a_i per neuron (number, or k-vector)"),
        "w": Key((list,), [], "explicit: one w_i per neuron (number, or d-vector)"),
        "b": Key((list,), [], "explicit: one b_i per neuron; [] = zeros"),
    },
    "integrator": {
        "method": Key((str,), "dopri5", "time stepper (Runge-Kutta) or optimiser (momentum, "
                      "adam)", choices=METHODS),
        "dt": Key(_NUM, 1e-2, "fixed step = learning rate, or first trial step of an adaptive "
                  "method", _finite_positive),
        "rtol": Key(_NUM, 1e-6, "adaptive: relative tolerance per step", _finite_positive),
        "atol": Key(_NUM, 1e-9, "adaptive: absolute tolerance per step", _finite_positive),
        "dt_max": Key(_NUM, math.inf, "adaptive: largest step allowed", _positive),
        "dt_min": Key(_NUM, 1e-12, "adaptive: smallest step before giving up", _finite_positive),
        "safety": Key(_NUM, 0.9, "adaptive: safety factor of the step controller", _prob),
        "max_steps": Key((int,), 100_000_000, "abort after this many steps", _int_at_least(1)),
        "momentum": Key(_NUM, 0.9, "momentum: coefficient mu of the heavy ball", _prob),
        "beta1": Key(_NUM, 0.9, "adam: decay of the first moment", _prob),
        "beta2": Key(_NUM, 0.999, "adam: decay of the second moment", _prob),
        "eps": Key(_NUM, 1e-8, "adam: added to sqrt(v)", _finite_positive),
    },
    "toy": {
        "radius": Key(_NUM, 1.0, "R: bound on each output (final_layer) or feature "
                      "(penultimate_layer)", _bounded(_finite_positive)),
        "norm_p": Key(_NUM, 2.0, "final_layer: p of the l^p ball of outputs, in (1, 100] or "
                      "inf (for p near 1 the sphere is almost not smooth and the flow slow)",
                      _norm_p),
        "feature_dim": Key((int,), 8, "penultimate_layer: feature dimension m", _int_at_least(1)),
        "operator_bound": Key(_NUM, 1.0, "penultimate_layer: bound on the operator norm of A",
                              _bounded(_finite_positive)),
        "bias": Key((bool,), False, "penultimate_layer: output bias b in h = A y + b"),
        "constraint": Key((str,), "ball", "penultimate_layer: norm balls with projected flow, "
                          "or weight decay without constraint", choices=("ball", "weight_decay")),
        "weight_decay_A": Key(_NUM, 1e-3, "weight_decay: lambda_A of lambda_A |A|_F^2",
                              _bounded(_finite_nonneg)),
        "weight_decay_Y": Key(_NUM, 1e-3, "weight_decay: lambda_Y of lambda_Y sum_j |y_j|^2",
                              _bounded(_finite_nonneg)),
        "init_offset": Key(_NUM, 0.1, "std of each class's common initial offset",
                           _bounded(_finite_nonneg)),
        "init_spread": Key(_NUM, 0.1, "std of each point's own initial deviation (spread "
                           "within classes)", _bounded(_finite_nonneg)),
        "init_scale_A": Key(_NUM, 1.0, "penultimate_layer: A starts with entries of std "
                            "init_scale_A / sqrt(m)", _bounded(_finite_nonneg)),
    },
    "record": {
        "schedule": Key((str,), "log", "record times: log-spaced, linear or an explicit list",
                        choices=("log", "linear", "list")),
        "count": Key((int,), 50, "log, linear: number of record times after t = 0 (t_end is "
                     "always one of them)", _int_at_least(1)),
        "t_first": Key(_NUM, 1e-2, "log: first positive record time", _finite_positive),
        "times": Key((list,), [], "list: record times (t = 0 and t_end are always added)"),
        "particles": Key((str,), "none", "particle snapshots: none, all, or subsample",
                         choices=("none", "all", "subsample")),
        "particle_count": Key((int,), 100, "subsample: particles kept (fixed, seeded; at most model.width, larger values are clipped to it)",
                              _int_at_least(1)),
        "grid_min": Key((list,), [], "evaluation grid lower corner (d = 1 or 2); [] = no grid"),
        "grid_max": Key((list,), [], "evaluation grid upper corner"),
        "grid_points": Key((list,), [], "evaluation grid points per axis"),
        "flush_every": Key((int,), 1, "write buffered records to disk every N records",
                           _int_at_least(1)),
    },
}


def _type_names(types) -> str:
    if types == _NUM:
        return "a number"
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
             list: "a list"}
    return " or ".join(dict.fromkeys(names[t] for t in types))


def _is_real(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return _is_real(v) and math.isfinite(v)


def unrepresentable(dotted: str, value, in_list: bool = False) -> tuple | None:
    """(dotted path, value, what is allowed) of the first integer outside int64 anywhere in
    ``value``, or of the first non-finite number inside a list or table; None if there is none."""
    if isinstance(value, (list, dict)):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for k, v in items:
            where = f"{dotted}.{k}" if isinstance(value, dict) else f"{dotted}[{k}]"
            found = unrepresentable(where, v, True)
            if found:
                return found
        return None
    if isinstance(value, int) and not isinstance(value, bool) and not (
            INT64_MIN <= value <= INT64_MAX):
        return dotted, value, "must be an integer in [-2**63, 2**63 - 1] (a signed 64-bit integer)"
    if in_list and isinstance(value, float) and not math.isfinite(value):
        return dotted, value, "must be a finite number"
    return None
