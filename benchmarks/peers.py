"""Decode speed against peers, each pair in the same runtime.

Per scale, the student next to its teacher and next to the recurrent model a user would
otherwise pick, all with random weights (cost does not depend on weight values):

| scale      | student            | teacher (GPT-2, KV cache)                      | RWKV (HF RwkvForCausalLM)        |
| `small`    | `small` preset     | 4 layers x 256, 4 heads, vocab 4096            | the student's width/depth/vocab  |
| `gpt2-50m` | `gpt2-50m` preset  | GPT-2 124M (GPT2Config() defaults)             | the student's width/depth/vocab  |

The teacher has 1024 positions at both scales (the benchmark teacher's own 128 are too few
for contexts 512 and 1024). Engines:

- ``ort``: ONNX Runtime, every decoder bound with IOBinding so that nothing is copied per
  step (``goose_neuro.export.ort_decode``). Student: its shipped ``goose-export`` step graph
  (integer variant), state double-buffered. Teacher: one decode-step graph with the KV cache
  as a fixed buffer per layer updated in place by ``GroupQueryAttention`` (attends to exactly
  the cached positions). RWKV: its Hugging Face step exported with ``torch.onnx`` (dynamo),
  state double-buffered, when that export works (otherwise the row says why).
- ``eager``: PyTorch eager. Student: ``goose_neuro.fast_step.FastStep`` (its large projections
  read only the weight rows of inputs that spiked when few did, so its time follows the spike
  activity; the table notes the random student's spike densities). Teacher: the Hugging
  Face module with its own cache (a DynamicCache of ``ctx - 1`` random positions, cut back
  after each timed step so every step attends to ``ctx`` positions). RWKV: the Hugging Face
  module with its state (for batch > 1 its one-token path is given the missing time axis,
  see ``_rwkv``).
- ``eager-seq``: the student's sequence mode called with one token (the step before
  ``FastStep``), for the before/after figure. ``compiled`` (``--compile``): ``FastStep``
  under ``torch.compile``.

Timing: for each (scale, batch, context) every engine runs in every round, one after the
other (interleaved), a fixed number of steps sized to ``--budget`` seconds; the figure is
the median over ``--rounds`` rounds of the time per step. One step = one token for each
of the B sequences, so ms/step is the per-token latency and B / step the throughput.
Recurrent models cost the same at every context (fixed-size state); they are timed at
every context anyway. Threads: ``--threads`` for both PyTorch and ONNX Runtime.

    .venv/bin/python benchmarks/peers.py                      # full: both scales, ctx 128/512/1024, B 1/8
    .venv/bin/python benchmarks/peers.py --quick --scales small --contexts 128 --batches 1   # smoke
    .venv/bin/python benchmarks/peers.py --diagnose-teacher   # why the old teacher ONNX figure was slow

Writes OUT/peers.json, OUT/peers.md (the table) and OUT/peers.png (ms/step against
context), default OUT = out/peers. Goal checked in the summary: the student at least 3x
faster per token than its teacher at context 1024 in the same runtime, at both scales.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

SCALES = {
    "small": {"student": "small", "teacher": dict(n_layer=4, n_embd=256, n_head=4, vocab_size=4096),
              "teacher_name": "GPT-2 4x256 (benchmark teacher shape)"},
    "gpt2-50m": {"student": "gpt2-50m", "teacher": dict(n_layer=12, n_embd=768, n_head=12, vocab_size=50257),
                 "teacher_name": "GPT-2 124M"},
}
GOAL = 3.0  # teacher ms / student ms at the largest context, same runtime


def log(msg: str) -> None:
    sys.stderr.write(f"[peers {time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.1f}] {msg}\n")
    sys.stderr.flush()


def quiet_hf() -> None:
    from transformers.utils import logging as hf_logging

    warnings.filterwarnings("ignore")
    hf_logging.set_verbosity_error()


# -- models --------------------------------------------------------------------------------
def gpt2(n_layer: int, n_embd: int, n_head: int, vocab_size: int, n_positions: int = 1024):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=n_layer, n_embd=n_embd, n_head=n_head, n_positions=n_positions, vocab_size=vocab_size,
                     bos_token_id=vocab_size - 1, eos_token_id=vocab_size - 1)
    return GPT2LMHeadModel(cfg).eval()


def _rwkv(student_cfg):
    """HF RwkvForCausalLM at the student's width, depth, vocabulary and FFN width.

    transformers' one-token path mixes the input (B, 1, C) with the shift state (B, C); for
    B > 1 that broadcasts to (B, B, C): wrong values and B times the work. This model's
    mixers take the general path (shift by padding, first position from the state) whenever
    B > 1, and HF's own code otherwise; :func:`check_rwkv` compares with HF's sequence mode."""
    from transformers import RwkvConfig, RwkvForCausalLM
    from transformers.models.rwkv import modeling_rwkv as M

    class Attention(M.RwkvSelfAttention):
        def extract_key_value(self, hidden, state=None):
            if hidden.size(0) == 1 or state is None:
                return super().extract_key_value(hidden, state)
            shifted = self.time_shift(hidden)  # (B, T, C), zero before the first token
            shifted[:, 0] = state[1][:, :, self.layer_id]
            state[1][:, :, self.layer_id] = hidden[:, -1]

            def mix(mu):
                return hidden * mu + shifted * (1 - mu)

            r = torch.sigmoid(self.receptance(mix(self.time_mix_receptance)))
            return r, self.key(mix(self.time_mix_key)), self.value(mix(self.time_mix_value)), state

    class FeedForward(M.RwkvFeedForward):
        def forward(self, hidden, state=None):
            if hidden.size(0) == 1 or state is None:
                return super().forward(hidden, state)
            shifted = self.time_shift(hidden)
            shifted[:, 0] = state[0][:, :, self.layer_id]
            state[0][:, :, self.layer_id] = hidden[:, -1]
            k = torch.square(torch.relu(self.key(hidden * self.time_mix_key + shifted * (1 - self.time_mix_key))))
            r = torch.sigmoid(self.receptance(hidden * self.time_mix_receptance
                                              + shifted * (1 - self.time_mix_receptance)))
            return r * self.value(k), state

    torch.manual_seed(0)
    cfg = RwkvConfig(vocab_size=student_cfg.vocab_size, hidden_size=student_cfg.d_model,
                     num_hidden_layers=student_cfg.n_layers, attention_hidden_size=student_cfg.d_model,
                     intermediate_size=student_cfg.d_ffn, context_length=1024,
                     tie_word_embeddings=student_cfg.tie_embeddings)
    model = RwkvForCausalLM(cfg).eval()
    for blk in model.rwkv.blocks:
        blk.attention.__class__ = Attention
        blk.feed_forward.__class__ = FeedForward
    with torch.no_grad():  # the first eval call rescales weights in place; do it before any export
        model(torch.zeros(1, 1, dtype=torch.long))
    return model


def rwkv_initial_state(model, batch: int) -> list[torch.Tensor]:
    """HF RWKV's initial state: five (B, C, L) tensors, the last (running max) at -1e30."""
    c = model.config
    st = [torch.zeros(batch, c.hidden_size, c.num_hidden_layers) for _ in range(5)]
    st[4] -= 1e30
    return st


