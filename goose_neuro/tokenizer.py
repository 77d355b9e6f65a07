"""Tokenizers: the one loader every stage uses, so every tool tokenizes a checkpoint the same way.

``load_tokenizer(directory, vocab_size, reference=None)`` looks for the tokenizer of a
checkpoint (or of an export, which carries a copy)::

    1. DIRECTORY/tokenizer.json            (the ``tokenizers`` library: no torch, no transformers)
    2. REFERENCE/tokenizer.json            (a checkpoint's ``tokenizer`` field, when it is a local directory)
    3. DIRECTORY or REFERENCE with only tokenizer_config.json: transformers' AutoTokenizer (slow tokenizers)
    4. UTF-8 bytes as token ids (:class:`ByteTokenizer`), with a warning; only for vocabularies >= 256

Every tokenizer here has the same small interface: ``encode(text) -> list[int]`` (no
special tokens added; special tokens written in the text, such as ``<|endoftext|>``, are
recognised), ``decode(ids) -> str``, ``eos_token_id`` (int or None), ``name`` and
``fingerprint()`` (hash of the full definition, the key of the token cache).
:func:`as_tokenizer` wraps a transformers tokenizer (a teacher's) in the same interface,
using the very ``tokenizers`` object transformers encodes with.

:func:`encode_file` is the one way a stage turns a text file into token ids: read with
:func:`goose_neuro.text.read_text`, encode the whole text, keep the first ``max_tokens``.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

from goose_neuro.errors import DataError

TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "tokenizer_config.json"
BYTE_VOCAB = 256


class ByteTokenizer:
    """UTF-8 bytes are the token ids 0..255 (fallback when there are no tokenizer files)."""

    name = "utf-8 bytes (fallback: no tokenizer in the checkpoint)"
    eos_token_id: int | None = None

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(int(i) for i in ids if 0 <= i < BYTE_VOCAB).decode("utf-8", errors="replace")

    def fingerprint(self) -> str:
        return hashlib.sha256(b"utf-8 bytes").hexdigest()[:16]


class HFTokenizer:
    """A ``tokenizers.Tokenizer`` (what ``tokenizer.json`` holds) with the interface above."""

    def __init__(self, tok: Any, name: str, eos_token_id: int | None = None) -> None:
        self.tok, self.name, self.eos_token_id = tok, name, eos_token_id

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def fingerprint(self) -> str:
        return hashlib.sha256(self.tok.to_str().encode("utf-8")).hexdigest()[:16]

    def __len__(self) -> int:
        return self.tok.get_vocab_size(with_added_tokens=True)


class _CallTokenizer:
    """A transformers tokenizer without a ``tokenizers`` backend (a slow, Python tokenizer)."""

    def __init__(self, tok: Any, name: str) -> None:
        self.tok, self.name, self.eos_token_id = tok, name, tok.eos_token_id

    def encode(self, text: str) -> list[int]:
        return list(self.tok(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def fingerprint(self) -> str:
        spec = json.dumps(sorted(self.tok.get_vocab().items()))
        return hashlib.sha256(spec.encode("utf-8")).hexdigest()[:16]


Tokenizer = ByteTokenizer | HFTokenizer | _CallTokenizer


def as_tokenizer(tok: Any) -> Tokenizer:
    """``tok`` in this module's interface: a tokenizer from here (returned as is), a transformers
    tokenizer (fast ones through their ``tokenizers`` backend) or a ``tokenizers.Tokenizer``."""
    if isinstance(tok, (ByteTokenizer, HFTokenizer, _CallTokenizer)):
        return tok
    name = str(getattr(tok, "name", "") or getattr(tok, "name_or_path", "") or type(tok).__name__)
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None:
        return HFTokenizer(backend, name, tok.eos_token_id)
    if hasattr(tok, "to_str") and hasattr(tok, "encode"):  # a tokenizers.Tokenizer
        return HFTokenizer(tok, name, None)
    return _CallTokenizer(tok, name)


def _special_token(directory: Path, key: str) -> str | None:
    """The content of a special token (e.g. ``eos_token``) named in the tokenizer config files."""
    for fname in (CONFIG_FILE, "special_tokens_map.json"):
        try:
            v = json.loads((directory / fname).read_text(encoding="utf-8")).get(key)
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(v, dict):
            v = v.get("content")
        if isinstance(v, str):
            return v
    return None


def _from_json(directory: Path) -> HFTokenizer:
    from tokenizers import Tokenizer as RustTokenizer

    p = directory / TOKENIZER_FILE
    try:
        tok = RustTokenizer.from_file(str(p))
    except Exception as e:  # tokenizers raises plain Exception subclasses
        raise DataError(f"{p}: not a readable tokenizer ({' '.join(str(e).split())[:160]})") from None
    eos = _special_token(directory, "eos_token")
    return HFTokenizer(tok, str(directory), tok.token_to_id(eos) if eos is not None else None)


def _from_transformers(directory: Path) -> Tokenizer:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(directory))
    except Exception as e:  # transformers raises many types (OSError, ValueError, ...)
        raise DataError(f"tokenizer in {directory}: cannot be loaded "
                        f"({type(e).__name__}: {' '.join(str(e).split())[:160]})") from None
    wrapped = as_tokenizer(tok)
    wrapped.name = str(directory)
    return wrapped


def load_tokenizer(directory: str | os.PathLike, vocab_size: int | None = None, *,
                   reference: str | None = None) -> Tokenizer:
    """The tokenizer of a checkpoint or export ``directory`` (see the module docstring for the
    order). ``reference``: the checkpoint's ``tokenizer`` field (used when it is a local
    directory). ``vocab_size``: the model's vocabulary, which decides whether the UTF-8 byte
    fallback is allowed (None: allowed)."""
    cands = [Path(directory)]
    if reference and Path(reference).expanduser().is_dir():
        cands.append(Path(reference).expanduser())
    for d in cands:
        if (d / TOKENIZER_FILE).is_file():
            return _from_json(d)
    for d in cands:
        if (d / CONFIG_FILE).is_file():
            return _from_transformers(d)
    if vocab_size is not None and vocab_size < BYTE_VOCAB:
        raise DataError(f"{directory} has no tokenizer files and its vocabulary ({vocab_size}) is too small "
                        f"for the UTF-8 byte fallback (needs {BYTE_VOCAB}); save the tokenizer into it")
    warnings.warn(f"{directory} has no tokenizer files; using UTF-8 bytes as tokens", stacklevel=2)
    return ByteTokenizer()


def encode_file(path: str | os.PathLike, tokenizer: Tokenizer, vocab_size: int, max_tokens: int | None = None,
                min_tokens: int = 1) -> list[int]:
    """Token ids of the UTF-8 text file ``path``: the whole text encoded, the first ``max_tokens``
    kept. DataError when fewer than ``min_tokens`` come out or an id is outside the vocabulary."""
    from goose_neuro.text import read_text

    ids = list(tokenizer.encode(read_text(path)))
    if max_tokens is not None:
        ids = ids[:max_tokens]
    if len(ids) < min_tokens:
        raise DataError(f"text file {path}: only {len(ids)} token(s), {min_tokens} requested")
    if max(ids) >= vocab_size:
        raise DataError(f"text file {path}: token id {max(ids)} >= model vocabulary {vocab_size} "
                        f"(wrong tokenizer?)")
    return ids
