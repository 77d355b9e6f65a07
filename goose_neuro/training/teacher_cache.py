"""Teacher-derived tables, computed once per (teacher, data, window length) and kept on disk.

Per training window: the teacher's cross-entropy ``ce`` (N,) (POCL ranks windows by it) and,
for ``--teacher-cache``, the top-k teacher logits ``values`` (N, T, k) fp16 with their
``index`` (N, T, k) int32 and ``tail`` (N, T, G) float32, the log-sum-exp of the other logits
at each temperature of ``losses.TAIL_TAUS``, so training can run without the teacher.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch
from torch import Tensor

from goose_neuro import losses
from goose_neuro.data import WindowPool
from goose_neuro.fileio import atomic_write_bytes
from goose_neuro.teacher import Teacher

log = logging.getLogger(__name__)


def teacher_fingerprint(teacher: Teacher) -> str:
    """Hash of the teacher's name, configuration and weights (a changed teacher gets new tables)."""
    h = hashlib.sha256(teacher.name.encode())
    h.update(teacher.model.config.to_json_string().encode())
    for p in teacher.model.parameters():
        h.update(f"{float(p.double().sum()):.10e}".encode())
    return h.hexdigest()[:16]


@torch.no_grad()
def teacher_tables(teacher: Teacher, pool: WindowPool, cache_dir: Path, topk: int | None,
                   batch: int = 32) -> dict[str, Tensor]:
    """The tables above for every window of ``pool`` (top-k ones only with ``topk``), read from
    or written to ``cache_dir/teacher/`` (safetensors)."""
    from safetensors.torch import load_file, save

    h = hashlib.sha256(f"{teacher_fingerprint(teacher)}|{pool.T}|{pool.n}|{topk}|{losses.TAIL_TAUS}".encode())
    h.update(pool.ids[: pool.n * pool.T + 1].to(torch.int32).numpy().tobytes())
    path = cache_dir / "teacher" / f"{h.hexdigest()[:24]}.safetensors"
    if path.is_file():
        try:
            return load_file(str(path))
        except Exception:  # a damaged cache entry is simply rebuilt
            log.warning("teacher cache %s unreadable; rebuilding", path)
    out: dict[str, list[Tensor]] = {"ce": [], "values": [], "index": [], "tail": []}
    for i in range(0, pool.n, batch):
        w = pool.windows(torch.arange(i, min(i + batch, pool.n)))  # (b, T+1)
        logits, _ = teacher.forward(w[:, :-1])  # (b, T, V)
        y = w[:, 1:].to(logits.device)
        ce = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
        out["ce"].append(ce.view(y.shape).mean(1).cpu())  # (b,)
        if topk:
            v, ix = logits.topk(topk, dim=-1)  # (b, T, k)
            out["values"].append(v.half().cpu())
            out["index"].append(ix.to(torch.int32).cpu())
            rest = logits.scatter(-1, ix, float("-inf"))  # (b, T, V), top-k removed
            tail = [torch.logsumexp(rest / tau, -1) for tau in losses.TAIL_TAUS]  # G x (b, T)
            out["tail"].append(torch.stack(tail, -1).cpu())  # (b, T, G)
    tables = {k: torch.cat(v) for k, v in out.items() if v}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, save(tables))
    except OSError as e:
        log.warning("cannot write teacher cache %s (%s)", path, e)
    return tables
