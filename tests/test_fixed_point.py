"""Fixed-point neurons and the lava-nc TernaryLIF student neuron.

References here are written independently of goose_neuro.neurons: a numpy transcription of
lava-nc 0.10's ``AbstractPyLifModelFixed`` / ``PyTernLifModelFixed`` arithmetic (the Lava tests
in test_lava_run.py then use lava-nc's own process models as the oracle), and snnTorch's
surrogate Functions for the gradients.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from goose_neuro.config import ModelConfig, preset
from goose_neuro.errors import ConfigError
from goose_neuro.export import interp
from goose_neuro.export.lower import lower
from goose_neuro.fixed_point import NeuronFormat, neuron_format
from goose_neuro.model import ASNNGoose
from goose_neuro.neurons import SpikeLIF, TernaryLIFNeuron

VMAX = (1 << 23) - 1


def lava_ternary_lif(xm: np.ndarray, dv: int, du: int, vth: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """lava-nc PyTernLifModelFixed on integer inputs xm (T, n): spikes (T, n), final v, final u."""
    n = xm.shape[1]
    u, v, out = np.zeros(n, np.int64), np.zeros(n, np.int64), []
    for t in range(len(xm)):
        d = u * (4096 - (du + 1))
        d = np.sign(d) * np.right_shift(np.abs(d), 12) + np.left_shift(xm[t], 6)
        u = np.where(d > 2**23, d - 2**24, d)
        u = np.where(u <= -(2**23), d + 2**24, u)
        d = v * (4096 - dv)
        v = np.clip(np.sign(d) * np.right_shift(np.abs(d), 12) + u, -VMAX, VMAX)
        s = -1 * (v < -(vth << 6)) + (v > (vth << 6))
        v[s != 0] = 0
        out.append(s)
    return np.array(out), v, u


def subtract_lif(xm: np.ndarray, dv: np.ndarray, vth: int) -> tuple[np.ndarray, np.ndarray]:
    """The subtract-reset integer neuron, transcribed from goose_neuro.fixed_point's docstring."""
    v, out = np.zeros(xm.shape[1], np.int64), []
    for t in range(len(xm)):
        d = v * (4096 - dv)
        v = np.clip(np.sign(d) * (np.abs(d) >> 12) + (xm[t] << 6), -VMAX, VMAX)
        s = (v > vth << 6).astype(np.int64) - (v < -(vth << 6)).astype(np.int64)
        v = v - s * (vth << 6)
        out.append(s)
    return np.array(out), v


def _tlif(n=6, beta_u=0.3, seed=0) -> TernaryLIFNeuron:
    torch.manual_seed(seed)
    lif = TernaryLIFNeuron(n).double()
    with torch.no_grad():
        lif.beta_u_raw.fill_(beta_u)
        lif.threshold.copy_(torch.rand(n) + 0.3)
    return lif


def test_formats_come_from_the_hardware_profile():
    f = neuron_format("ternary_lif", 11)
    assert (f.decay_bits, f.state_bits, f.shift, f.x_bits, f.threshold_bits) == (12, 24, 6, 16, 17)
    assert neuron_format("subtract", 11).x_bits == 24 - 6  # the programmable neuron uses the state's headroom
    assert f.vth == 2048 and f.x_limit == 32767
    np.testing.assert_array_equal(f.dv([0.5, 1e-9, 0.99999]), [2048, 4095, 0])
    np.testing.assert_array_equal(f.du([0.0, 0.25]), [4095, 3071])  # lava adds 1: factor (4095 - du) / 4096
    with pytest.raises(ConfigError, match="frac_bits"):
        NeuronFormat("ternary_lif", 17)


def test_ternary_lif_float_gradients_equal_snntorch_reference():
    lif = _tlif()
    x = torch.randn(3, 9, 6, dtype=torch.float64, requires_grad=True)
    st = torch.randn(3, 12, dtype=torch.float64) * 0.3
    out, s, st2 = lif(x, st)
    ref_out, ref_s, ref_st = lif.forward_reference(x, st)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(st2, ref_st)
    assert set(torch.unique(s).tolist()) <= {-1.0, 0.0, 1.0} and (s != 0).any()
    w, w2 = torch.randn_like(out), torch.randn_like(st2)
    params = [x, *lif.parameters()]
    g = torch.autograd.grad((out * w).sum() + (st2 * w2).sum(), params)
    gr = torch.autograd.grad((ref_out * w).sum() + (ref_st * w2).sum(), params)
    for a, b in zip(g, gr):  # snnTorch's surrogate Functions compute in float32
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert all(float(t.abs().sum()) > 0 for t in g)


def test_ternary_lif_fixed_point_equals_lava_arithmetic():
    lif = _tlif()
    lif.set_fixed_point(neuron_format("ternary_lif", 11))
    x = torch.randn(2, 60, 6, dtype=torch.float64) * 2
    with torch.no_grad():
        _, s, st = lif(x, lif.init_mem(2, dtype=torch.float64))
    p = lif.fixed_params()
    assert p["dv"].shape == (1,) and p["du"].shape == (1,) and p["gain"].shape == (6,)
    for b in range(2):
        xm = np.clip(np.round(x[b].numpy() * p["gain"]), -32767, 32767).astype(np.int64)
        want, v, u = lava_ternary_lif(xm, int(p["dv"][0]), int(p["du"][0]), p["vth"])
        np.testing.assert_array_equal(s[b].numpy(), want)
        np.testing.assert_array_equal(st[b].numpy(), np.concatenate([v, u]))
    assert np.abs(s.numpy()).sum() > 50