class RwkvStep(torch.nn.Module):
    """One token of an HF RWKV with explicit state in and out, for the ONNX export."""

    def __init__(self, model) -> None:
        super().__init__()
        self.m = model

    def forward(self, ids, s0, s1, s2, s3, s4):
        out = self.m(ids[:, None], state=[s0.clone(), s1.clone(), s2.clone(), s3.clone(), s4.clone()], use_cache=True)
        return (out.logits[:, -1], *out.state)


def export_rwkv(model, path: str) -> None:
    from torch.export import Dim

    b = Dim("batch", min=1, max=64)
    st = rwkv_initial_state(model, 2)
    names = [f"s{i}" for i in range(5)]
    torch.onnx.export(RwkvStep(model), (torch.zeros(2, dtype=torch.long), *st), path, dynamo=True, opset_version=18,
                      external_data=False, verbose=False, input_names=["ids", *names],
                      output_names=["logits", *[f"o{i}" for i in range(5)]],
                      dynamic_shapes={"ids": {0: b}, **{n: {0: b} for n in names}})


# -- parity checks (tiny sizes, at start-up) ---------------------------------------------------
def check_teacher_decoder() -> float:
    """Max |logit diff| of the ONNX KV-cache decoder against the HF GPT-2, step by step."""
    from goose_neuro.export.ort_decode import GPT2Decoder, gpt2_decoder_model

    hf = gpt2(2, 64, 4, 100, 64)
    ids = torch.randint(0, 100, (3, 12))
    with torch.no_grad():
        ref = hf(ids).logits.numpy()
    dec = GPT2Decoder(gpt2_decoder_model(hf), 3, 16)
    got = np.stack([dec.step(ids[:, t].numpy()).copy() for t in range(12)], 1)
    return float(np.abs(got - ref).max())


