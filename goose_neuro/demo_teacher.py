"""The embedded demo teacher: a small GPT-2 trained offline on Python's own docstrings.

The offline demo needs a teacher that has really been trained on real language,
and the repository ships no third-party text or weights. Every Python
installation carries one honest source of English prose: the documentation
strings of its standard library. This module

1. reads the docstrings (module, class and function) of the standard library
   modules named in ``sys.stdlib_module_names`` -- and only those -- from their
   source files with :mod:`ast` (nothing is imported, so no module runs), in
   sorted file order, deduplicated, and splits them by a hash of each docstring
   into ``train.txt`` (95%) and ``val.txt`` (5%);
2. trains a byte-level BPE tokenizer (``tokenizers``) on ``train.txt``;
3. trains a small ``GPT2LMHeadModel`` on it for a time budget (about 75 s on two
   CPU cores), then measures validation perplexity of the trained network, of the
   same network freshly initialised, and of a unigram model;
4. saves model, tokenizer, corpus and ``teacher_card.json`` into a cache
   directory, by default ``~/.cache/goose-neuro/demo-teacher-v1`` (the root is
   overridden by ``GOOSE_NEURO_CACHE`` or ``GOOSE_CACHE``), and reuses it while it
   is valid (card present, corpus hashes match).

It is a *demo teacher*: a toy that makes the pipeline's numbers mean something
offline. It is labelled as such in its card and in everything printed about it.
For real work pass ``--teacher gpt2 --data <dataset>``.

Run alone: ``python -m goose_neuro.cli.demo_teacher [--dir DIR] [--budget S] [--force]``.
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import os
import platform
import sys
import sysconfig
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import torch
from torch import Tensor

from goose_neuro.data import default_cache_dir, tokenize_docs
from goose_neuro.errors import TeacherError
from goose_neuro.fileio import atomic_dir, atomic_write_json, atomic_write_text
from goose_neuro.schedules import cosine_lr
from goose_neuro.teacher import EOT, gpt2_model, quiet_transformers, train_bpe
from goose_neuro.training.evaluation import perplexity

LABEL = "demo teacher"
NAME = "goose-neuro demo teacher v1"
CARD_FORMAT = "goose-neuro-demo-teacher"
CARD_VERSION = 1
DIR_NAME = "demo-teacher-v1"
CARD_FILE = "teacher_card.json"
TRAIN_FILE = "train.txt"
VAL_FILE = "val.txt"
SKIP_DIRS = {"test", "tests", "idle_test"}  # test suites inside stdlib packages are code, not prose

Log = Callable[[str], None]


@dataclass(frozen=True)
class DemoTeacherSpec:
    """How the demo teacher is built. The defaults fit about 90 s on two CPU cores.

    ``budget_s``: wall-clock seconds of language-model training (the step count is
    fixed from the speed of the first steps, but never below ``min_steps``, so a busy
    machine takes longer rather than getting a worse teacher). ``max_steps``: upper bound on steps
    (tests set it, with a large budget, for a deterministic run). ``max_chars``:
    truncate the corpus (tests only). ``val_every``: docstrings whose hash is 0
    modulo this go to the validation split.
    """

    vocab_size: int = 2048
    n_layer: int = 3
    n_embd: int = 128
    n_head: int = 4
    n_positions: int = 128
    batch: int = 4  # small batches learn more per token here: 4/8/16 gave val ppl 113/140/174 at 410k tokens
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup: int = 50
    budget_s: float = 75.0
    min_steps: int = 800
    max_steps: int = 20000
    eval_windows: int = 48
    val_every: int = 20
    max_chars: int | None = None
    seed: int = 0


# -- cache location ------------------------------------------------------------------
def default_dir() -> Path:
    """``DIR_NAME`` under the cache root (:func:`goose_neuro.data.default_cache_dir`)."""
    return default_cache_dir() / DIR_NAME


def _say(log: Log | None, msg: str) -> None:
    if log is not None:
        log(f"[{LABEL}] {msg}")


# -- corpus ---------------------------------------------------------------------------
def stdlib_source_files(stdlib_dir: str | os.PathLike | None = None) -> list[Path]:
    """Source files of the modules in ``sys.stdlib_module_names``, sorted by module name.

    A module ``m`` is ``m.py`` or the package ``m/`` (all its ``.py`` files, sorted,
    except test suites). Extension modules have no source and are left out.
    """
    root = Path(stdlib_dir or sysconfig.get_paths()["stdlib"])
    files: list[Path] = []
    for name in sorted(sys.stdlib_module_names):
        single, pkg = root / f"{name}.py", root / name
        if single.is_file():
            files.append(single)
        elif (pkg / "__init__.py").is_file():
            for p in sorted(pkg.rglob("*.py")):
                parts = p.relative_to(pkg).parts
                if not any(x in SKIP_DIRS or x.startswith("test_") for x in parts):
                    files.append(p)
    return files


DOC_NODES = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def _doc_nodes(node: ast.AST) -> Iterator[ast.AST]:
    """Module, class and function nodes in source order, descending only through statement
    blocks (if/try/with/for/match bodies), never into expressions."""
    if isinstance(node, DOC_NODES):
        yield node
    for name in ("body", "orelse", "finalbody", "handlers", "cases"):
        block = getattr(node, name, None)
        if isinstance(block, list):
            for child in block:
                yield from _doc_nodes(child)


def file_docstrings(path: Path) -> list[str]:
    """Docstrings of the module, its classes and functions, in source order."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, OSError):
        return []
    docs = (ast.get_docstring(n, clean=True) for n in _doc_nodes(tree))
    return [d.strip() for d in docs if d and d.strip()]


