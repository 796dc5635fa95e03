"""Edge cases of the flows, integrators and data that a review found mishandled."""
import math
import os
import sys
import tomllib

import numpy as np
import pytest

from meanfield_sim import config, runner
from meanfield_sim.flows import build_flow
from meanfield_sim.flows.softmax import softmax_risk
from meanfield_sim.model.data import build_dataset

sys.path.insert(0, os.path.dirname(__file__))
from minimal_configs import FINAL_LAYER  # noqa: E402


def test_toy_softmax_is_exact_in_the_tail():
    """At outputs (40, 0, 0) for label 0: loss = log(1 + 2 e^-40), not 0 by cancellation; its
    log is finite; the label's derivative is -2 e^-40 / (1 + 2 e^-40) and the others
    e^-40 / (1 + 2 e^-40), so the gradient sums to 0."""
    risk, log_risk, grad = softmax_risk(np.array([[[40.0, 0.0, 0.0]]]), np.array([0]),
                                        np.array([1.0]))
    e = math.exp(-40.0)
    assert math.isclose(risk[0], math.log1p(2 * e), rel_tol=1e-14)
    assert math.isclose(log_risk[0], math.log(math.log1p(2 * e)), rel_tol=1e-14)
    np.testing.assert_allclose(grad[0, 0], [-2 * e, e, e] / np.float64(1 + 2 * e), rtol=1e-14)


def test_first_adaptive_step_respects_dt_max(tmp_path):
    """integrator.dt = 0.5 but dt_max = 1e-3: reaching t = 1 takes at least 1000 steps."""
    raw = tomllib.loads("""
[run]
t_end = 1.0
[model]
width = 3
activation = "tanh"
[data]
kind = "explicit"
x = [-1.0, 1.0]
labels = [-1, 1]
[integrator]
method = "dopri5"
dt = 0.5
dt_max = 1.0e-3
""")
    result = runner.run(config.resolve(raw), tmp_path / "dtmax.h5")
    assert result.steps >= 1000


def test_toy_diagnostics_ignore_points_without_weight():
    """Class 1 has weight 0: its points never move, and vertex_error / max_norm must not count
    them (margin and class_spread already did not)."""
    cfg = config.loads(FINAL_LAYER + """\
num_classes = 3
points_per_class = 2
class_weights = [1.0, 0.0, 1.0]
[toy]
radius = 2.0
""")
    flow, theta = build_flow(cfg)
    label = flow.data.label
    theta[:] = flow.vertices[label]          # every point on its vertex ...
    theta[:, label == 1] = 0.0               # ... except the weightless class, at the centre
    scalars = flow.scalars(theta)
    assert scalars["vertex_error"].max() <= 1e-15
    assert math.isclose(scalars["max_norm"].max(), 1.0, rel_tol=1e-15)


def test_one_dimensional_mixture_has_distinct_class_means():
    cfg = config.loads("""
[run]
t_end = 1.0
[model]
width = 3
loss = "softmax_ce"
[data]
kind = "gaussian_mixture"
num_classes = 4
dim = 1
points_per_class = 1
spread = 0.0
separation = 3.0
""")
    np.testing.assert_allclose(np.sort(build_dataset(cfg).x[:, 0]), [-3.0, -1.0, 1.0, 3.0])


CLASS_SIZES = FINAL_LAYER + "num_classes = 3\nclass_sizes = {sizes}\n"


@pytest.mark.parametrize("kind", ["classes", "gaussian_mixture"])
def test_unequal_class_sizes(kind):
    """data.class_sizes gives classes of their own sizes, in label order."""
    text = CLASS_SIZES.format(sizes="[5, 2, 1]")
    if kind == "gaussian_mixture":
        text = text.replace('kind = "final_layer"', "width = 4").replace(
            'kind = "classes"', 'kind = "gaussian_mixture"')
    data = build_dataset(config.loads(text))
    assert np.bincount(data.label).tolist() == [5, 2, 1] and data.n == 8
    assert np.allclose(data.weight, 1 / 8)


@pytest.mark.parametrize("sizes", ["[5, 2]", "[5, 0, 1]", "[5, 2.5, 1]"])
def test_bad_class_sizes_name_the_key(sizes):
    with pytest.raises(config.ConfigError, match="data.class_sizes"):
        config.loads(CLASS_SIZES.format(sizes=sizes))
