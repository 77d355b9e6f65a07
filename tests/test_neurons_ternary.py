"""Spiking neurons (surrogates, reset) and TTQ ternary weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from goose_neuro.neurons import SpikeLIF, surrogate_grad_closed_form
from goose_neuro.ternary import TernaryLinear, ttq_quantize


@pytest.mark.parametrize("name,slope", [("atan", 2.0), ("fast_sigmoid", 25.0), ("sigmoid", 5.0)])
def test_surrogate_gradient_matches_closed_form(name, slope):
    lif = SpikeLIF(5, mode="ternary", surrogate_name=name, slope=slope, threshold_init=0.7).double()
    mem = torch.tensor([[-1.3, -0.7002, 0.0, 0.2, 1.9]], dtype=torch.float64, requires_grad=True)
    s = lif.fire(mem)
    assert s.tolist() == [[-1.0, -1.0, 0.0, 0.0, 1.0]]
    (g,) = torch.autograd.grad(s.sum(), mem)
    th = lif.th.detach()
    expected = surrogate_grad_closed_form(name, slope, mem.detach() - th) + surrogate_grad_closed_form(
        name, slope, -mem.detach() - th
    )
    assert torch.allclose(g, expected, atol=1e-12)


def test_lif_update_rule_by_hand():
    """beta=0.5, th=1: mem 0 -> 0.8 (no spike) -> 1.2 spike, reset to 0.2 -> -1.9 neg spike -> ..."""
    lif = SpikeLIF(1, mode="ternary", threshold_init=1.0, beta_init=0.5).double()
    with torch.no_grad():
        lif.threshold.fill_(1.0 - 1e-4)  # th = |threshold| + 1e-4 = 1.0
        lif.graded_spikes_factor.fill_(0.25)
    x = torch.tensor([[[0.8], [0.8], [-2.0], [0.0]]], dtype=torch.float64)
    out, s, mem = lif(x, lif.init_mem(1, dtype=torch.float64))
    # t0: 0.8 ; t1: 0.4+0.8=1.2 -> +1, mem 0.2 ; t2: 0.1-2.0=-1.9 -> -1, mem -0.9 ; t3: -0.45 -> 0
    assert s.flatten().tolist() == [0.0, 1.0, -1.0, 0.0]
    assert out.flatten().tolist() == [0.0, 0.25, -0.25, 0.0]
    assert math.isclose(mem.item(), -0.45, abs_tol=1e-12)


def test_binary_mode_never_negative_and_none_is_identity():
    x = torch.randn(2, 30, 4) * 3
    b = SpikeLIF(4, mode="binary")
    _, s, _ = b(x, b.init_mem(2))
    assert set(s.unique().tolist()) == {0.0, 1.0}
    n = SpikeLIF(4, mode="none")
    out, _, mem = n(x, n.init_mem(2))
    assert torch.equal(out, x) and torch.equal(mem, torch.zeros(2, 4))


def test_bad_mode_raises():
    with pytest.raises(ValueError, match="spike mode"):
        SpikeLIF(3, mode="analog")


def test_ttq_values_per_channel():
    torch.manual_seed(0)
    lin = TernaryLinear(16, 6, t=0.3)
    with torch.no_grad():
        lin.wp.copy_(torch.arange(1, 7, dtype=torch.float32))
        lin.wn.copy_(torch.arange(1, 7, dtype=torch.float32) * 0.1)
    q = lin.quantized_weight().detach()
    for i in range(6):
        vals = set(torch.round(q[i] * 1000).int().tolist())
        assert vals <= {round(-(i + 1) * 100), 0, (i + 1) * 1000}, (i, vals)
    sign, wp, wn = lin.ternary_parts()
    assert sign.dtype == torch.int8 and set(sign.unique().tolist()) <= {-1, 0, 1}
    rebuilt = wp[:, None] * (sign == 1) - wn[:, None] * (sign == -1)
    assert torch.allclose(rebuilt, q)
    # per-row threshold t * max|w|: every kept weight exceeds it, every zeroed one does not
    w = lin.weight.detach()
    delta = 0.3 * w.abs().amax(1, keepdim=True)
    assert torch.all((sign != 0) == (w.abs() > delta))


def test_ttq_gradients_follow_the_paper():
    w = torch.tensor([[0.9, -0.8, 0.05, 0.5], [0.1, -1.0, 0.3, -0.02]], requires_grad=True)
    wp = torch.tensor([2.0, 3.0], requires_grad=True)
    wn = torch.tensor([0.5, 4.0], requires_grad=True)
    q = ttq_quantize(w, wp, wn, t=0.2)
    # row 0: delta 0.18 -> [+,-,0,+]; row 1: delta 0.2 -> [0,-,+,0]
    assert q.tolist() == [[2.0, -0.5, 0.0, 2.0], [0.0, -4.0, 3.0, 0.0]]
    g = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
    q.backward(g)
    assert wp.grad.tolist() == [1.0 + 4.0, 7.0]  # sum over the positive set
    assert wn.grad.tolist() == [-2.0, -6.0]  # minus the sum over the negative set
    assert w.grad.tolist() == [[2.0, 2.0 * 0.5, 3.0, 8.0], [5.0, 6.0 * 4.0, 7.0 * 3.0, 8.0]]


def test_deadzone_lambda_boosts_only_zero_weights():
    w = torch.tensor([[0.9, 0.01]], requires_grad=True)
    q = ttq_quantize(w, torch.tensor([1.0]), torch.tensor([1.0]), 0.1, dead_lambda=0.5)
    q.backward(torch.ones_like(q))
    assert w.grad.tolist() == [[1.0, 1.5]]


@pytest.mark.parametrize("mode", ["ternary", "binary"])
@pytest.mark.parametrize("sname,slope", [("atan", 2.0), ("fast_sigmoid", 10.0), ("sigmoid", 4.0)])
@pytest.mark.parametrize("amp_mode", ["shared", "channel"])
def test_fused_scan_equals_snntorch_reference(mode, sname, slope, amp_mode):
    """The fused LIF node gives the same spikes, membrane and gradients as the
    token-by-token path through snnTorch's surrogate Functions."""
    torch.manual_seed(0)
    lif = SpikeLIF(6, mode=mode, surrogate_name=sname, slope=slope, amplitude_mode=amp_mode).double()
    with torch.no_grad():
        lif.graded_spikes_factor.uniform_(0.5, 1.5)
        lif.beta_logit.uniform_(-1, 1)
    x = (torch.randn(3, 25, 6, dtype=torch.float64) * 1.5).requires_grad_()
    m0 = (torch.randn(3, 6, dtype=torch.float64) * 0.3).requires_grad_()
    w_out, w_mem = torch.randn(3, 25, 6, dtype=torch.float64), torch.randn(3, 6, dtype=torch.float64)
    results = []
    for fn in (lif.forward, lif.forward_reference):
        out, s, mem = fn(x, m0)
        loss = (out * w_out).sum() + (mem * w_mem).sum()
        grads = torch.autograd.grad(loss, [x, m0, lif.beta_logit, lif.threshold, lif.graded_spikes_factor])
        results.append((out.detach(), s.detach(), mem.detach(), grads))
    (o1, s1, m1, g1), (o2, s2, m2, g2) = results
    assert torch.equal(s1, s2) and torch.allclose(o1, o2) and torch.allclose(m1, m2, atol=1e-12)
    for a, b in zip(g1, g2):
        # snnTorch's surrogate returns float32 spikes, so its path rounds the incoming gradient to float32
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-6), (a - b).abs().max()


