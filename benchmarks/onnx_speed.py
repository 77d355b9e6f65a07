"""Per-token decode cost: student (PyTorch eager, ONNX Runtime fp32, ONNX Runtime integer) vs GPT-2 teacher.

Student: for each preset (default ``small`` and ``gpt2-50m``; random weights: cost does not
depend on their values, only on sizes) and batch 1 and 8, the median time of one step
after warm-up, over several interleaved repeats:

- ``torch``: eager PyTorch, ``goose_neuro.fast_step.FastStep`` (frozen ternary weights)
- ``torch_seq``: eager PyTorch, sequence mode called with one token (the older step path)
- ``ort_float``: the float ONNX step graph (goose-export --variant float)
- ``ort_int``: the integer variant (MatMulInteger on spikes; goose-export --variant int)
  (both ONNX engines with their state double-buffered through IOBinding: nothing copied per step)

Teacher: a GPT-2 124M-sized model (12 layers, 768 wide, 1024 positions, random weights,
transformers GPT2LMHeadModel) decoding one token with its KV cache at contexts 128, 512
and 1024 (batch 1 and 8), two ways:

- ``ort+kv``: ``goose_neuro.export.ort_decode.GPT2Decoder``: one decode-step graph whose KV
  cache is a fixed buffer per layer, bound as both input and output of ONNX Runtime's
  GroupQueryAttention and updated in place (checked against the Hugging Face model at start-up)
- ``torch+kv``: the Hugging Face module in eager PyTorch with its own cache object

An earlier version of this script exported the step with the past cache packed into one
(layers, B, H, P, D) input and the grown cache returned as one output: each step split,
concatenated and re-stacked the whole cache (about 80% of the step at GPT-2 124M, batch 8,
context 1024), which made ONNX Runtime look slower than eager. That exporter is kept as
:func:`export_gpt2_step_concat` for ``benchmarks/peers.py --diagnose-teacher``.
Attention's per-token cost grows with the context; the student's step cost is constant.
``benchmarks/peers.py`` puts the student, its teacher and HF RWKV side by side per runtime.

    .venv/bin/python benchmarks/onnx_speed.py                 # everything, prints a table + JSON
    .venv/bin/python benchmarks/onnx_speed.py --quick         # fewer repeats
    .venv/bin/python benchmarks/onnx_speed.py --json out.json # also write the figures

Figures depend on the machine and its load; the script prints both with the table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import numpy as np
import torch

from goose_neuro.config import preset
from goose_neuro.export.lower import lower
from goose_neuro.export.onnx_export import export_onnx
from goose_neuro.export.ort_decode import BoundStudentStep, GPT2Decoder, export_gpt2_decoder
from goose_neuro.fast_step import FastStep
from goose_neuro.model import ASNNGoose


def _calls_for(fn, budget_s: float) -> int:
    """How many calls of ``fn`` take about ``budget_s`` seconds (at least 3), after a warm-up call."""
    fn()
    t0 = time.perf_counter()
    fn()
    return max(3, int(budget_s / max(time.perf_counter() - t0, 1e-6)))


def _median_step_times(fns: dict, budget_s: float, repeats: int) -> dict[str, float]:
    """Seconds per call for each of ``fns``: median over ``repeats`` rounds; in every round the
    engines run one after another (interleaved), so slow drifts in machine load hit all alike."""
    n = {k: _calls_for(f, budget_s) for k, f in fns.items()}
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            for _ in range(n[k]):
                f()
            times[k].append((time.perf_counter() - t0) / n[k])
    return {k: statistics.median(v) for k, v in times.items()}


def _torch_stepper(m: ASNNGoose, tok: torch.Tensor):
    """One sequence-mode call with one token per call, the state carried along."""
    st = {"s": m.init_state(tok.shape[0])}

    def step():
        with torch.inference_mode():
            _, st["s"] = m(tok, st["s"])

    return step


def _fast_stepper(m: ASNNGoose, tok: torch.Tensor):
    """One FastStep per call, the state carried along."""
    fs = FastStep(m)
    st = {"s": fs.init_state(tok.shape[0])}

    def step():
        _, st["s"] = fs(tok[:, 0], st["s"])

    return step


def _ort_stepper(sess: BoundStudentStep, ids: np.ndarray):
    return lambda: sess.step(ids)


def bench_student(name: str, batches, budget: float, repeats: int, threads: int, tmp: str) -> list[dict]:
    torch.manual_seed(0)
    m = ASNNGoose(preset(name)).eval().freeze_ternary()
    g = lower(m)
    dirs = {}
    for v in ("float", "int"):
        dirs[v] = export_onnx(g, os.path.join(tmp, f"{name}-{v}"), v)
    rows = []
    for B in batches:
        tok = torch.randint(0, m.cfg.vocab_size, (B, 1))
        fns = {"torch": _fast_stepper(m, tok), "torch_seq": _torch_stepper(m, tok)}
        for v, d in dirs.items():
            fns[f"ort_{v}"] = _ort_stepper(BoundStudentStep(d, B, threads=threads), tok[:, 0].numpy())
        for k, sec in _median_step_times(fns, budget, repeats).items():
            rows.append({"model": f"student-{name}", "engine": k, "batch": B, "context": None,
                         "ms_per_token_step": sec * 1e3, "tokens_per_s": B / sec})
    return rows


def bench_teacher(contexts, batches, steps: int, repeats: int) -> list[dict]:
    """Hugging Face GPT-2 124M in PyTorch eager with its KV cache: a DynamicCache of ``ctx - 1``
    random positions (cost does not depend on the values; no prefill needed), one warm-up step,
    then ``steps`` timed steps, each attending to ``ctx`` positions (the cache is cut back by
    one after every step)."""
    from transformers import DynamicCache

    model = _gpt2()
    L, H, D = model.config.n_layer, model.config.n_head, model.config.n_embd // model.config.n_head
    rows = []
    for B in batches:
        for ctx in contexts:
            ctx = min(ctx, model.config.n_positions)
            cache = DynamicCache()
            for i in range(L):
                cache.update(torch.randn(B, H, ctx - 1, D), torch.randn(B, H, ctx - 1, D), i)
            nxt = torch.zeros(B, 1, dtype=torch.long)

            def step():
                model(nxt, past_key_values=cache, use_cache=True)
                cache.crop(-1)

            times = []
            with torch.inference_mode():
                step()  # warm-up
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    for _ in range(steps):
                        step()
                    times.append((time.perf_counter() - t0) / steps)
            sec = statistics.median(times)
            rows.append({"model": "teacher-gpt2-124M", "engine": "torch+kv", "batch": B, "context": ctx,
                         "ms_per_token_step": sec * 1e3, "tokens_per_s": B / sec})
    return rows


class GPT2KVStep(torch.nn.Module):
    """One GPT-2 decode step with an explicit KV cache, on a transformers GPT2LMHeadModel's weights.

    ``forward(ids (B,), pos (B,), past_k, past_v (L, B, H, P, D)) -> (logits (B, V), k, v (L, B, H, P+1, D))``.
    Same math as the Hugging Face module (pre-LN blocks, Conv1D = x @ W + b, gelu_new,
    softmax(q K^T / sqrt(D)) V, tied head); :func:`check_gpt2_step` compares the two.
    Written out so that the step exports to ONNX with plain tensors as its cache.
    """

    def __init__(self, hf) -> None:
        super().__init__()
        self.hf, self.H = hf, hf.config.n_head

    def forward(self, ids, pos, past_k, past_v):
        tr = self.hf.transformer
        x = tr.wte(ids) + tr.wpe(pos)  # (B, C)
        B, C = x.shape
        D = C // self.H
        ks, vs = [], []
        for i, blk in enumerate(tr.h):
            q, k, v = blk.attn.c_attn(blk.ln_1(x)).split(C, dim=-1)  # (B, C) each
            q, k, v = (t.reshape(B, self.H, 1, D) for t in (q, k, v))
            K, V = torch.cat([past_k[i], k], 2), torch.cat([past_v[i], v], 2)  # (B, H, P+1, D)
            att = torch.softmax(q @ K.transpose(-1, -2) / D**0.5, -1)  # (B, H, 1, P+1)
            x = x + blk.attn.c_proj((att @ V).reshape(B, C))
            x = x + blk.mlp.c_proj(torch.nn.functional.gelu(blk.mlp.c_fc(blk.ln_2(x)), approximate="tanh"))
            ks.append(K)
            vs.append(V)
        return self.hf.lm_head(tr.ln_f(x)), torch.stack(ks), torch.stack(vs)


def _gpt2(n_layer=12, n_embd=768, n_head=12, n_positions=1024, vocab_size=50257):
    import warnings

    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging as hf_logging

    warnings.filterwarnings("ignore", category=FutureWarning)
    hf_logging.set_verbosity_error()
    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=n_layer, n_embd=n_embd, n_head=n_head, n_positions=n_positions,
                     vocab_size=vocab_size, bos_token_id=vocab_size - 1, eos_token_id=vocab_size - 1)
    return GPT2LMHeadModel(cfg).eval()


def check_gpt2_step() -> float:
    """Max |logit diff| of GPT2KVStep vs the Hugging Face model on a tiny GPT-2 (must be ~1e-6)."""
    hf = _gpt2(2, 64, 4, 64, 100)
    ids = torch.randint(0, 100, (2, 9))
    with torch.inference_mode():
        ref = hf(ids).logits[:, -1]
        L, H, D = 2, 4, 16
        pk, pv = torch.zeros(L, 2, H, 0, D), torch.zeros(L, 2, H, 0, D)
        step = GPT2KVStep(hf)
        for t in range(9):
            logits, pk, pv = step(ids[:, t], torch.full((2,), t), pk, pv)
    return float((logits - ref).abs().max())


def check_gpt2_decoder() -> float:
    """Max |logit diff| of the in-place KV-cache ONNX decoder vs the Hugging Face model (tiny GPT-2)."""
    hf = _gpt2(2, 64, 4, 64, 100)
    ids = torch.randint(0, 100, (2, 9))
    with torch.inference_mode():
        ref = hf(ids).logits.numpy()
    d = tempfile.mkdtemp()
    dec = GPT2Decoder(str(export_gpt2_decoder(hf, os.path.join(d, "tiny.onnx"))), 2, 16)
    got = np.stack([dec.step(ids[:, t].numpy()).copy() for t in range(9)], 1)
    return float(np.abs(got - ref).max())


def export_gpt2_step_concat(hf, path: str) -> None:
    """ONNX (dynamo exporter, opset 18) of GPT2KVStep with dynamic batch and past length: the
    cache-copying form described in the module docstring, kept only for comparison."""
    from torch.export import Dim

    L, H, D = hf.config.n_layer, hf.config.n_head, hf.config.n_embd // hf.config.n_head
    batch, past = Dim("batch", min=1, max=64), Dim("past", min=1, max=hf.config.n_positions - 1)
    args = (torch.zeros(2, dtype=torch.long), torch.full((2,), 3), torch.zeros(L, 2, H, 3, D), torch.zeros(L, 2, H, 3, D))
    torch.onnx.export(GPT2KVStep(hf), args, path, dynamo=True, opset_version=18, external_data=False, verbose=False,
                      input_names=["ids", "pos", "past_k", "past_v"], output_names=["logits", "k", "v"],
                      dynamic_shapes={"ids": {0: batch}, "pos": {0: batch}, "past_k": {1: batch, 3: past},
                                      "past_v": {1: batch, 3: past}})


def bench_teacher_onnx(contexts, batches, budget: float, repeats: int, threads: int, tmp: str) -> list[dict]:
    """ONNX Runtime step of the 124M GPT-2 attending to ``ctx - 1`` cached positions plus the new
    token, cache updated in place (GPT2Decoder). Cost does not depend on the cache's values."""
    hf = _gpt2()
    path = str(export_gpt2_decoder(hf, os.path.join(tmp, "gpt2-124m-decoder.onnx")))
    rows = []
    for B in batches:
        dec = GPT2Decoder(path, B, min(max(contexts), hf.config.n_positions), threads)
        ids = np.zeros(B, np.int64)
        for ctx in contexts:
            P = min(ctx, hf.config.n_positions) - 1

            def step():
                dec.set_position(P)
                dec.step(ids)

            sec = _median_step_times({"ort": step}, budget, repeats)["ort"]
            rows.append({"model": "teacher-gpt2-124M", "engine": "ort+kv", "batch": B, "context": P + 1,
                         "ms_per_token_step": sec * 1e3, "tokens_per_s": B / sec})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="small,gpt2-50m")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--contexts", default="128,512,1024")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-teacher", action="store_true")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch and ORT intra-op threads")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    budget, repeats = (0.3, 3) if a.quick else (1.0, 5)
    batches = [int(b) for b in a.batches.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.presets.split(","):
            rows += bench_student(name, batches, budget, repeats, a.threads, tmp)
    if not a.no_teacher:
        contexts = [int(c) for c in a.contexts.split(",")]
        print(f"ONNX KV-cache decoder vs Hugging Face GPT-2 (tiny): max |logit diff| {check_gpt2_decoder():.2e}")
        with tempfile.TemporaryDirectory() as tmp:
            rows += bench_teacher_onnx(contexts, batches, budget, repeats, a.threads, tmp)
        rows += bench_teacher(contexts, batches, 3 if a.quick else 8, min(repeats, 3))
    load = os.getloadavg()
    print(f"threads={a.threads} cpus={os.cpu_count()} loadavg={load[0]:.2f},{load[1]:.2f},{load[2]:.2f} "
          f"torch={torch.__version__} ~{budget}s x {repeats} repeats per figure (median)")
    print(f"{'model':22s} {'engine':10s} {'B':>3s} {'ctx':>5s} {'ms/step':>9s} {'tok/s':>9s}")
    for r in rows:
        print(f"{r['model']:22s} {r['engine']:10s} {r['batch']:3d} {str(r['context'] or '-'):>5s} "
              f"{r['ms_per_token_step']:9.3f} {r['tokens_per_s']:9.1f}")
    for name in a.presets.split(","):
        for B in batches:
            sel = {r["engine"]: r["ms_per_token_step"] for r in rows
                   if r["model"] == f"student-{name}" and r["batch"] == B}
            print(f"student-{name} B={B}: torch (FastStep) x{sel['torch_seq'] / sel['torch']:.2f} vs torch_seq, "
                  f"ort_float x{sel['torch'] / sel['ort_float']:.2f} vs torch, "
                  f"ort_int x{sel['torch'] / sel['ort_int']:.2f} vs torch, int/float time {sel['ort_int'] / sel['ort_float']:.2f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"loadavg": load, "threads": a.threads, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
