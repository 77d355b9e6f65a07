"""Distillation trainer for ASNN-Goose students.

One optimizer step (global batch ``B`` windows of ``T`` tokens, split over
``world`` processes and ``grad_accum`` micro-batches)::

    idx   = windows for this step (a pure function of seed and step; POCL may restrict the pool)
    z_t   = teacher logits (live, or top-k from the on-disk cache)
    L     = alpha * tau^2 KL + (1 - alpha) CE + w_align * L_align + w_reg (tau - anchor)^2
    grads averaged over micro-batches and processes (torch.distributed all-reduce)
    skip the step if the loss or gradient norm is not finite (stop after K in a row)
    clip, AdamW (cosine LR with warm-up; CTKD's temperature in its own group and LR)

Training state (optimizer moments, step, POCL stage, RNG) is written next to each
checkpoint as safetensors + JSON, never pickle. Each checkpoint directory is
written under a temporary name and renamed into place, so a process killed at
any moment leaves the previous complete checkpoint. Because the batch of a step
depends only on (seed, step), a resumed run on CPU reproduces the losses of an
uninterrupted run exactly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from goose_neuro import losses
from goose_neuro.align import HiddenAligner
from goose_neuro.checkpoint import load_checkpoint, read_checkpoint_config, save_checkpoint
from goose_neuro.config import ModelConfig
from goose_neuro.data import WindowPool, rank_shard
from goose_neuro.errors import CheckpointError, ConfigError, GooseError
from goose_neuro.fileio import atomic_dir, atomic_write_bytes, atomic_write_json, atomic_write_text
from goose_neuro.model import ASNNGoose
from goose_neuro.schedules import (CTKDTemperature, POCLSchedule, adakd_token_tau, anchor_reg, cosine_lr,
                                   ctkd_lambda, make_pocl, parse_floats)
from goose_neuro.teacher import Teacher, check_context, check_vocab

log = logging.getLogger(__name__)

STATE_DIR = "training_state"
CKPT_RE = re.compile(r"^step_(\d{7,})$")


class TrainingError(GooseError):
    """Training cannot continue (e.g. the loss keeps diverging)."""


@dataclass
class TrainConfig:
    """Everything that shapes a run (stored in each checkpoint's meta)."""

    steps: int = 1000
    batch_size: int = 8  # global: all processes and micro-batches together
    seq_len: int = 64
    grad_accum: int = 1
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup: int = 50
    min_lr_frac: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    ce_only: bool = False  # plain next-token training (the baseline)
    alpha: float = 0.5  # KD weight
    kl: str = "forward"
    kl_mix: float = 0.5
    temperature: float = 2.0  # fixed temperature, or CTKD's initial value and anchor
    ctkd: bool = False
    tau_min: float = 1.0
    tau_max: float = 5.0
    temp_lr: float = 0.01
    ctkd_warmup: float = 0.2
    lambda_max: float = 1.0
    temp_reg: float = 0.1
    adakd: bool = False
    adakd_spread: float = 1.5
    pocl: bool = False
    pocl_fractions: str = "0.3333,0.6667,1"
    pocl_taus: str = "1,1.5,2"
    pocl_alphas: str = "0.5,0.6,0.7"
    pocl_ends: str = "0.4,0.7"
    pocl_transition: str = "steps"
    pocl_patience: int = 2
    align_weight: float = 0.0
    align_map: str = "uniform"
    align_loss: str = "mse"
    teacher_cache: bool = False
    cache_topk: int = 32
    max_windows: int | None = None  # cap on the training window pool
    eval_every: int = 100
    eval_windows: int = 32
    ckpt_every: int = 100
    keep_checkpoints: int = 2
    log_every: int = 10
    max_bad_steps: int = 5

    def __post_init__(self) -> None:
        pos = ("steps", "batch_size", "seq_len", "grad_accum", "eval_every", "eval_windows", "ckpt_every",
               "keep_checkpoints", "log_every", "max_bad_steps", "cache_topk")
        for n in pos:
            if int(getattr(self, n)) < 1:
                raise ConfigError(f"{n} must be >= 1 (got {getattr(self, n)})")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"alpha must be in [0, 1] (got {self.alpha})")
        if self.kl not in losses.KL_KINDS:
            raise ConfigError(f"kl must be one of {losses.KL_KINDS} (got {self.kl!r})")
        if self.temperature <= 0 or self.lr <= 0:
            raise ConfigError("temperature and lr must be positive")
        if self.max_windows is not None and self.max_windows < 1:
            raise ConfigError(f"max_windows must be >= 1 (got {self.max_windows})")
        if self.batch_size % self.grad_accum:
            raise ConfigError(f"batch_size {self.batch_size} must be divisible by grad_accum {self.grad_accum}")

    def pocl_schedule(self) -> POCLSchedule | None:
        if not self.pocl or self.ce_only:
            return None
        fr = parse_floats(self.pocl_fractions, name="pocl fractions")
        return make_pocl(fr, parse_floats(self.pocl_taus, len(fr), "pocl temperatures"),
                         parse_floats(self.pocl_alphas, len(fr), "pocl alphas"),
                         parse_floats(self.pocl_ends, name="pocl stage ends"), self.pocl_transition,
                         self.pocl_patience)


