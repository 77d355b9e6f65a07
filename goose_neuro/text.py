"""Reading text: the one reader every stage uses (training data, evaluation, checks, energy).

``read_text(path)`` is one UTF-8 text file; ``read_texts(source)`` is a training or
evaluation source: a file, a directory (every non-hidden regular file under it, in sorted
order), or, when the ``datasets`` package is installed, a Hugging Face dataset written
``hf:NAME[:CONFIG]`` (its ``train`` split, ``text`` column). Both raise
:class:`~goose_neuro.errors.DataError` naming the file for missing, binary, non-UTF-8 or
empty input. Needs neither torch nor transformers.
"""

from __future__ import annotations

import os
from pathlib import Path

from goose_neuro.errors import DataError

HF_PREFIX = "hf:"


def _decode(path: Path) -> str:
    """The file's text; DataError when it looks binary or is not UTF-8."""
    raw = path.read_bytes()
    if b"\x00" in raw[:65536]:
        raise DataError(f"{path}: looks binary (contains NUL bytes); pass UTF-8 text files")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); convert it to UTF-8") from None


def read_text(path: str | os.PathLike) -> str:
    """The text of one UTF-8 file that holds some non-blank text."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"text file {p} does not exist")
    if p.is_dir():
        raise DataError(f"text file {p} is a directory (pass a UTF-8 text file)")
    text = _decode(p)
    if not text.strip():
        raise DataError(f"text file {p} is empty")
    return text


def _files_under(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(d).parts))


def _hf_texts(spec: str) -> list[tuple[str, str]]:
    try:
        import datasets  # noqa: F401
    except ImportError:
        raise DataError(f"{spec}: Hugging Face dataset names need the `datasets` package "
                        f"(pip install datasets)") from None
    from datasets import load_dataset

    parts = spec[len(HF_PREFIX):].split(":")
    try:
        ds = load_dataset(parts[0], parts[1] if len(parts) > 1 else None, split="train")
    except Exception as e:  # datasets raises many types (hub, network, parsing)
        raise DataError(f"cannot load dataset {parts[0]!r}: {type(e).__name__}: {e}") from None
    if "text" not in ds.column_names:
        raise DataError(f"dataset {parts[0]!r} has no 'text' column (columns: {ds.column_names})")
    return [(spec, "\n".join(t for t in ds["text"] if t))]


def read_texts(source: str | os.PathLike) -> list[tuple[str, str]]:
    """``[(name, text)]`` for a file, a directory or an ``hf:`` dataset name (empty files dropped)."""
    s = str(source)
    if s.startswith(HF_PREFIX):
        docs = _hf_texts(s)
    else:
        p = Path(s)
        if not p.exists():
            raise DataError(f"data path {s} does not exist (pass a text file, a directory of text files, "
                            f"or hf:DATASET with `datasets` installed)")
        files = [p] if p.is_file() else _files_under(p)
        if not files:
            raise DataError(f"data directory {s} contains no files")
        docs = [(str(f), _decode(f)) for f in files]
    docs = [(n, t) for n, t in docs if t.strip()]
    if not docs:
        raise DataError(f"data source {s} holds no text (empty files)")
    return docs
