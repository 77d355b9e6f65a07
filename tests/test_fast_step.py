"""The fast decode step equals sequence mode (float64), follows the model's state names,
calls each population's own step method and refreshes its fused weights when they change."""

from __future__ import annotations

import pytest
import torch

from goose_neuro.config import preset
from goose_neuro.errors import ConfigError
from goose_neuro.fast_step import FastStep, state_layout
from goose_neuro.model import ASNNGoose


def _model(seed: int = 0, **kw) -> ASNNGoose:
    torch.manual_seed(seed)
    m = ASNNGoose(preset("tiny", **kw)).double().eval()
    with torch.no_grad():  # spread the neuron parameters so that every population behaves differently
        for pop in m.populations().values():
            pop.beta_logit.uniform_(-2, 2)
            pop.threshold.uniform_(0.2, 0.8)
            pop.graded_spikes_factor.uniform_(0.5, 1.5)
    return m


def _run_both(m: ASNNGoose, step: FastStep, tok: torch.Tensor):
    with torch.no_grad():
        ref, st_ref = m(tok)
    st, outs = step.init_state(tok.shape[0]), []
    for t in range(tok.shape[1]):
        lg, st = step(tok[:, t], st)
        outs.append(lg)
    return torch.stack(outs, 1), st, ref, st_ref


def _assert_same(got, st, ref, st_ref, tol=1e-12):
    assert got.shape == ref.shape
    assert torch.allclose(got, ref, rtol=0, atol=tol), (got - ref).abs().max()
    assert list(st) == list(st_ref)  # same names, same order as state_spec()
    for k in st_ref:
        assert st[k].dtype == st_ref[k].dtype and st[k].shape == st_ref[k].shape, k
        assert torch.allclose(st[k], st_ref[k], rtol=0, atol=tol), (k, (st[k] - st_ref[k]).abs().max())


@pytest.mark.parametrize("mode,kw", [
    (mode, kw) for mode in ("ternary", "binary", "none")
    for kw in ({}, {"amplitude_mode": "channel", "quantize_head": True}, {"tie_embeddings": True},
               {"head_input": "spike", "quantize_head": True}, {"head_input": "spike", "head_rank": 8})
] + [("ternary", {"neuron": "ternary_lif"}), ("none", {"neuron": "ternary_lif"}),
     ("ternary", {"neuron": "ternary_lif", "amplitude_mode": "channel"}),
     ("ternary", {"neuron": "ternary_lif", "head_input": "spike", "quantize_head": True})])
def test_fast_step_equals_sequence_mode_float64(mode, kw):
    m = _model(spike_mode=mode, **kw)
    tok = torch.randint(0, m.cfg.vocab_size, (3, 24))
    got, st, ref, st_ref = _run_both(m, FastStep(m), tok)
    _assert_same(got, st, ref, st_ref)
    if mode != "none":  # spikes actually happened, so the check covers the reset path
        out = m.run(tok, collect=True)
        assert all(bool((s != 0).any()) for s in out.spikes.values())


def test_fast_step_does_not_touch_the_state_passed_in():
    m = _model()
    step = FastStep(m)
    st = step.init_state(2)
    st, _ = step(torch.tensor([1, 2]), st)[1], None
    before = {k: v.clone() for k, v in st.items()}
    step(torch.tensor([3, 4]), st)
    assert all(torch.equal(st[k], before[k]) for k in st)


def test_layout_maps_every_state_entry_to_the_population_that_reads_it():
    """The layout is read off the model: each population's membrane entry is the one its
    sequence-mode call receives, and every state entry is used exactly once."""
    m = _model()
    layout = state_layout(m)
    seen: dict[int, object] = {}

    def hook(mod, args):
        seen[id(mod)] = args[1]

    pops = list(m.populations().values())
    handles = [p.register_forward_pre_hook(hook) for p in pops]
    st = m.init_state(1, dtype=torch.float64)
    with torch.no_grad():
        m(torch.zeros(1, 1, dtype=torch.long), st)
    for h in handles:
        h.remove()
    mems = {pid: key for tm, cm in layout for mk in (tm, cm) for pid, key in mk.mems.items()}
    assert set(mems) == {id(p) for p in pops}
    for pid, key in mems.items():
        assert seen[pid] is st[key]
    keys = [k for tm, cm in layout for mk in (tm, cm) for k in (mk.shift, *mk.mems.values(), *(mk.wkv or ()))]
    assert sorted(keys) == sorted(m.state_spec())


def test_every_population_runs_its_own_step_method():
    """The fast path goes through ``population.step``; a population with another rule (here:
    spikes doubled) changes the fast step's output exactly as it changes sequence mode."""
    m = _model()
    calls = []
    pop = m.blocks[0].cm.lif_hid
    orig_step, orig_fwd = pop.step, pop.forward

    def step(x, mem):
        calls.append(x.shape)
        out, s, mem = orig_step(x, mem)
        return 2 * out, s, mem

    def forward(x, mem):
        out, s, mem = orig_fwd(x, mem)
        return 2 * out, s, mem

    pop.step, pop.forward = step, forward
    tok = torch.randint(0, m.cfg.vocab_size, (2, 6))
    got, st, ref, st_ref = _run_both(m, FastStep(m), tok)
    assert calls and calls[0] == (2, m.cfg.d_ffn)
    _assert_same(got, st, ref, st_ref)