def check_rwkv(tmp: str) -> tuple[float, float | None]:
    """(max |diff| of the batched one-token path vs HF's sequence mode, same for its ONNX export
    or None when the export fails)."""
    from goose_neuro.config import ModelConfig

    m = _rwkv(ModelConfig(vocab_size=100, d_model=32, n_layers=2, ffn_mult=2.0))
    ids = torch.randint(0, 100, (3, 7))
    with torch.no_grad():
        ref = m(ids).logits
        st, outs = rwkv_initial_state(m, 3), []
        for t in range(7):
            o = m(ids[:, t:t + 1], state=st, use_cache=True)
            outs.append(o.logits[:, -1])
            st = o.state
    d_eager = float((torch.stack(outs, 1) - ref).abs().max())
    path = os.path.join(tmp, "rwkv-check.onnx")
    try:
        export_rwkv(m, path)
    except Exception:  # reported by the benchmark itself
        return d_eager, None
    step = _rwkv_ort(path, 3, None)
    got = np.stack([step.step(ids[:, t].numpy()).copy() for t in range(7)], 1)
    return d_eager, float(np.abs(got - ref.numpy()).max())


def _rwkv_ort(path: str, batch: int, threads: int | None):
    import onnxruntime as ort

    from goose_neuro.export.ort_decode import DoubleBufferedStep

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    C, L = sess.get_inputs()[1].shape[1:]
    init = [np.zeros((batch, C, L), np.float32) for _ in range(5)]
    init[4] -= 1e30
    return DoubleBufferedStep(sess, "ids", "logits", [(f"s{i}", f"o{i}", init[i]) for i in range(5)])


# -- engines -------------------------------------------------------------------------------------
@dataclass
class Engine:
    """A way to run one decode step. ``make(batch)`` -> (step callable, set_context callable or None)."""

    model: str  # student | teacher | rwkv
    runtime: str  # ort | eager | eager-seq | compiled
    label: str
    make: Callable | None = None
    error: str | None = None  # why it cannot run
    params: int = 0
    note: str = ""


