"""Losses in the far tail: the scalar Numba loss functions, the kernel ``loss_pass`` and the
particle velocity, against closed forms.

References are computed with Python's ``decimal`` module at 60 significant digits (no mpmath),
with log1p evaluated by its series where its argument is tiny, so that they are exact to far
below float64 resolution even at margins of 1e6 where exp(-2u) = 10^-868589.

Tolerances. A float64 result can be no closer to the exact value than half an ulp; the loss
functions chain a handful of correctly rounded operations (exp, log1p, log, +), so we allow a few
ulps: relative 1e-15 on the log quantities at large |values| (where the brief's "log l = -2u,
log|dl/du| = log 2 - 2u" must hold), 4e-16 * max(1, |ref|) otherwise, and 1e-14 relative on the
losses themselves. Quantities rebuilt from logs (exp(log_dual - log_scale)) inherit the absolute
rounding of the log, about ulp(|log_scale|); at margin 1e5 that is 3e-11, which sets the dual
tolerance there.
"""
from __future__ import annotations

import math
import os
import sys
from decimal import Decimal, localcontext

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import physics_helpers as ph  # noqa: E402

from meanfield_sim.kernels import cpu  # noqa: E402
from meanfield_sim.model.losses import (  # noqa: E402
    LOSS_IDS, binary_loss, log_softplus, logsumexp_except, softmax_ce, softplus)

PREC = 60
LOGISTIC, EXPONENTIAL, SOFTMAX = LOSS_IDS["logistic"], LOSS_IDS["exponential"], LOSS_IDS[
    "softmax_ce"]


# ----------------------------------------------------------------------------------------------
# high-precision references
# ----------------------------------------------------------------------------------------------
def D(x) -> Decimal:
    return Decimal(float(x))  # exact binary value of the float


def dlog1p(e: Decimal) -> Decimal:
    """log(1 + e) for e >= 0 at the current precision, by its series when e is tiny (where
    1 + e would round to 1)."""
    if e < Decimal("1e-20"):
        total, term, n = Decimal(0), e, 1
        while term != 0 and abs(term) > abs(total) * Decimal(10) ** (-PREC - 5):
            total += term / n
            n += 1
            term *= -e
        return total
    return (1 + e).ln()


def ref_logistic(u: float):
    """(l, log l, log|dl/du|) of l = log(1 + exp(-2u)), as Decimals."""
    with localcontext() as ctx:
        ctx.prec = PREC
        u = D(u)
        if u >= 0:
            loss = dlog1p((-2 * u).exp())
        else:  # log(1 + e^{-2u}) = -2u + log(1 + e^{2u})
            loss = -2 * u + dlog1p((2 * u).exp())
        log_loss = loss.ln()
        # |dl/du| = 2 / (1 + e^{2u})
        if u >= 0:
            log_slope = Decimal(2).ln() - 2 * u - dlog1p((-2 * u).exp())
        else:
            log_slope = Decimal(2).ln() - dlog1p((2 * u).exp())
        return loss, log_loss, log_slope


def ref_softmax(h, y):
    """(l, log l, log|dl/dh_q| for every q) of softmax cross-entropy, as Decimals."""
    with localcontext() as ctx:
        ctx.prec = PREC
        hd = [D(v) for v in h]
        S = sum((hd[q] - hd[y]).exp() for q in range(len(h)) if q != y)
        loss = dlog1p(S)                 # = log sum_q e^{h_q} - h_y
        lse = hd[y] + loss
        log_dual = [hq - lse for hq in hd]
        log_dual[y] = S.ln() - loss       # log(1 - pi_y) = log sum_{q != y} pi_q
        return loss, loss.ln(), log_dual


def close(got: float, ref, rel: float = 4e-16) -> bool:
    ref = float(ref)
    return abs(got - ref) <= rel * max(1.0, abs(ref))


# ----------------------------------------------------------------------------------------------
# scalar losses
# ----------------------------------------------------------------------------------------------
FAR = (1e3, 1e4, 1e6)
MODERATE = (-30.0, -5.0, -1.0, -0.27, -1e-8, 0.0, 1e-8, 0.1, 1.0, 5.0, 14.5, 30.0, 100.0, 350.0)


