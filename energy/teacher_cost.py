"""Cost per token of a Hugging Face GPT-2-style teacher, from its config alone.

Definition: the cost of ONE new token during cached decoding when the token attends
to ``L`` positions (itself included), batch 1. Weights' values do not matter, so any
GPT-2-class config (the benchmark teacher, GPT-2 124M...) can be costed at any L.

Per layer (d = n_embd, h = n_head, f = n_inner or 4d)::

    ln_1, ln_2          2 x LN(d)
    c_attn              3 d^2 MAC + 3d bias add
    q k^T, a v          2 L d MAC                         (grows with context)
    scale 1/sqrt(d/h)   h L mul
    softmax over L      3 h L add (max, subtract, sum) + h L exp + h L div
    c_proj              d^2 MAC + d add; residual d add
    c_fc                d f MAC + f add; activation (gelu_new: 6 mul, 2 add, 1 tanh per element)
    mlp c_proj          f d MAC + d add; residual d add
    KV cache            write 2d, read 2 L d values       (mem_state_bits)
    weights             every weight read once per token  (mem_dense_bits)
    activations         each intermediate vector written once and read once (mem_act_bits)

plus the embedding (token and position rows read: 2d values, 1 add per channel),
the final LN and the head (d V MAC). LN(n) = 3n add + n MAC (sum of squares) +
2n mul (normalise, gain) + n add (bias) + 1 rsqrt; written as add 4n, mac n,
mul 2n, nonlin 1. The same LN cost is used for the student.

:func:`hook_count` checks the matrix products, softmax, LayerNorm, tanh and
embedding counts against an operator-level count (a ``TorchDispatchMode`` that sees
every aten op) on a real model run token by token with its KV cache.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from goose_neuro.errors import TeacherError
from goose_neuro.export.opcost import layernorm_cost  # the student's LayerNorm formula, one table

#: per-element cost of the MLP activation: (mul, add, nonlin)
_ACT_COST = {
    "gelu_new": (6, 2, 1), "gelu_pytorch_tanh": (6, 2, 1), "gelu_fast": (6, 2, 1),
    "gelu": (3, 1, 1), "relu": (0, 1, 0), "silu": (1, 0, 1), "swish": (1, 0, 1),
}


@dataclass(frozen=True)
class GPT2Shape:
    """The sizes that set a GPT-2-style model's cost."""

    n_layer: int
    d: int
    n_head: int
    f: int
    vocab: int
    n_positions: int
    activation: str = "gelu_new"
    name: str = "gpt2"

    @classmethod
    def from_config(cls, cfg: Any, name: str = "") -> "GPT2Shape":
        """From a transformers config object or a config.json dict (GPT-2 field names,
        or the generic ``hidden_size``/``num_hidden_layers``/... names)."""
        g = (lambda k, default=None: cfg.get(k, default)) if isinstance(cfg, dict) else \
            (lambda k, default=None: getattr(cfg, k, default))
        d = g("n_embd") or g("hidden_size")
        L = g("n_layer") or g("num_hidden_layers")
        h = g("n_head") or g("num_attention_heads")
        V = g("vocab_size")
        if not all(isinstance(x, int) and x > 0 for x in (d, L, h, V)):
            raise TeacherError(f"teacher config {name or ''}: needs n_embd, n_layer, n_head, vocab_size (GPT-2 style)")
        f = g("n_inner") or g("intermediate_size") or 4 * d
        act = g("activation_function") or g("hidden_act") or "gelu_new"
        npos = g("n_positions") or g("max_position_embeddings") or 0
        return cls(L, d, h, int(f), V, int(npos), str(act), name or str(g("model_type") or "gpt2"))

    def params(self) -> int:
        d, f = self.d, self.f
        per = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (d * f + f) + (f * d + d)
        return self.n_layer * per + self.vocab * d + self.n_positions * d + 2 * d


@dataclass
class TeacherCost:
    """Per-token counts (op class -> count; memory classes in bits) and finer ``detail``."""

    shape: GPT2Shape
    context: int
    counts: dict[str, float]
    detail: dict[str, float] = field(default_factory=dict)


def _acc(tot: dict[str, float], part: dict[str, float], times: float = 1.0) -> None:
    for k, v in part.items():
        tot[k] = tot.get(k, 0.0) + v * times


