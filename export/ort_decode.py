"""Token-by-token decoding in ONNX Runtime with nothing copied per step (IOBinding).

Two decoders, so that a student and its teacher are timed in the same runtime on equal terms:

- :class:`BoundStudentStep`: the student's exported step graph (``goose-export --target onnx``)
  with its state double-buffered (:class:`DoubleBufferedStep`, which runs any recurrent step
  graph this way): two bindings (state in A -> out B, and B -> A) alternate, so every step
  reads and writes preallocated buffers and no state is copied or rebound.
- :class:`GPT2Decoder`: a GPT-2 (transformers ``GPT2LMHeadModel``) exported by
  :func:`gpt2_decoder_model` as ONE decode-step graph with its KV cache. The cache is a
  fixed buffer per layer, (B, heads, max_len, head_dim), bound as both the ``past`` input
  and the ``present`` output of ONNX Runtime's ``GroupQueryAttention`` (com.microsoft),
  which then appends the new key/value in place and attends over exactly
  ``seqlens_k + 1`` positions. Per step only the new token's key/value is written.

Why not export the Hugging Face step directly: the usual step graph takes the past
cache as input, concatenates the new key/value onto it and returns the grown cache. Each
step then rewrites the whole cache (a Concat per layer, plus a Stack when layers are
packed into one tensor) and ONNX Runtime hands back freshly allocated outputs that the
host copies again before the next call: several full passes over the cache per token,
against the one pass attention needs. At GPT-2 124M, batch 8, context 1024 the cache is
604 MB, so the copies, not attention, dominated the old figure
(``benchmarks/peers.py --diagnose-teacher`` times both graphs side by side).

Needs onnx, onnxruntime and numpy; the export reads the weights of a PyTorch module.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from goose_neuro.errors import ExportError

GQA_OPSET = 1  # com.microsoft domain version
OPSET = 18


# -- recurrent step graphs ------------------------------------------------------------------
class DoubleBufferedStep:
    """Any ONNX step graph ``(tokens, states...) -> (logits, new states...)`` for a fixed batch,
    its state double-buffered with IOBinding: two bindings (state in A -> out B, B -> A)
    alternate, so every step reads and writes preallocated buffers; nothing is copied or rebound.

    ``states``: (input name, output name, initial array (B, ...)) per state.
    ``step(ids (B,)) -> logits`` returns a buffer that the next step overwrites (copy to keep)."""

    def __init__(self, sess, token_name: str, logits_name: str, states, token_shape=None) -> None:
        import onnxruntime as ort

        self.sess = sess
        batch = states[0][2].shape[0]
        self._ids = np.zeros(token_shape or (batch,), np.int64)
        out = {o.name: o for o in sess.get_outputs()}[logits_name]
        self._logits = np.zeros((batch, *out.shape[1:]), np.float32)
        self._init = {i: a for i, _, a in states}
        self._bufs = [{i: a.astype(np.float32).copy() for i, _, a in states} for _ in range(2)]
        ov = ort.OrtValue.ortvalue_from_numpy
        ids_v, logits_v = ov(self._ids), ov(self._logits)
        self._bindings = []
        for src, dst in ((0, 1), (1, 0)):
            io = sess.io_binding()
            io.bind_ortvalue_input(token_name, ids_v)
            io.bind_ortvalue_output(logits_name, logits_v)
            for i, o, _ in states:
                io.bind_ortvalue_input(i, ov(self._bufs[src][i]))
                io.bind_ortvalue_output(o, ov(self._bufs[dst][i]))
            self._bindings.append(io)
        self._cur = 0  # which buffer holds the current state

    def reset(self) -> None:
        for i, a in self._init.items():
            self._bufs[0][i][...] = a
        self._cur = 0

    def state(self) -> dict[str, np.ndarray]:
        return self._bufs[self._cur]

    def step(self, ids: np.ndarray) -> np.ndarray:
        self._ids.reshape(-1)[...] = np.asarray(ids).reshape(-1)
        self.sess.run_with_iobinding(self._bindings[self._cur])
        self._cur ^= 1
        return self._logits


class BoundStudentStep(DoubleBufferedStep):
    """The student's exported step graph (``goose-export --target onnx`` directory) as a
    :class:`DoubleBufferedStep` for ``batch`` sequences; states start at the sidecar's values."""

    def __init__(self, onnx_dir: str | os.PathLike, batch: int, threads: int | None = None) -> None:
        from goose_neuro.export.ort_runner import OrtStep

        base = OrtStep(onnx_dir, threads=threads)  # checks model.onnx against its sidecar
        self.vocab, self.batch, self.states = base.vocab, batch, base.states
        states = [(s["input"], s["output"], np.full((batch, s["shape"][1]), s["init"], np.float32))
                  for s in base.states]
        super().__init__(base.sess, "tokens", "logits", states)