@pytest.mark.parametrize("neuron", ["subtract", "ternary_lif"])
def test_fixed_point_populations_take_the_fast_path_too(neuron):
    from goose_neuro.fixed_point import neuron_format

    m = _model(seed=3, neuron=neuron)
    m.set_fixed_point(neuron_format(neuron, 11))
    tok = torch.randint(0, m.cfg.vocab_size, (2, 12))
    got, st, ref, st_ref = _run_both(m, FastStep(m), tok)
    _assert_same(got, st, ref, st_ref)
    assert any(bool((v != 0).any()) for k, v in st.items() if k.endswith(".mem"))


def test_fused_weights_follow_parameter_updates():
    m = _model()
    step = FastStep(m)
    tok = torch.randint(0, m.cfg.vocab_size, (2, 5))
    _run_both(m, step, tok)
    with torch.no_grad():
        m.blocks[1].tm.key.weight.mul_(-1.5)  # an optimizer-style in-place update
        m.blocks[0].cm.lif_in.threshold.add_(0.1)
    got, st, ref, st_ref = _run_both(m, step, tok)
    _assert_same(got, st, ref, st_ref)
    m.float()  # a conversion replaces the storages
    got, st, ref, st_ref = _run_both(m, step, tok)
    _assert_same(got, st, ref, st_ref, tol=1e-5)
    assert got.dtype == torch.float32


def test_population_step_with_gradients_uses_the_surrogate_path():
    m = _model()
    pop = m.blocks[0].tm.lif_in
    x = torch.randn(2, pop.n, dtype=torch.float64, requires_grad=True)
    mem = torch.zeros(2, pop.n, dtype=torch.float64)
    out, _, _ = pop.step(x, mem)
    (g,) = torch.autograd.grad(out.sum(), x)
    out_seq, _, _ = pop(x[:, None], mem)
    (g_seq,) = torch.autograd.grad(out_seq.sum(), x)
    assert torch.equal(g, g_seq) and g.abs().sum() > 0


def test_bad_token_shape_is_a_config_error():
    m = _model()
    step = FastStep(m)
    with pytest.raises(ConfigError, match="shape"):
        step(torch.zeros(2, 1, dtype=torch.long), step.init_state(2))


@pytest.mark.slow
def test_compiled_step_matches_eager():
    """torch.compile of the same step (CPU: a C++ compiler must be present)."""
    import shutil

    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler for torch.compile on CPU")
    m = _model(seed=4).float()
    tok = torch.randint(0, m.cfg.vocab_size, (2, 6))
    got, st, ref, st_ref = _run_both(m, FastStep(m, compile=True), tok)
    _assert_same(got, st, ref, st_ref, tol=1e-4)


def test_event_driven_synapse_equals_dense_product():
    from goose_neuro.fast_step import synapse

    torch.manual_seed(0)
    w = torch.randn(40, 9, dtype=torch.float64)
    x = torch.randn(4, 40, dtype=torch.float64) * (torch.rand(4, 40) < 0.05)
    x[0] = 0  # a row without any spike
    x[3] = 0  # ... also the last one
    assert torch.allclose(synapse(x, w, True), x @ w, rtol=0, atol=1e-13)
    dense = torch.randn(4, 40, dtype=torch.float64)  # above the density limit: the dense product
    assert torch.equal(synapse(dense, w, True), torch.mm(dense, w))


@pytest.mark.parametrize("mode", ["ternary", "binary"])
def test_fast_step_with_event_driven_synapses_equals_sequence_mode(monkeypatch, mode):
    """Every projection eligible (size limit 0): sparse spike inputs take the event-driven product."""
    import goose_neuro.fast_step as fs

    monkeypatch.setattr(fs, "SPARSE_MIN_WEIGHTS", 0)
    m = _model(seed=5, spike_mode=mode, head_input="spike", quantize_head=True)
    step = FastStep(m)
    assert all(step.event.values()) and "head" in step.event  # the spike-fed head too
    calls = {"sparse": 0}
    orig = torch.nn.functional.embedding_bag

    def counting(*a, **k):
        calls["sparse"] += 1
        return orig(*a, **k)

    monkeypatch.setattr(fs.F, "embedding_bag", counting)
    tok = torch.randint(0, m.cfg.vocab_size, (1, 16))
    got, st, ref, st_ref = _run_both(m, step, tok)
    _assert_same(got, st, ref, st_ref)
    assert calls["sparse"] > 0


def test_replaced_population_is_picked_up():
    """Swapping a population module after the step was built re-reads the layout instead of
    silently running the new module without its membrane."""
    from goose_neuro.neurons import SpikeLIF

    m = _model(seed=6)
    step = FastStep(m)
    tok = torch.randint(0, m.cfg.vocab_size, (2, 5))
    _run_both(m, step, tok)
    old = m.blocks[0].tm.lif_out
    new = SpikeLIF(old.n, mode="ternary").double()
    new.load_state_dict(old.state_dict())
    with torch.no_grad():
        new.threshold.mul_(0.5)
    m.blocks[0].tm.lif_out = new
    got, st, ref, st_ref = _run_both(m, step, tok)
    _assert_same(got, st, ref, st_ref)
