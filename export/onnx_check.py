"""ONNX Runtime vs PyTorch on real text: logits, perplexity, greedy generation, speed.

:func:`check_onnx` returns a report dict (all figures plus ``checks``: name -> pass/fail)
and never raises for a failed check; bad inputs raise ``GooseError`` subclasses.

Checks (each reported with its numbers):

- ``perplexity``: |ppl_onnx - ppl_torch| / ppl_torch < ``ppl_rtol`` (0.5%)
- ``argmax``: next-token argmax agreement over the text >= ``min_argmax_agreement`` (99%)
- ``greedy``: N greedily generated tokens identical
- ``prefill`` (when the export has prefill.onnx): its perplexity agrees like ``perplexity``
- ``max_abs_logit_diff`` <= ``atol`` (only when ``atol`` is given; spikes are discontinuous,
  so one threshold crossing that differs in the last float bit can move a logit)

Perplexity is exp(mean cross-entropy) over the first ``max_eval_tokens`` next-token
predictions, both computed in float64 from float32 logits. Speeds are decode speeds in
step mode (one token per call, batch 1): PyTorch eager with frozen ternary weights,
and the ONNX Runtime session on CPUExecutionProvider.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from goose_neuro.errors import ExportError
from goose_neuro.export.ort_runner import OrtStep
from goose_neuro.tokenizer import encode_file, load_tokenizer


def perplexity(logits: np.ndarray, targets: np.ndarray) -> float:
    """exp(mean CE). logits (T, V), targets (T,); computed in float64."""
    z = logits.astype(np.float64)
    z -= z.max(-1, keepdims=True)
    lse = np.log(np.exp(z).sum(-1))
    return float(np.exp(np.mean(lse - z[np.arange(len(targets)), targets])))


def _torch_greedy(model, prompt: list[int], n: int) -> tuple[list[int], float]:
    """Greedy step-mode decode; returns (new ids, tokens/s over prompt + generation steps)."""
    import torch

    with torch.inference_mode():
        st = model.init_state(1)
        t0 = time.perf_counter()
        for t in prompt:
            logits, st = model(torch.tensor([[t]]), st)
        out = []
        for _ in range(n):
            out.append(int(logits[0, -1].argmax()))
            logits, st = model(torch.tensor([[out[-1]]]), st)
        dt = time.perf_counter() - t0
    return out, (len(prompt) + n) / dt


def _onnx_greedy(step: OrtStep, prompt: list[int], n: int) -> tuple[list[int], float]:
    st = step.init_state(1)
    t0 = time.perf_counter()
    for t in prompt:
        logits, st = step.step(np.array([t]), st)
    out = []
    for _ in range(n):
        out.append(int(logits[0].argmax()))
        logits, st = step.step(np.array([out[-1]]), st)
    return out, (len(prompt) + n) / (time.perf_counter() - t0)


def check_onnx(onnx_dir: str | os.PathLike, checkpoint: str | os.PathLike, text_file: str | os.PathLike,
               gen_tokens: int = 32, max_eval_tokens: int = 512, prompt_tokens: int = 16,
               ppl_rtol: float = 0.005, min_argmax_agreement: float = 0.99, atol: float | None = None,
               threads: int | None = None) -> dict[str, Any]:
    """Run the exported step graph beside the checkpoint's PyTorch model on ``text_file``."""
    import torch

    from goose_neuro.checkpoint import load_checkpoint

    step = OrtStep(onnx_dir, threads=threads)
    model, info = load_checkpoint(checkpoint)
    model.freeze_ternary()
    if step.side.get("model_config") != info["config"].to_dict():
        raise ExportError(f"{onnx_dir} was exported from a different model config than checkpoint {checkpoint}")
    tok = load_tokenizer(checkpoint, model.cfg.vocab_size, reference=info["tokenizer"])
    ids = encode_file(text_file, tok, model.cfg.vocab_size, max_tokens=max_eval_tokens + 1, min_tokens=2)
    x, y = np.asarray(ids[:-1]), np.asarray(ids[1:])
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)[None])[0][0].float().numpy()  # (T, V)
    got = step.run(x[None])[0][0]  # (T, V), one step per token
    ppl_t, ppl_o = perplexity(ref, y), perplexity(got, y)
    prompt = ids[: max(1, min(prompt_tokens, len(ids)))]
    gen_t, tps_t = _torch_greedy(model, prompt, gen_tokens)
    gen_o, tps_o = _onnx_greedy(step, prompt, gen_tokens)
    rep: dict[str, Any] = {
        "onnx_dir": str(onnx_dir), "checkpoint": str(checkpoint), "text": str(text_file),
        "variant": step.side.get("variant"), "eval_tokens": int(len(y)),
        "max_abs_logit_diff": float(np.abs(got - ref).max()),
        "argmax_agreement": float((got.argmax(-1) == ref.argmax(-1)).mean()),
        "ppl_torch": ppl_t, "ppl_onnx": ppl_o, "ppl_rel_diff": abs(ppl_o - ppl_t) / ppl_t,
        "gen_tokens": gen_tokens, "greedy_identical": gen_t == gen_o,
        "greedy_first_mismatch": next((i for i, (a, b) in enumerate(zip(gen_t, gen_o)) if a != b), None),
        "torch_tokens_per_s": tps_t, "onnx_tokens_per_s": tps_o, "speedup": tps_o / tps_t,
        "greedy_text_onnx": tok.decode(gen_o),
    }
    if step.side.get("prefill"):
        pre = step.prefill(x[None])[0][0]
        rep["prefill_max_abs_logit_diff"] = float(np.abs(pre - ref).max())
        rep["ppl_prefill"] = perplexity(pre, y)
    rep["checks"] = {
        "perplexity": rep["ppl_rel_diff"] < ppl_rtol,
        "argmax": rep["argmax_agreement"] >= min_argmax_agreement,
        "greedy": rep["greedy_identical"],
    }
    if "ppl_prefill" in rep:
        rep["checks"]["prefill"] = abs(rep["ppl_prefill"] - ppl_t) / ppl_t < ppl_rtol
    if atol is not None:
        rep["checks"]["max_abs_logit_diff"] = rep["max_abs_logit_diff"] <= atol
    rep["limits"] = {"ppl_rtol": ppl_rtol, "min_argmax_agreement": min_argmax_agreement, "atol": atol}
    rep["passed"] = all(rep["checks"].values())
    return rep


def failure_line(rep: dict[str, Any]) -> str:
    """One line naming each failed check with its numbers."""
    why = {
        "perplexity": f"perplexity differs by {rep['ppl_rel_diff']:.3%} (onnx {rep['ppl_onnx']:.4f} vs torch "
                      f"{rep['ppl_torch']:.4f}, limit {rep['limits']['ppl_rtol']:.1%})",
        "argmax": f"argmax agreement {rep['argmax_agreement']:.2%} < {rep['limits']['min_argmax_agreement']:.0%}",
        "greedy": f"greedy generation differs at token {rep['greedy_first_mismatch']} of {rep['gen_tokens']}",
        "prefill": f"prefill perplexity {rep.get('ppl_prefill', float('nan')):.4f} vs torch {rep['ppl_torch']:.4f}",
        "max_abs_logit_diff": f"max |logit diff| {rep['max_abs_logit_diff']:.3g} > atol {rep['limits']['atol']}",
    }
    return "; ".join(why[k] for k, ok in rep["checks"].items() if not ok)
