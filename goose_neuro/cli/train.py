"""goose-train: distil an ASNN-Goose student from a Hugging Face causal LM (:func:`goose_neuro.distill.distill`).

Example::

    goose-train --teacher ../shared/teachers/wp-gpt2-4L256 --data train.txt --preset small \\
        --steps 2000 --out runs/wp --ctkd --pocl

When it ends, ``runs/wp`` is itself a checkpoint directory (the final model, the
teacher's tokenizer files and a ``tokenizer`` reference to the teacher);
intermediate checkpoints with training state are under ``runs/wp/checkpoints/``.
Launch with ``torchrun --nproc_per_node N -m goose_neuro.cli.train ...`` for data
parallel training (``--batch-size`` stays the global batch).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from typing import Sequence

from goose_neuro.cli import make_parser, run_cli

PROG = "goose-train"


def _bool_flag(p: argparse.ArgumentParser, name: str, help: str, default: bool = False) -> None:
    p.add_argument(f"--{name}", action=argparse.BooleanOptionalAction, default=default,
                   help=help + (" (on by default; --no-" + name + " turns it off)" if default else ""))


def number_list(text: str) -> tuple[float, ...]:
    """'0.3,0.6,1' -> (0.3, 0.6, 1.0) (the POCL stage options)."""
    from goose_neuro.schedules import parse_floats

    return tuple(parse_floats(text, name="number list"))


def _csv(values) -> str:
    return ",".join(str(v) for v in values)


def build_parser() -> argparse.ArgumentParser:
    from goose_neuro.training import TrainConfig
    from goose_neuro.training.config import RECIPE_ENERGY_WEIGHT

    d = TrainConfig()
    p = make_parser(PROG, "Distil a spiking ASNN-Goose student from a Hugging Face causal LM teacher.")
    g = p.add_argument_group("run")
    g.add_argument("--teacher", required=True, help="teacher: Hugging Face hub name or local model directory")
    g.add_argument("--data", required=True, help="training text: file, directory, or hf:DATASET (needs `datasets`)")
    g.add_argument("--val-data", default=None, help="validation text (default: the last --val-fraction of --data)")
    g.add_argument("--val-fraction", type=float, default=0.05, help="share of --data held out for validation")
    g.add_argument("--out", required=True, help="run directory (becomes the final checkpoint directory)")
    g.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    g.add_argument("--preset", default="small", help="student preset: tiny, mini, small or gpt2-50m")
    g.add_argument("--spike-mode", default=None, choices=["ternary", "binary", "none"],
                   help="override the preset's spike mode (none = dense ablation)")
    n = p.add_argument_group("neurons (what the student computes, and what it deploys with)")
    n.add_argument("--neuron", default=None, choices=["subtract", "ternary_lif"],
                   help="subtract: per-channel decay, subtract reset (the default); ternary_lif: lava-nc's "
                        "TernaryLIF (current + voltage compartments, one decay each per population, reset to "
                        "zero), which Lava's own process model checks on Loihi 2")
    _bool_flag(n, "fixed-point", "train (and run) with the integer neurons of the Loihi package: 12-bit decays, "
                                 "inputs rounded to mantissas, 24-bit state; gradients pass straight through the "
                                 "rounding, so the deployed model is the trained one")
    n.add_argument("--frac-bits", type=int, default=None,
                   help="threshold mantissa bits of the integer neuron (input step threshold / 2^frac_bits; "
                        "default 11)")
    n.add_argument("--init", default=None, metavar="CKPT",
                   help="start from this checkpoint's weights (same architecture), e.g. fine-tune a float "
                        "student with --fixed-point")
    h = p.add_argument_group("LM head (default: the preset's)")
    h.add_argument("--head-input", default=None, choices=["dense", "spike"],
                   help="spike: a LIF population before the head, so the head reads spikes (accumulate-only "
                        "with ternary weights; maps onto Loihi cores); dense: the head reads the final LayerNorm")
    h.add_argument("--quantize-head", action=argparse.BooleanOptionalAction, default=None,
                   help="ternary (TTQ) head weights")
    h.add_argument("--head-rank", type=int, default=None, help="factorise the head through this rank (0 = full)")
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    g.add_argument("--cache-dir", default=None, help="token and teacher-logit cache (default ~/.cache/goose-neuro)")
    g.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (1 is often fastest for small students on CPU)")
    g.add_argument("--stop-after", type=int, default=None, help="stop after this many steps of this invocation")
    g.add_argument("--log-level", default="WARNING", help="Python logging level")
    o = p.add_argument_group("optimisation")
    o.add_argument("--steps", type=int, default=d.steps, help="optimizer steps")
    o.add_argument("--batch-size", type=int, default=d.batch_size, help="global batch (windows per step)")
    o.add_argument("--seq-len", type=int, default=d.seq_len, help="window length T in tokens")
    o.add_argument("--grad-accum", type=int, default=d.grad_accum, help="micro-batches per step")
    o.add_argument("--lr", type=float, default=d.lr, help="peak learning rate (AdamW)")
    o.add_argument("--weight-decay", type=float, default=d.weight_decay, help="AdamW weight decay on matrices")
    o.add_argument("--warmup", type=int, default=d.warmup, help="linear warm-up steps before the cosine decay")
    o.add_argument("--min-lr-frac", type=float, default=d.min_lr_frac, help="final LR as a fraction of --lr")
    o.add_argument("--grad-clip", type=float, default=d.grad_clip, help="gradient-norm clip")
    o.add_argument("--seed", type=int, default=d.seed, help="seed for initialisation and data windows")
    o.add_argument("--max-windows", type=int, default=None, help="cap on the training window pool")
    o.add_argument("--max-bad-steps", type=int, default=d.max_bad_steps,
                   help="stop after this many non-finite steps in a row")
    k = p.add_argument_group("distillation")
    _bool_flag(k, "ce-only", "train on next-token cross-entropy only (no teacher in the loss)")
    k.add_argument("--alpha", type=float, default=d.alpha, help="KD weight: alpha*KD + (1-alpha)*CE")
    k.add_argument("--kl", default=d.kl, choices=["forward", "reverse", "mixed"], help="KL direction")
    k.add_argument("--kl-mix", type=float, default=d.kl_mix, help="forward share of the mixed KL")
    k.add_argument("--temperature", type=float, default=d.temperature,
                   help="fixed KD temperature; CTKD's initial value and anchor")
    _bool_flag(k, "ctkd", "learn the temperature adversarially (CTKD, arXiv 2211.16231)", d.ctkd)
    k.add_argument("--tau-min", type=float, default=d.tau_min, help="CTKD lower temperature bound")
    k.add_argument("--tau-max", type=float, default=d.tau_max, help="CTKD upper temperature bound")
    k.add_argument("--temp-lr", type=float, default=d.temp_lr, help="CTKD temperature learning rate")
    k.add_argument("--ctkd-warmup", type=float, default=d.ctkd_warmup, help="share of steps with lambda = 0")
    k.add_argument("--lambda-max", type=float, default=d.lambda_max, help="final gradient-reversal strength")
    k.add_argument("--temp-reg", type=float, default=d.temp_reg, help="anchor regulariser weight (0 = off)")
    _bool_flag(k, "adakd", "token-adaptive temperature (lower on hard tokens)")
    k.add_argument("--adakd-spread", type=float, default=d.adakd_spread, help="AdaKD tau range factor")
    _bool_flag(k, "pocl", "progressive curriculum stages (POCL, arXiv 2506.05695)", d.pocl)
    k.add_argument("--pocl-fractions", type=number_list, default=_csv(d.pocl_fractions),
                   help="data share per stage (easy first), comma separated")
    k.add_argument("--pocl-taus", type=number_list, default=_csv(d.pocl_taus),
                   help="temperature per stage, comma separated")
    k.add_argument("--pocl-alphas", type=number_list, default=_csv(d.pocl_alphas),
                   help="KD weight per stage, comma separated")
    k.add_argument("--pocl-ends", type=number_list, default=_csv(d.pocl_ends),
                   help="stage ends as step fractions, comma separated")
    k.add_argument("--pocl-transition", default=d.pocl_transition, choices=["steps", "plateau"],
                   help="advance stages by step fraction or validation plateau")
    k.add_argument("--pocl-patience", type=int, default=d.pocl_patience, help="evaluations without gain")
    en = p.add_argument_group("energy-aware distillation (prices spike events with the energy report's op-cost table)")
    en.add_argument("--energy-weight", type=float, default=RECIPE_ENERGY_WEIGHT,
                    help="weight of the energy term: the events' estimated energy per token on --energy-profile "
                         "as a share of its all-neurons-firing maximum (0 = off; the default is the measured "
                         "recipe, see the README)")
    en.add_argument("--energy-profile", default=d.energy_profile,
                    help="hardware profile (name or YAML file) that prices the events; evaluations also report "
                         "the estimated energy per token on it")
    en.add_argument("--rate-target", type=float, default=d.rate_target,
                    help="instead of prices: penalise each population's firing rate above this target "
                         "(weight --energy-weight)")
    k.add_argument("--align-weight", type=float, default=d.align_weight, help="hidden alignment weight (0 = off)")
    k.add_argument("--align-map", default=d.align_map, choices=["uniform", "last"], help="layer mapping")
    k.add_argument("--align-loss", default=d.align_loss, choices=["mse", "cosine", "cka"],
                   help="alignment loss (cka is projector-free)")
    _bool_flag(k, "teacher-cache", "precompute top-k teacher logits to disk; train without the teacher")
    k.add_argument("--cache-topk", type=int, default=d.cache_topk, help="teacher logits kept per token")
    e = p.add_argument_group("evaluation and checkpoints")
    e.add_argument("--eval-every", type=int, default=d.eval_every, help="evaluate every N steps")
    e.add_argument("--eval-windows", type=int, default=d.eval_windows, help="validation windows per evaluation")
    e.add_argument("--ckpt-every", type=int, default=d.ckpt_every, help="checkpoint every N steps")
    e.add_argument("--keep-checkpoints", type=int, default=d.keep_checkpoints, help="checkpoints kept")
    return p


def train_config(a: argparse.Namespace):
    """The :class:`TrainConfig` of the parsed options."""
    from goose_neuro.training import TrainConfig

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{n: getattr(a, n) for n in names if hasattr(a, n)})


def _body(argv: Sequence[str] | None) -> int:
    a = build_parser().parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(a.log_level).upper(), logging.WARNING),
                        format="%(levelname)s %(name)s: %(message)s")
    from goose_neuro.distill import SUMMARY_KEYS, distill

    model = {k: v for k, v in (("neuron", a.neuron), ("frac_bits", a.frac_bits), ("head_input", a.head_input),
                               ("quantize_head", a.quantize_head), ("head_rank", a.head_rank)) if v is not None}
    if a.fixed_point:
        model["fixed_point"] = True
    cfg = train_config(a)
    pricer = None
    if a.spike_mode != "none":
        from goose_neuro.energy.training import activity_pricer

        # a bad profile fails here, before the teacher loads or anything is written
        pricer = activity_pricer(cfg.energy_profile, priced_term=cfg.priced_energy)
    summary = distill(a.teacher, a.data, a.out, train=cfg, preset=a.preset, spike_mode=a.spike_mode,
                      model=model, init=a.init, val_data=a.val_data, val_fraction=a.val_fraction, device=a.device,
                      cache_dir=a.cache_dir, threads=a.threads, resume=a.resume, stop_after=a.stop_after,
                      pricer=pricer)
    if summary["rank"] == 0:
        sys.stdout.write(json.dumps({k: summary.get(k) for k in SUMMARY_KEYS}) + "\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(PROG, _body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
