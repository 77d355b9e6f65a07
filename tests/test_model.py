"""The student: step mode equals sequence mode, spikes are ternary, shapes, state handling."""

from __future__ import annotations

import pytest
import torch

from goose_neuro.config import ModelConfig, preset
from goose_neuro.errors import ConfigError
from goose_neuro.model import ASNNGoose, wkv_scan


def _model(mode: str, seed: int = 0, **kw) -> ASNNGoose:
    torch.manual_seed(seed)
    return ASNNGoose(preset("tiny", spike_mode=mode, **kw)).double().eval()


@pytest.mark.parametrize("mode", ["ternary", "binary", "none"])
def test_step_mode_equals_sequence_mode(mode):
    m = _model(mode)
    tok = torch.randint(0, m.cfg.vocab_size, (3, 17))
    with torch.no_grad():
        logits_seq, st_seq = m(tok)
        st, steps = None, []
        for t in range(tok.shape[1]):
            lt, st = m(tok[:, t : t + 1], st)
            steps.append(lt)
    logits_step = torch.cat(steps, dim=1)
    assert logits_step.shape == (3, 17, m.cfg.vocab_size)
    assert torch.allclose(logits_step, logits_seq, atol=1e-10, rtol=0)
    assert set(st) == set(st_seq) == set(m.state_spec())
    for name in st:
        assert torch.allclose(st[name], st_seq[name], atol=1e-10, rtol=0), name


def test_prefill_then_continue_equals_one_call():
    m = _model("ternary", seed=1)
    tok = torch.randint(0, m.cfg.vocab_size, (2, 12))
    with torch.no_grad():
        full, _ = m(tok)
        a, st = m(tok[:, :7])
        b, _ = m(tok[:, 7:], st)
    assert torch.allclose(torch.cat([a, b], 1), full, atol=1e-10, rtol=0)


def test_state_not_mutated_in_place():
    m = _model("ternary")
    st0 = m.init_state(2, dtype=torch.float64)
    copy = {k: v.clone() for k, v in st0.items()}
    with torch.no_grad():
        m(torch.randint(0, m.cfg.vocab_size, (2, 5)), st0)
    for k in st0:
        assert torch.equal(st0[k], copy[k])


@pytest.mark.parametrize("mode,values", [("ternary", {-1.0, 0.0, 1.0}), ("binary", {0.0, 1.0})])
def test_spikes_take_only_allowed_values(mode, values):
    m = _model(mode)
    with torch.no_grad():
        out = m.run(torch.randint(0, m.cfg.vocab_size, (4, 20)), collect=True)
    names = {f"L{i}.{n}" for i in range(2) for n in ("tm.lif_in", "tm.lif_out", "cm.lif_in", "cm.lif_hid")}
    assert set(out.spikes) == names == set(m.populations())  # one name per population: its module path
    assert {f"{n}.mem" for n in names} <= set(m.state_spec())  # and its membrane state "<name>.mem"
    seen = set()
    for name, s in out.spikes.items():
        u = set(s.unique().tolist())
        assert u <= values, (name, u)
        seen |= u
    assert seen == values  # every allowed value actually occurs on random input
    assert len(out.hidden) == 2 and out.hidden[0].shape == (4, 20, m.cfg.d_model)


def test_none_mode_has_no_membrane_state():
    m = _model("none")
    assert not any("mem" in n for n in m.state_spec())
    assert any("mem" in n for n in _model("ternary").state_spec())


