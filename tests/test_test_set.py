"""Held-out test points: drawn from the training distribution or listed, recorded as
test_outputs, test_risk, test_margin and test_error, checked against independent formulas."""
from __future__ import annotations

import os
import sys
import tomllib

import h5py
import numpy as np
import pytest

from meanfield_sim import config as config_mod
from meanfield_sim import runner
from meanfield_sim.config import ConfigError
from meanfield_sim.model.data import build_dataset, build_test_set

sys.path.insert(0, os.path.dirname(__file__))
from minimal_configs import NETWORK  # noqa: E402

INTERVALS = """\
[run]
t_end = 20.0
replicas = 2
[model]
width = 30
[data]
kind = "intervals"
placement = "random"
classes = [{ label = -1, interval = [-2.0, -1.0], points = 4 },
           { label = 1, interval = [1.0, 2.0], points = 4 }]
[record]
count = 4
"""


def _cfg(text, **data):
    """The resolved config of ``text`` with ``data`` keys overridden."""
    raw = tomllib.loads(text)
    config_mod.apply_sections(raw, {"data": data})
    return config_mod.resolve(raw)


def test_drawn_test_points_follow_the_training_distribution_and_leave_training_data_alone():
    plain, with_test = _cfg(INTERVALS), _cfg(INTERVALS, test_points=500)
    train, train2 = build_dataset(plain), build_dataset(with_test)
    np.testing.assert_array_equal(train.x, train2.x)  # own stream: training data unchanged
    test = build_test_set(with_test)
    assert build_test_set(plain) is None
    assert test.n == 1000 and np.isclose(test.weight.sum(), 1.0)
    neg, pos = test.x[test.label == -1, 0], test.x[test.label == 1, 0]
    assert neg.min() >= -2 and neg.max() <= -1 and pos.min() >= 1 and pos.max() <= 2
    # uniform on each interval: mean 1.5 in size, std 1/sqrt(12) / sqrt(500) = 0.013
    assert abs(pos.mean() - 1.5) < 0.05 and abs(neg.mean() + 1.5) < 0.05
    assert not np.isin(test.x, train.x).any()


def test_random_labels_reach_the_test_set_too():
    cfg = _cfg(INTERVALS, test_points=400, random_labels=True)
    test = build_test_set(cfg)
    # about half of each interval's points carry the other label (binomial, sd 0.025)
    assert 0.4 < (test.label[test.x[:, 0] > 0] == -1).mean() < 0.6


def test_gaussian_mixture_test_set_has_the_clusters_of_the_training_set():
    text = NETWORK.replace('kind = "explicit"\nx = [-1.0, 1.0]\nlabels = [-1, 1]\n',
                           'kind = "gaussian_mixture"\ndim = 2\nspread = 0.1\n')
    test = build_test_set(_cfg(text, test_points=200))
    train = build_dataset(_cfg(text))
    for lab in (-1, 1):
        np.testing.assert_allclose(test.x[test.label == lab].mean(axis=0),
                                   train.x[train.label == lab].mean(axis=0), atol=0.06)


def test_recorded_test_observables_match_independent_formulas(tmp_path):
    cfg = _cfg(INTERVALS, test_points=25, class_weights=[1.0, 3.0])
    path = tmp_path / "t.h5"
    runner.run(cfg, path)
    flow, theta0 = runner.build_flow(cfg)
    test = build_test_set(cfg)
    with h5py.File(path, "r") as f:
        obs = f["observables"]
        np.testing.assert_array_equal(obs["test_x"][()], test.x)
        np.testing.assert_array_equal(obs["test_label"][()], test.label)
        h0 = obs["test_outputs"][0]
        np.testing.assert_allclose(h0, flow.outputs_at(theta0, test.x), rtol=1e-12, atol=1e-14)
        q = obs["test_weight"][()]
        # class weights 1 : 3 over equally many points
        assert np.isclose(q[test.label == 1].sum(), 0.75)
        for i in (0, -1):
            h = obs["test_outputs"][i][:, :, 0]
            yh = test.label[None, :] * h
            risk = (q[None, :] * np.log1p(np.exp(-2 * yh))).sum(axis=1)  # logistic loss
            np.testing.assert_allclose(obs["test_risk"][i], risk, rtol=1e-12)
            np.testing.assert_array_equal(obs["test_margin"][i], yh.min(axis=1))
            np.testing.assert_allclose(obs["test_error"][i], (q[None, :] * (yh <= 0)).sum(axis=1),
                                       rtol=1e-15, atol=0)
        # the training error goes to 0 on separable data, and so does the test error here
        assert np.all(obs["error"][-1] == 0) and np.all(obs["test_error"][-1] == 0)
        assert np.all(obs["test_risk"][-1] < obs["test_risk"][0])


def test_listed_test_points_for_explicit_data():
    cfg = _cfg(NETWORK, test_x=[-0.5, 0.25, 3.0], test_labels=[-1, 1, 1])
    test = build_test_set(cfg)
    np.testing.assert_array_equal(test.x[:, 0], [-0.5, 0.25, 3.0])
    np.testing.assert_array_equal(test.label, [-1, 1, 1])


@pytest.mark.parametrize("data, words", [
    ({"test_points": 5}, "data.kind = 'intervals' or 'gaussian_mixture'"),
    ({"test_x": [0.0, 1.0], "test_labels": [1]}, "data.test_labels has 1 entries"),
    ({"test_labels": [1]}, "list the test points too"),
    ({"test_x": [[0.0, 1.0]], "test_labels": [1]}, "d = 1 input dimension"),
    ({"test_x": [0.0], "test_labels": [0]}, "data.test_labels[0] = 0"),
])
def test_bad_test_sets_name_the_key(data, words):
    with pytest.raises(ConfigError) as err:
        _cfg(NETWORK, **data)
    assert words in str(err.value)


def test_a_test_set_without_weight_is_refused():
    with pytest.raises(ConfigError, match="no test point carries weight"):
        _cfg(NETWORK, test_x=[0.5], test_labels=[1], class_weights=[1.0, 0.0])


def test_toy_models_have_no_test_set():
    text = INTERVALS.replace("[model]\nwidth = 30", '[model]\nkind = "final_layer"\n'
                             'loss = "softmax_ce"').replace("label = -1", "label = 0")
    with pytest.raises(ConfigError, match="needs model.kind = 'network'"):
        _cfg(text, test_points=3)