def test_fixed_point_neuron_edges_and_step_mode():
    """The subtract-reset integer neuron at its edges (decays 0, 1 and 4095; inputs beyond the
    18-bit mantissa clamped) equals the independent integer reference, and step-by-step calls
    (state carried as integers) equal one sequence call."""
    from test_fixed_point import subtract_lif

    from goose_neuro.errors import ConfigError
    from goose_neuro.fixed_point import neuron_format

    n, T = 64, 40
    rng = np.random.default_rng(0)
    lif = SpikeLIF(n, mode="ternary").double()
    fmt = neuron_format("subtract", 11)
    with torch.no_grad():
        lif.threshold.copy_(torch.from_numpy(rng.uniform(0.2, 2.0, n)))
        beta = rng.uniform(0.01, 0.99, n)
        beta[:3] = (1 - 1e-7, 1e-7, 4095.4 / 4096)  # dv = 0 (no decay), 4095 (the 12-bit limit), 1
        lif.beta_logit.copy_(torch.from_numpy(np.log(beta / (1 - beta))))
    lif.set_fixed_point(fmt)
    p = lif.fixed_params()
    assert list(p["dv"][:3]) == [0, 4095, 1]
    th = lif.th.detach().double().numpy()
    x = rng.normal(0, 3, (1, T, n)) * th
    x[0, 5, :4] = [200.0, -200.0, 1e9, -1e9]  # beyond the 18-bit mantissa: clamped
    xm = np.clip(np.round(x[0] * p["gain"]), -(2**17 - 1), 2**17 - 1).astype(np.int64)
    want, v_ref = subtract_lif(xm, p["dv"], p["vth"])
    assert set(np.unique(want)) == {-1, 0, 1}
    with torch.no_grad():
        xt = torch.from_numpy(x)
        _, s, mem = lif(xt, torch.zeros(1, n, dtype=torch.float64))
        np.testing.assert_array_equal(s[0].numpy().astype(np.int64), want)
        np.testing.assert_array_equal(mem[0].numpy(), v_ref)  # the state is the integer membrane
        mem_i, steps = torch.zeros(1, n, dtype=torch.float64), []
        for t in range(T):
            _, st, mem_i = lif(xt[:, t:t + 1], mem_i)
            steps.append(st[0, 0])
    np.testing.assert_array_equal(torch.stack(steps).numpy(), s[0].numpy())
    with pytest.raises(ConfigError, match="ternary"):
        SpikeLIF(4, mode="binary").set_fixed_point(fmt)
    with pytest.raises(ConfigError, match="ternary_lif"):
        lif.set_fixed_point(neuron_format("ternary_lif", 11))
    lif.set_fixed_point(None)
    assert not lif.fixed_point