@pytest.mark.parametrize("u", FAR)
def test_logistic_far_tail_exact(u):
    loss, log_loss, log_slope = binary_loss(u, LOGISTIC)
    assert math.isfinite(log_loss) and math.isfinite(log_slope)
    assert loss == 0.0  # exp(-2000) underflows: 0 is the float64 value of the loss
    assert abs(log_loss - (-2.0 * u)) <= 1e-15 * 2.0 * u
    assert abs(log_slope - (math.log(2.0) - 2.0 * u)) <= 1e-15 * 2.0 * u
    _, ref_log_loss, ref_log_slope = ref_logistic(u)
    assert close(log_loss, ref_log_loss, 1e-15) and close(log_slope, ref_log_slope, 1e-15)


@pytest.mark.parametrize("u", FAR)
def test_exponential_far_tail_exact(u):
    loss, log_loss, log_slope = binary_loss(u, EXPONENTIAL)
    assert loss == 0.0 and log_loss == -u and log_slope == -u


@pytest.mark.parametrize("u", MODERATE)
def test_logistic_moderate_margins(u):
    loss, log_loss, log_slope = binary_loss(u, LOGISTIC)
    r_loss, r_log_loss, r_log_slope = ref_logistic(u)
    assert loss == pytest.approx(float(r_loss), rel=1e-14, abs=0)
    assert close(log_loss, r_log_loss), (log_loss, float(r_log_loss))
    assert close(log_slope, r_log_slope), (log_slope, float(r_log_slope))
    # and the direct float formulas where they are accurate (no overflow, no cancellation)
    if -300 < u < 300:
        assert loss == pytest.approx(math.log1p(math.exp(-2 * u)), rel=1e-14)
        assert math.exp(log_slope) == pytest.approx(2.0 / (1.0 + math.exp(2 * u)), rel=1e-14)


@pytest.mark.parametrize("u", MODERATE[:-1])
def test_exponential_moderate_margins(u):
    loss, log_loss, log_slope = binary_loss(u, EXPONENTIAL)
    assert loss == pytest.approx(math.exp(-u), rel=1e-15)
    assert log_loss == -u and log_slope == -u


@pytest.mark.parametrize("v", (-1e6, -745.0, -700.0, -40.0, -30.5, -30.0, -29.5, -1.0, 0.0,
                               0.5413, 3.0, 40.0, 1e3))
def test_softplus_and_log_softplus(v):
    """softplus(v) = log(1 + e^v) and its log, including the switch to the series at v = -30."""
    with localcontext() as ctx:
        ctx.prec = PREC
        vd = D(v)
        ref = vd + dlog1p((-vd).exp()) if v > 0 else dlog1p(vd.exp())
        ref_log = ref.ln()
    sp = softplus(v)
    if sp > 0.0:
        assert sp == pytest.approx(float(ref), rel=1e-15)
    else:
        assert float(ref) == 0.0  # true value below the smallest subnormal
    assert close(log_softplus(v), ref_log)


def _np_softmax_ce(h, y):
    """Straightforward numpy: pi = softmax(h), l = -log pi_y, dl/dh = pi - e_y."""
    h = np.asarray(h, dtype=np.float64)
    e = np.exp(h - h.max())
    pi = e / e.sum()
    grad = pi.copy()
    grad[y] -= 1.0
    return -np.log(pi[y]), grad


SOFTMAX_MODERATE = [([0.3, -1.2, 2.0], 0), ([0.3, -1.2, 2.0], 2), ([5.0, 5.0, 5.0], 1),
                    ([10.0, -3.0, 0.5, 2.5], 3), ([-20.0, 20.0, 0.0], 1), ([1e-9, 0.0, -1e-9], 0)]


@pytest.mark.parametrize("h,y", SOFTMAX_MODERATE)
def test_softmax_ce_moderate(h, y):
    h = np.asarray(h, dtype=np.float64)
    log_dual = np.empty_like(h)
    loss, log_loss = softmax_ce(h, y, log_dual)
    r_loss, r_log_loss, r_log_dual = ref_softmax(h, y)
    assert loss == pytest.approx(float(r_loss), rel=1e-14)
    assert close(log_loss, r_log_loss, 1e-15)
    for q in range(h.size):
        assert close(log_dual[q], r_log_dual[q], 1e-15), (q, log_dual[q], float(r_log_dual[q]))
    # numpy: same loss, and dl/dh_q = pi_q - [q = y] has magnitude exp(log_dual), sign - at y
    np_loss, np_grad = _np_softmax_ce(h, y)
    assert loss == pytest.approx(np_loss, rel=1e-12, abs=1e-15)
    signs = np.where(np.arange(h.size) == y, -1.0, 1.0)
    np.testing.assert_allclose(signs * np.exp(log_dual), np_grad, rtol=1e-12, atol=1e-16)
    # log-dual identities: log pi_q = h_q - logsumexp h, and 1 - pi_y = sum_{q != y} pi_q
    lse = logsumexp_except(h, -1)
    for q in range(h.size):
        if q != y:
            assert log_dual[q] == h[q] - lse
    # (the entries h_q - lse carry the absolute rounding of lse, a few ulp(|lse|))
    others = np.delete(log_dual, y)
    assert log_dual[y] == pytest.approx(np.logaddexp.reduce(others), rel=1e-15,
                                        abs=8 * np.spacing(max(1.0, abs(lse))))