# -- distributed -------------------------------------------------------------------------
@dataclass
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: torch.device) -> Dist:
    """Join the process group when launched by ``torchrun`` (gloo on CPU, NCCL on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size())


def _all_reduce_mean(tensors: list[Tensor], d: Dist) -> None:
    if d.world <= 1 or not tensors:
        return
    import torch.distributed as dist

    flat = torch.cat([t.reshape(-1) for t in tensors])  # one message for all gradients
    dist.all_reduce(flat)
    flat /= d.world
    off = 0
    for t in tensors:
        t.copy_(flat[off:off + t.numel()].view_as(t))
        off += t.numel()


def _barrier(d: Dist) -> None:
    if d.world > 1:
        import torch.distributed as dist

        dist.barrier()


# -- evaluation -------------------------------------------------------------------------
def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate(model: ASNNGoose, windows: Tensor, teacher: Teacher | None = None, batch: int = 8,
             teacher_ppl: float | None = None) -> dict[str, Any]:
    """Perplexity of student (and teacher) on the same windows (K, T + 1), spike rates, tokens/s.

    Student state starts fresh in each window, like the teacher's context.
    """
    dev = next(model.parameters()).device
    was_training = model.training
    model.eval()
    nll_s, nll_t, n_tok, t_student = 0.0, 0.0, 0, 0.0
    nz: dict[str, float] = {}
    cnt: dict[str, int] = {}
    for i in range(0, windows.shape[0], batch):
        w = windows[i:i + batch].to(dev)
        x, y = w[:, :-1], w[:, 1:]  # (b, T)
        t0 = time.perf_counter()
        with _autocast(dev):
            out = model.run(x, collect=True)
        t_student += time.perf_counter() - t0
        nll_s += float(losses.ce_loss(out.logits, y)) * y.numel()
        for name, s in out.spikes.items():
            nz[name] = nz.get(name, 0.0) + float((s != 0).sum())
            cnt[name] = cnt.get(name, 0) + s.numel()
        if teacher is not None and teacher_ppl is None:
            tl, _ = teacher.forward(x)
            nll_t += float(losses.ce_loss(tl, y.to(tl.device))) * y.numel()
        n_tok += y.numel()
    model.train(was_training)
    res: dict[str, Any] = {"tokens": n_tok, "student_ppl": math.exp(nll_s / n_tok),
                           "student_loss": nll_s / n_tok, "eval_tokens_per_s": n_tok / max(t_student, 1e-9)}
    if teacher is not None:
        res["teacher_ppl"] = teacher_ppl if teacher_ppl is not None else math.exp(nll_t / n_tok)
    res.update(_spike_summary(model.cfg, nz, cnt))
    return res


def _spike_summary(cfg: ModelConfig, nz: dict[str, float], cnt: dict[str, int]) -> dict[str, Any]:
    """Per-layer firing rate (share of non-zero spikes) and overall sparsity (share of zeros)."""
    if cfg.spike_mode == "none" or not cnt:
        return {"spike_sparsity": None, "spike_rates": {}}
    layers: dict[str, list[float]] = {}
    for name in cnt:
        lay = name.split(".")[0]
        a = layers.setdefault(lay, [0.0, 0.0])
        a[0] += nz[name]
        a[1] += cnt[name]
    rates = {lay: v[0] / v[1] for lay, v in sorted(layers.items())}
    total = sum(nz.values()) / sum(cnt.values())
    return {"spike_sparsity": 1.0 - total, "spike_rates": rates,
            "spike_rates_by_population": {k: nz[k] / cnt[k] for k in sorted(cnt)}}


# -- teacher-derived tables (top-k cache, difficulty) --------------------------------------
def _teacher_fingerprint(teacher: Teacher) -> str:
    h = hashlib.sha256(teacher.name.encode())
    h.update(teacher.model.config.to_json_string().encode())
    for p in teacher.model.parameters():
        h.update(f"{float(p.double().sum()):.10e}".encode())
    return h.hexdigest()[:16]


@torch.no_grad()
def teacher_tables(teacher: Teacher, pool: WindowPool, cache_dir: Path, topk: int | None,
                   batch: int = 32) -> dict[str, Tensor]:
    """Per-window teacher CE ``ce`` (N,) and, with ``topk``, ``values`` (N, T, k) fp16 and
    ``index`` (N, T, k) int32 of the top-k teacher logits and ``tail`` (N, T, G) float32, the
    log-sum-exp of the other logits at each temperature of ``losses.TAIL_TAUS``; stored on
    disk (safetensors)."""
    from safetensors.torch import load_file, save

    h = hashlib.sha256(f"{_teacher_fingerprint(teacher)}|{pool.T}|{pool.n}|{topk}|{losses.TAIL_TAUS}".encode())
    h.update(pool.ids[: pool.n * pool.T + 1].to(torch.int32).numpy().tobytes())
    path = cache_dir / "teacher" / f"{h.hexdigest()[:24]}.safetensors"
    if path.is_file():
        try:
            return load_file(str(path))
        except Exception:
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


# -- state (de)serialisation without pickle ------------------------------------------------
def _optimizer_to_files(opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
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


def _optimizer_from_files(opt: torch.optim.Optimizer, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
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


def latest_checkpoint(run_dir: Path) -> Path | None:
    """Newest complete ``checkpoints/step_N`` directory (temporary leftovers are ignored)."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := CKPT_RE.match(p.name)) and p.is_dir()
             and (p / STATE_DIR / "state.json").is_file()]
    return max(found)[1] if found else None


