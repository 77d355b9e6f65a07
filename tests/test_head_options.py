"""LM head options (ModelConfig head_input / quantize_head / head_rank): the model, its lowering,
the IR interpreter, the op-cost table, the Loihi placement and the ONNX step graph agree."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from goose_neuro.checkpoint import load_checkpoint, save_checkpoint
from goose_neuro.config import ModelConfig, preset
from goose_neuro.errors import ConfigError, ExportError
from goose_neuro.export import interp, ir
from goose_neuro.export.lower import lower
from goose_neuro.export.onnx_export import build_model
from goose_neuro.export.opcost import Precision, node_cost
from goose_neuro.export.placement import place
from goose_neuro.model import ASNNGoose

from _onnx_parity import assert_onnx_matches

HEADS = {
    "dense": dict(),
    "spike": dict(head_input="spike"),
    "ternary": dict(quantize_head=True),
    "spike+ternary": dict(head_input="spike", quantize_head=True),
    "factorised": dict(head_rank=8),
    "spike+ternary+factorised": dict(head_input="spike", quantize_head=True, head_rank=8),
    "spike+ternary, ternary_lif fixed": dict(head_input="spike", quantize_head=True, neuron="ternary_lif",
                                             fixed_point=True),
}


def _model(seed: int = 0, dtype=torch.float32, **kw) -> ASNNGoose:
    torch.manual_seed(seed)
    m = ASNNGoose(preset("tiny", **kw)).to(dtype).eval()
    with torch.no_grad():  # asymmetric TTQ scales and non-unit amplitudes, as after training
        for lin in m.ternary_layers().values():
            lin.wp.mul_(torch.empty_like(lin.wp).uniform_(0.6, 1.6))
        for lif in m.populations().values():
            lif.graded_spikes_factor.uniform_(0.7, 1.3)
            lif.threshold.mul_(0.5)
    return m


def _tokens(B=2, T=20, seed=1):
    return torch.randint(0, 256, (B, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("bad, words", [
    (dict(head_input="sparse"), "head_input"), (dict(head_rank=-1), "head_rank"), (dict(head_rank=2.5), "head_rank"),
    (dict(head_rank=8, tie_embeddings=True), "factorised"),
])
def test_head_options_are_validated(bad, words):
    with pytest.raises(ConfigError, match=words):
        ModelConfig(**bad)


def test_a_config_without_head_fields_is_the_dense_head():
    """Checkpoints written before these fields existed rebuild with the head they were trained with."""
    d = ModelConfig().to_dict()
    for k in ("head_input", "head_rank"):
        d.pop(k)
    cfg = ModelConfig.from_dict(d)
    assert (cfg.head_input, cfg.head_rank, cfg.quantize_head) == ("dense", 0, False)


@pytest.mark.parametrize("name", list(HEADS))
def test_model_ir_and_steps_agree(name):
    kw = HEADS[name]
    m = _model(dtype=torch.float64, **kw)
    spiking_head = kw.get("head_input") == "spike"
    assert ("head_lif.mem" in m.state_spec()) == spiking_head
    assert ("head_lif" in m.populations()) == spiking_head
    tok = _tokens()
    with torch.no_grad():
        out = m.run(tok, collect=True)
        st, steps = None, []
        for t in range(tok.shape[1]):
            lo, st = m(tok[:, t:t + 1], st)
            steps.append(lo)
    np.testing.assert_allclose(torch.cat(steps, 1).numpy(), out.logits.numpy(), rtol=0, atol=1e-10)
    if spiking_head:
        s = out.spikes["head_lif"]
        assert 0.05 < float((s != 0).float().mean()) < 0.95  # the comparison is not vacuous
    g = lower(m)
    logits, state, spikes = interp.run(g, tok.numpy(), dtype=np.float64, collect=True)
    np.testing.assert_allclose(logits, out.logits.numpy(), rtol=0, atol=1e-9)
    for k, v in out.state.items():
        np.testing.assert_allclose(state[k], v.numpy(), rtol=0, atol=1e-9, err_msg=k)
    if spiking_head:
        np.testing.assert_array_equal(spikes["head_lif"], out.spikes["head_lif"].numpy())
        head = g.nodes["head"]
        assert head.inputs == (("head_lif",) if not kw.get("head_rank") else ("head_down",))
        first = g.nodes["head_down"] if kw.get("head_rank") else head
        assert first.input_kind == "spike" and first.inputs == ("head_lif",)
        assert isinstance(first, ir.TernaryDense if kw.get("quantize_head") else ir.Dense)


@pytest.mark.parametrize("name", list(HEADS))
def test_checkpoint_round_trip(name, tmp_path):
    m = _model(**HEADS[name])
    save_checkpoint(m, tmp_path / "ck")
    back, _ = load_checkpoint(tmp_path / "ck")
    tok = _tokens()
    with torch.no_grad():
        assert torch.equal(back(tok)[0], m(tok)[0])


@pytest.mark.parametrize("variant", ["float", "int"])
@pytest.mark.parametrize("name", ["spike", "spike+ternary", "factorised", "spike+ternary+factorised",
                                  "spike+ternary, ternary_lif fixed"])
def test_onnx_parity_and_integer_head(name, variant, tmp_path):
    m = _model(**HEADS[name]).freeze_ternary()
    g = lower(m)
    assert_onnx_matches(m, g, tmp_path / "o", variant, _tokens(3, 24), state_rtol=1e-3)
    onnx_model = build_model(g, variant)
    int_head = [n for n in onnx_model.graph.node if n.op_type == "MatMulInteger" and n.name.startswith("head")]
    spike_ternary = HEADS[name].get("head_input") == "spike" and HEADS[name].get("quantize_head")
    assert bool(int_head) == (variant == "int" and bool(spike_ternary))


def test_op_costs_of_a_spike_fed_head():
    """A spike-fed head is event-driven: one accumulate per input event and nonzero weight it reaches,
    its weight rows read per event; a dense-fed head is every MAC and every weight."""
    prec = Precision(weight_bits_ternary=2, weight_bits_dense=8, state_bits=24, activation_bits=24, event_driven=True)
    dense_dev = Precision(event_driven=False)
    rng = np.random.default_rng(0)
    for kw in (dict(head_input="spike", quantize_head=True), dict(head_input="spike")):
        g = lower(_model(**kw))
        head = g.nodes["head"]
        w = head.sign if isinstance(head, ir.TernaryDense) else head.weight
        col_nnz = (w != 0).sum(0)
        V, C = w.shape
        ev = {k: rng.uniform(0, 1, n.n) for k, n in g.of_type(ir.LIF).items()}
        c = node_cost(g, "head", ev, prec)
        assert c["ac"] == pytest.approx(float(ev["head_lif"] @ col_nnz)) and c["mac"] == 0
        bits = "mem_syn_bits" if isinstance(head, ir.TernaryDense) else "mem_dense_bits"
        w_bits = 2 if isinstance(head, ir.TernaryDense) else 8
        assert c[bits] == pytest.approx(ev["head_lif"].sum() * V * w_bits)
        assert node_cost(g, "head", ev, dense_dev)["ac"] == V * C  # a dense device computes every synapse
        silent = {k: np.zeros_like(v) for k, v in ev.items()}
        assert node_cost(g, "head", silent, prec)["ac"] == 0
    g = lower(_model())
    c = node_cost(g, "head", None, prec)
    V, C = g.nodes["head"].weight.shape
    assert c["mac"] == V * C and c["ac"] == 0 and c["mem_dense_bits"] == V * C * 8


def test_loihi_placement_of_each_head():
    pl = place(lower(_model(head_input="spike", quantize_head=True)), "loihi2")
    assert pl.populations[-1].node == "head_lif" and pl.populations[-1].runs_on == "core"
    head = next(s for s in pl.synapses if s.node == "head")
    assert head.chain == len(pl.populations) - 1 and head.out_features == 256 and pl.runs_on("head") == "core"
    last = [h.node for h in pl.host_ops if h.segment == pl.segments - 1]
    assert last == ["logits"]  # the head's accumulation ran on the cores; the host only scales and emits
    pl = place(lower(_model()), "loihi2")
    assert pl.runs_on("head") == "host" and all(p.node != "head_lif" for p in pl.populations)
    with pytest.raises(ExportError, match="ternary synapses.*quantize_head"):
        place(lower(_model(head_input="spike")), "loihi2")


def test_nir_export_takes_the_spiking_ternary_head(tmp_path):
    import nir

    from goose_neuro.export.nir_export import export_nir

    p = export_nir(lower(_model(head_input="spike", quantize_head=True)), tmp_path / "n")
    g = nir.read(p / "model.nir")
    assert ("head_lif.on", "head.on") in g.edges and ("head.on", "head") in g.edges  # ON/OFF pairs (Loihi 1 form)
    with pytest.raises(ExportError, match="head .Dense. reads spikes of head_lif"):
        export_nir(lower(_model(head_input="spike")), tmp_path / "m")