SOFTMAX_FAR = [([1e6, 0.0, -1e6], 0), ([0.0, 1e3, -1e4], 1), ([-1e4, 0.0, 1e4 - 1.0, 1e4], 3),
               ([2e3, 1e3, 1e3], 0)]


@pytest.mark.parametrize("h,y", SOFTMAX_FAR)
def test_softmax_ce_far_tail(h, y):
    h = np.asarray(h, dtype=np.float64)
    log_dual = np.empty_like(h)
    loss, log_loss = softmax_ce(h, y, log_dual)
    assert loss >= 0.0 and np.isfinite(log_loss) and np.isfinite(log_dual).all()
    r_loss, r_log_loss, r_log_dual = ref_softmax(h, y)
    assert loss == pytest.approx(float(r_loss), rel=1e-14, abs=0.0)  # float(r_loss) is 0 or tiny
    assert close(log_loss, r_log_loss, 1e-15), (log_loss, float(r_log_loss))
    # log pi_q = h_q - logsumexp(h) is a difference of numbers of size max|h|, each known only to
    # ulp(max|h|) (1.8e-12 at 1e4): that absolute resolution, not 1e-15 relative, is the bound
    tol = 4 * np.spacing(np.abs(h).max())
    for q in range(h.size):
        err = abs(log_dual[q] - float(r_log_dual[q]))
        assert err <= tol + 1e-15 * abs(float(r_log_dual[q])), (q, log_dual[q], r_log_dual[q])
    # the margin: log l = -(h_y - max_{q != y} h_q) + log(#ties) to first order
    margin = h[y] - np.delete(h, y).max()
    assert log_loss == pytest.approx(-margin, abs=1.0)


def test_softmax_ce_misclassified_far():
    """Large negative margin: l = logsumexp h - h_y ~ 1e4 (no overflow), log|dl/dh_y| ~ 0."""
    h = np.array([-1e4, 0.0, 5.0])
    log_dual = np.empty(3)
    loss, log_loss = softmax_ce(h, 0, log_dual)
    r_loss, r_log_loss, r_log_dual = ref_softmax(h, 0)
    assert close(loss, r_loss, 1e-15) and close(log_loss, r_log_loss)
    for q in range(3):
        assert close(log_dual[q], r_log_dual[q], 1e-15)


# ----------------------------------------------------------------------------------------------
# the kernel loss pass
# ----------------------------------------------------------------------------------------------
def _loss_pass(h, label, weight, loss_id):
    h = np.ascontiguousarray(h, dtype=np.float64)
    R, n, k = h.shape
    with np.errstate(divide="ignore"):
        log_weight = np.log(np.asarray(weight, dtype=np.float64))
    dual = np.empty((R, n, k))
    risk, log_risk, log_scale = np.empty(R), np.empty(R), np.empty(R)
    cpu.loss_pass(h, np.asarray(label, dtype=np.int64), log_weight, loss_id, dual, risk,
                  log_risk, log_scale)
    return dual, risk, log_risk, log_scale


def _ref_pass(h, label, weight, loss_name):
    """Decimal reference of (risk, log risk, log|g_jq|) for one replica (zero weights skipped)."""
    terms, log_g = [], {}
    with localcontext() as ctx:
        ctx.prec = PREC
        for j, (hj, y, p) in enumerate(zip(h, label, weight)):
            if p == 0:
                continue
            lp = D(p).ln()
            if loss_name == "logistic":
                loss, log_loss, log_slope = ref_logistic(y * hj[0])
                ll, lg = [log_loss], [log_slope]
            elif loss_name == "exponential":
                u = D(y) * D(hj[0])
                ll, lg = [-u], [-u]
                loss = (-u).exp()
            else:
                loss, log_loss, lg = ref_softmax(hj, y)
                ll = [log_loss]
            terms.append(lp + ll[0])
            for q, v in enumerate(lg):
                log_g[(j, q)] = lp + v
        top = max(terms)
        log_risk = top + sum((t - top).exp() for t in terms).ln()
        return log_risk.exp(), log_risk, log_g


