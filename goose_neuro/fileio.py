"""Crash-safe file and directory writes.

Everything goose-neuro writes (checkpoints, exports, reports) is first written
under a temporary name in the same directory and then renamed into place, so a
process killed at any moment leaves either the old complete file or the new one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a fresh temporary directory next to ``final``; on success it replaces ``final``.

    On any exception the temporary directory is removed and ``final`` is untouched.
    The swap renames the old directory aside first, so at every instant either the
    old or the new complete directory exists under ``final`` (or its ``.old`` twin).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; the result should be a normal directory
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = final.with_name(f".{final.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        if not overwrite:
            shutil.rmtree(tmp, ignore_errors=True)
            raise FileExistsError(final)
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def check_writable_dir(path: str | os.PathLike) -> Path:
    """Return ``path`` if its nearest existing ancestor is a writable directory."""
    from goose_neuro.errors import GooseError

    p = Path(path).absolute()
    probe = p
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise GooseError(f"output path {path}: {probe} is not a directory")
    if not os.access(probe, os.W_OK):
        raise GooseError(f"output path {path}: {probe} is not writable")
    try:  # os.access says yes to root even where the filesystem refuses: try for real
        fd, tmp = tempfile.mkstemp(prefix=".goose-write-probe.", dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise GooseError(f"output path {path}: {probe} is not writable ({e.strerror or e})") from None
    if p.exists() and not p.is_dir():
        raise GooseError(f"output path {path} exists and is not a directory")
    return p
