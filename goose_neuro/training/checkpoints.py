"""Training checkpoints: optimizer state without pickle, atomic step directories, rotation, resume.

Layout of a run directory::

    RUN/                                   the final model (a checkpoint directory) once training ends
    RUN/metrics.jsonl                      one JSON record per step and per evaluation
    RUN/checkpoints/step_NNNNNNN/          a full checkpoint plus
        training_state/state.safetensors   optimizer moments, RNG state, CTKD/aligner parameters
        training_state/state.json          step, counters, POCL stage, optimizer groups, run options

Every directory is written under a temporary name and renamed into place, and old ones are
renamed before they are deleted, so a process killed at any moment leaves the previous
complete checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from goose_neuro.fileio import atomic_dir, atomic_write_json, atomic_write_text

STATE_DIR = "training_state"
CKPT_RE = re.compile(r"^step_(\d{7,})$")
STATE_TENSORS = "state.safetensors"
STATE_JSON = "state.json"
FINAL_STAGING = ".final_staging"


# -- optimizer state (de)serialisation without pickle ---------------------------------------------
def optimizer_to_files(opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Optimizer state as (tensors for safetensors, JSON-ready rest)."""
    sd = opt.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, Tensor):
                tensors[f"opt.{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_files(opt: torch.optim.Optimizer, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, pid, k = key.split(".", 2)
            state.setdefault(int(pid), {})[k] = v
    for key, v in meta["scalars"].items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    groups = meta["param_groups"]
    for g in groups:
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
    opt.load_state_dict({"state": state, "param_groups": groups})


# -- step directories ---------------------------------------------------------------------------
def step_dir(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step_{step:07d}"


def latest_checkpoint(run_dir: Path) -> Path | None:
    """Newest complete ``checkpoints/step_N`` directory (temporary leftovers are ignored)."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := CKPT_RE.match(p.name)) and p.is_dir()
             and (p / STATE_DIR / STATE_JSON).is_file()]
    return max(found)[1] if found else None


def latest_step(run_dir: Path) -> int | None:
    ck = latest_checkpoint(run_dir)
    return int(CKPT_RE.match(ck.name).group(1)) if ck else None


def write_step(final: Path, write_model: Callable[[Path], None], tensors: dict[str, Tensor],
               meta: dict[str, Any]) -> None:
    """Write one step directory atomically: the model (``write_model(dir)``) and its training state."""
    from safetensors.torch import save_file

    with atomic_dir(final) as tmp:
        write_model(tmp)
        (tmp / STATE_DIR).mkdir()
        save_file(tensors, str(tmp / STATE_DIR / STATE_TENSORS))
        atomic_write_json(tmp / STATE_DIR / STATE_JSON, meta)


def read_state(ck: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The training state of a step directory (raises whatever the readers raise on damage)."""
    from safetensors.torch import load_file

    tensors = load_file(str(ck / STATE_DIR / STATE_TENSORS))
    meta = json.loads((ck / STATE_DIR / STATE_JSON).read_text(encoding="utf-8"))
    return tensors, meta


def prune(run_dir: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` step directories, and temporaries a killed process left."""
    root = run_dir / "checkpoints"
    done = sorted((int(m.group(1)), p) for p in root.iterdir() if (m := CKPT_RE.match(p.name)))
    for _, p in done[:-keep]:
        trash = p.with_name(f".{p.name}.trash")  # rename first: a kill never leaves a half-deleted step_N
        shutil.rmtree(trash, ignore_errors=True)
        os.replace(p, trash)
        shutil.rmtree(trash, ignore_errors=True)
    for p in root.glob(".step_*"):  # temporaries a killed earlier process left (this one's are done)
        shutil.rmtree(p, ignore_errors=True)


def promote_final(run_dir: Path, write_model: Callable[[Path], None]) -> None:
    """Make the run directory itself a loadable checkpoint (each file replaced atomically,
    ``config.json`` last: it points at the weights)."""
    staging = run_dir / FINAL_STAGING
    with atomic_dir(staging) as tmp:
        write_model(tmp)
    names = sorted(p.name for p in staging.iterdir())
    for n in [n for n in names if n != "config.json"] + ["config.json"]:
        os.replace(staging / n, run_dir / n)
    shutil.rmtree(staging, ignore_errors=True)


def truncate_metrics(path: Path, step: int) -> None:
    """Drop the records a resumed run will write again (steps >= ``step``, but keep its evaluation)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a kill
            continue
        if rec.get("step", 0) < step or (rec.get("kind") == "eval" and rec.get("step") == step):
            keep.append(line)
    atomic_write_text(path, "".join(k + "\n" for k in keep))
