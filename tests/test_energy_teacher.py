"""Teacher cost from the config, checked against an operator-level count of a real tiny GPT-2."""

from __future__ import annotations

import warnings

import pytest

from goose_neuro.energy.teacher_cost import GPT2Shape, hook_count, teacher_cost, teacher_shape
from goose_neuro.errors import TeacherError


def _tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(n_embd=32, n_layer=2, n_head=4, n_inner=48, vocab_size=64, n_positions=16,
                     bos_token_id=0, eos_token_id=0)
    cfg._attn_implementation = "eager"
    return GPT2LMHeadModel(cfg).eval()


def test_formula_equals_operator_count_at_every_context():
    model = _tiny_gpt2()
    shape = GPT2Shape.from_config(model.config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        steps = hook_count(model, 6)
    for t, got in enumerate(steps, start=1):
        d = teacher_cost(shape, t).detail
        assert got["mac"] == d["mac_proj"] + d["mac_attn"] + d["mac_head"], t
        assert got["softmax_elems"] == d["softmax_elems"] == 2 * 4 * t
        assert got["ln_elems"] == d["ln_elems"]
        assert got["act_elems"] == d["act_elems"]
        assert got["embedding_rows"] == d["embedding_rows"]


def test_hand_values_and_context_growth():
    s = GPT2Shape(n_layer=1, d=4, n_head=2, f=8, vocab=10, n_positions=8)
    c1, c2 = teacher_cost(s, 1).counts, teacher_cost(s, 3).counts
    # projections 3*16 + 16 + 32 + 32 = 128, attention 2*L*4, head 40, 3 LayerNorm sums of squares 12
    assert c1["mac"] == 128 + 8 + 40 + 12
    assert c2["mac"] - c1["mac"] == 2 * 2 * 4  # grows by 2 d per extra position per layer
    assert c2["nonlin"] - c1["nonlin"] == 2 * 2 * 2  # exp + division per head per position
    assert c2["mem_state_bits"] - c1["mem_state_bits"] == 32 * 2 * 2 * 4  # KV cache reads
    assert c1["ac"] == 0 and c1["neuron"] == 0


def test_shapes_from_config_dir_and_name(shared_dir):
    s = teacher_shape(shared_dir / "teachers" / "wp-gpt2-4L256")
    assert (s.n_layer, s.d, s.n_head, s.f, s.vocab, s.n_positions) == (4, 256, 4, 1024, 4096, 128)
    assert s.params() == 4240896  # matches teacher_card.json
    g = teacher_shape("gpt2-124m")
    assert g.params() == 124439808  # GPT-2 small incl. position embeddings
    with pytest.raises(TeacherError, match="config.json"):
        teacher_shape(shared_dir / "nope")
