"""ONNX step graph: parity with PyTorch per spike mode and variant, state threading, metadata, sidecar."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from goose_neuro.config import preset
from goose_neuro.errors import ExportError
from goose_neuro.export import interp
from goose_neuro.export.lower import lower
from goose_neuro.export.onnx_export import OPSET, build_model, export_onnx
from goose_neuro.export.ort_runner import OrtStep, generate
from goose_neuro.model import WKV_P_INIT, ASNNGoose

from _onnx_parity import assert_onnx_matches


def _model(mode="ternary", amp="shared", seed=0, **kw) -> ASNNGoose:
    """Tiny float32 model with asymmetric TTQ scales (split encoding) and non-unit amplitudes."""
    torch.manual_seed(seed)
    m = ASNNGoose(preset("tiny", spike_mode=mode, amplitude_mode=amp, **kw)).eval()
    with torch.no_grad():
        for lin in m.ternary_layers().values():
            lin.wp.mul_(torch.empty_like(lin.wp).uniform_(0.6, 1.6))
        for mod in m.modules():
            if hasattr(mod, "graded_spikes_factor"):
                mod.graded_spikes_factor.uniform_(0.7, 1.3)
    return m.freeze_ternary()


def _tokens(B, T, seed=1):
    return torch.randint(0, 256, (B, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("variant", ["float", "int"])
@pytest.mark.parametrize("mode,amp", [("ternary", "shared"), ("binary", "shared"), ("none", "shared"),
                                      ("ternary", "channel")])
def test_onnx_parity_every_spike_mode(tmp_path, mode, amp, variant):
    m = _model(mode, amp)
    assert_onnx_matches(m, lower(m), tmp_path / "o", variant, _tokens(3, 24))


@pytest.mark.parametrize("variant", ["float", "int"])
@pytest.mark.parametrize("kw", [dict(neuron="ternary_lif"), dict(fixed_point=True),
                                dict(neuron="ternary_lif", fixed_point=True, frac_bits=9)],
                         ids=["ternary_lif", "subtract-fixed", "ternary_lif-fixed"])
def test_onnx_parity_every_neuron(tmp_path, kw, variant):
    """The ONNX step runs the trained neuron: lava-nc's TernaryLIF, and the integer neurons of a
    fixed-point-trained model (computed in float64 inside the graph; states hold integers)."""
    m = _model(**kw)
    with torch.no_grad():
        for lif in m.populations().values():
            lif.threshold.mul_(0.4)
            if kw.get("neuron") == "ternary_lif":
                lif.beta_u_raw.fill_(0.3)
    export_onnx(lower(m), tmp_path / "o", variant)
    tok = _tokens(2, 40)
    with torch.no_grad():
        ref, ref_st = m(tok)
        spikes = sum(int((s != 0).sum()) for s in m.run(tok, collect=True).spikes.values())
    got, st = OrtStep(tmp_path / "o").run(tok.numpy())
    assert spikes > 2000
    np.testing.assert_allclose(got, ref.numpy(), rtol=0, atol=1e-4)
    assert (got.argmax(-1) == ref.numpy().argmax(-1)).all()
    for k in ref_st:  # float32 host ops in another order may move an input mantissa by one step
        np.testing.assert_allclose(st[k], ref_st[k].numpy(), rtol=1e-3, atol=1e-4, err_msg=k)


@pytest.mark.parametrize("variant", ["float", "int"])
def test_state_threading_200_steps(tmp_path, variant):
    """ONNX after 200 single-token steps == PyTorch after the same 200 tokens."""
    m = _model("ternary")
    export_onnx(lower(m), tmp_path / "o", variant)
    tok = _tokens(2, 200, seed=5)
    with torch.no_grad():
        ref, ref_st = m(tok)
    step = OrtStep(tmp_path / "o")
    st = step.init_state(2)
    for t in range(200):
        logits, st = step.step(tok[:, t].numpy(), st)
    np.testing.assert_allclose(logits, ref[:, -1].numpy(), rtol=0, atol=1e-4)
    for k in ref_st:
        np.testing.assert_allclose(st[k], ref_st[k].numpy(), rtol=1e-4, atol=1e-4, err_msg=k)


def test_model_is_checked_opset_dynamic_batch_metadata(tmp_path):
    m = _model(tie_embeddings=True)
    g = lower(m, {"tokenizer": "tiny-bytelevel"})
    export_onnx(g, tmp_path / "o")
    model = onnx.load(str(tmp_path / "o" / "model.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert [o.version for o in model.opset_import if o.domain == ""] == [OPSET] and OPSET >= 18
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["goose_neuro.model_config"]) == m.cfg.to_dict()
    assert meta["goose_neuro.export_version"] == "2"
    assert json.loads(meta["goose_neuro.tokenizer"]) == "tiny-bytelevel"
    for vi in list(model.graph.input) + list(model.graph.output):
        assert vi.type.tensor_type.shape.dim[0].dim_param == "batch", vi.name
    # tied head reads the embedding initializer (stored once)
    assert sum(1 for i in model.graph.initializer if list(i.dims) == [256, 32]) == 1
    step = OrtStep(tmp_path / "o")
    for B in (1, 5):
        logits, st = step.step(np.zeros(B, np.int64), step.init_state(B))
        assert logits.shape == (B, 256) and all(v.shape[0] == B for v in st.values())


def test_sidecar_describes_states(tmp_path):
    m = _model()
    export_onnx(lower(m), tmp_path / "o")
    side = json.loads((tmp_path / "o" / "model.json").read_text())
    assert [s["name"] for s in side["states"]] == list(m.state_spec())
    for s in side["states"]:
        assert s["shape"] == ["batch", m.state_spec()[s["name"]]] and s["dtype"] == "float32"
        assert s["output"] == s["name"] + ".next"
        assert s["init"] == (WKV_P_INIT if s["name"].endswith("wkv_p") else 0.0)
    assert side["inputs"]["tokens"] == {"shape": ["batch"], "dtype": "int64", "range": [0, 256]}
    assert side["model_config"] == m.cfg.to_dict()


def test_int_variant_uses_integer_matmul_on_ternary_weights():
    m = _model()
    model = build_model(lower(m), "int")
    ops = [n.op_type for n in model.graph.node]
    # per layer: one fused (k,v,r), output, fused (key, receptance), value -> 4 integer products
    assert ops.count("MatMulInteger") == 4 * m.cfg.n_layers
    assert ops.count("MatMul") == 1  # only the float head
    ints = [onnx.numpy_helper.to_array(i) for i in model.graph.initializer if i.data_type == onnx.TensorProto.INT8]
    assert ints and all(set(np.unique(a)) <= {-1, 0, 1} for a in ints)


def test_int_and_float_variants_agree_with_interpreter(tmp_path):
    m = _model("binary", seed=2)
    g = lower(m)
    tok = _tokens(2, 16, seed=2).numpy()
    ref, _, _ = interp.run(g, tok)
    for v in ("float", "int"):
        export_onnx(g, tmp_path / v, v)
        got, _ = OrtStep(tmp_path / v).run(tok)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4)


def test_sidecar_mismatch_raises(tmp_path):
    export_onnx(lower(_model()), tmp_path / "o")
    p = tmp_path / "o" / "model.json"
    good = p.read_text()
    side = json.loads(good)
    side["states"][0]["shape"] = ["batch", 7]
    p.write_text(json.dumps(side))
    with pytest.raises(ExportError, match="does not match model.json.*L0.tm_shift"):
        OrtStep(tmp_path / "o")
    side["states"] = side["states"][1:]
    p.write_text(json.dumps(side))
    with pytest.raises(ExportError, match="names differ"):
        OrtStep(tmp_path / "o")
    p.write_text("{not json")
    with pytest.raises(ExportError, match="not valid JSON"):
        OrtStep(tmp_path / "o")
    p.write_text(good)
    (tmp_path / "o" / "model.onnx").write_bytes(b"garbage")
    with pytest.raises(ExportError, match="cannot load"):
        OrtStep(tmp_path / "o")


def test_generate_greedy_matches_torch(tmp_path):
    m = _model(seed=4)
    export_onnx(lower(m), tmp_path / "o")
    prompt = [5, 80, 17, 200]
    out = generate(OrtStep(tmp_path / "o"), prompt, 12)
    ids = []
    with torch.no_grad():
        logits, st = m(torch.tensor([prompt]))
        for _ in range(12):
            ids.append(int(logits[0, -1].argmax()))
            logits, st = m(torch.tensor([[ids[-1]]]), st)
    assert out == ids


@pytest.mark.parametrize("variant", ["float", "int"])
def test_prefill_scan_equals_steps_and_chains(tmp_path, variant):
    m = _model("ternary", seed=6)
    export_onnx(lower(m), tmp_path / "o", variant, prefill=True)
    assert json.loads((tmp_path / "o" / "model.json").read_text())["prefill"]["model_file"] == "prefill.onnx"
    onnx.checker.check_model(onnx.load(str(tmp_path / "o" / "prefill.onnx")), full_check=True)
    step = OrtStep(tmp_path / "o")
    tok = _tokens(2, 20, seed=6).numpy()
    full, st_full = step.run(tok)
    pre, st = step.prefill(tok[:, :12])  # prompt in one call, then continue step by step
    rest, st = step.run(tok[:, 12:], st)
    np.testing.assert_allclose(np.concatenate([pre, rest], 1), full, rtol=0, atol=1e-5)
    for k in st:
        np.testing.assert_allclose(st[k], st_full[k], rtol=0, atol=1e-5)
    with torch.no_grad():
        ref, _ = m(torch.from_numpy(tok))
    np.testing.assert_allclose(full, ref.numpy(), rtol=0, atol=1e-4)


def test_prefill_absent_is_an_error(tmp_path):
    export_onnx(lower(_model()), tmp_path / "o")
    with pytest.raises(ExportError, match="no prefill model"):
        OrtStep(tmp_path / "o").prefill(np.zeros((1, 3), np.int64))
