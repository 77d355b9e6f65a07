"""ONNX Runtime decoders with IOBinding: the student's step graph double-buffered and the GPT-2
teacher's decode step with its KV cache updated in place, both equal to their references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from goose_neuro.config import preset
from goose_neuro.errors import ExportError
from goose_neuro.export.lower import lower
from goose_neuro.export.onnx_export import export_onnx
from goose_neuro.export.ort_decode import BoundStudentStep, GPT2Decoder, export_gpt2_decoder, gpt2_decoder_model
from goose_neuro.export.ort_runner import OrtStep
from goose_neuro.model import ASNNGoose


def _gpt2(**kw):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(**{**dict(n_layer=2, n_embd=32, n_head=4, n_positions=64, vocab_size=90, bos_token_id=89,
                               eos_token_id=89), **kw})
    return GPT2LMHeadModel(cfg).eval()


@pytest.mark.parametrize("variant", ["int", "float"])
def test_bound_student_step_equals_plain_session(tmp_path, variant):
    torch.manual_seed(0)
    m = ASNNGoose(preset("tiny")).eval().freeze_ternary()
    d = export_onnx(lower(m), tmp_path / "o", variant)
    ref, bound = OrtStep(d), BoundStudentStep(d, 3)
    ids = np.random.default_rng(0).integers(0, m.cfg.vocab_size, (3, 9))
    st = ref.init_state(3)
    for t in range(9):
        want, st = ref.step(ids[:, t], st)
        np.testing.assert_array_equal(bound.step(ids[:, t]), want)
    for k, v in st.items():
        np.testing.assert_array_equal(bound.state()[k], v)
    bound.reset()
    np.testing.assert_array_equal(bound.step(ids[:, 0]), ref.step(ids[:, 0], ref.init_state(3))[0])


def test_gpt2_decoder_equals_hugging_face_step_by_step(tmp_path):
    hf = _gpt2()
    ids = torch.randint(0, 90, (3, 20))
    with torch.no_grad():
        want = hf(ids).logits.numpy()  # (B, T, V), full causal attention
    dec = GPT2Decoder(str(export_gpt2_decoder(hf, tmp_path / "gpt2.onnx")), batch=3, max_len=24)
    got = np.stack([dec.step(ids[:, t].numpy()).copy() for t in range(20)], 1)
    assert np.abs(got - want).max() < 1e-4
    assert dec.position == 20
    # the cache was written in place: its first 20 positions hold every layer's keys
    assert np.abs(dec.cache[0][:, :, :20]).sum() > 0 and not dec.cache[0][:, :, 20:].any()


def test_gpt2_decoder_rewinding_attends_to_fewer_positions():
    """set_position(P) makes the next step see P cached positions: rewinding to 5 and feeding
    token 5 again gives the logits of position 5."""
    hf = _gpt2()
    ids = torch.randint(0, 90, (2, 8))
    with torch.no_grad():
        want = hf(ids).logits.numpy()
    dec = GPT2Decoder(gpt2_decoder_model(hf), batch=2, max_len=8)
    for t in range(8):
        dec.step(ids[:, t].numpy())
    dec.set_position(5)
    np.testing.assert_allclose(dec.step(ids[:, 5].numpy()), want[:, 5], atol=1e-4)
    with pytest.raises(ExportError, match="outside"):
        dec.set_position(8)
    dec.set_position(7)
    dec.step(ids[:, 7].numpy())
    with pytest.raises(ExportError, match="full"):
        dec.step(ids[:, 0].numpy())


def test_gpt2_decoder_refuses_other_architectures():
    with pytest.raises(ExportError, match="activation_function"):
        gpt2_decoder_model(_gpt2(activation_function="relu"))