def student_engines(scale: str, args, tmp: str) -> list[Engine]:
    from goose_neuro.config import preset
    from goose_neuro.export.lower import lower
    from goose_neuro.export.onnx_export import export_onnx
    from goose_neuro.export.ort_decode import BoundStudentStep
    from goose_neuro.fast_step import FastStep
    from goose_neuro.model import ASNNGoose

    torch.manual_seed(0)
    m = ASNNGoose(preset(SCALES[scale]["student"])).eval().freeze_ternary()
    n = m.num_params()
    onnx_dir = export_onnx(lower(m), os.path.join(tmp, f"student-{scale}"), "int")
    fast = FastStep(m)
    compiled = FastStep(m, compile=True) if args.compile else None
    V = m.cfg.vocab_size

    def warm_tokens(B):
        return torch.randint(0, V, (B,), generator=torch.Generator().manual_seed(1))

    def ort_make(B):
        s = BoundStudentStep(onnx_dir, B, args.threads)
        ids = warm_tokens(B).numpy()
        for _ in range(16):
            s.step(ids)
        return (lambda: s.step(ids)), None

    def fast_make(step):
        def make(B):
            st = {"s": step.init_state(B)}
            ids = warm_tokens(B)

            def run():
                _, st["s"] = step(ids, st["s"])

            for _ in range(16):
                run()
            return run, None
        return make

    def seq_make(B):
        st = {"s": m.init_state(B)}
        ids = warm_tokens(B)[:, None]

        def run():
            with torch.no_grad():
                _, st["s"] = m(ids, st["s"])

        for _ in range(16):
            run()
        return run, None

    with torch.no_grad():  # spike activity of this (random) student: FastStep's sparse products follow it
        spikes = m.run(torch.randint(0, V, (1, 64), generator=torch.Generator().manual_seed(2)), collect=True).spikes
    dens = sorted(float((s != 0).float().mean()) for s in spikes.values())
    note = (f"spike density per population (random weights, 64 random tokens): min {dens[0]:.2f}, "
            f"median {dens[len(dens) // 2]:.2f}, max {dens[-1]:.2f}") if dens else ""
    out = [Engine("student", "ort", f"student {scale} (int ONNX)", ort_make, params=n, note=note),
           Engine("student", "eager", f"student {scale} (FastStep)", fast_make(fast), params=n),
           Engine("student", "eager-seq", f"student {scale} (sequence mode, T=1)", seq_make, params=n)]
    if compiled is not None:
        out.append(Engine("student", "compiled", f"student {scale} (FastStep, torch.compile)", fast_make(compiled), params=n))
    return out


def teacher_engines(scale: str, args, tmp: str) -> list[Engine]:
    from transformers import DynamicCache

    from goose_neuro.export.ort_decode import GPT2Decoder, export_gpt2_decoder

    spec = SCALES[scale]["teacher"]
    hf = gpt2(**spec)
    n = sum(p.numel() for p in hf.parameters())
    path = export_gpt2_decoder(hf, os.path.join(tmp, f"teacher-{scale}.onnx"))
    L, H, D, V = hf.config.n_layer, hf.config.n_head, hf.config.n_embd // hf.config.n_head, hf.config.vocab_size
    rng = np.random.default_rng(0)

    def ort_make(B):
        dec = GPT2Decoder(str(path), B, max(args.contexts), args.threads)
        for c in dec.cache:
            c[...] = rng.standard_normal(c.shape, dtype=np.float32)
        ids = np.zeros(B, np.int64)
        ctx = {"P": 0}

        def run():
            dec.set_position(ctx["P"])  # attend to P cached positions + the new token
            dec.step(ids)

        def set_context(c):
            ctx["P"] = c - 1
        return run, set_context

    def eager_make(B):
        nxt = torch.zeros(B, 1, dtype=torch.long)
        box = {}

        def set_context(c):
            box.clear()
            g = torch.Generator().manual_seed(c)
            cache = DynamicCache()
            for i in range(L):
                cache.update(torch.randn(B, H, c - 1, D, generator=g), torch.randn(B, H, c - 1, D, generator=g), i)
            box["cache"] = cache

        def run():
            with torch.no_grad():
                hf(nxt, past_key_values=box["cache"], use_cache=True)
            box["cache"].crop(-1)  # back to ctx - 1 cached positions
        return run, set_context

    name = SCALES[scale]["teacher_name"]
    return [Engine("teacher", "ort", f"teacher {name} (ONNX, KV cache in place)", ort_make, params=n),
            Engine("teacher", "eager", f"teacher {name} (HF, DynamicCache)", eager_make, params=n)]


