"""Shared, built-once inputs for the hostile-file and bad-input tests.

``assets(tmp_path_factory)`` builds (once per test session) a tiny teacher with its
tokenizer, a training text, a student checkpoint, its ONNX export and its Loihi 2
package. ``run_cli(main, argv)`` runs a CLI's ``main`` in-process and returns
``(exit code, stdout, stderr)``. ``Payload`` is a real malicious pickle: unpickling
it creates a file.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import shutil
from pathlib import Path
from typing import Callable, Sequence

from _text import corpus  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

_CACHE: dict[str, dict] = {}


class Payload:
    """Unpickling this object calls ``open(marker, 'w')``: it creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def pickle_bytes(marker: Path) -> bytes:
    """A plain pickle stream whose loading creates ``marker``."""
    return pickle.dumps(Payload(marker), protocol=2)


def torch_pickle_bytes(marker: Path, dest: Path) -> bytes:
    """A ``torch.save`` zip archive (``pytorch_model.bin`` style) carrying the payload."""
    import torch

    torch.save({"weight": Payload(marker)}, dest)
    return dest.read_bytes()


def assets(tmp_path_factory) -> dict:
    """Teacher, text, checkpoint (+ tokenizer files), ONNX export and Loihi 2 package (built once)."""
    if "a" in _CACHE:
        return _CACHE["a"]
    import torch
    from transformers import AutoTokenizer

    from goose_neuro.checkpoint import save_checkpoint
    from goose_neuro.export import export_checkpoint
    from goose_neuro.config import preset
    from goose_neuro.model import ASNNGoose
    from goose_neuro.teacher import make_tiny_teacher

    root = tmp_path_factory.mktemp("hostile_assets")
    text = root / "text.txt"
    text.write_text(corpus(), encoding="utf-8")
    tdir = make_tiny_teacher(root / "teacher", corpus(), vocab_size=120, n_positions=32)
    tok = AutoTokenizer.from_pretrained(str(tdir))
    torch.manual_seed(0)
    model = ASNNGoose(preset("tiny", vocab_size=len(tok)))
    ck = save_checkpoint(model, root / "ck", tokenizer=str(tdir))
    tok.save_pretrained(str(ck))
    other = save_checkpoint(ASNNGoose(preset("tiny", vocab_size=len(tok) + 7)), root / "ck_other_vocab")
    a = {"root": root, "text": text, "teacher": tdir, "ck": ck, "ck_other_vocab": other,
         "vocab": len(tok), "onnx": export_checkpoint(ck, "onnx", root / "onnx"),
         "loihi2": export_checkpoint(ck, "loihi2", root / "loihi2"),
         "onnx_other_vocab": export_checkpoint(other, "onnx", root / "onnx_other_vocab")}
    _CACHE["a"] = a
    return a


def copy(src: Path, dst: Path) -> Path:
    """Copy a file or directory tree; returns ``dst``."""
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    return dst


def run_cli(main: Callable[[Sequence[str] | None], int], argv: Sequence[str]) -> tuple[int, str, str]:
    """Run ``main(argv)`` in-process; argparse's SystemExit counts as its exit code."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    return code, out.getvalue(), err.getvalue()