# -- teacher ------------------------------------------------------------------------------
def _check_gpt2(cfg) -> None:
    want = {"model_type": "gpt2", "activation_function": "gelu_new", "add_cross_attention": False,
            "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
            "reorder_and_upcast_attn": False}
    for k, v in want.items():
        if getattr(cfg, k, v) != v:
            raise ExportError(f"GPT-2 decoder export: config {k}={getattr(cfg, k)!r} is not supported (needs {v!r})")


def gpt2_decoder_model(hf) -> "onnx.ModelProto":  # noqa: F821
    """ONE GPT-2 decode step with its KV cache, from a transformers ``GPT2LMHeadModel``.

    Inputs: ``input_ids`` (B, 1) int64, ``position_ids`` (B, 1) int64, ``seqlens_k`` (B,)
    int32 (= tokens already in the cache), ``total_sequence_length`` () int32 (= max over
    the batch of seqlens_k + 1) and ``past_key.<i>``/``past_value.<i>`` (B, H, max_len, D)
    float32. Outputs: ``logits`` (B, V) and ``present_key.<i>``/``present_value.<i>``
    (same shape as the past; bind them to the same buffers to update the cache in place).
    Same math as the Hugging Face module: pre-LN blocks, Conv1D = x @ W + b, tanh GELU,
    causal softmax(q k^T / sqrt(D)) v, LM head tied to the token embedding."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    cfg = hf.config
    _check_gpt2(cfg)
    C, H, L, V = cfg.n_embd, cfg.n_head, cfg.n_layer, cfg.vocab_size
    D = C // H
    eps = float(cfg.layer_norm_epsilon)
    tr = hf.transformer
    if hf.lm_head.weight.data_ptr() != tr.wte.weight.data_ptr():
        raise ExportError("GPT-2 decoder export: the LM head must be tied to the token embedding")
    inits, nodes = [], []

    def const(name, arr):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def w(t):
        return t.detach().to("cpu").float().numpy()

    def op(kind, ins, name, n_out=1, domain="", **attrs):
        outs = [f"{name}:{i}" for i in range(n_out)]
        nodes.append(helper.make_node(kind, ins, outs, name=name, domain=domain, **attrs))
        return outs[0] if n_out == 1 else outs

    wte = const("wte", w(tr.wte.weight))  # (V, C), shared by the embedding and the head
    x = op("Add", [op("Gather", [wte, "input_ids"], "emb", axis=0),
                   op("Gather", [const("wpe", w(tr.wpe.weight)), "position_ids"], "pos", axis=0)], "x0")  # (B,1,C)
    outputs_kv = []
    for i, blk in enumerate(tr.h):
        p = f"h{i}"
        h = op("LayerNormalization", [x, const(p + ".ln_1.w", w(blk.ln_1.weight)), const(p + ".ln_1.b", w(blk.ln_1.bias))],
               p + ".ln_1", axis=-1, epsilon=eps)
        qkv = op("Add", [op("MatMul", [h, const(p + ".c_attn.W", w(blk.attn.c_attn.weight))], p + ".qkv_mm"),
                         const(p + ".c_attn.b", w(blk.attn.c_attn.bias))], p + ".qkv")  # (B, 1, 3C)
        q, k, v = op("Split", [qkv, const(p + ".split", np.array([C, C, C], np.int64))], p + ".split", 3, axis=-1)
        att, pk, pv = op("GroupQueryAttention", [q, k, v, f"past_key.{i}", f"past_value.{i}", "seqlens_k",
                                                  "total_sequence_length"], p + ".attn", 3, domain="com.microsoft",
                         num_heads=H, kv_num_heads=H, scale=1.0 / math.sqrt(D))
        outputs_kv += [(pk, f"present_key.{i}"), (pv, f"present_value.{i}")]
        proj = op("Add", [op("MatMul", [att, const(p + ".c_proj.W", w(blk.attn.c_proj.weight))], p + ".proj_mm"),
                          const(p + ".c_proj.b", w(blk.attn.c_proj.bias))], p + ".proj")
        x = op("Add", [x, proj], p + ".res1")
        h = op("LayerNormalization", [x, const(p + ".ln_2.w", w(blk.ln_2.weight)), const(p + ".ln_2.b", w(blk.ln_2.bias))],
               p + ".ln_2", axis=-1, epsilon=eps)
        f = op("FastGelu", [op("MatMul", [h, const(p + ".c_fc.W", w(blk.mlp.c_fc.weight))], p + ".fc_mm"),
                            const(p + ".c_fc.b", w(blk.mlp.c_fc.bias))], p + ".gelu", domain="com.microsoft")
        f = op("Add", [op("MatMul", [f, const(p + ".mlp_proj.W", w(blk.mlp.c_proj.weight))], p + ".mlp_mm"),
                       const(p + ".mlp_proj.b", w(blk.mlp.c_proj.bias))], p + ".mlp")
        x = op("Add", [x, f], p + ".res2")
    x = op("LayerNormalization", [x, const("ln_f.w", w(tr.ln_f.weight)), const("ln_f.b", w(tr.ln_f.bias))], "ln_f",
           axis=-1, epsilon=eps)
    x2 = op("Reshape", [x, const("flat", np.array([-1, C], np.int64))], "flat")  # (B, C)
    nodes.append(helper.make_node("Gemm", [x2, wte], ["logits"], name="head", transB=1))
    for src, dst in outputs_kv:
        nodes.append(helper.make_node("Identity", [src], [dst], name=dst))
    vi = helper.make_tensor_value_info
    kv_shape = ["batch", H, "max_len", D]
    ins = [vi("input_ids", TensorProto.INT64, ["batch", 1]), vi("position_ids", TensorProto.INT64, ["batch", 1]),
           vi("seqlens_k", TensorProto.INT32, ["batch"]), vi("total_sequence_length", TensorProto.INT32, [])]
    outs = [vi("logits", TensorProto.FLOAT, ["batch", V])]
    for i in range(L):
        ins += [vi(f"past_key.{i}", TensorProto.FLOAT, kv_shape), vi(f"past_value.{i}", TensorProto.FLOAT, kv_shape)]
        outs += [vi(f"present_key.{i}", TensorProto.FLOAT, kv_shape), vi(f"present_value.{i}", TensorProto.FLOAT, kv_shape)]
    graph = helper.make_graph(nodes, "gpt2_decode_step", ins, outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET),
                                                    helper.make_opsetid("com.microsoft", GQA_OPSET)],
                              producer_name="goose-neuro", ir_version=9)
    onnx.helper.set_model_props(model, {"goose_neuro.kind": "gpt2-decode-step",
                                        "goose_neuro.gpt2": f"{L}x{C}, {H} heads, vocab {V}, {cfg.n_positions} positions"})
    return model


def export_gpt2_decoder(hf, path: str | os.PathLike) -> Path:
    """Write :func:`gpt2_decoder_model` to ``path`` (one file; GPT-2 124M is about 500 MB)."""
    model = gpt2_decoder_model(hf)
    data = model.SerializeToString()
    if len(data) >= 2**31 - 1:
        raise ExportError(f"GPT-2 decoder is {len(data) / 2**30:.1f} GiB, over protobuf's 2 GiB limit")
    p = Path(path)
    p.write_bytes(data)
    return p


class GPT2Decoder:
    """Runs a :func:`gpt2_decoder_model` graph for a fixed batch with a KV cache of ``max_len``
    positions updated in place. ``step(ids (B,)) -> logits (B, V)`` (a reused buffer);
    ``position`` = tokens in the cache; ``set_position(P)`` makes the next step attend to
    P cached positions plus itself (the cache content stays as it is: for timing, its values
    do not matter)."""

    def __init__(self, model, batch: int, max_len: int, threads: int | None = None) -> None:
        import onnxruntime as ort

        proto = model if not isinstance(model, (str, os.PathLike)) else None
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        if threads:
            so.intra_op_num_threads = threads
        src = proto.SerializeToString() if proto is not None else str(model)
        self.sess = ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
        kv = [i for i in self.sess.get_inputs() if i.name.startswith("past_key.")]
        if not kv:
            raise ExportError("not a GPT-2 decode-step graph (no past_key inputs)")
        H, D = kv[0].shape[1], kv[0].shape[3]
        self.n_layer, self.batch, self.max_len = len(kv), batch, max_len
        self.vocab = self.sess.get_outputs()[0].shape[1]
        self._ids = np.zeros((batch, 1), np.int64)
        self._pos = np.zeros((batch, 1), np.int64)
        self._seqlens = np.zeros(batch, np.int32)
        self._total = np.zeros((), np.int32)
        self._logits = np.zeros((batch, self.vocab), np.float32)
        self.cache = [np.zeros((batch, H, max_len, D), np.float32) for _ in range(2 * self.n_layer)]
        ov = ort.OrtValue.ortvalue_from_numpy
        io = self.sess.io_binding()
        for name, arr in (("input_ids", self._ids), ("position_ids", self._pos), ("seqlens_k", self._seqlens),
                          ("total_sequence_length", self._total)):
            io.bind_ortvalue_input(name, ov(arr))
        io.bind_ortvalue_output("logits", ov(self._logits))
        for i in range(self.n_layer):
            for j, kind in enumerate(("key", "value")):
                buf = ov(self.cache[2 * i + j])  # one buffer: past in, present out (updated in place)
                io.bind_ortvalue_input(f"past_{kind}.{i}", buf)
                io.bind_ortvalue_output(f"present_{kind}.{i}", buf)
        self._io = io
        self.position = 0

    def set_position(self, p: int) -> None:
        if not 0 <= p < self.max_len:
            raise ExportError(f"position {p} outside the cache of {self.max_len}")
        self.position = p

    def step(self, ids: np.ndarray) -> np.ndarray:
        if self.position >= self.max_len:
            raise ExportError(f"KV cache full ({self.max_len} positions)")
        self._ids[:, 0] = ids
        self._pos[...] = self.position
        self._seqlens[...] = self.position  # tokens already cached
        self._total[...] = self.position + 1
        self.sess.run_with_iobinding(self._io)
        self.position += 1
        return self._logits