class _ClosedFormSpike(torch.autograd.Function):
    """H(u) with the surrogate's closed-form derivative, all in float64 (a reference that,
    unlike snnTorch's Functions, does not round gradients to float32)."""

    @staticmethod
    def forward(ctx, u, name, slope):
        ctx.save_for_backward(u)
        ctx.name, ctx.slope = name, slope
        return (u > 0).to(u.dtype)

    @staticmethod
    def backward(ctx, g):
        (u,) = ctx.saved_tensors
        return g * surrogate_grad_closed_form(ctx.name, ctx.slope, u), None, None


def _lif_autograd_reference(lif, x, mem):
    """Token loop of the update rule through plain autograd (float64 surrogates)."""
    beta, th, outs, spikes = lif.beta.to(x.dtype), lif.th.to(x.dtype), [], []
    for t in range(x.shape[1]):
        mem = beta * mem + x[:, t]
        s = _ClosedFormSpike.apply(mem - th, lif._sname, lif._slope)
        if lif.mode == "ternary":
            s = s - _ClosedFormSpike.apply(-mem - th, lif._sname, lif._slope)
        mem = mem - s * th
        outs.append(s * lif.amplitude)
        spikes.append(s)
    return torch.stack(outs, 1), torch.stack(spikes, 1), mem


