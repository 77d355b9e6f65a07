"""Distillation quality at an equal step budget, with ablations.

Teacher: ../shared/teachers/wp-gpt2-4L256 (GPT-2, 4.2M parameters, 4096-token BPE).
Data: ../shared/data/warpeace/train.txt for training, val.txt for validation.
Every student is the ``small`` preset with the teacher's vocabulary, trained for
the same number of steps on the same windows (same seed), then evaluated on the
same validation windows as the teacher.

Runs (all ternary spiking unless stated)::

    full          KD + CTKD (learned temperature) + POCL (curriculum)
    -ctkd         full without CTKD (fixed temperature, POCL stage temperatures)
    -pocl         full without POCL (all data, fixed alpha, CTKD around tau = 2)
    +align        full plus hidden-state alignment (uniform map, linear projector, MSE, weight 0.1)
    kd            plain KD, fixed temperature 2, alpha 0.5
    ce_only       next-token cross-entropy only
    dense_full    the full recipe with spike_mode none (dense ablation)
    full_cached   the full recipe trained from the teacher-logit cache (top-32 logits + the
                  teacher's tail mass per token), without running the teacher while training
    full_fixed    the full recipe with fixed-point neurons (goose-train --fixed-point): trained with
                  the integer neurons the Loihi package deploys
    full_tlif     the full recipe with lava-nc's TernaryLIF neuron (--neuron ternary_lif)
    full_tlif_fixed  both

Usage::

    python benchmarks/distill_quality.py --setting quick     # <= 15 min on 2 CPU cores
    python benchmarks/distill_quality.py --setting long      # 1000 steps at batch 16: ~17x the tokens
                                                             # (hours on 2 CPU cores)
    python benchmarks/distill_quality.py --runs full,ce_only --seed 1   # a subset, another seed
    python benchmarks/distill_quality.py --runs full --steps 600 --keep runs/dq  # keep the checkpoint
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED = Path(__file__).resolve().parents[2] / "shared"
TEACHER = SHARED / "teachers" / "wp-gpt2-4L256"
TRAIN, VAL = SHARED / "data" / "warpeace" / "train.txt", SHARED / "data" / "warpeace" / "val.txt"

SETTINGS = {
    "quick": dict(steps=120, batch_size=8, seq_len=64, warmup=10, eval_windows=64, max_windows=2048),
    "long": dict(steps=1000, batch_size=16, seq_len=64, warmup=60, eval_windows=256, max_windows=None),
}

RUNS = {
    "full": dict(ctkd=True, pocl=True),
    "-ctkd": dict(ctkd=False, pocl=True),
    "-pocl": dict(ctkd=True, pocl=False),
    "+align": dict(ctkd=True, pocl=True, align_weight=0.1),
    "kd": dict(),
    "ce_only": dict(ce_only=True),
    "dense_full": dict(ctkd=True, pocl=True, spike_mode="none"),
    "full_cached": dict(ctkd=True, pocl=True, teacher_cache=True),
    "full_fixed": dict(ctkd=True, pocl=True, fixed_point=True),
    "full_tlif": dict(ctkd=True, pocl=True, neuron="ternary_lif"),
    "full_tlif_fixed": dict(ctkd=True, pocl=True, neuron="ternary_lif", fixed_point=True),
}
MODEL_KEYS = ("spike_mode", "neuron", "fixed_point", "frac_bits")  # ModelConfig fields, not TrainConfig


def run_one(name: str, spec: dict, setting: dict, teacher, train_ids, val_ids, work: Path, cache: Path) -> dict:
    from goose_neuro.config import preset
    from goose_neuro.training import TrainConfig, Trainer

    spec = dict(spec)
    model = {k: spec.pop(k) for k in MODEL_KEYS if k in spec}
    cfg = TrainConfig(**setting, **spec, lr=2e-3, eval_every=setting["steps"], ckpt_every=setting["steps"],
                      log_every=10)
    mcfg = preset("small", vocab_size=teacher.vocab_size, **model)
    t0 = time.perf_counter()
    tr = Trainer(mcfg, cfg, teacher, train_ids, val_ids, work / name, cache)
    setup_s = time.perf_counter() - t0
    s = tr.train()
    s["setup_s"] = setup_s
    s["wall_s"] = time.perf_counter() - t0
    if tr.temp is not None:
        s["final_tau"] = tr.temp.value
    return s


def fmt(x, f="{:.1f}"):
    return "n/a" if x is None else f.format(x)


def report(res: dict, setting_name: str, setting: dict, teacher_ppl: float) -> str:
    toks = setting["steps"] * setting["batch_size"] * setting["seq_len"]
    lines = [f"# distill_quality: setting={setting_name} seed={setting.get('seed', 0)} steps={setting['steps']} "
             f"batch={setting['batch_size']} "
             f"T={setting['seq_len']} (training tokens per run: {toks}); student preset small; "
             f"val windows={setting['eval_windows']}x{setting['seq_len']} tokens",
             f"teacher (wp-gpt2-4L256) val ppl: {teacher_ppl:.2f}",
             f"{'run':<12} {'val_ppl':>9} {'ppl/teacher':>11} {'sparsity':>9} {'train tok/s':>11} {'wall s':>7} {'tau':>6}"]
    for name, r in res.items():
        lines.append(f"{name:<12} {r['student_ppl']:>9.1f} {r['student_ppl'] / teacher_ppl:>11.2f} "
                     f"{fmt(r.get('spike_sparsity'), '{:.3f}'):>9} {r['train_tokens_per_s']:>11.0f} "
                     f"{r['wall_s']:>7.0f} {fmt(r.get('final_tau'), '{:.2f}'):>6}")
    p = {k: v["student_ppl"] for k, v in res.items()}
    ratios = []
    if "full" in p:
        ratios.append(f"student(full)/teacher = {p['full'] / teacher_ppl:.2f}")
        if "ce_only" in p:
            ratios.append(f"distilled(full)/CE-only = {p['full'] / p['ce_only']:.3f}")
        if "dense_full" in p:
            ratios.append(f"ternary(full)/dense(full) = {p['full'] / p['dense_full']:.3f}")
        for ab in ("-ctkd", "-pocl", "+align", "kd", "full_cached", "full_fixed", "full_tlif"):
            if ab in p:
                ratios.append(f"{ab}/full = {p[ab] / p['full']:.3f}")
    if "full_tlif" in p and "full_tlif_fixed" in p:
        ratios.append(f"full_tlif_fixed/full_tlif = {p['full_tlif_fixed'] / p['full_tlif']:.3f}")
    if "full_cached" in res and "full" in res:
        c, f = res["full_cached"], res["full"]
        ratios.append(f"teacher cache: train tok/s {c['train_tokens_per_s']:.0f} vs {f['train_tokens_per_s']:.0f} "
                      f"(x{c['train_tokens_per_s'] / f['train_tokens_per_s']:.2f}), precompute {c['setup_s']:.0f} s")
    return "\n".join(lines + ["ratios: " + "; ".join(ratios)])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setting", choices=sorted(SETTINGS), default="quick", help="budget preset")
    ap.add_argument("--runs", default=",".join(RUNS), help="comma-separated subset of: " + ", ".join(RUNS))
    ap.add_argument("--steps", type=int, default=None, help="override the setting's step budget")
    ap.add_argument("--seed", type=int, default=0, help="seed of initialisation and data windows")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (1 is fastest for this small, loop-bound model)")
    ap.add_argument("--json-out", default=None, help="also write all figures to this JSON file")
    ap.add_argument("--keep", default=None, metavar="DIR",
                    help="copy each run's final checkpoint to DIR/<run> (e.g. for benchmarks/loihi_report.py)")
    a = ap.parse_args(argv)
    if not TEACHER.is_dir() or not TRAIN.is_file():
        sys.stderr.write(f"missing {TEACHER} or {TRAIN}\n")
        return 2
    import torch

    from goose_neuro.data import tokenize_source
    from goose_neuro.teacher import load_teacher

    torch.set_num_threads(a.threads)
    setting = dict(SETTINGS[a.setting])
    if a.steps:
        setting["steps"] = a.steps
    setting["seed"] = a.seed
    teacher = load_teacher(TEACHER)
    with tempfile.TemporaryDirectory(prefix="distill_quality_") as tmp:
        work, cache = Path(tmp) / "runs", Path(tmp) / "cache"
        train_ids = tokenize_source(TRAIN, teacher.tokenizer, cache)
        val_ids = tokenize_source(VAL, teacher.tokenizer, cache)
        res = {}
        for name in [r.strip() for r in a.runs.split(",") if r.strip()]:
            res[name] = run_one(name, RUNS[name], setting, teacher, train_ids, val_ids, work, cache)
            sys.stderr.write(f"[{name}] val ppl {res[name]['student_ppl']:.1f} in {res[name]['wall_s']:.0f} s\n")
            if a.keep:
                dest = Path(a.keep) / name
                shutil.rmtree(dest, ignore_errors=True)
                shutil.copytree(work / name, dest, ignore=shutil.ignore_patterns("checkpoints"))
        teacher_ppl = next(iter(res.values()))["teacher_ppl"]
    text = report(res, a.setting, setting, teacher_ppl)
    print(text)
    if a.json_out:
        Path(a.json_out).write_text(json.dumps({"setting": setting, "teacher_ppl": teacher_ppl, "runs": res},
                                               indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
