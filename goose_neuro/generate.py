"""Text generation with the student in PyTorch: batched prompts of any lengths, sampling, tokens/s.

Example::

    model, info = load_checkpoint("runs/wp")
    res = generate(model, [tok.encode("Prince Andrew"), tok.encode("It was")], 40, temperature=0.8, top_k=40)
    res.tokens        # the new ids, one list per prompt
    res.tokens_per_s  # new tokens per second of the decode loop (all sequences together)

The common length of the prompts runs in one sequence-mode call; after that every
sequence advances one token per step through :class:`goose_neuro.fast_step.FastStep`,
reading its own prompt until that ends and its own samples afterwards. The model is
recurrent, so prompts of different lengths need no padding and no mask, and each
sequence gets the same tokens as it would alone (a test checks this).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from goose_neuro.errors import ConfigError, DataError
from goose_neuro.fast_step import FastStep


@dataclass
class GenerationResult:
    """New ids per prompt and where the time went."""

    tokens: list[list[int]]
    prompt_tokens: int  # prompt tokens over all sequences
    prefill_s: float  # the sequence-mode call on the common prompt length
    decode_s: float  # the step loop (ragged prompt tails, then sampling)

    @property
    def new_tokens(self) -> int:
        return sum(len(t) for t in self.tokens)

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.decode_s if self.decode_s > 0 else float("inf")


def sample_next(logits: Tensor, temperature: float, top_k: int, generator: torch.Generator | None) -> Tensor:
    """logits (B, V) -> ids (B,). Temperature 0 is greedy (argmax); top_k > 0 keeps the k most likely."""
    if temperature <= 0:
        return logits.argmax(-1)
    z = logits.double() / temperature
    if 0 < top_k < z.shape[-1]:
        kth = torch.topk(z, top_k, dim=-1).values[:, -1:]
        z = z.masked_fill(z < kth, float("-inf"))
    return torch.multinomial(torch.softmax(z, -1), 1, generator=generator)[:, 0]


def _check(model, prompts: Sequence[Sequence[int]], n_new: int, temperature: float, top_k: int) -> None:
    if n_new < 0 or temperature < 0 or top_k < 0:
        raise ConfigError("the number of new tokens, the temperature and top-k must be >= 0")
    if not prompts:
        raise DataError("no prompt given")
    V = model.cfg.vocab_size
    for i, p in enumerate(prompts):
        if len(p) == 0:
            raise DataError(f"prompt is empty (prompt {i + 1}; need at least one token)")
        bad = [t for t in p if not 0 <= int(t) < V]
        if bad:
            raise DataError(f"prompt {i + 1}: token id {bad[0]} outside the model's vocabulary [0, {V})")


@torch.no_grad()
def generate(model, prompts: Sequence[Sequence[int]], n_new: int, temperature: float = 0.0, top_k: int = 0,
             seed: int = 0, step: FastStep | None = None, progress: bool = False) -> GenerationResult:
    """Continue every prompt (a list of token ids) by ``n_new`` tokens, all prompts in one batch.

    ``step``: a prepared :class:`FastStep` of ``model`` (built here when None; pass one built
    with ``compile=True`` to use torch.compile). ``progress``: a bar with tokens/s on stderr."""
    _check(model, prompts, n_new, temperature, top_k)
    if n_new == 0:
        return GenerationResult([[] for _ in prompts], sum(len(p) for p in prompts), 0.0, 0.0)
    step = step or FastStep(model)
    dev = next(model.parameters()).device
    B, lens = len(prompts), [len(p) for p in prompts]
    common = min(lens)
    width = max(lens) + n_new
    seq = torch.zeros(B, width, dtype=torch.long, device=dev)  # prompt, then samples
    for b, p in enumerate(prompts):
        seq[b, :lens[b]] = torch.as_tensor([int(t) for t in p], dtype=torch.long)
    gen = torch.Generator(device=dev).manual_seed(seed)
    t0 = time.perf_counter()
    state = step.init_state(B)
    if common > 1:  # every prompt but its last common token in one sequence-mode call
        _, state = model(seq[:, :common - 1], state)
    prefill_s = time.perf_counter() - t0
    lens_t = torch.as_tensor(lens, device=dev)
    last = max(lens) - 1 + n_new  # steps run for positions common-1 .. last-1
    bar = None
    if progress and n_new > 0:
        from tqdm import tqdm

        bar = tqdm(total=n_new * B, unit="tok", file=sys.stderr, dynamic_ncols=True, leave=False)
    t1 = time.perf_counter()
    for pos in range(common - 1, last):
        logits, state = step(seq[:, pos], state)  # (B, V): predicts position pos + 1
        want = (pos + 1 >= lens_t) & (pos + 1 < lens_t + n_new)  # sequences now sampling
        if bool(want.any()):
            nxt = sample_next(logits, temperature, top_k, gen)
            seq[:, pos + 1] = torch.where(want, nxt, seq[:, pos + 1])
            if bar is not None:
                bar.update(int(want.sum()))
    decode_s = time.perf_counter() - t1
    if bar is not None:
        bar.close()
    out = [seq[b, lens[b]:lens[b] + n_new].tolist() for b in range(B)]
    return GenerationResult(out, sum(lens), prefill_s, decode_s)
