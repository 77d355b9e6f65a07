"""The distillation loop for ASNN-Goose students.

One optimizer step (global batch ``B`` windows of ``T`` tokens, split over
``world`` processes and ``grad_accum`` micro-batches)::

    idx   = windows for this step (a pure function of seed and step; POCL may restrict the pool)
    z_t   = teacher logits (live, or top-k from the on-disk cache)
    L     = alpha * tau^2 KL + (1 - alpha) CE + w_align * L_align + w_reg (tau - anchor)^2
    grads averaged over micro-batches and processes (torch.distributed all-reduce)
    skip the step if the loss or gradient norm is not finite (stop after K in a row)
    clip, AdamW (cosine LR with warm-up; CTKD's temperature in its own group and LR)

Because the batch of a step depends only on (seed, step), a resumed run on CPU
reproduces the losses of an uninterrupted run exactly (see :mod:`.checkpoints`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from goose_neuro import losses
from goose_neuro.align import HiddenAligner
from goose_neuro.checkpoint import load_checkpoint, read_checkpoint_config, save_checkpoint
from goose_neuro.config import ModelConfig
from goose_neuro.data import WindowPool, rank_shard
from goose_neuro.errors import CheckpointError, ConfigError
from goose_neuro.model import ASNNGoose
from goose_neuro.schedules import CTKDTemperature, adakd_token_tau, anchor_reg, cosine_lr, ctkd_lambda
from goose_neuro.teacher import Teacher, check_context, check_vocab
from goose_neuro.training import checkpoints as ckpts
from goose_neuro.training.config import TrainConfig, TrainingError
from goose_neuro.training.distributed import Dist, all_reduce_mean, barrier, broadcast_int
from goose_neuro.training.evaluation import autocast, evaluate
from goose_neuro.training.teacher_cache import teacher_tables

log = logging.getLogger(__name__)


# fields a fine-tune may change: how the neurons compute, not what the weights are
INIT_MAY_DIFFER = ("fixed_point", "frac_bits")


def init_from_checkpoint(model: ASNNGoose, path: str | os.PathLike) -> None:
    """Load a checkpoint's weights into ``model`` (same architecture; ``fixed_point`` and
    ``frac_bits`` may differ, e.g. a float student fine-tuned with fixed-point neurons)."""
    import dataclasses

    src, _ = load_checkpoint(path, device=next(model.parameters()).device)
    a = {k: v for k, v in dataclasses.asdict(src.cfg).items() if k not in INIT_MAY_DIFFER}
    b = {k: v for k, v in dataclasses.asdict(model.cfg).items() if k not in INIT_MAY_DIFFER}
    diff = sorted(k for k in a if a[k] != b[k])
    if diff:
        raise ConfigError(f"--init {path}: its model differs from this run's in {', '.join(diff)} "
                          f"({', '.join(f'{k}={a[k]!r} vs {b[k]!r}' for k in diff[:3])})")
    model.load_state_dict(src.state_dict())


class Trainer:
    """Owns model, teacher, data pools, optimizer and schedules for one run directory.

    ``meta``: extra entries for every checkpoint's ``meta`` (e.g. ``label``, what the student is).
    """

    def __init__(self, model_cfg: ModelConfig, cfg: TrainConfig, teacher: Teacher | None, train_ids: Tensor,
                 val_ids: Tensor, out_dir: str | os.PathLike, cache_dir: str | os.PathLike,
                 device: str | torch.device = "cpu", dist: Dist | None = None,
                 meta: dict[str, Any] | None = None, init: str | os.PathLike | None = None) -> None:
        self.cfg, self.out = cfg, Path(out_dir)
        self.device = torch.device(device)
        self.dist = dist or Dist()
        self.cache_dir = Path(cache_dir)
        self.extra_meta = dict(meta or {})
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
        if init is not None:
            init_from_checkpoint(self.model, init)
            self.extra_meta.setdefault("init", str(init))
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
        if self.dist.main:  # rank 0 builds the cache file, the others then read it
            tables = teacher_tables(self.teacher, self.pool, self.cache_dir, topk)
        barrier(self.dist)
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
            with autocast(self.device):
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
        all_reduce_mean(grads + [stats], self.dist)
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

    # -- evaluation, logging --------------------------------------------------------------
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

    # -- checkpoints -----------------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        return {**self.extra_meta, "train": self.cfg.to_dict(), "step": self.step,
                "teacher": self.teacher.name if self.teacher else None, "eval": self.last_eval}

    def _write_model_dir(self, d: Path) -> None:
        tok_ref = self.teacher.ref if self.teacher else None
        save_checkpoint(self.model, d, tokenizer=tok_ref, meta=self._meta())
        if self.teacher is not None:
            self.teacher.tokenizer.save_pretrained(str(d))

    def _training_state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        tensors, opt_meta = ckpts.optimizer_to_files(self.opt)
        tensors["rng.cpu"] = torch.get_rng_state()
        if torch.cuda.is_available():
            tensors["rng.cuda"] = torch.cuda.get_rng_state()
        for name, m in (("temp", self.temp), ("align", self.aligner)):
            if m is not None:
                tensors.update({f"{name}.{k}": v.detach().cpu().contiguous() for k, v in m.state_dict().items()})
        meta = {"step": self.step, "optimizer": opt_meta, "bad_in_row": self.bad_in_row, "skipped": self.skipped,
                "tokens_seen": self.tokens_seen, "teacher_ppl": self.teacher_ppl, "last_eval": self.last_eval,
                "pocl": self.pocl.state_dict() if self.pocl is not None else None,
                "train": self.cfg.to_dict()}
        return tensors, meta

    def save(self) -> Path:
        """Write ``checkpoints/step_N`` atomically (model, tokenizer files, training state)."""
        final = ckpts.step_dir(self.out, self.step)
        if self.dist.main:
            tensors, meta = self._training_state()
            ckpts.write_step(final, self._write_model_dir, tensors, meta)
            ckpts.prune(self.out, self.cfg.keep_checkpoints)
        barrier(self.dist)
        return final

    def save_final(self) -> None:
        """Make the run directory itself a loadable checkpoint."""
        if self.dist.main:
            ckpts.promote_final(self.out, self._write_model_dir)

    def resume(self) -> bool:
        """Load the newest checkpoint of this run directory; False if there is none."""
        ck = ckpts.latest_checkpoint(self.out)
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
            tensors, meta = ckpts.read_state(ck)
            self._check_same_config(meta["train"], ck)
            ckpts.optimizer_from_files(self.opt, tensors, meta["optimizer"])
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
            raise CheckpointError(f"{ck / ckpts.STATE_DIR}: unreadable or damaged training state "
                                  f"({type(e).__name__}: {' '.join(str(e).split())[:160]})") from None
        if self.dist.main:
            ckpts.truncate_metrics(self.out / "metrics.jsonl", self.step)
        log.info("resumed from %s at step %d", ck, self.step)
        return True

    def _check_same_config(self, stored: dict[str, Any], ck: Path) -> None:
        diff = TrainConfig.from_dict(stored).differs_from(self.cfg)
        if diff:
            raise CheckpointError(f"{ck}: run options differ from the interrupted run ({', '.join(diff)}); "
                                  f"resume with the same options")

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
        if self.step < self.cfg.steps and ckpts.latest_step(self.out) != self.step:  # stopped early: keep it
            self.save()
        if self.step >= self.cfg.steps:
            if self.last_eval.get("step") != self.step:
                self._log(self.run_eval())
            if ckpts.latest_step(self.out) != self.step:
                self.save()
            self.save_final()
        if self._tb is not None:
            self._tb.close()
        return {"step": self.step, "skipped": self.skipped, "train_tokens_per_s": tok_train / max(t_train, 1e-9),
                **{k: v for k, v in self.last_eval.items() if k not in ("kind",)}}

    def _periodic(self) -> None:
        c = self.cfg
        if self.step % c.eval_every == 0 or self.step == c.steps:
            if self.dist.main:
                self._log(self.run_eval())
            if self.pocl is not None:  # plateau decisions are made on rank 0; share the stage
                self.pocl.stage = broadcast_int(self.pocl.stage, self.dist)
        if self.step % c.ckpt_every == 0 or self.step == c.steps:
            self.save()
