"""Activity profiling: run the student on real text and record what every spiking
population does, per channel and per token.

Definitions (per population of n neurons over N profiled tokens, batch 1):

    events[c]        = sum_t [s_t[c] != 0]          spike events (nonzero count), +1 and -1 alike
    firing_rate      = sum_c events[c] / (N n)      (events per neuron per token)
    zero_fraction    = 1 - firing_rate              = NeuroBench ActivationSparsity of this population
    dead channels    = #{c : events[c] == 0}        (never fire on this text)
    saturated        = #{c : events[c] == N}        (fire on every token)
    timeline[t]      = sum_c [s_t[c] != 0]          (events of the population at token t)

NeuroBench's ActivationSparsity over all spiking populations is
``1 - sum(events) / sum(N n)``; :meth:`ActivityProfile.activation_sparsity` returns it.

The model runs in windows of ``window`` tokens, the recurrent state carried from
one window to the next, so a profile of N tokens equals one pass over N tokens.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

import numpy as np

from goose_neuro.errors import DataError
from goose_neuro.tokenizer import encode_file

log = logging.getLogger(__name__)


@dataclass
class PopulationActivity:
    """Counts for one spiking population (``n`` neurons)."""

    name: str
    n: int
    events: np.ndarray  # (n,) int64: nonzero outputs per channel over all tokens
    positive: np.ndarray  # (n,) int64: +1 events
    negative: np.ndarray  # (n,) int64: -1 events
    timeline: np.ndarray  # (N,) int64: events per token
    unit_values: bool = True  # every value in {-1, 0, 1} (NeuroBench's "spiking" test)

    @property
    def tokens(self) -> int:
        return int(self.timeline.shape[0])

    @property
    def firing_rate(self) -> float:
        return float(self.events.sum()) / max(1, self.tokens * self.n)

    @property
    def zero_fraction(self) -> float:
        return 1.0 - self.firing_rate

    @property
    def dead(self) -> int:
        return int((self.events == 0).sum())

    @property
    def saturated(self) -> int:
        return int((self.events == self.tokens).sum())

    def events_per_token(self) -> np.ndarray:  # (n,) float
        """Mean events per token for each channel (used to count synaptic ops)."""
        return self.events / max(1, self.tokens)


@dataclass
class ActivityProfile:
    """Activity of every population over ``tokens`` tokens of ``source``."""

    tokens: int
    populations: dict[str, PopulationActivity]
    seconds: float
    spike_mode: str
    source: str = ""
    tokenizer: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else float("inf")

    def activation_sparsity(self) -> float:
        """NeuroBench ActivationSparsity: zeros over all population outputs."""
        nnz = sum(int(p.events.sum()) for p in self.populations.values())
        tot = sum(p.tokens * p.n for p in self.populations.values())
        return 1.0 - nnz / tot if tot else 0.0

    def firing_rate(self) -> float:
        return 1.0 - self.activation_sparsity()


# -- profiling -----------------------------------------------------------------------------------
def profile_tokens(model, tokens: list[int] | np.ndarray, window: int = 128, progress: bool = True,
                   source: str = "", threads: int | None = 1) -> ActivityProfile:
    """Run ``model`` (ASNNGoose) over ``tokens`` and count spikes per population and channel.

    ``threads``: torch intra-op threads while profiling (1 by default: the per-token
    recurrences are many small ops, which run fastest, and time most steadily, on one
    thread when other work shares the CPU). None keeps the current setting."""
    import torch
    from tqdm.auto import tqdm

    ids = torch.as_tensor(np.asarray(tokens, dtype=np.int64))[None]  # (1, N)
    N = ids.shape[1]
    if N < 1:
        raise DataError("no tokens to profile")
    model.eval()
    was_frozen = {n: m._frozen is not None for n, m in model.ternary_layers().items()}
    model.freeze_ternary(True)  # quantize once, not every window
    acc: dict[str, dict] = {}
    state = None
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    bar = tqdm(total=N, unit="tok", desc="profiling", disable=not progress, leave=False)
    try:
        with torch.no_grad():
            for s in range(0, N, window):
                out = model.run(ids[:, s:s + window], state, collect=True)
                state = out.state
                for name, sp in out.spikes.items():
                    _accumulate(acc, name, sp[0])  # (W, n)
                bar.update(min(window, N - s))
                bar.set_postfix(tok_s=f"{bar.n / max(1e-9, time.perf_counter() - t0):.0f}")
    finally:
        bar.close()
        torch.set_num_threads(old_threads)
        for n, m in model.ternary_layers().items():
            if not was_frozen[n]:
                m.freeze(False)
    secs = time.perf_counter() - t0
    pops = {k: PopulationActivity(k, v["n"], v["events"], v["pos"], v["neg"],
                                  np.concatenate(v["timeline"]), v["unit"]) for k, v in acc.items()}
    return ActivityProfile(N, pops, secs, model.cfg.spike_mode, source)


def _accumulate(acc: dict, name: str, sp) -> None:
    """Add one window of spikes sp (W, n) to the running counts of ``name``."""
    a = sp.detach().float().cpu().numpy()  # (W, n)
    nz = a != 0
    d = acc.setdefault(name, {"n": a.shape[1], "events": np.zeros(a.shape[1], np.int64),
                              "pos": np.zeros(a.shape[1], np.int64), "neg": np.zeros(a.shape[1], np.int64),
                              "timeline": [], "unit": True})
    d["events"] += nz.sum(0)
    d["pos"] += (a > 0).sum(0)
    d["neg"] += (a < 0).sum(0)
    d["timeline"].append(nz.sum(1).astype(np.int64))
    d["unit"] = d["unit"] and bool(np.isin(a, (-1.0, 0.0, 1.0)).all())


def profile_text(model, text_path: str | os.PathLike, tokenizer, n_tokens: int, window: int = 128,
                 progress: bool = True) -> ActivityProfile:
    """Tokenize ``text_path`` (``goose_neuro.tokenizer.encode_file``) and profile its first ``n_tokens``."""
    ids = encode_file(text_path, tokenizer, model.cfg.vocab_size, max_tokens=n_tokens, min_tokens=n_tokens)
    prof = profile_tokens(model, ids, window=window, progress=progress, source=str(text_path))
    prof.tokenizer = getattr(tokenizer, "name", type(tokenizer).__name__)
    log.info("profiled %d tokens in %.2f s (%.0f tokens/s)", prof.tokens, prof.seconds, prof.tokens_per_s)
    return prof