def test_subtract_fixed_point_equals_integer_reference():
    torch.manual_seed(1)
    lif = SpikeLIF(7).double()
    with torch.no_grad():
        lif.threshold.copy_(torch.rand(7) + 0.2)
        lif.beta_logit.copy_(torch.randn(7))
    lif.set_fixed_point(neuron_format("subtract", 9))
    x = torch.randn(1, 80, 7, dtype=torch.float64) * 3
    with torch.no_grad():
        _, s, v = lif(x, lif.init_mem(1, dtype=torch.float64))
    p = lif.fixed_params()
    xm = np.clip(np.round(x[0].numpy() * p["gain"]), -(2**17 - 1), 2**17 - 1).astype(np.int64)
    want, v_ref = subtract_lif(xm, p["dv"], p["vth"])
    np.testing.assert_array_equal(s[0].numpy(), want)
    np.testing.assert_array_equal(v[0].numpy(), v_ref)


@pytest.mark.parametrize("cls", [SpikeLIF, TernaryLIFNeuron])
def test_fixed_point_gradients_pass_straight_through(cls):
    """With a fine input step (threshold / 2^12, inputs up to 8 thresholds) the integer neuron tracks
    the float one, and so do its gradients."""
    torch.manual_seed(2)
    lif = cls(16).double()
    x = (torch.randn(4, 30, 16, dtype=torch.float64) * 0.7).requires_grad_(True)
    mem = lif.init_mem(4, dtype=torch.float64)
    out, s_float, _ = lif(x, mem)
    g_float = torch.autograd.grad(out.sum(), [x, lif.threshold])
    lif.set_fixed_point(neuron_format(lif.kind, 12))
    out, s, _ = lif(x, mem)
    assert float((s != s_float).float().mean()) < 0.02  # a few flips: the dynamics amplify any rounding
    g_fixed = torch.autograd.grad(out.sum(), [x, lif.threshold])
    for a, b in zip(g_float, g_fixed):
        cos = float((a * b).sum() / (a.norm() * b.norm()))
        assert cos > 0.98, cos


def test_config_validates_neuron_fields():
    with pytest.raises(ConfigError, match="neuron"):
        ModelConfig(neuron="izhikevich")
    with pytest.raises(ConfigError, match="ternary_lif"):
        ModelConfig(neuron="ternary_lif", spike_mode="binary")
    with pytest.raises(ConfigError, match="fixed_point"):
        ModelConfig(fixed_point=True, spike_mode="none")
    with pytest.raises(ConfigError, match="frac_bits"):
        ModelConfig(frac_bits=17)


COMBOS = [dict(), dict(neuron="ternary_lif"), dict(fixed_point=True), dict(neuron="ternary_lif", fixed_point=True)]


def _model(**kw) -> ASNNGoose:
    torch.manual_seed(0)
    m = ASNNGoose(preset("tiny", **kw)).double().eval()
    with torch.no_grad():  # livelier populations than the initial thresholds give
        for lif in m.populations().values():
            lif.threshold.mul_(0.3)
            if isinstance(lif, TernaryLIFNeuron):
                lif.beta_u_raw.fill_(0.2)
    return m


@pytest.mark.parametrize("kw", COMBOS, ids=["subtract", "ternary_lif", "subtract-fixed", "ternary_lif-fixed"])
def test_step_equals_sequence_and_interpreter_equals_model(kw):
    m = _model(**kw)
    x = torch.randint(0, 256, (2, 20))
    with torch.no_grad():
        full = m.run(x, collect=True)
        st, steps = None, []
        for t in range(x.shape[1]):
            lo, st = m(x[:, t:t + 1], st)
            steps.append(lo)
    torch.testing.assert_close(torch.cat(steps, 1), full.logits, rtol=0, atol=1e-10)
    logits, _, spikes = interp.run(lower(m), x.numpy(), dtype=np.float64, collect=True)
    np.testing.assert_allclose(logits, full.logits.numpy(), rtol=0, atol=1e-10)
    for k, s in spikes.items():
        np.testing.assert_array_equal(s, full.spikes[k].numpy())
    assert sum(int(np.abs(s).sum()) for s in spikes.values()) > 1000


def test_fixed_point_model_trains_and_round_trips(tmp_path):
    from goose_neuro.checkpoint import load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    m = ASNNGoose(preset("tiny", neuron="ternary_lif", fixed_point=True, frac_bits=10))
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    x = torch.randint(0, 256, (4, 16))
    losses = []
    for _ in range(8):
        logits, _ = m(x[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    save_checkpoint(m, tmp_path / "ck")
    m2, info = load_checkpoint(tmp_path / "ck")
    assert info["config"].fixed_point and info["config"].frac_bits == 10
    assert all(p.fixed_format == neuron_format("ternary_lif", 10) for p in m2.populations().values())
    with torch.no_grad():
        torch.testing.assert_close(m2.eval()(x)[0], m.eval()(x)[0])


def test_deployed_format():
    m = ASNNGoose(preset("tiny", fixed_point=True, frac_bits=9))
    assert m.deployed_format() == neuron_format("subtract", 9)
    with pytest.raises(ConfigError, match="frac_bits=9"):
        m.deployed_format(frac_bits=11)
    assert ASNNGoose(preset("tiny")).deployed_format(frac_bits=7).frac_bits == 7