def _check_pass(h, label, weight, loss_name):
    dual, risk, log_risk, log_scale = _loss_pass(h, label, weight, LOSS_IDS[loss_name])
    assert np.isfinite(dual).all() and np.isfinite(log_risk).all() and np.isfinite(
        log_scale).all()
    assert np.all(np.abs(dual) <= 1.0)
    for r in range(h.shape[0]):
        assert np.abs(dual[r]).max() == 1.0  # exactly: the largest entry is exp(0)
        r_risk, r_log_risk, r_log_g = _ref_pass(h[r], label, weight, loss_name)
        assert risk[r] == pytest.approx(float(r_risk), rel=1e-14, abs=1e-300)
        assert close(log_risk[r], r_log_risk, 1e-15), (log_risk[r], float(r_log_risk))
        top = max(r_log_g.values())
        assert close(log_scale[r], top, 1e-15), (log_scale[r], float(top))
        # entries: sign(-y) or sign by class, magnitude exp(log g - log_scale); the logs carry
        # absolute rounding ~ ulp(|log_scale|), hence the relative tolerance on the ratio
        rtol = 16 * np.spacing(abs(log_scale[r])) + 1e-15
        for j in range(h.shape[1]):
            for q in range(h.shape[2]):
                if weight[j] == 0:
                    assert dual[r, j, q] == 0.0
                    continue
                if loss_name == "softmax_ce":
                    sign = -1.0 if q == label[j] else 1.0
                else:
                    sign = -float(label[j])
                with localcontext() as ctx:
                    ctx.prec = PREC
                    mag = float((r_log_g[(j, q)] - top).exp())
                assert dual[r, j, q] == pytest.approx(sign * mag, rel=rtol, abs=1e-300), (
                    r, j, q, dual[r, j, q], sign * mag)
    return dual, risk, log_risk, log_scale


@pytest.mark.parametrize("loss_name", ("logistic", "exponential"))
def test_loss_pass_binary_huge_margins(loss_name):
    label = np.array([1, -1, 1, -1, 1])
    weight = np.array([0.2, 0.3, 0.1, 0.4, 0.0])  # the last point has weight 0: skipped
    margins = np.array([
        [1e3, 1e4, 1e6, 1e3 + 0.25, -1e3],      # one point dominates, one close to it
        [1e5, 1e5 + 0.5, 1e5 + 0.125, 1e5, -1e6],   # several comparable duals at 1e5
        [1e6, 1e6, 1e6, 1e6, 1e6],
    ])
    h = (margins * label)[:, :, None]
    dual, risk, log_risk, log_scale = _check_pass(h, label, weight, loss_name)
    assert np.all(risk < 1e-300)  # (underflowed) -- and yet log_risk is exact
    c = 2.0 if loss_name == "logistic" else 1.0
    # closed forms in the deep tail: log R = log sum_j p_j e^{-c u_j}, log_scale likewise
    assert log_risk[2] == pytest.approx(-c * 1e6, rel=1e-15)
    assert log_scale[2] == pytest.approx(math.log(0.4 * (2.0 if c == 2 else 1.0)) - c * 1e6,
                                         rel=1e-15)
    # replica 1: dual ratios are p_j / p_0 exp(-c (u_j - u_0)), not 0 and not 1
    assert dual[1, 2, 0] / dual[1, 0, 0] == pytest.approx(0.5 * math.exp(-c * 0.125), rel=1e-9)