def iter_docstrings(files: Sequence[Path] | None = None) -> Iterator[str]:
    """Standard-library docstrings, deduplicated, in a deterministic order (lazily)."""
    seen: set[str] = set()
    for f in files if files is not None else stdlib_source_files():
        for d in file_docstrings(f):
            if d not in seen:
                seen.add(d)
                yield d


def split_corpus(docs: Iterable[str], val_every: int = 20, max_chars: int | None = None) -> tuple[str, str, int]:
    """(train_text, val_text, n_docs): docstrings split by a hash of each, joined by ``<|endoftext|>``.

    The separator is the tokenizer's end-of-text special token, so the text files
    tokenize to the same stream here and in :mod:`goose_neuro.data`. Stops after
    ``max_chars`` characters when given.
    """
    train: list[str] = []
    val: list[str] = []
    total = 0
    for d in docs:
        if max_chars is not None and total >= max_chars:
            break
        total += len(d)
        h = int.from_bytes(hashlib.sha256(d.encode("utf-8")).digest()[:8], "big")
        (val if h % val_every == 0 else train).append(d)
    if not train or not val:
        raise TeacherError("the standard-library docstring corpus came out empty; is the Python "
                           "installation's library source (the .py files) present?")
    return EOT.join(train), EOT.join(val), len(train) + len(val)


# -- tokenizer and model (the project's builders) -------------------------------------
def make_model(spec: DemoTeacherSpec, vocab_size: int, eos_id: int):
    return gpt2_model(vocab_size, eos_id, spec.n_layer, spec.n_embd, spec.n_head, spec.n_positions, spec.seed,
                      resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, loss_type="ForCausalLM")


def windows(ids: Tensor, T: int, k: int | None = None) -> Tensor:
    """Non-overlapping windows (n, T) of a token stream (the first ``k`` of them)."""
    n = ids.numel() // T
    if k is not None:
        n = min(n, k)
    return ids[: n * T].view(n, T)  # (n, T)


def lm_perplexity(model, ids: Tensor, T: int, k: int, batch: int = 16) -> float:
    """Token-level perplexity over the first ``k`` non-overlapping windows of ``T`` tokens (T - 1
    predictions each), by :func:`goose_neuro.training.evaluation.perplexity`."""
    model.eval()
    return perplexity(lambda x: model(input_ids=x).logits.float(), windows(ids, T, k), batch)[0]


def unigram_perplexity(train_ids: Tensor, val_ids: Tensor, T: int, k: int, vocab: int) -> float:
    """Perplexity of add-one unigram frequencies from train on the same validation targets."""
    counts = torch.bincount(train_ids, minlength=vocab).double() + 1.0  # (V,)
    logp = (counts / counts.sum()).log()
    tgt = windows(val_ids, T, k)[:, 1:].reshape(-1)
    return math.exp(-logp[tgt].mean().item())


