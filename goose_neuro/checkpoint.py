"""Checkpoint directories: the one loader every stage uses.

Layout (format version 1)::

    DIR/config.json          {"format": "goose-neuro-checkpoint", "format_version": 1,
                              "model": {...ModelConfig...}, "tokenizer": "...", "meta": {...}}
    DIR/model.safetensors    weights (safetensors: no pickle, no code execution)
    DIR/training_state/      optional, written by the trainer (also no pickle)

Weights are never read with ``torch.load``/pickle. A missing, truncated or
wrong-version checkpoint raises :class:`CheckpointError` naming the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from goose_neuro.config import ModelConfig
from goose_neuro.errors import CheckpointError, ConfigError
from goose_neuro.fileio import atomic_write_json

FORMAT = "goose-neuro-checkpoint"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def save_checkpoint(model, directory: str | os.PathLike, tokenizer: str | None = None,
                    meta: dict[str, Any] | None = None) -> Path:
    """Write ``model`` into ``directory`` (created if needed). Each file is written atomically,
    weights first, so ``config.json`` only ever points at complete weights."""
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    if model.cfg.tie_embeddings:
        sd.pop("head.weight", None)  # shared with emb.weight
    tmp = d / f".{WEIGHTS_FILE}.tmp{os.getpid()}"
    save_file(sd, str(tmp), metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)})
    os.replace(tmp, d / WEIGHTS_FILE)
    atomic_write_json(d / CONFIG_FILE, {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model.cfg.to_dict(),
        "tokenizer": tokenizer,
        "meta": meta or {},
    })
    return d


def read_checkpoint_config(directory: str | os.PathLike) -> dict[str, Any]:
    """Read and validate ``config.json``; returns the parsed dict (model config validated)."""
    d = Path(directory)
    if not d.exists():
        raise CheckpointError(f"checkpoint {d} does not exist")
    if not d.is_dir():
        raise CheckpointError(f"checkpoint {d} is not a directory (expected config.json + model.safetensors)")
    cfg_path = d / CONFIG_FILE
    if not cfg_path.is_file():
        raise CheckpointError(f"{cfg_path}: missing (not a goose-neuro checkpoint?)")
    try:
        raw = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{cfg_path}: not valid JSON ({e.__class__.__name__}: {e})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CheckpointError(f"{cfg_path}: not a goose-neuro checkpoint config (format field)")
    ver = raw.get("format_version")
    if ver != FORMAT_VERSION:
        raise CheckpointError(f"{cfg_path}: format_version {ver!r} is not supported (this goose-neuro reads {FORMAT_VERSION})")
    try:
        raw["model"] = ModelConfig.from_dict(raw.get("model"))
    except ConfigError as e:
        raise CheckpointError(f"{cfg_path}: {e}") from None
    tok = raw.get("tokenizer")
    if tok is not None and not isinstance(tok, str):
        raise CheckpointError(f"{cfg_path}: tokenizer must be a string or null")
    if not isinstance(raw.get("meta", {}), dict):
        raise CheckpointError(f"{cfg_path}: meta must be an object")
    return raw


def load_checkpoint(directory: str | os.PathLike, device: str | torch.device = "cpu"):
    """Rebuild the student from ``directory``. Returns ``(model, info)`` where ``info`` holds
    ``config`` (ModelConfig), ``tokenizer`` (reference or None) and ``meta``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from goose_neuro.model import ASNNGoose

    raw = read_checkpoint_config(directory)
    w_path = Path(directory) / WEIGHTS_FILE
    if not w_path.is_file():
        raise CheckpointError(f"{w_path}: missing")
    try:
        sd = load_file(str(w_path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{w_path}: unreadable or truncated ({e})") from None
    cfg: ModelConfig = raw["model"]
    model = ASNNGoose(cfg)
    if cfg.tie_embeddings and "emb.weight" in sd:
        sd.setdefault("head.weight", sd["emb.weight"])
    expected = model.state_dict()
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{w_path}: weights do not match config.json "
                              f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    for k, v in sd.items():
        if v.shape != expected[k].shape:
            raise CheckpointError(f"{w_path}: {k} has shape {tuple(v.shape)}, config implies {tuple(expected[k].shape)}")
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise CheckpointError(f"{w_path}: {k} contains NaN or Inf")
    model.load_state_dict(sd)
    model.to(device).eval()
    return model, {"config": cfg, "tokenizer": raw.get("tokenizer"), "meta": raw.get("meta", {})}