def test_loss_pass_softmax_huge_margins():
    label = np.array([0, 1, 2, 0])
    weight = np.array([0.25, 0.25, 0.5, 0.0])
    h = np.array([
        [[1e3, 0.0, -1e3], [-1e4, 1e4, 0.0], [0.0, 0.0, 1e6], [-1e4, 0.0, 0.0]],
        [[1e5, 0.0, 0.0], [0.0, 1e5 + 0.5, 0.25], [0.0, 0.5, 1e5 + 0.25], [0.0, 1e6, 0.0]],
    ])
    dual, risk, log_risk, log_scale = _check_pass(h, label, weight, "softmax_ce")
    assert np.all(risk < 1e-300)
    # replica 0: the dominant term is point 0 (margin 1e3), log g = log p_0 - 1e3 (+ log 1)
    assert log_scale[0] == pytest.approx(math.log(0.25) - 1e3, rel=1e-15)
    # every class column of a point sums to zero: sum_q dl/dh_q = sum pi - 1 = 0
    # (up to the absolute rounding ulp(|log_scale|) of the logs: 1.5e-11 at 1e5)
    for r in range(2):
        np.testing.assert_allclose(dual[r].sum(axis=1), 0.0,
                                   atol=16 * np.spacing(abs(log_scale[r])))


def test_loss_pass_moderate_matches_direct_formulas():
    """At moderate margins exp(log_scale) * dual is the plain p_j dl/dh, and risk = sum p_j l."""
    rng = np.random.default_rng(3)
    label = np.array([1, -1, 1, 1, -1, -1])
    weight = rng.uniform(0.1, 1.0, 6)
    weight /= weight.sum()
    h = rng.normal(scale=2.0, size=(2, 6, 1))
    for name in ("logistic", "exponential"):
        dual, risk, log_risk, log_scale = _loss_pass(h, label, weight, LOSS_IDS[name])
        u = label * h[:, :, 0]
        if name == "logistic":
            loss, dldh = np.log1p(np.exp(-2 * u)), -2 * label / (1 + np.exp(2 * u))
        else:
            loss, dldh = np.exp(-u), -label * np.exp(-u)
        np.testing.assert_allclose(risk, (weight * loss).sum(axis=1), rtol=1e-14)
        np.testing.assert_allclose(log_risk, np.log(risk), rtol=1e-14)
        np.testing.assert_allclose(np.exp(log_scale)[:, None] * dual[:, :, 0], weight * dldh,
                                   rtol=1e-13)


# ----------------------------------------------------------------------------------------------
# particle velocity in the tail: one neuron, one data point
# ----------------------------------------------------------------------------------------------
def _one_neuron(a, w, loss, x=2.0, y=1, activation="relu"):
    raw = {
        "run": {"t_end": 1.0},
        "model": {"width": 1, "activation": activation, "loss": loss, "scaling": "standard"},
        "data": {"kind": "explicit", "x": [x], "labels": [y]},
        "init": {"kind": "explicit", "a": [a], "w": [w], "b": [0.0]},
    }
    flow, theta = ph.build_flow(ph.resolve(raw))
    return flow, theta


@pytest.mark.parametrize("loss", ("logistic", "exponential"))
def test_velocity_underflows_to_zero_at_margin_1e3(loss):
    """At margin 1000 the true speed is ~e^{-2000} (logistic) or e^{-1000}: below the smallest
    subnormal (e^{-745}), so the correct float64 velocity is exactly 0 -- finite, no NaN."""
    flow, theta = _one_neuron(20.0, 25.0, loss)  # z = 50, h = 20 * 50 = 1000
    ev = flow.evaluate(theta)
    assert ev.outputs[0, 0, 0] == 1000.0
    v = ph.velocity_of(flow, theta)
    assert np.isfinite(v).all()
    assert np.all(v == 0.0)
    assert np.isfinite(ev.log_scale).all() and ev.log_scale[0] < -745.2


@pytest.mark.parametrize("loss", ("logistic", "exponential"))
def test_velocity_closed_form_at_margin_300(loss):
    """h = a relu(w x), one point (x = 2, y = 1, p = 1), a = 6, w = 25: u = 300. With
    s = |dl/du| (= 2 / (1 + e^{600}) or e^{-300}):  v_a = s relu(wx), v_w = s a x, v_b = s a."""
    a, w, x = 6.0, 25.0, 2.0
    flow, theta = _one_neuron(a, w, loss, x=x)
    assert flow.evaluate(theta).outputs[0, 0, 0] == 300.0
    v = ph.velocity_of(flow, theta)[0, 0]
    with localcontext() as ctx:
        ctx.prec = PREC
        u = D(300.0)
        s = 2 / (1 + (2 * u).exp()) if loss == "logistic" else (-u).exp()
        expect = [float(s * D(w * x)), float(s * D(a) * D(x)), float(s * D(a))]
    assert 0.0 < expect[0] < 1e-100  # deep in the tail yet representable
    np.testing.assert_allclose(v, expect, rtol=1e-12, atol=0.0)