def test_wkv_matches_naive_formula():
    """The stable (a, b, p) form equals the textbook RWKV-4 sum over the past."""
    torch.manual_seed(0)
    B, T, C = 2, 6, 3
    k, v = torch.randn(B, T, C, dtype=torch.float64), torch.randn(B, T, C, dtype=torch.float64)
    decay, first = torch.randn(C, dtype=torch.float64), torch.randn(C, dtype=torch.float64)
    z = torch.zeros(B, C, dtype=torch.float64)
    out, *_ = wkv_scan(decay, first, k, v, z, z, torch.full_like(z, -1e30))
    w = -torch.exp(decay)
    for t in range(T):
        num = torch.exp(first + k[:, t]) * v[:, t]
        den = torch.exp(first + k[:, t])
        for i in range(t):
            e = torch.exp((t - 1 - i) * w + k[:, i])
            num, den = num + e * v[:, i], den + e
        assert torch.allclose(out[:, t], num / den, atol=1e-12)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    m = ASNNGoose(preset("tiny"))
    tok = torch.randint(0, m.cfg.vocab_size, (2, 16))
    logits, _ = m(tok)
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), tok.flatten()).backward()
    dead = [n for n, p in m.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert dead == []
    zero = [n for n, p in m.named_parameters() if p.grad.abs().sum() == 0]
    assert zero == [], zero


def test_presets_sizes():
    small = ASNNGoose(preset("small")).num_params()
    teacher_params = 4_240_896  # ../shared/teachers/wp-gpt2-4L256/teacher_card.json
    assert 0.35 < small / teacher_params < 0.45
    cfg = preset("gpt2-50m")
    assert cfg.vocab_size == 50257


@pytest.mark.parametrize(
    "field,value",
    [("vocab_size", 0), ("d_model", -3), ("spike_mode", "quaternary"), ("surrogate", "relu"),
     ("beta_init", 1.5), ("ttq_threshold", 1.0), ("amplitude_mode", "x"), ("ffn_mult", 0)],
)
def test_invalid_config_names_the_field(field, value):
    with pytest.raises(ConfigError, match=f"ModelConfig.{field}="):
        ModelConfig(**{field: value})
    with pytest.raises(ValueError):  # ConfigError is a ValueError
        ModelConfig(**{field: value})


def test_unknown_preset_and_field():
    with pytest.raises(ConfigError, match="unknown preset"):
        preset("huge")
    with pytest.raises(ConfigError, match="unknown model config field"):
        ModelConfig.from_dict({"vocab_size": 10, "colour": "red"})


def test_freeze_ternary_keeps_outputs():
    m = _model("ternary")
    tok = torch.randint(0, m.cfg.vocab_size, (2, 8))
    with torch.no_grad():
        ref, _ = m(tok)
        m.freeze_ternary()
        frozen, _ = m(tok)
        m.freeze_ternary(False)
    assert torch.equal(ref, frozen)


def test_fused_wkv_equals_reference_values_and_gradients():
    """The fused WKV node matches the readable loop (values) and autograd through it
    (gradients, for a loss on the outputs and on the state's A = a e^p, B = b e^p)."""
    from goose_neuro.model import wkv

    torch.manual_seed(0)
    B, T, C = 2, 9, 4
    dd = dict(dtype=torch.float64)
    decay = torch.randn(C, **dd).requires_grad_()
    first = torch.randn(C, **dd).requires_grad_()
    k = (torch.randn(B, T, C, **dd) * 3).requires_grad_()
    v = torch.randn(B, T, C, **dd).requires_grad_()
    a0 = torch.randn(B, C, **dd).requires_grad_()
    b0 = (torch.rand(B, C, **dd) + 0.5).requires_grad_()
    p0 = torch.randn(B, C, **dd)
    wy, wa, wb = torch.randn(B, T, C, **dd), torch.randn(B, C, **dd), torch.randn(B, C, **dd)
    res = []
    for fn in (wkv, wkv_scan):
        y, a, b, p = fn(decay, first, k, v, a0, b0, p0)
        loss = (y * wy).sum() + (a * p.exp() * wa).sum() + (b * p.exp() * wb).sum()
        res.append((y.detach(), torch.autograd.grad(loss, [decay, first, k, v, a0, b0])))
    assert torch.allclose(res[0][0], res[1][0], atol=1e-12)
    for g1, g2 in zip(res[0][1], res[1][1]):
        assert torch.allclose(g1, g2, atol=1e-9), (g1 - g2).abs().max()