def rwkv_engines(scale: str, args, tmp: str) -> list[Engine]:
    from goose_neuro.config import preset

    m = _rwkv(preset(SCALES[scale]["student"]))
    n = sum(p.numel() for p in {id(p): p for p in m.parameters()}.values())
    V = m.config.vocab_size

    def eager_make(B):
        ids = torch.randint(0, V, (B, 1), generator=torch.Generator().manual_seed(1))
        box = {"s": rwkv_initial_state(m, B)}

        def run():
            with torch.no_grad():
                box["s"] = m(ids, state=box["s"], use_cache=True).state

        for _ in range(16):
            run()
        return run, None

    out = [Engine("rwkv", "eager", "HF RWKV at the student's size (eager, state)", eager_make, params=n)]
    path = os.path.join(tmp, f"rwkv-{scale}.onnx")
    try:
        export_rwkv(m, path)
    except Exception as e:  # noqa: BLE001 - any export failure is reported in the table
        out.append(Engine("rwkv", "ort", "HF RWKV (ONNX)", error=f"export failed: {type(e).__name__}: "
                                                                   f"{' '.join(str(e).split())[:120]}", params=n))
        return out

    def ort_make(B):
        s = _rwkv_ort(path, B, args.threads)
        ids = np.random.default_rng(1).integers(0, V, B)
        for _ in range(16):
            s.step(ids)
        return (lambda: s.step(ids)), None

    out.append(Engine("rwkv", "ort", "HF RWKV at the student's size (ONNX, state bound)", ort_make, params=n))
    return out


# -- timing --------------------------------------------------------------------------------------
def calls_for(fn, budget: float, min_calls: int) -> int:
    fn()
    t0 = time.perf_counter()
    fn()
    return max(min_calls, int(budget / max(time.perf_counter() - t0, 1e-6)))


def time_group(fns: dict[str, Callable], budget: float, rounds: int, min_calls: int = 2) -> dict[str, float]:
    """Seconds per call: median over rounds; in each round every engine runs in turn."""
    n = {k: calls_for(f, budget, min_calls) for k, f in fns.items()}
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            t0 = time.perf_counter()
            for _ in range(n[k]):
                f()
            times[k].append((time.perf_counter() - t0) / n[k])
    return {k: statistics.median(v) for k, v in times.items()}


def bench_scale(scale: str, args, tmp: str) -> tuple[list[dict], list[Engine]]:
    log(f"{scale}: building and exporting the models")
    engines = []
    for build in (student_engines, teacher_engines, rwkv_engines):
        if build is rwkv_engines and args.no_rwkv:
            continue
        engines += [e for e in build(scale, args, tmp) if e.runtime in args.runtimes or e.error]
    rows = []
    for B in args.batches:
        made = {}
        for e in engines:
            if e.error is None:
                made[e.label] = e.make(B)
        for ctx in args.contexts:
            for label, (_, set_ctx) in made.items():
                if set_ctx is not None:
                    set_ctx(ctx)
            log(f"{scale} B={B} ctx={ctx}: timing {len(made)} engines")
            sec = time_group({k: v[0] for k, v in made.items()}, args.budget, args.rounds)
            load = os.getloadavg()[0]
            for e in engines:
                rows.append({"scale": scale, "model": e.model, "runtime": e.runtime, "label": e.label,
                             "params": e.params, "batch": B, "context": ctx, "note": e.note,
                             "ms_per_step": None if e.error else sec[e.label] * 1e3,
                             "tokens_per_s": None if e.error else B / sec[e.label],
                             "error": e.error, "load1": load})
        made.clear()
    return rows, engines