def train_lm(model, train_ids: Tensor, spec: DemoTeacherSpec, log: Log | None = None) -> dict:
    """AdamW with warmup + cosine, for ``spec.budget_s`` seconds (or ``spec.max_steps``).

    The step total is fixed after 10 timed steps so the cosine schedule completes.
    Returns a dict of training statistics (steps, tokens seen, first/last loss, seconds).
    """
    T, B = spec.n_positions, spec.batch
    g = torch.Generator().manual_seed(spec.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay, betas=(0.9, 0.98))
    n_win = (train_ids.numel() - 1) // T
    total, step, losses, t0, c0 = spec.max_steps, 0, [], time.perf_counter(), time.process_time()
    model.train()
    while step < total:
        starts = torch.randint(0, train_ids.numel() - T, (B,), generator=g)  # (B,)
        x = train_ids[starts[:, None] + torch.arange(T)[None, :]]  # (B, T)
        for grp in opt.param_groups:
            grp["lr"] = spec.lr * cosine_lr(step, total, spec.warmup, min_frac=0.1)
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        step += 1
        el = time.perf_counter() - t0
        if step == 10:
            total = min(spec.max_steps, max(spec.min_steps, spec.warmup + 10, int(spec.budget_s / (el / 10))))
            _say(log, f"training {total} steps (batch {B} x {T} tokens, {n_win} train windows)")
        if step >= 10 and step % max(1, total // 4) == 0:
            _say(log, f"step {step}/{total} loss {sum(losses[-50:]) / len(losses[-50:]):.3f} "
                      f"({step * B * T / el:,.0f} tok/s)")
        if step < total and el > 1.5 * spec.budget_s and step >= max(spec.min_steps, spec.warmup):  # slow machine
            _say(log, f"stopping early at step {step}: over 1.5x the time budget")
            break
    head, tail = losses[: min(10, len(losses))], losses[-min(50, len(losses)):]
    return {"steps": step, "tokens_seen": step * B * T, "seconds": round(time.perf_counter() - t0, 1),
            "cpu_seconds": round(time.process_time() - c0, 1),
            "loss_first10": round(sum(head) / len(head), 4), "loss_last50": round(sum(tail) / len(tail), 4)}


# -- build / validate / load ------------------------------------------------------------
def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_card(directory: str | os.PathLike) -> dict | None:
    """The card of a complete, intact demo teacher in ``directory``, else None."""
    d = Path(directory)
    try:
        card = json.loads((d / CARD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT or card.get("format_version") != CARD_VERSION:
        return None
    for f in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        if not (d / f).is_file():
            return None
    try:
        shas = {f: _sha((d / f).read_text(encoding="utf-8")) for f in (TRAIN_FILE, VAL_FILE)}
    except (OSError, UnicodeDecodeError):
        return None
    if shas != card.get("corpus", {}).get("sha256"):
        return None
    return card


def _card(spec: DemoTeacherSpec, n_files: int, n_docs: int, train: str, val: str, n_train: int, n_val: int,
          n_params: int, vocab: int, stats: dict, ppl: dict, build_s: float, cpu_s: float) -> dict:
    import transformers

    return {
        "format": CARD_FORMAT, "format_version": CARD_VERSION,
        "label": LABEL, "name": NAME,
        "purpose": ("demo teacher for the offline goose-neuro demo: a toy language model, trained for a minute "
                    "or two on CPU, so the pipeline runs on real text without a network. Not a model for any "
                    "real use; for real work pass --teacher gpt2 --data <dataset>."),
        "architecture": "GPT2LMHeadModel", "params": n_params, "layers": spec.n_layer, "dim": spec.n_embd,
        "heads": spec.n_head, "context": spec.n_positions, "vocab": vocab,
        "tokenizer": f"byte-level BPE, {vocab} tokens, trained on train.txt",
        "corpus": {
            "source": (f"docstrings (module, class, function) of the Python {platform.python_version()} standard "
                       f"library modules named in sys.stdlib_module_names, read from their .py sources with ast "
                       f"(not imported), test suites excluded, sorted by module, deduplicated; split by "
                       f"sha256(docstring) mod {spec.val_every} == 0 -> val"),
            "files": n_files, "docstrings": n_docs,
            "chars": {"train": len(train), "val": len(val)}, "tokens": {"train": n_train, "val": n_val},
            "sha256": {TRAIN_FILE: _sha(train), VAL_FILE: _sha(val)},
        },
        "training": {**stats, "batch": spec.batch, "lr": spec.lr, "weight_decay": spec.weight_decay,
                     "warmup": spec.warmup, "budget_s": spec.budget_s, "schedule": "AdamW, linear warmup, "
                     "cosine to 10%", "threads": torch.get_num_threads(), "seed": spec.seed},
        "ppl_token_level": {"context": spec.n_positions, "windows": spec.eval_windows, **ppl},
        "build_seconds": round(build_s, 1), "build_cpu_seconds": round(cpu_s, 1),
        "software": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__},
        "spec": asdict(spec),
    }


def build_demo_teacher(directory: str | os.PathLike | None = None, spec: DemoTeacherSpec = DemoTeacherSpec(),
                       log: Log | None = None) -> Path:
    """Build the demo teacher into ``directory`` (atomically; replaces what is there). Returns it."""
    t0, c0 = time.perf_counter(), time.process_time()
    d = Path(directory) if directory is not None else default_dir()
    files = stdlib_source_files()
    train, val, n_docs = split_corpus(iter_docstrings(files), spec.val_every, spec.max_chars)
    _say(log, f"corpus: {n_docs} docstrings from {len(files)} standard-library files "
              f"({len(train):,} train / {len(val):,} val chars)")
    tok = train_bpe(train.split(EOT), spec.vocab_size)
    # tokenized as goose_neuro.data tokenizes the saved files (one end-of-text after each document)
    train_ids, val_ids = (tokenize_docs([(f, t)], tok).long() for f, t in ((TRAIN_FILE, train), (VAL_FILE, val)))
    vocab = len(tok)
    _say(log, f"tokenizer: byte-level BPE, {vocab} tokens; {train_ids.numel():,} train / "
              f"{val_ids.numel():,} val tokens")
    model = make_model(spec, vocab, tok.eos_token_id)
    T, k = spec.n_positions, spec.eval_windows
    ppl_random = lm_perplexity(model, val_ids, T, k)
    stats = train_lm(model, train_ids, spec, log)
    ppl = {"val_trained": round(lm_perplexity(model, val_ids, T, k), 2), "val_random_init": round(ppl_random, 2),
           "val_unigram": round(unigram_perplexity(train_ids, val_ids, T, k, vocab), 2)}
    _say(log, f"validation perplexity: trained {ppl['val_trained']:.1f}, unigram {ppl['val_unigram']:.1f}, "
              f"same network untrained {ppl['val_random_init']:.1f}")
    n_params = sum(p.numel() for p in model.parameters())
    with atomic_dir(d) as tmp, quiet_transformers():
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        atomic_write_text(tmp / TRAIN_FILE, train)
        atomic_write_text(tmp / VAL_FILE, val)
        atomic_write_json(tmp / CARD_FILE, _card(spec, len(files), n_docs, train, val, train_ids.numel(),
                                                 val_ids.numel(), n_params, vocab, stats, ppl,
                                                 time.perf_counter() - t0, time.process_time() - c0))
    _say(log, f"saved to {d} in {time.perf_counter() - t0:.0f} s")
    return d


def ensure_demo_teacher(directory: str | os.PathLike | None = None, spec: DemoTeacherSpec = DemoTeacherSpec(),
                        force: bool = False, log: Log | None = None) -> Path:
    """Return the cached demo teacher directory, building it first if missing, invalid or ``force``."""
    d = Path(directory) if directory is not None else default_dir()
    card = None if force else read_card(d)
    if card is not None:
        p = card.get("ppl_token_level", {})
        _say(log, f"using cached {d} (val perplexity {p.get('val_trained')} vs {p.get('val_random_init')} "
                  f"untrained)")
        return d
    if d.exists() and not force:
        _say(log, f"{d} is incomplete or from another version; rebuilding")
    _say(log, f"building {NAME} (once; about 90 s on 2 CPU cores)")
    return build_demo_teacher(d, spec, log)
