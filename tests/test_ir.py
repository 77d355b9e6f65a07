"""Deployment IR: lowering, TTQ folding exactness, validation, serialization, interpreter."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from goose_neuro.config import preset
from goose_neuro.errors import ExportError
from goose_neuro.export import interp
from goose_neuro.export.ir import (
    LIF, Add, Graph, Scale, StateSpec, TernaryDense, graph_from_dict, graph_to_dict)
from goose_neuro.export.lower import lower
from goose_neuro.model import WKV_P_INIT, ASNNGoose


def _model(mode="ternary", amp="shared", asym=False, seed=0, **kw) -> ASNNGoose:
    """Tiny float64 model; ``asym`` makes TTQ scales asymmetric and amplitudes non-trivial."""
    torch.manual_seed(seed)
    m = ASNNGoose(preset("tiny", spike_mode=mode, amplitude_mode=amp, **kw)).double().eval()
    if asym:
        with torch.no_grad():
            for lin in m.ternary_layers().values():
                lin.wp.mul_(torch.empty_like(lin.wp).uniform_(0.6, 1.6))
            for mod in m.modules():
                if hasattr(mod, "graded_spikes_factor"):
                    mod.graded_spikes_factor.uniform_(0.5, 1.5)
    return m


@pytest.mark.parametrize("mode", ["ternary", "binary", "none"])
@pytest.mark.parametrize("amp", ["shared", "channel"])
@pytest.mark.parametrize("asym", [False, True])
def test_folded_graph_equals_model(mode, amp, asym):
    """Folded IR (integer weights, scales moved after accumulation) == unfolded PyTorch model.

    In float64 the only difference is summation order (~1e-15), far below any spike
    threshold margin, so spikes must match exactly and logits to 1e-11.
    """
    m = _model(mode, amp, asym)
    g = lower(m)
    tok = torch.randint(0, m.cfg.vocab_size, (3, 32), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = m.run(tok, collect=True)
    logits, st, spikes = interp.run(g, tok.numpy(), dtype=np.float64, collect=True)
    np.testing.assert_allclose(logits, ref.logits.numpy(), rtol=0, atol=1e-11)
    assert set(st) == set(m.state_spec())
    for k in st:
        np.testing.assert_allclose(st[k], ref.state[k].numpy(), rtol=0, atol=1e-10, err_msg=k)
    assert set(spikes) == (set(ref.spikes) if mode != "none" else set())
    for k in spikes:
        assert np.array_equal(spikes[k], ref.spikes[k].numpy()), k
        assert spikes[k].any(), f"{k}: no spikes at all, test would be vacuous"


def test_encoding_sign_when_symmetric_split_when_not():
    sym, asym = lower(_model()), lower(_model(asym=True))
    for g, enc in ((sym, "sign"), (asym, "split")):
        dense = g.of_type(TernaryDense)
        assert len(dense) == 2 * 7
        for name, n in dense.items():
            assert n.encoding == enc, name
            assert n.sign.dtype == np.int8 and set(np.unique(n.sign)) <= {-1, 0, 1}
            assert np.array_equal(n.pos - n.neg, n.sign)
            assert set(np.unique(n.pos)) <= {0, 1} and not (n.pos & n.neg).any()
            assert n.input_kind == "spike"


def test_amplitude_is_folded_into_scales():
    m = _model(asym=True)
    g = lower(m)
    lin, lif = m.blocks[0].tm.key, m.blocks[0].tm.lif_in
    _, wp, wn = lin.ternary_parts()
    a = lif.amplitude.detach()
    n = g.nodes["L0.tm.key"]
    np.testing.assert_array_equal(n.scale_pos, (wp * a).numpy())
    np.testing.assert_array_equal(n.scale_neg, (wn * a).numpy())
    assert set(g.of_type(LIF)) == set(m.populations())  # the IR node name is the population's one name
    assert all(node.state == f"{name}.mem" for name, node in g.of_type(LIF).items())
    assert not hasattr(g.nodes["L0.tm.lif_in"], "spike_name")


def test_channel_amplitude_becomes_scale_node_and_graded_synapse():
    g = lower(_model(amp="channel", asym=True))
    assert isinstance(g.nodes["L0.tm.lif_in_amp"], Scale)
    assert g.nodes["L0.tm.key"].inputs == ("L0.tm.lif_in_amp",)
    assert {n.input_kind for n in g.of_type(TernaryDense).values()} == {"graded"}


def test_mode_none_has_no_lif_and_dense_synapses():
    g = lower(_model("none"))
    assert not g.of_type(LIF)
    assert {n.input_kind for n in g.of_type(TernaryDense).values()} == {"dense"}


def test_states_match_model_spec_and_init():
    m = _model()
    g = lower(m)
    assert {k: s.width for k, s in g.states.items()} == m.state_spec()
    assert g.states["L1.wkv_p"].init == WKV_P_INIT and g.states["L1.wkv_a"].init == 0.0
    st = interp.initial_state(g, 2)
    ref = m.init_state(2)
    for k in st:
        np.testing.assert_array_equal(st[k], ref[k].numpy())


def test_head_variants():
    g = lower(_model(tie_embeddings=True))
    assert g.nodes["head"].tied_to == "emb" and g.nodes["head"].weight is g.nodes["emb"].weight
    g = lower(_model(quantize_head=True))
    assert isinstance(g.nodes["head"], TernaryDense) and g.nodes["head"].input_kind == "dense"


def test_step_by_step_equals_sequence():
    g = lower(_model(asym=True))
    tok = np.random.default_rng(0).integers(0, 256, (2, 20))
    full, st_full, _ = interp.run(g, tok, dtype=np.float64)
    st, steps = None, []
    for t in range(tok.shape[1]):
        lt, st, _ = interp.run(g, tok[:, t], st, dtype=np.float64)
        steps.append(lt)
    np.testing.assert_allclose(np.stack(steps, 1), full, rtol=0, atol=1e-12)
    for k in st:
        np.testing.assert_allclose(st[k], st_full[k], rtol=0, atol=1e-12)


def test_float32_interpreter_close_to_model():
    torch.manual_seed(3)
    m = ASNNGoose(preset("tiny")).eval()
    g = lower(m)
    assert g.nodes["emb"].weight.dtype == np.float32
    tok = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref, _ = m(tok)
    out, _, _ = interp.run(g, tok.numpy())
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, ref.numpy(), rtol=0, atol=1e-4)


def test_unknown_module_raises_naming_it():
    m = _model()
    m.blocks[0].tm.key = nn.Linear(32, 32, bias=False).double()
    with pytest.raises(ExportError, match=r"blocks\.0\.tm|L0\.tm.*key"):
        lower(m)
    m = _model()
    m.blocks[1].cm.extra = nn.ReLU()
    with pytest.raises(ExportError, match=r"L1\.cm\.extra"):
        lower(m)
    m = _model()
    m.ln_out = nn.Identity()
    with pytest.raises(ExportError, match="ln_out"):
        lower(m)


def _small_graph() -> Graph:
    return lower(_model())


def test_validate_names_offending_node_and_edge():
    g = _small_graph()
    g.nodes["L0.add_tm"].inputs = ("ln0", "nope")
    with pytest.raises(ExportError, match=r"'nope' -> 'L0.add_tm'"):
        g.validate()
    g = _small_graph()
    g.nodes["L0.add_tm"].inputs = ("ln0", "L0.cm.key")  # width 64 vs 32, and later in order
    with pytest.raises(ExportError, match="L0.add_tm"):
        g.validate()
    g = _small_graph()
    g.nodes["L1.tm.lif_in"].state = "L0.tm.lif_in.mem"
    with pytest.raises(ExportError, match=r"L1\.tm\.lif_in.*L0\.tm\.lif_in\.mem"):
        g.validate()
    g = _small_graph()
    g.states["L0.wkv_a"] = StateSpec(5)
    with pytest.raises(ExportError, match=r"L0\.tm\.wkv.*L0\.wkv_a"):
        g.validate()
    g = _small_graph()
    g.edges.append(("ln0", "head"))
    with pytest.raises(ExportError, match=r"'ln0' -> 'head'"):
        g.validate()


def test_node_post_init_rejects_bad_fields():
    with pytest.raises(ExportError, match="sign"):
        TernaryDense(sign=np.array([[2, 0]], np.int8), scale_pos=np.ones(1), scale_neg=np.ones(1))
    with pytest.raises(ExportError, match="split"):
        TernaryDense(sign=np.array([[1, 0]], np.int8), scale_pos=np.ones(1), scale_neg=np.full(1, 2.0))
    with pytest.raises(ExportError, match="threshold"):
        LIF(beta=np.full(3, 0.5), threshold=np.zeros(3))
    with pytest.raises(ExportError, match="2 input"):
        Graph(nodes={**_small_graph().nodes, "L0.add_tm": Add(inputs=("ln0",))},
              states=_small_graph().states).validate()


def test_serialization_round_trip_json():
    g = lower(_model(asym=True, amp="channel"))
    d = json.loads(json.dumps(graph_to_dict(g, arrays="list")))
    assert d["nodes"]["L0.tm.key"]["type"] == "TernaryDense"
    g2 = graph_from_dict(d)
    assert list(g2.nodes) == list(g.nodes) and g2.edges == g.edges
    tok = np.arange(24).reshape(2, 12)
    a, sa, _ = interp.run(g, tok, dtype=np.float64)
    b, sb, _ = interp.run(g2, tok, dtype=np.float64)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ExportError, match="format"):
        graph_from_dict({"format": "x"})


def test_interpreter_rejects_bad_tokens():
    g = _small_graph()
    with pytest.raises(ExportError, match="token ids"):
        interp.run(g, np.array([[0, 256]]))
    with pytest.raises(ExportError, match="integer"):
        interp.run(g, np.zeros((1, 2), np.float32))