# -- diagnosis of the old teacher export ------------------------------------------------------------
def diagnose_teacher(args, tmp: str) -> dict:
    """Old teacher export (past cache in, concatenated cache out, one tensor for all layers;
    benchmarks/onnx_speed.py before this change) against the in-place decoder, at the largest
    context and batch of the largest scale; with ONNX Runtime's per-op profile of the old graph."""
    import collections

    import onnxruntime as ort

    from goose_neuro.export.ort_decode import GPT2Decoder, export_gpt2_decoder

    sys.path.insert(0, str(Path(__file__).parent))
    import onnx_speed  # the old exporter lives there (GPT2KVStep)

    scale = args.scales[-1]
    spec = SCALES[scale]["teacher"]
    B, ctx = max(args.batches), max(args.contexts)
    log(f"diagnosis: {SCALES[scale]['teacher_name']} B={B} ctx={ctx}, exporting both graphs")
    hf = gpt2(**spec)
    L, H, D, V = hf.config.n_layer, hf.config.n_head, hf.config.n_embd // hf.config.n_head, hf.config.vocab_size
    old_path = os.path.join(tmp, "teacher-old.onnx")
    onnx_speed.export_gpt2_step_concat(hf, old_path)
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.log_severity_level = 3
    P = ctx - 1
    rng = np.random.default_rng(0)
    feed = {"ids": np.zeros(B, np.int64), "pos": np.full(B, P, np.int64),
            "past_k": rng.standard_normal((L, B, H, P, D), dtype=np.float32),
            "past_v": rng.standard_normal((L, B, H, P, D), dtype=np.float32)}
    old = ort.InferenceSession(old_path, so, providers=["CPUExecutionProvider"])
    io = old.io_binding()  # the same graph with its inputs and outputs bound (no host copies)
    for k, v in feed.items():
        io.bind_ortvalue_input(k, ort.OrtValue.ortvalue_from_numpy(v))
    for name, shape in (("logits", (B, V)), ("k", (L, B, H, P + 1, D)), ("v", (L, B, H, P + 1, D))):
        io.bind_ortvalue_output(name, ort.OrtValue.ortvalue_from_numpy(np.zeros(shape, np.float32)))
    dec = GPT2Decoder(str(export_gpt2_decoder(hf, os.path.join(tmp, "teacher-new.onnx"))), B, ctx, args.threads)
    ids = np.zeros(B, np.int64)

    def new():
        dec.set_position(P)
        dec.step(ids)

    fns = {"old graph, sess.run": lambda: old.run(None, feed), "old graph, IOBinding": lambda: old.run_with_iobinding(io),
           "in-place KV graph, IOBinding": new}
    sec = time_group(fns, args.budget * 2, args.rounds)
    # per-op profile of the old graph
    so_p = ort.SessionOptions()
    so_p.intra_op_num_threads = args.threads
    so_p.log_severity_level = 3
    so_p.enable_profiling = True
    so_p.profile_file_prefix = os.path.join(tmp, "old-profile")
    prof_sess = ort.InferenceSession(old_path, so_p, providers=["CPUExecutionProvider"])
    for _ in range(3):
        prof_sess.run(None, feed)
    events = json.loads(Path(prof_sess.end_profiling()).read_text())
    per_op = collections.Counter()
    for ev in events:
        if ev.get("cat") == "Node" and ev["name"].endswith("_kernel_time"):
            per_op[ev["args"]["op_name"]] += ev["dur"]
    total = sum(per_op.values()) or 1
    return {"teacher": SCALES[scale]["teacher_name"], "batch": B, "context": ctx, "threads": args.threads,
            "ms_per_step": {k: v * 1e3 for k, v in sec.items()},
            "old_graph_op_share": {k: round(v / total, 3) for k, v in per_op.most_common(8)},
            "load1": os.getloadavg()[0]}