@pytest.mark.parametrize("mode", ["ternary", "binary"])
@pytest.mark.parametrize("sname,slope", [("atan", 2.0), ("fast_sigmoid", 10.0), ("sigmoid", 4.0)])
@pytest.mark.parametrize("T", [1, 2, 40])
def test_fused_scan_gradients_exact_in_float64(mode, sname, slope, T):
    """Every input and parameter gradient of the fused node (through the output, the spikes and
    the final membrane at once) equals plain autograd of the update rule to 1e-12."""
    torch.manual_seed(1)
    lif = SpikeLIF(7, mode=mode, surrogate_name=sname, slope=slope, amplitude_mode="channel").double()
    with torch.no_grad():
        lif.graded_spikes_factor.uniform_(0.5, 1.5)
        lif.beta_logit.uniform_(-1, 1)
        lif.threshold.uniform_(0.3, 0.9)
    x = (torch.randn(3, T, 7, dtype=torch.float64) * 1.5).requires_grad_()
    m0 = (torch.randn(3, 7, dtype=torch.float64) * 0.5).requires_grad_()
    w_out, w_s = torch.randn(3, T, 7, dtype=torch.float64), torch.randn(3, T, 7, dtype=torch.float64)
    w_mem = torch.randn(3, 7, dtype=torch.float64)
    params = [x, m0, lif.beta_logit, lif.threshold, lif.graded_spikes_factor]
    results = []
    for fn in (lif.forward, lambda a, b: _lif_autograd_reference(lif, a, b)):
        out, s, mem = fn(x, m0)
        loss = (out * w_out).sum() + (s * w_s).sum() + (mem * w_mem).sum()
        results.append(((out, s, mem), torch.autograd.grad(loss, params)))
    (v1, g1), (v2, g2) = results
    for a, b in zip(v1, v2):
        assert torch.allclose(a, b, rtol=0, atol=1e-12)
    for name, a, b in zip(("x", "mem0", "beta", "threshold", "amplitude"), g1, g2):
        # beta and th are computed in float32 from their parameters (so that the integer neuron
        # rounds the same values in every dtype): their gradients are float32-exact only
        tol = 1e-6 if name in ("beta", "threshold") else 1e-12
        assert torch.allclose(a, b, rtol=tol, atol=tol), (name, (a - b).abs().max())


def test_fused_scan_skips_unused_outputs():
    """Only the output used: gradients equal the reference; only the membrane used: the spike
    outputs' gradients are zero and the membrane path still flows."""
    torch.manual_seed(2)
    lif = SpikeLIF(5, mode="ternary").double()
    x = torch.randn(2, 9, 5, dtype=torch.float64, requires_grad=True)
    m0 = torch.zeros(2, 5, dtype=torch.float64)
    _, _, mem = lif(x, m0)
    (g_fused,) = torch.autograd.grad(mem.sum(), x)
    _, _, mem_r = _lif_autograd_reference(lif, x, m0)
    (g_ref,) = torch.autograd.grad(mem_r.sum(), x)
    assert torch.allclose(g_fused, g_ref, atol=1e-12) and g_fused.abs().sum() > 0


@pytest.mark.parametrize("mode", ["ternary", "binary"])
@pytest.mark.parametrize("sname,slope", [("atan", 2.0), ("fast_sigmoid", 10.0), ("sigmoid", 4.0)])
def test_scan_node_gradients_exact_for_float64_leaves(mode, sname, slope):
    """The fused node's backward itself, on float64 leaves for beta, th and the amplitude:
    every gradient equals plain autograd of the update rule to 1e-12."""
    from goose_neuro.neurons import _LIFScan

    torch.manual_seed(3)
    n, T = 6, 30
    x = (torch.randn(2, T, n, dtype=torch.float64) * 1.5).requires_grad_()
    m0 = (torch.randn(2, n, dtype=torch.float64) * 0.5).requires_grad_()
    beta = torch.rand(n, dtype=torch.float64).mul(0.8).add(0.1).requires_grad_()
    th = torch.rand(n, dtype=torch.float64).mul(0.6).add(0.3).requires_grad_()
    amp = torch.rand(n, dtype=torch.float64).add(0.5).requires_grad_()
    w = [torch.randn(2, T, n, dtype=torch.float64), torch.randn(2, T, n, dtype=torch.float64),
         torch.randn(2, n, dtype=torch.float64)]
    leaves = [x, m0, beta, th, amp]

    def reference():
        mem, outs, ss = m0, [], []
        for t in range(T):
            mem = beta * mem + x[:, t]
            s = _ClosedFormSpike.apply(mem - th, sname, slope)
            if mode == "ternary":
                s = s - _ClosedFormSpike.apply(-mem - th, sname, slope)
            mem = mem - s * th
            outs.append(s * amp)
            ss.append(s)
        return torch.stack(outs, 1), torch.stack(ss, 1), mem

    got = []
    for fn in (lambda: _LIFScan.apply(x, m0, beta, th, amp, mode == "ternary", sname, slope), reference):
        out, s, mem = fn()
        loss = (out * w[0]).sum() + (s * w[1]).sum() + (mem * w[2]).sum()
        got.append(torch.autograd.grad(loss, leaves))
    for name, a, b in zip(("x", "mem0", "beta", "th", "amplitude"), *got):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12), (name, (a - b).abs().max())
