"""Distillation losses, CTKD temperature, schedules, AdaKD, POCL and hidden alignment."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from goose_neuro.align import HiddenAligner, layer_map, linear_cka
from goose_neuro.errors import ConfigError
from goose_neuro.losses import TAIL_TAUS, ce_loss, combine, interp_tail, kd_loss
from goose_neuro.schedules import (CTKDTemperature, POCLSchedule, adakd_token_tau, anchor_reg, cosine_lr,
                                   ctkd_lambda, grad_reverse, make_pocl)


def _logits(seed: int, shape=(2, 3, 11)) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 2


def test_forward_kl_matches_definition():
    s, t, tau = _logits(0), _logits(1), 2.5
    p, q = F.softmax(t / tau, -1), F.softmax(s / tau, -1)
    expect = (p * (p.log() - q.log())).sum(-1).mean() * tau**2
    assert torch.allclose(kd_loss(s, t, tau), expect, atol=1e-6)
    rev = (q * (q.log() - p.log())).sum(-1).mean() * tau**2
    assert torch.allclose(kd_loss(s, t, tau, kind="reverse"), rev, atol=1e-6)
    mixed = kd_loss(s, t, tau, kind="mixed", mix=0.3)
    assert torch.allclose(mixed, 0.3 * expect + 0.7 * rev, atol=1e-6)
    assert float(kd_loss(t, t, tau)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError):
        kd_loss(s, t, tau, kind="sideways")


def test_per_token_tau_and_topk():
    s, t = _logits(2), _logits(3)
    tau = torch.full((2, 3), 1.7)
    assert torch.allclose(kd_loss(s, t, tau), kd_loss(s, t, 1.7), atol=1e-6)
    # per-token tau: each token's KL scaled by its own tau^2
    tau2 = torch.tensor([[1.0, 2.0, 3.0], [1.5, 2.5, 4.0]])
    per = torch.stack([torch.stack([kd_loss(s[i:i + 1, j:j + 1], t[i:i + 1, j:j + 1], tau2[i, j])
                                    for j in range(3)]) for i in range(2)])
    assert torch.allclose(kd_loss(s, t, tau2), per.mean(), atol=1e-6)
    # top-k with k = V is the dense loss; smaller k renormalizes over the support
    v, ix = t.topk(11, dim=-1)
    assert torch.allclose(kd_loss(s, v, 2.0, teacher_index=ix), kd_loss(s, t, 2.0), atol=1e-5)
    for kind in ("reverse", "mixed"):
        assert torch.allclose(kd_loss(s, v, 2.0, kind, teacher_index=ix), kd_loss(s, t, 2.0, kind), atol=1e-5)
    # smaller k without a tail: both renormalized over the support S
    v, ix = t.topk(4, dim=-1)
    assert torch.allclose(kd_loss(s, v, 2.0, teacher_index=ix), kd_loss(s.gather(-1, ix), v, 2.0), atol=1e-6)


def _tail(t: torch.Tensor, ix: torch.Tensor) -> torch.Tensor:
    rest = t.scatter(-1, ix, float("-inf"))
    return torch.stack([torch.logsumexp(rest / tau, -1) for tau in TAIL_TAUS], -1)  # (B, T, G)


def test_topk_with_tail_is_the_coarsened_kl():
    s, t = _logits(7), _logits(8)
    v, ix = t.topk(4, dim=-1)
    tail = _tail(t, ix)

    def coarse(z, tau):  # probabilities of the 4 support tokens and of "the rest"
        p = F.softmax(z / tau, -1)
        ps = p.gather(-1, ix)
        return torch.cat([ps, 1 - ps.sum(-1, keepdim=True)], -1)

    for tau in (2.0, 1.0):  # grid points: exact
        p, q = coarse(t, tau), coarse(s, tau)
        ref = (p * (p.log() - q.log())).sum(-1).mean() * tau**2
        got = kd_loss(s, v, tau, teacher_index=ix, teacher_tail=tail)
        assert torch.allclose(got, ref, atol=1e-5)
        assert float(got) <= float(kd_loss(s, t, tau)) + 1e-6  # a lower bound of the full KL
    p, q = coarse(t, 2.2), coarse(s, 2.2)  # between grid points: interpolated tail, close
    ref = (p * (p.log() - q.log())).sum(-1).mean() * 2.2**2
    assert float(kd_loss(s, v, 2.2, teacher_index=ix, teacher_tail=tail)) == pytest.approx(float(ref), rel=0.05)
    # k = V: the tail is empty and the loss is the dense one, for every KL direction
    v, ix = t.topk(11, dim=-1)
    for kind in ("forward", "reverse", "mixed"):
        got = kd_loss(s, v, 1.7, kind, teacher_index=ix, teacher_tail=_tail(t, ix))
        assert torch.allclose(got, kd_loss(s, t, 1.7, kind), atol=1e-4)
    # per-token tau and a learnable tau both work through the interpolation
    tau = torch.tensor(2.2, requires_grad=True)
    kd_loss(s, v, tau, teacher_index=ix, teacher_tail=_tail(t, ix)).backward()
    assert tau.grad is not None and torch.isfinite(tau.grad)
    assert torch.isfinite(interp_tail(tail, torch.full((2, 3), 3.3))).all()


def test_combine_weights_terms():
    kd, ce, al, reg = torch.tensor(2.0), torch.tensor(4.0), torch.tensor(1.0), torch.tensor(0.5)
    assert float(combine(0.25, kd, ce, al, 0.1, reg)) == pytest.approx(0.25 * 2 + 0.75 * 4 + 0.1 + 0.5)
    assert float(combine(0.25, None, ce)) == pytest.approx(4.0)
    y = torch.tensor([[1, 2, 3], [4, 5, 6]])
    assert float(ce_loss(_logits(4), y)) == pytest.approx(float(F.cross_entropy(_logits(4).view(6, 11), y.view(6))))


def test_ctkd_temperature_gradient_is_reversed_kd_gradient_times_lambda():
    s, t = _logits(5).requires_grad_(), _logits(6)
    temp = CTKDTemperature(1.0, 5.0, init=2.0)
    lam = 0.37
    assert CTKDTemperature(1.0, 5.0, init=1.0).value == pytest.approx(1.2)  # kept off the bound
    tau_adv, tau = temp(lam)
    assert float(tau_adv.detach()) == pytest.approx(2.0, abs=1e-4) and float(tau.detach()) == float(tau_adv.detach())
    kd_loss(s, t, tau_adv).backward()
    g_rev = temp.theta.grad.clone()
    temp.theta.grad = None
    _, tau_plain = temp(lam)
    kd_loss(s.detach(), t, tau_plain).backward()  # same loss without the reversal layer
    assert float(g_rev) == pytest.approx(-lam * float(temp.theta.grad), rel=1e-5)
    assert abs(float(temp.theta.grad)) > 1e-4


def test_grl_identity_forward_and_anchor_reg_not_reversed():
    x = torch.tensor([1.0, -2.0], requires_grad=True)
    y = grad_reverse(x, 2.0)
    assert torch.equal(y, x)
    y.sum().backward()
    assert x.grad.tolist() == [-2.0, -2.0]
    temp = CTKDTemperature(1.0, 5.0, init=3.0)
    _, tau = temp(1.0)
    anchor_reg(tau, 2.0, 0.1).backward()
    assert float(temp.theta.grad) > 0  # descending it lowers tau toward the anchor


@settings(max_examples=40, deadline=None)
@given(st.floats(-1e4, 1e4), st.floats(0.1, 3.0), st.floats(0.5, 10.0))
def test_ctkd_bounds_hold(theta, lo, width):
    temp = CTKDTemperature(lo, lo + width, init=lo + width / 2)
    with torch.no_grad():
        temp.theta.fill_(theta)
    with torch.no_grad():
        tau_adv, tau = temp(1.0)
    assert lo - 1e-5 <= float(tau) <= lo + width + 1e-5
    assert float(tau_adv) == float(tau)


def test_ctkd_init_validation():
    with pytest.raises(ConfigError):
        CTKDTemperature(2.0, 1.0)
    with pytest.raises(ConfigError):
        CTKDTemperature(1.0, 5.0, init=6.0)


def test_lambda_and_lr_schedules():
    assert ctkd_lambda(0, 100) == 0.0 and ctkd_lambda(19, 100) == 0.0
    vals = [ctkd_lambda(s, 100, 0.2, 0.8) for s in range(20, 101)]
    assert vals == sorted(vals) and vals[0] == pytest.approx(0.0) and vals[-1] == pytest.approx(0.8)
    assert ctkd_lambda(60, 100, 0.2) == pytest.approx(0.5)
    assert cosine_lr(0, 100, 10) == pytest.approx(0.1)
    assert cosine_lr(9, 100, 10) == pytest.approx(1.0)
    assert cosine_lr(100, 100, 10, 0.1) == pytest.approx(0.1)
    assert cosine_lr(55, 100, 10, 0.0) == pytest.approx(0.5)


def test_adakd_hard_tokens_get_low_temperature():
    diff = torch.tensor([[0.1, 5.0, 1.0], [2.0, 0.5, 3.0]])
    tau = adakd_token_tau(2.0, diff, spread=2.0)
    assert tau.shape == (2, 3)
    assert float(tau[0, 1]) == pytest.approx(1.0)  # hardest: tau / spread
    assert float(tau[0, 0]) == pytest.approx(4.0)  # easiest: tau * spread
    order = diff.flatten().argsort()
    assert tau.flatten()[order].tolist() == sorted(tau.flatten().tolist(), reverse=True)


def test_pocl_step_transitions_and_data_fraction():
    p = POCLSchedule()
    ranked = torch.arange(90)
    assert p.allowed(ranked).numel() == 30 and p.current.tau == 1.0
    changes = [s for s in range(100) if p.on_step(s, 100)]
    assert changes == [40, 70]
    assert p.stage == 2 and p.allowed(ranked).numel() == 90 and p.current.tau == 2.0
    taus = [st_.tau for st_ in p.stages]
    assert taus == sorted(taus)


def test_pocl_plateau_transition_and_state():
    p = make_pocl([0.5, 1.0], [1.0, 2.0], [0.5, 0.7], [1.0, 1.0], transition="plateau", patience=2)
    assert not p.on_eval(5.0)  # improvement
    assert not p.on_eval(4.99)  # within min_delta: 1 bad
    assert p.on_eval(5.0)  # 2 bad -> next stage
    assert p.stage == 1 and p.current.alpha == 0.7
    q = make_pocl([0.5, 1.0], [1.0, 2.0], [0.5, 0.7], [1.0], transition="plateau")
    q.load_state_dict(p.state_dict())
    assert q.stage == 1 and q.best == math.inf
    with pytest.raises(ConfigError):
        make_pocl([0.8, 0.5], [1, 2], [0.5, 0.5], [0.5])
    with pytest.raises(ConfigError):
        make_pocl([0.5, 1.0], [1.0], [0.5, 0.5], [0.5])


def test_layer_maps():
    assert layer_map(2, 4, "uniform") == [(0, 1), (1, 3)]
    assert layer_map(4, 12, "uniform") == [(0, 2), (1, 5), (2, 8), (3, 11)]
    assert layer_map(2, 4, "last") == [(0, 2), (1, 3)]
    with pytest.raises(ConfigError):
        layer_map(5, 4, "last")


def test_cka_properties_and_aligner():
    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=torch.Generator().manual_seed(1)))
    assert float(linear_cka(x, x)) == pytest.approx(1.0, abs=1e-5)
    assert float(linear_cka(x, 3.0 * x @ q)) == pytest.approx(1.0, abs=1e-4)  # rotation/scale invariant
    y = torch.randn(64, 5, generator=torch.Generator().manual_seed(2))
    assert 0.0 <= float(linear_cka(x, y)) < 0.5
    hs = [torch.randn(2, 4, 8, requires_grad=True) for _ in range(2)]
    ht = [torch.randn(2, 4, 6) for _ in range(4)]
    for loss in ("mse", "cosine", "cka"):
        al = HiddenAligner(2, 8, 4, 6, "uniform", loss)
        v = al(hs, ht)
        assert v.dim() == 0 and float(v.detach()) > 0
        v.backward()
        assert hs[0].grad is not None
    assert len(list(HiddenAligner(2, 8, 4, 6, loss="cka").parameters())) == 0
    with pytest.raises(ConfigError):
        HiddenAligner(2, 8, 4, 6, loss="l1")