def teacher_cost(shape: GPT2Shape, context: int, weight_bits: int = 32, act_bits: int = 32) -> TeacherCost:
    """Counts per token at context ``context`` (see module docstring for every term)."""
    if context < 1:
        raise TeacherError(f"context must be >= 1, got {context}")
    d, h, f, V, Lc = shape.d, shape.n_head, shape.f, shape.vocab, context
    am, aa, an = _ACT_COST.get(shape.activation, _ACT_COST["gelu_new"])
    c: dict[str, float] = {}
    det: dict[str, float] = {}
    layer = {
        "mac": 3 * d * d + 2 * Lc * d + d * d + d * f + f * d,
        "add": 3 * d + 3 * h * Lc + d + d + f + aa * f + d + d,
        "mul": h * Lc + am * f,
        "nonlin": 2 * h * Lc + an * f,
    }
    for _ in range(2):
        _acc(layer, layernorm_cost(d))
    _acc(c, layer, shape.n_layer)
    _acc(c, layernorm_cost(d))  # ln_f
    c["mac"] += d * V  # head
    c["add"] += d  # token + position embedding
    det["mac_proj"] = shape.n_layer * (4 * d * d + 2 * d * f)
    det["mac_attn"] = shape.n_layer * 2 * Lc * d
    det["mac_head"] = d * V
    det["mac_ln"] = (2 * shape.n_layer + 1) * d
    det["softmax_elems"] = shape.n_layer * h * Lc
    det["ln_elems"] = (2 * shape.n_layer + 1) * d
    det["act_elems"] = shape.n_layer * f
    det["embedding_rows"] = 2
    w_layer = 4 * d + 4 * d * d + 4 * d + 2 * d * f + f + d
    c["mem_dense_bits"] = weight_bits * (shape.n_layer * w_layer + d * V + 2 * d + 2 * d)  # + wte/wpe rows, ln_f
    c["mem_state_bits"] = act_bits * shape.n_layer * (2 * d + 2 * Lc * d)
    acts_layer = d + 3 * d + 2 * h * Lc + d + d + d + d + f + f + d + d
    c["mem_act_bits"] = 2 * act_bits * (shape.n_layer * acts_layer + 2 * d + d)
    for k in ("ac", "neuron", "spike", "mem_syn_bits", "mem_neuron_bits"):
        c.setdefault(k, 0.0)
    return TeacherCost(shape, context, c, det)


# -- loading a teacher's shape ------------------------------------------------------------
GPT2_124M = dict(n_layer=12, n_embd=768, n_head=12, n_inner=None, vocab_size=50257,
                 n_positions=1024, activation_function="gelu_new", model_type="gpt2")


def teacher_shape(name_or_dir: str | os.PathLike) -> GPT2Shape:
    """Shape from a local HF model directory (its config.json) or the name ``gpt2-124m``
    (GPT-2 small's published sizes: 12 layers, 768 wide, 12 heads, 50,257 tokens)."""
    s = str(name_or_dir)
    if s.lower() in ("gpt2", "gpt2-124m", "gpt2-small"):
        return GPT2Shape.from_config(GPT2_124M, "gpt2-124m")
    p = Path(s)
    cfg_path = p / "config.json" if p.is_dir() else p
    if not cfg_path.is_file():
        raise TeacherError(f"teacher {s}: no config.json found (give a Hugging Face model directory or 'gpt2-124m')")
    try:
        raw = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TeacherError(f"teacher {cfg_path}: unreadable config ({e})") from None
    return GPT2Shape.from_config(raw, p.name if p.is_dir() else p.stem)


# -- operator-level validation ----------------------------------------------------------------
def hook_count(model, n_tokens: int) -> list[dict[str, float]]:
    """Run ``model`` (a HF GPT-2 LM, eager attention) token by token with its KV cache
    and count, per step, what its aten ops actually compute.

    Returns one dict per step (context = step + 1): ``mac`` (mm/addmm/bmm products),
    ``softmax_elems``, ``ln_elems`` (LayerNorm channels), ``act_elems`` (tanh or gelu
    elements) and ``embedding_rows``.
    """
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    aten = torch.ops.aten

    class Counter(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.c = {"mac": 0, "softmax_elems": 0, "ln_elems": 0, "act_elems": 0, "embedding_rows": 0}

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            p = func.overloadpacket
            if p is aten.addmm:
                a, b = args[1], args[2]
                self.c["mac"] += a.shape[0] * a.shape[1] * b.shape[1]
            elif p is aten.mm:
                self.c["mac"] += args[0].shape[0] * args[0].shape[1] * args[1].shape[1]
            elif p is aten.bmm:
                a, b = args[0], args[1]
                self.c["mac"] += a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]
            elif p in (aten._softmax, aten.softmax):
                self.c["softmax_elems"] += args[0].numel()
            elif p is aten.native_layer_norm:
                self.c["ln_elems"] += args[0].numel()
            elif p in (aten.tanh, aten.gelu):
                self.c["act_elems"] += args[0].numel()
            elif p is aten.embedding:
                self.c["embedding_rows"] += args[1].numel()
            return out

    steps = []
    past = None
    ids = torch.arange(n_tokens).remainder(model.config.vocab_size)[None]  # (1, T)
    with torch.no_grad():
        for t in range(n_tokens):
            with Counter() as cnt:
                out = model(input_ids=ids[:, t:t + 1], past_key_values=past, use_cache=True)
            past = out.past_key_values
            steps.append(dict(cnt.c))
    return steps
