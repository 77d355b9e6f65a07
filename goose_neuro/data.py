"""Training text: reading, tokenizing once (cached), windows and splits.

Sources (read by :func:`goose_neuro.text.read_texts`): a text file, a directory
(every non-hidden regular file under it, in sorted order), or, when the ``datasets``
package is installed, a Hugging Face dataset name written ``hf:NAME[:CONFIG]``.
Each document is followed by the tokenizer's end-of-text token.

Tokens are cached as safetensors under a key made of the tokenizer's full
definition and the source bytes, so a changed file or tokenizer is retokenized.

Windows: the token stream is cut into a pool of non-overlapping windows of
``T + 1`` tokens (inputs and next-token targets). The batch for step ``s`` is
drawn from a generator seeded by ``(seed, s)`` alone, so it needs no sampler
state: a resumed run and a data-parallel run see exactly the same windows.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor

from goose_neuro.errors import DataError
from goose_neuro.fileio import atomic_write_bytes
from goose_neuro.text import read_texts  # noqa: F401  (re-exported: data sources are read here)
from goose_neuro.tokenizer import as_tokenizer

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$GOOSE_NEURO_CACHE``, else ``$GOOSE_CACHE``, else ``~/.cache/goose-neuro`` (``~`` expanded)."""
    env = os.environ.get("GOOSE_NEURO_CACHE") or os.environ.get("GOOSE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "goose-neuro"


# -- tokenizing (cached) ---------------------------------------------------------
def tokenize_docs(docs: Sequence[tuple[str, str]], tokenizer: Any) -> Tensor:
    """Token ids (N,) int32: each document's ids followed by the end-of-text id (when the tokenizer
    has one)."""
    tok = as_tokenizer(tokenizer)
    eos = tok.eos_token_id
    ids: list[int] = []
    for _, text in docs:
        ids.extend(tok.encode(text))
        if eos is not None:
            ids.append(eos)
    return torch.tensor(ids, dtype=torch.int32)  # (N,)


def tokenize_source(source: str | os.PathLike, tokenizer: Any, cache_dir: str | os.PathLike | None = None) -> Tensor:
    """Token ids (N,) int64 of a source, read from / written to the cache. ``tokenizer``: one of
    :mod:`goose_neuro.tokenizer` or a transformers tokenizer (a teacher's)."""
    from safetensors.torch import load_file, save

    tok = as_tokenizer(tokenizer)
    docs = read_texts(source)
    h = hashlib.sha256(tok.fingerprint().encode())
    for name, text in docs:
        h.update(b"\x00" + text.encode("utf-8"))
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = cache / "tokens" / f"{h.hexdigest()[:24]}.safetensors"
    if path.is_file():
        try:
            return load_file(str(path))["ids"].long()
        except Exception:  # a damaged cache entry is simply rebuilt
            log.warning("token cache %s unreadable; retokenizing", path)
    ids = tokenize_docs(docs, tok)
    if ids.numel() < 2:
        raise DataError(f"data source {source} tokenizes to {ids.numel()} token(s); need more text")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, save({"ids": ids}))
    except OSError as e:
        log.warning("cannot write token cache %s (%s); continuing without it", path, e)
    return ids.long()


def split_tokens(ids: Tensor, val_fraction: float) -> tuple[Tensor, Tensor]:
    """Last ``val_fraction`` of the stream is the validation split (contiguous, no overlap)."""
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"validation fraction {val_fraction} must be in (0, 1)")
    n_val = max(2, int(round(ids.numel() * val_fraction)))
    if ids.numel() - n_val < 2:
        raise DataError(f"only {ids.numel()} tokens: too few to split off a validation set")
    return ids[:-n_val], ids[-n_val:]


# -- windows -----------------------------------------------------------------------
@dataclass
class WindowPool:
    """Non-overlapping windows of ``T + 1`` tokens over a token stream.

    ``windows(idx)`` -> (len(idx), T + 1) long. ``allowed`` (optional) restricts
    sampling to a subset of window indices (used by the POCL curriculum).
    """

    ids: Tensor  # (N,)
    T: int
    max_windows: int | None = None

    def __post_init__(self) -> None:
        n = (self.ids.numel() - 1) // self.T
        if n < 1:
            raise DataError(f"{self.ids.numel()} tokens are too few for one window of {self.T + 1}; "
                            f"use a shorter --seq-len or more text")
        self.n = n if self.max_windows is None else min(n, self.max_windows)

    def windows(self, idx: Tensor) -> Tensor:
        starts = idx.long() * self.T  # (K,)
        offs = torch.arange(self.T + 1)  # (T+1,)
        return self.ids[starts[:, None] + offs[None, :]]  # (K, T+1)

    def sample_indices(self, step: int, batch: int, seed: int, allowed: Tensor | None = None) -> Tensor:
        """Window indices for ``step``: a pure function of (seed, step, allowed)."""
        g = torch.Generator().manual_seed((int(seed) * 1_000_003 + int(step)) % (2**63 - 1))
        n = self.n if allowed is None else allowed.numel()
        pick = torch.randint(0, n, (batch,), generator=g)  # (B,)
        return pick if allowed is None else allowed[pick]

    def first(self, k: int) -> Tensor:
        """The first ``k`` windows (deterministic evaluation set): (k, T + 1)."""
        return self.windows(torch.arange(min(k, self.n)))


def rank_shard(x: Tensor, rank: int, world: int) -> Tensor:
    """This rank's contiguous share of a global batch (batch must divide evenly)."""
    if x.shape[0] % world:
        raise DataError(f"global batch {x.shape[0]} is not divisible by {world} processes")
    k = x.shape[0] // world
    return x[rank * k:(rank + 1) * k]
