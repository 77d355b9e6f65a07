"""Evaluation: perplexity of student and teacher on the same windows, spike rates, speed."""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any, Callable

import torch
from torch import Tensor

from goose_neuro import losses
from goose_neuro.config import ModelConfig
from goose_neuro.model import ASNNGoose
from goose_neuro.teacher import Teacher


def autocast(device: torch.device):
    """bfloat16 autocast on CUDA; nothing on CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def perplexity(forward: Callable[[Tensor], Tensor], windows: Tensor, batch: int = 8) -> tuple[float, float, int]:
    """Token-level perplexity of a causal LM over windows (K, T + 1): inputs ``w[:, :-1]``, next-token
    targets ``w[:, 1:]``. ``forward(x (b, T)) -> logits (b, T, V)``. Returns (perplexity, mean
    negative log-likelihood, tokens)."""
    nll, n = 0.0, 0
    for i in range(0, windows.shape[0], batch):
        w = windows[i:i + batch]
        x, y = w[:, :-1], w[:, 1:]  # (b, T)
        logits = forward(x)
        nll += float(losses.ce_loss(logits, y.to(logits.device))) * y.numel()
        n += y.numel()
    return math.exp(nll / n), nll / n, n


@torch.no_grad()
def evaluate(model: ASNNGoose, windows: Tensor, teacher: Teacher | None = None, batch: int = 8,
             teacher_ppl: float | None = None) -> dict[str, Any]:
    """Perplexity of student (and teacher) on the same windows (K, T + 1), spike rates, tokens/s.

    Student state starts fresh in each window, like the teacher's context. ``teacher_ppl``:
    a value measured earlier on the same windows (the teacher is frozen), reused as is.
    """
    dev = next(model.parameters()).device
    was_training = model.training
    model.eval()
    nz: dict[str, float] = {}
    cnt: dict[str, int] = {}
    seconds = [0.0]

    def student(x: Tensor) -> Tensor:
        t0 = time.perf_counter()
        with autocast(dev):
            out = model.run(x.to(dev), collect=True)
        seconds[0] += time.perf_counter() - t0
        for name, s in out.spikes.items():  # name: the population's IR node name, e.g. L0.tm.lif_in
            nz[name] = nz.get(name, 0.0) + float((s != 0).sum())
            cnt[name] = cnt.get(name, 0) + s.numel()
        return out.logits

    ppl, loss, n_tok = perplexity(student, windows, batch)
    model.train(was_training)
    res: dict[str, Any] = {"tokens": n_tok, "student_ppl": ppl, "student_loss": loss,
                           "eval_tokens_per_s": n_tok / max(seconds[0], 1e-9)}
    if teacher is not None:
        res["teacher_ppl"] = teacher_ppl if teacher_ppl is not None else \
            perplexity(lambda x: teacher.forward(x)[0], windows, batch)[0]
    res.update(spike_summary(model.cfg, nz, cnt))
    return res


def spike_summary(cfg: ModelConfig, nz: dict[str, float], cnt: dict[str, int]) -> dict[str, Any]:
    """Per-layer firing rate (share of non-zero spikes), per-population rates (keyed by the IR
    node name) and overall sparsity (share of zeros)."""
    if cfg.spike_mode == "none" or not cnt:
        return {"spike_sparsity": None, "spike_rates": {}}
    layers: dict[str, list[float]] = {}
    for name in cnt:
        lay = name.split(".")[0]  # node names start with their layer, "L{i}."
        a = layers.setdefault(lay, [0.0, 0.0])
        a[0] += nz[name]
        a[1] += cnt[name]
    rates = {lay: v[0] / v[1] for lay, v in sorted(layers.items())}
    total = sum(nz.values()) / sum(cnt.values())
    return {"spike_sparsity": 1.0 - total, "spike_rates": rates,
            "spike_rates_by_population": {k: nz[k] / cnt[k] for k in sorted(cnt)}}