# -- the trainer -------------------------------------------------------------------------
class Trainer:
    """Owns model, teacher, data pools, optimizer and schedules for one run directory."""

    def __init__(self, model_cfg: ModelConfig, cfg: TrainConfig, teacher: Teacher | None, train_ids: Tensor,
                 val_ids: Tensor, out_dir: str | os.PathLike, cache_dir: str | os.PathLike,
                 device: str | torch.device = "cpu", dist: Dist | None = None) -> None:
        self.cfg, self.out = cfg, Path(out_dir)
        self.device = torch.device(device)
        self.dist = dist or Dist()
        self.cache_dir = Path(cache_dir)
        if teacher is None and not cfg.ce_only:
            raise ConfigError("distillation needs a teacher (or use CE-only training)")
        if teacher is not None:
            check_vocab(teacher, model_cfg.vocab_size)
            check_context(teacher, cfg.seq_len)
        if cfg.batch_size % (self.dist.world * cfg.grad_accum):
            raise ConfigError(f"batch size {cfg.batch_size} must divide evenly over {self.dist.world} "
                              f"process(es) x {cfg.grad_accum} accumulation step(s)")
        self.teacher = teacher
        torch.manual_seed(cfg.seed)
        self.model = ASNNGoose(model_cfg).to(self.device).train()
        self.pool = WindowPool(train_ids, cfg.seq_len, cfg.max_windows)
        self.val_windows = WindowPool(val_ids, cfg.seq_len).first(cfg.eval_windows)
        self.pocl = cfg.pocl_schedule()
        tau0 = self.pocl.stages[0].tau if self.pocl is not None else cfg.temperature
        self.temp = CTKDTemperature(cfg.tau_min, cfg.tau_max, tau0).to(self.device) \
            if cfg.ctkd and not cfg.ce_only else None
        self.aligner = self._make_aligner(model_cfg)
        self.opt = self._make_optimizer()
        self.step, self.bad_in_row, self.skipped, self.tokens_seen = 0, 0, 0, 0
        self.teacher_ppl: float | None = None
        self.last_eval: dict[str, Any] = {}
        self.tables = self._prepare_tables()
        self.ranked = self.tables["ce"].argsort() if self.pocl is not None else None  # easy -> hard
        self._tb = None

    # -- setup helpers -----------------------------------------------------------------
    def _make_aligner(self, mc: ModelConfig) -> HiddenAligner | None:
        if self.cfg.align_weight <= 0 or self.cfg.ce_only:
            return None
        if self.cfg.teacher_cache:
            raise ConfigError("hidden-state alignment needs the live teacher; drop --teacher-cache")
        t = self.teacher
        return HiddenAligner(mc.n_layers, mc.d_model, t.n_layers, t.d_model, self.cfg.align_map,
                             self.cfg.align_loss).to(self.device)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        c = self.cfg
        named = list(self.model.named_parameters())
        decay = [p for _, p in named if p.ndim >= 2]
        no_decay = [p for _, p in named if p.ndim < 2]
        groups = [{"params": decay, "weight_decay": c.weight_decay, "base_lr": c.lr, "name": "decay"},
                  {"params": no_decay, "weight_decay": 0.0, "base_lr": c.lr, "name": "no_decay"}]
        if self.aligner is not None and list(self.aligner.parameters()):
            groups.append({"params": list(self.aligner.parameters()), "weight_decay": c.weight_decay,
                           "base_lr": c.lr, "name": "align"})
        if self.temp is not None:  # CTKD: its own group and learning rate, constant
            groups.append({"params": list(self.temp.parameters()), "weight_decay": 0.0, "base_lr": c.temp_lr,
                           "name": "temperature", "fixed_lr": True})
        return torch.optim.AdamW(groups, lr=c.lr, betas=(0.9, 0.95))

    def _prepare_tables(self) -> dict[str, Tensor]:
        self.table_seconds = 0.0
        need = self.teacher is not None and not self.cfg.ce_only and (self.pocl is not None or self.cfg.teacher_cache)
        if not need:
            return {}
        topk = self.cfg.cache_topk if self.cfg.teacher_cache else None
        t0 = time.perf_counter()
        if self.dist.main:
            tables = teacher_tables(self.teacher, self.pool, self.cache_dir, topk)
        _barrier(self.dist)
        if not self.dist.main:
            tables = teacher_tables(self.teacher, self.pool, self.cache_dir, topk)
        self.table_seconds = time.perf_counter() - t0
        return tables

    # -- one step ----------------------------------------------------------------------
    def _set_lr(self) -> float:
        mult = cosine_lr(self.step, self.cfg.steps, self.cfg.warmup, self.cfg.min_lr_frac)
        for g in self.opt.param_groups:
            g["lr"] = g["base_lr"] * (1.0 if g.get("fixed_lr") else mult)
        return self.cfg.lr * mult

    def _teacher_out(self, idx: Tensor, x: Tensor) -> dict[str, Any]:
        """Teacher targets for windows ``idx``: logits (live) or top-k values/index/tail (cache)."""
        if self.cfg.ce_only:
            return {}
        if self.cfg.teacher_cache:
            return {"logits": self.tables["values"][idx].float().to(self.device),
                    "index": self.tables["index"][idx].long().to(self.device),
                    "tail": self.tables["tail"][idx].to(self.device), "hidden": []}
        logits, hidden = self.teacher.forward(x, hidden=self.aligner is not None)
        return {"logits": logits.to(self.device), "index": None, "tail": None,
                "hidden": [h.to(self.device) for h in hidden]}

    def _terms(self, out, y: Tensor, tgt: dict[str, Any]) -> dict[str, Tensor]:
        c = self.cfg
        ce = losses.ce_loss(out.logits, y)
        if c.ce_only:
            return {"loss": ce, "ce": ce}
        stage = self.pocl.current if self.pocl is not None else None
        alpha = stage.alpha if stage else c.alpha
        anchor = stage.tau if stage else c.temperature
        reg = None
        if self.temp is not None:
            lam = ctkd_lambda(self.step, c.steps, c.ctkd_warmup, c.lambda_max)
            tau_kd, tau = self.temp(lam)
            reg = anchor_reg(tau, anchor, c.temp_reg) if c.temp_reg > 0 else None
        else:
            tau = tau_kd = torch.tensor(float(anchor), device=self.device)
        if c.adakd:
            tau_kd = adakd_token_tau(tau_kd, losses.token_ce(out.logits, y), c.adakd_spread)  # (B, T)
        kd = losses.kd_loss(out.logits, tgt["logits"], tau_kd, c.kl, c.kl_mix, tgt["index"], tgt["tail"])
        align = self.aligner(out.hidden, tgt["hidden"]) if self.aligner is not None else None
        t = {"loss": losses.combine(alpha, kd, ce, align, c.align_weight, reg), "ce": ce, "kd": kd,
             "tau": tau.detach(), "alpha": torch.tensor(alpha)}
        if align is not None:
            t["align"] = align
        if reg is not None:
            t["tau_reg"] = reg
        return t

    def _params(self) -> list[Tensor]:
        ps = list(self.model.parameters())
        for m in (self.aligner, self.temp):
            if m is not None:
                ps += list(m.parameters())
        return ps

    def train_step(self) -> dict[str, Any]:
        c, d = self.cfg, self.dist
        if self.pocl is not None and self.pocl.on_step(self.step, c.steps):
            log.info("POCL: stage %d from step %d", self.pocl.stage, self.step)
        lr = self._set_lr()
        allowed = self.pocl.allowed(self.ranked) if self.pocl is not None else None
        idx = rank_shard(self.pool.sample_indices(self.step, c.batch_size, c.seed, allowed), d.rank, d.world)
        sums: dict[str, float] = {}
        for chunk in idx.chunk(c.grad_accum):
            w = self.pool.windows(chunk).to(self.device)  # (b, T+1)
            x, y = w[:, :-1], w[:, 1:]
            tgt = self._teacher_out(chunk, x)
            with _autocast(self.device):
                out = self.model.run(x, collect=self.aligner is not None)
            terms = self._terms(out, y, tgt)
            (terms["loss"] / c.grad_accum).backward()
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach().float().mean()) / c.grad_accum
        return self._apply_update(sums, lr, idx.numel() * d.world * c.seq_len)

    def _apply_update(self, sums: dict[str, float], lr: float, n_tokens: int) -> dict[str, Any]:
        params = [p for p in self._params() if p.grad is not None]
        grads = [p.grad for p in params]
        stats = torch.tensor([sums[k] for k in sorted(sums)], dtype=torch.float64)
        _all_reduce_mean(grads + [stats], self.dist)
        sums = dict(zip(sorted(sums), stats.tolist()))
        gnorm = float(torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)) if params else 0.0
        finite = math.isfinite(sums["loss"]) and math.isfinite(gnorm)
        if finite:
            self.opt.step()
            self.bad_in_row = 0
        else:
            self.skipped += 1
            self.bad_in_row += 1
            log.warning("non-finite loss or gradient at step %d: step skipped (%d in a row)", self.step,
                        self.bad_in_row)
        self.opt.zero_grad(set_to_none=True)
        rec = {"step": self.step, **sums, "lr": lr, "grad_norm": gnorm, "skipped": not finite,
               "skipped_total": self.skipped}
        if self.pocl is not None:
            rec["stage"] = self.pocl.stage
        if self.temp is not None:
            rec["lambda"] = ctkd_lambda(self.step, self.cfg.steps, self.cfg.ctkd_warmup, self.cfg.lambda_max)
        self.step += 1
        self.tokens_seen += n_tokens
        if self.bad_in_row >= self.cfg.max_bad_steps:
            raise TrainingError(f"{self.bad_in_row} non-finite steps in a row (last at step {self.step - 1}); "
                                f"stopping. Lower --lr, raise --grad-clip, or resume from an earlier checkpoint")
        return rec

    # -- evaluation, logging, checkpoints ----------------------------------------------------
    def run_eval(self) -> dict[str, Any]:
        res = evaluate(self.model, self.val_windows, self.teacher, teacher_ppl=self.teacher_ppl)
        self.teacher_ppl = res.get("teacher_ppl")
        if self.pocl is not None and self.pocl.on_eval(res["student_loss"]):
            log.info("POCL: plateau, stage %d from step %d", self.pocl.stage, self.step)
        self.last_eval = {"step": self.step, "kind": "eval", **res}
        return self.last_eval

    def _log(self, rec: dict[str, Any]) -> None:
        if not self.dist.main:
            return
        with open(self.out / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(rec, sort_keys=True) + "\n")
        if self._tb is not None:
            for k, v in rec.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step":
                    self._tb.add_scalar(f"{rec.get('kind', 'train')}/{k}", v, rec["step"])

    def _open_tensorboard(self) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception:  # tensorboard not installed: JSON lines only
            return
        self._tb = SummaryWriter(str(self.out / "tensorboard"))

    def _meta(self) -> dict[str, Any]:
        return {"train": dataclasses.asdict(self.cfg), "step": self.step,
                "teacher": self.teacher.name if self.teacher else None, "eval": self.last_eval}

    def _write_model_dir(self, d: Path) -> None:
        tok_ref = self.teacher.ref if self.teacher else None
        save_checkpoint(self.model, d, tokenizer=tok_ref, meta=self._meta())
        if self.teacher is not None:
            self.teacher.tokenizer.save_pretrained(str(d))

    def _training_state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        tensors, opt_meta = _optimizer_to_files(self.opt)
        tensors["rng.cpu"] = torch.get_rng_state()
        if torch.cuda.is_available():
            tensors["rng.cuda"] = torch.cuda.get_rng_state()
        for name, m in (("temp", self.temp), ("align", self.aligner)):
            if m is not None:
                tensors.update({f"{name}.{k}": v.detach().cpu().contiguous() for k, v in m.state_dict().items()})
        meta = {"step": self.step, "optimizer": opt_meta, "bad_in_row": self.bad_in_row, "skipped": self.skipped,
                "tokens_seen": self.tokens_seen, "teacher_ppl": self.teacher_ppl, "last_eval": self.last_eval,
                "pocl": self.pocl.state_dict() if self.pocl is not None else None,
                "train": dataclasses.asdict(self.cfg)}
        return tensors, meta

    def save(self) -> Path:
        """Write ``checkpoints/step_N`` atomically (model, tokenizer files, training state)."""
        from safetensors.torch import save_file

        final = self.out / "checkpoints" / f"step_{self.step:07d}"
        if self.dist.main:
            tensors, meta = self._training_state()
            with atomic_dir(final) as tmp:
                self._write_model_dir(tmp)
                (tmp / STATE_DIR).mkdir()
                save_file(tensors, str(tmp / STATE_DIR / "state.safetensors"))
                atomic_write_json(tmp / STATE_DIR / "state.json", meta)
            self._prune()
        _barrier(self.dist)
        return final

    def _prune(self) -> None:
        root = self.out / "checkpoints"
        done = sorted((int(m.group(1)), p) for p in root.iterdir() if (m := CKPT_RE.match(p.name)))
        for _, p in done[:-self.cfg.keep_checkpoints]:
            trash = p.with_name(f".{p.name}.trash")  # rename first: a kill never leaves a half-deleted step_N
            shutil.rmtree(trash, ignore_errors=True)
            os.replace(p, trash)
            shutil.rmtree(trash, ignore_errors=True)
        for p in root.glob(".step_*"):  # temporaries a killed earlier process left (this one's are done)
            shutil.rmtree(p, ignore_errors=True)

    def save_final(self) -> None:
        """Make the run directory itself a loadable checkpoint (each file replaced atomically)."""
        if not self.dist.main:
            return
        with atomic_dir(self.out / ".final_staging") as tmp:
            self._write_model_dir(tmp)
        staging = self.out / ".final_staging"
        names = sorted(p.name for p in staging.iterdir())
        for n in [n for n in names if n != "config.json"] + ["config.json"]:  # config last: it points at weights
            os.replace(staging / n, self.out / n)
        shutil.rmtree(staging, ignore_errors=True)

    def resume(self) -> bool:
        """Load the newest checkpoint of this run directory; False if there is none."""
        from safetensors.torch import load_file

        ck = latest_checkpoint(self.out)
        if ck is None:
            return False
        cfg = read_checkpoint_config(ck)["model"]
        if cfg != self.model.cfg:
            raise CheckpointError(f"{ck}: model config differs from this run's (--preset/--spike-mode); "
                                  f"resume with the same options")
        model, _ = load_checkpoint(ck, device=self.device)
        self.model.load_state_dict(model.state_dict())
        self.model.train()
        try:  # training state is user-supplied input too: any damage is a CheckpointError
            tensors = load_file(str(ck / STATE_DIR / "state.safetensors"))
            meta = json.loads((ck / STATE_DIR / "state.json").read_text(encoding="utf-8"))
            self._check_same_config(meta["train"], ck)
            _optimizer_from_files(self.opt, tensors, meta["optimizer"])
            for name, m in (("temp", self.temp), ("align", self.aligner)):
                if m is not None:
                    m.load_state_dict({k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + ".")})
            torch.set_rng_state(tensors["rng.cpu"])
            if "rng.cuda" in tensors and torch.cuda.is_available():
                torch.cuda.set_rng_state(tensors["rng.cuda"])
            self.step, self.bad_in_row, self.skipped = meta["step"], meta["bad_in_row"], meta["skipped"]
            self.tokens_seen, self.teacher_ppl, self.last_eval = meta["tokens_seen"], meta["teacher_ppl"], meta["last_eval"]
            if self.pocl is not None and meta.get("pocl"):
                self.pocl.load_state_dict(meta["pocl"])
        except CheckpointError:
            raise
        except Exception as e:
            raise CheckpointError(f"{ck / STATE_DIR}: unreadable or damaged training state "
                                  f"({type(e).__name__}: {' '.join(str(e).split())[:160]})") from None
        self._truncate_metrics()
        log.info("resumed from %s at step %d", ck, self.step)
        return True

    def _check_same_config(self, stored: dict[str, Any], ck: Path) -> None:
        cur = dataclasses.asdict(self.cfg)
        cadence = {"eval_every", "ckpt_every", "keep_checkpoints", "log_every", "max_bad_steps", "eval_windows"}
        diff = sorted(k for k in cur if k not in cadence and stored.get(k) != cur[k])
        if diff:
            raise CheckpointError(f"{ck}: run options differ from the interrupted run ({', '.join(diff)}); "
                                  f"resume with the same options")

    def _truncate_metrics(self) -> None:
        path = self.out / "metrics.jsonl"
        if not self.dist.main or not path.is_file():
            return
        keep = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill
                continue
            if rec.get("step", 0) < self.step or (rec.get("kind") == "eval" and rec.get("step") == self.step):
                keep.append(line)
        atomic_write_text(path, "".join(k + "\n" for k in keep))

    # -- main loop ------------------------------------------------------------------------
    def train(self, resume: bool = False, stop_after: int | None = None) -> dict[str, Any]:
        """Train to ``cfg.steps`` (or stop after ``stop_after`` more steps); returns a summary."""
        from tqdm.auto import tqdm

        self.out.mkdir(parents=True, exist_ok=True)
        resumed = resume and self.resume()
        if resume and not resumed:
            log.warning("--resume: no checkpoint under %s/checkpoints; starting from scratch", self.out)
        if not resumed and self.dist.main:  # a fresh start: drop lines of an earlier (killed) attempt
            (self.out / "metrics.jsonl").unlink(missing_ok=True)
        if self.dist.main:
            self._open_tensorboard()
        end = self.cfg.steps if stop_after is None else min(self.cfg.steps, self.step + stop_after)
        bar = tqdm(total=self.cfg.steps, initial=self.step, disable=None if self.dist.main else True,
                   desc="train", unit="step")
        t_train, tok_train = 0.0, 0
        while self.step < end:
            t0 = time.perf_counter()
            rec = self.train_step()
            dt = time.perf_counter() - t0
            t_train += dt
            tok_train += self.cfg.batch_size * self.cfg.seq_len
            rec["tokens_per_s"] = self.cfg.batch_size * self.cfg.seq_len / dt
            self._log(rec)
            bar.update(1)
            bar.set_postfix(loss=f"{rec['loss']:.3f}", tok_s=f"{tok_train / t_train:.0f}")
            self._periodic()
        bar.close()
        if self.step < self.cfg.steps and self.ckpt_step() != self.step:  # stopped early: keep the progress
            self.save()
        if self.step >= self.cfg.steps:
            if self.last_eval.get("step") != self.step:
                self._log(self.run_eval())
            if self.ckpt_step() != self.step:
                self.save()
            self.save_final()
        if self._tb is not None:
            self._tb.close()
        return {"step": self.step, "skipped": self.skipped, "train_tokens_per_s": tok_train / max(t_train, 1e-9),
                **{k: v for k, v in self.last_eval.items() if k not in ("kind",)}}

    def ckpt_step(self) -> int | None:
        ck = latest_checkpoint(self.out)
        return int(CKPT_RE.match(ck.name).group(1)) if ck else None

    def _periodic(self) -> None:
        c = self.cfg
        if self.step % c.eval_every == 0 or self.step == c.steps:
            if self.dist.main:
                self._log(self.run_eval())
            self._sync_pocl()
        if self.step % c.ckpt_every == 0 or self.step == c.steps:
            self.save()

    def _sync_pocl(self) -> None:
        """Plateau decisions are made on rank 0; share the stage with the other ranks."""
        if self.dist.world <= 1 or self.pocl is None:
            return
        import torch.distributed as dist

        st = torch.tensor([self.pocl.stage], dtype=torch.int64)
        dist.broadcast(st, 0)
        self.pocl.stage = int(st)