# -- reporting ------------------------------------------------------------------------------------
def table(rows: list[dict], contexts: list[int]) -> str:
    keys = []
    for r in rows:
        k = (r["scale"], r["runtime"], r["model"], r["label"], r["batch"])
        if k not in keys:
            keys.append(k)
    order = {"ort": 0, "eager": 1, "compiled": 2, "eager-seq": 3}
    keys.sort(key=lambda k: (list(SCALES).index(k[0]), order.get(k[1], 9), k[4], ["student", "teacher", "rwkv"].index(k[2])))
    head = "| scale | runtime | model | B | " + " | ".join(f"ctx {c} ms/step" for c in contexts) + " | tok/s at ctx " + \
        f"{contexts[-1]} |"
    lines = [head, "|" + " --- |" * (5 + len(contexts))]
    for k in keys:
        sel = {r["context"]: r for r in rows if (r["scale"], r["runtime"], r["model"], r["label"], r["batch"]) == k}
        first = next(iter(sel.values()))
        if first["error"]:
            cells = [first["error"]] + [""] * (len(contexts))
        else:
            cells = [f"{sel[c]['ms_per_step']:.3f}" for c in contexts] + [f"{sel[contexts[-1]]['tokens_per_s']:.0f}"]
        lines.append(f"| {k[0]} | {k[1]} | {k[3]} | {k[4]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratios(rows: list[dict], contexts: list[int]) -> list[dict]:
    """teacher / student time per step, same runtime, each scale and batch, at every context."""
    out = []
    idx = {(r["scale"], r["model"], r["runtime"], r["batch"], r["context"]): r for r in rows if not r["error"]}
    for (scale, model, rt, B, ctx), r in idx.items():
        if model != "student" or rt not in ("ort", "eager"):
            continue
        t = idx.get((scale, "teacher", rt, B, ctx))
        w = idx.get((scale, "rwkv", rt, B, ctx))
        out.append({"scale": scale, "runtime": rt, "batch": B, "context": ctx,
                    "teacher_over_student": t["ms_per_step"] / r["ms_per_step"] if t else None,
                    "rwkv_over_student": w["ms_per_step"] / r["ms_per_step"] if w else None})
    return out


def plot(rows: list[dict], path: Path, threads: int) -> None:
    """One panel per (batch, scale): ms per step against context, one line per model and runtime."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    scales = [s for s in SCALES if any(r["scale"] == s for r in rows)]
    batches = sorted({r["batch"] for r in rows})
    fig, axes = plt.subplots(len(batches), len(scales), figsize=(6.2 * len(scales), 4.2 * len(batches)),
                             squeeze=False)
    colors = {"student": "tab:green", "teacher": "tab:red", "rwkv": "tab:blue"}
    styles = {"ort": ("-", "o"), "eager": ("--", "s"), "eager-seq": (":", "v"), "compiled": ("-.", "^")}
    for i, B in enumerate(batches):
        for j, scale in enumerate(scales):
            ax = axes[i][j]
            series: dict[tuple, list] = {}
            for r in rows:
                if r["scale"] == scale and r["batch"] == B and not r["error"]:
                    series.setdefault((r["model"], r["runtime"]), []).append((r["context"], r["ms_per_step"]))
            for (model, rt), pts in sorted(series.items()):
                pts.sort()
                ls, mk = styles.get(rt, ("-", "o"))
                ax.plot([p[0] for p in pts], [p[1] for p in pts], ls, marker=mk, color=colors[model],
                        label=f"{model} ({rt})")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ctxs = sorted({r["context"] for r in rows})
            ax.set_xticks(ctxs, [str(c) for c in ctxs])
            ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
            ax.yaxis.set_minor_locator(matplotlib.ticker.LogLocator(subs=(2.0, 5.0)))
            ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
            ax.set_xlabel("context (tokens)")
            ax.set_ylabel("ms per decode step")
            ax.set_title(f"{scale} vs {SCALES[scale]['teacher_name']}, batch {B}", fontsize=10)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle(f"Decode time per step, {threads} thread(s)\nmedian of interleaved rounds, random weights",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    from goose_neuro.cli import make_parser

    ap = make_parser("peers.py", __doc__.splitlines()[0])  # bad options: one line, exit 2
    ap.add_argument("--scales", default="small,gpt2-50m")
    ap.add_argument("--contexts", default="128,512,1024")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--runtimes", default="ort,eager,eager-seq", help="any of ort, eager, eager-seq (and compiled with --compile)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="PyTorch and ONNX Runtime intra-op threads")
    ap.add_argument("--budget", type=float, default=0.4, help="seconds per engine per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="--budget 0.1 --rounds 3")
    ap.add_argument("--compile", action="store_true", help="also time FastStep under torch.compile")
    ap.add_argument("--no-rwkv", action="store_true")
    ap.add_argument("--diagnose-teacher", action="store_true",
                    help="only time the old teacher ONNX graph against the in-place one and profile the old one")
    ap.add_argument("--out", default="out/peers", help="directory for peers.json/.md/.png")
    a = ap.parse_args(argv)
    try:
        a.scales = [s for s in a.scales.split(",") if s]
        a.contexts = sorted(int(c) for c in a.contexts.split(","))
        a.batches = [int(b) for b in a.batches.split(",")]
        a.runtimes = set(a.runtimes.split(",")) | ({"compiled"} if a.compile else set())
    except ValueError:
        ap.error("--contexts and --batches take comma-separated integers")
    bad = [s for s in a.scales if s not in SCALES]
    if bad or not a.scales:
        ap.error(f"unknown scale {bad[0] if bad else ''!r}; choose from {', '.join(SCALES)}")
    if min(a.contexts) < 2 or max(a.contexts) > 1024 or min(a.batches) < 1:
        ap.error("contexts must lie in [2, 1024] and batches be >= 1")
    if a.threads < 1 or a.budget <= 0 or a.rounds < 1:
        ap.error("--threads, --budget and --rounds must be positive")
    if a.quick:
        a.budget, a.rounds = 0.1, 3
    torch.set_num_threads(a.threads)
    quiet_hf()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"threads": a.threads, "cpus": os.cpu_count(), "torch": torch.__version__, "budget_s": a.budget,
            "rounds": a.rounds, "load_start": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        if a.diagnose_teacher:
            rep = diagnose_teacher(a, tmp)
            print(json.dumps(rep, indent=2))
            (out / "teacher_diagnosis.json").write_text(json.dumps({**meta, **rep}, indent=2))
            return 0
        d_teacher = check_teacher_decoder()
        d_rwkv, d_rwkv_ort = check_rwkv(tmp)
        log(f"parity: teacher ONNX decoder vs HF {d_teacher:.1e}; RWKV batched step vs HF sequence {d_rwkv:.1e}; "
            f"RWKV ONNX vs HF {d_rwkv_ort if d_rwkv_ort is None else f'{d_rwkv_ort:.1e}'}")
        if d_teacher > 1e-3 or d_rwkv > 1e-3 or (d_rwkv_ort is not None and d_rwkv_ort > 1e-3):
            sys.stderr.write("peers: a parity check failed; figures would compare different computations\n")
            return 1
        rows = []
        for scale in a.scales:
            r, _ = bench_scale(scale, a, tmp)
            rows += r
    meta["load_end"] = os.getloadavg()
    meta["parity"] = {"teacher_decoder": d_teacher, "rwkv_batched_step": d_rwkv, "rwkv_onnx": d_rwkv_ort}
    rat = ratios(rows, a.contexts)
    md = [f"threads={a.threads} cpus={os.cpu_count()} torch={torch.__version__} load(1/5/15 min) start "
          f"{'/'.join(f'{x:.1f}' for x in meta['load_start'])} end {'/'.join(f'{x:.1f}' for x in meta['load_end'])}; "
          f"median of {a.rounds} interleaved rounds of ~{a.budget}s per engine; ms/step = one token for each of the B "
          f"sequences", "", table(rows, a.contexts), "",
          f"Teacher / student time per step at context {a.contexts[-1]} (goal >= {GOAL:.0f}):", ""]
    for q in rat:
        if q["context"] == a.contexts[-1]:
            t = q["teacher_over_student"]
            w = q["rwkv_over_student"]
            md.append(f"- {q['scale']} {q['runtime']} B={q['batch']}: teacher/student "
                      f"{'n/a' if t is None else f'{t:.2f}'}{'' if t is None else (' (goal met)' if t >= GOAL else ' (below goal)')}"
                      f", HF RWKV/student {'n/a' if w is None else f'{w:.2f}'}")
    notes = sorted({f"{r['scale']}: {r['note']}" for r in rows if r.get("note")})
    md += [""] + [f"- {n}" for n in notes]
    text = "\n".join(md)
    print(text)
    (out / "peers.md").write_text(text + "\n")
    (out / "peers.json").write_text(json.dumps({**meta, "rows": rows, "ratios": rat}, indent=2))
    plot(rows, out / "peers.png", a.threads)
    log(f"wrote {out / 'peers.md'}, {out / 'peers.json'}, {out / 'peers.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
