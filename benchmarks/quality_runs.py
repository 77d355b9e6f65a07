"""Shared by benchmarks/pareto.py and benchmarks/head_options.py: train one student exactly as
``goose-train`` would (``distill`` with the same defaults and the same activity pricer), then
measure it on War and Peace's test split and price it with the energy report's own code.

Per run (``measure``)::

    test_ppl, teacher_test_ppl    the first TEST_WINDOWS windows of TEST_CTX tokens of test.txt, each from a
                                  fresh state (student) / empty context (teacher)
    val_ppl                       goose-train's own last evaluation (val.txt, 32 windows of 64 tokens)
    zero_fraction                 NeuroBench ActivationSparsity over ACTIVITY_TOKENS test tokens, state carried
    <profile>.student_pj          energy per token as the energy report prices it (goose_neuro.energy.build_report):
                                  on loihi2 the package goose-export writes (each node where the placement runs it,
                                  host ops on the float64 host, host-chip traffic, spike hops), elsewhere the
                                  deployment graph on the profile's class table
    <profile>.by_where            loihi2: that price split into core, host, host_chip, spike_hops, static
    <profile>.graph_pj            the deployment graph on the profile's class table (no placement), for reference
    <profile>.head_share          share of it spent on the head side (ln_out, head_lif, head_down, head)
    <profile>.dense_twin_pj       the same network with spike_mode none (dense activations), same target
    dense_twin_test_ppl           that dense twin's test perplexity (same weights, trained with spikes)
    fp32 / int8 teacher_pj        the teacher on cmos45-fp32 / cmos45-int8 at context 512

Runs are cached: a run directory that already holds a finished checkpoint of the same options is
measured, not retrained (``--retrain`` in the scripts forces training).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED = Path(__file__).resolve().parents[2] / "shared"
TEACHER = SHARED / "teachers" / "wp-gpt2-4L256"
DATA = SHARED / "data" / "warpeace"
TRAIN, VAL, TEST = DATA / "train.txt", DATA / "val.txt", DATA / "test.txt"
PROFILES = ("loihi2", "cmos45-int8")
CONTEXT = "512"
TEST_CTX, TEST_WINDOWS, ACTIVITY_TOKENS = 128, 64, 2048
MEASURE_VERSION = 3


def check_inputs() -> str | None:
    missing = [str(p) for p in (TEACHER, TRAIN, VAL, TEST) if not p.exists()]
    return f"missing {', '.join(missing)}" if missing else None


def train(out: Path, steps: int, model: dict[str, Any] | None = None, train: dict[str, Any] | None = None,
          cache: Path | None = None, threads: int = 1, retrain: bool = False) -> dict[str, Any]:
    """goose-train --teacher TEACHER --data TRAIN --val-data VAL --steps STEPS [model/train options]."""
    from goose_neuro.distill import distill
    from goose_neuro.energy.training import activity_pricer
    from goose_neuro.training import TrainConfig

    cfg = TrainConfig(**{"steps": steps, "ckpt_every": steps, "keep_checkpoints": 1, **(train or {})})
    done = out / "run.json"
    want = {"train": cfg.to_dict(), "model": model or {}}
    if done.is_file() and not retrain:
        rec = json.loads(done.read_text())
        if rec.get("options") == want:
            return rec["summary"]
    spiking = (model or {}).get("spike_mode") != "none"
    t0 = time.perf_counter()
    summary = distill(TEACHER, TRAIN, out, train=cfg, preset="small", model=model, val_data=VAL,
                      cache_dir=cache, threads=threads, pricer=activity_pricer(cfg.energy_profile) if spiking else None)
    summary["wall_s"] = time.perf_counter() - t0
    done.write_text(json.dumps({"options": want, "summary": summary}, indent=1, default=str))
    return summary


def add_run_options(ap, work: str) -> None:
    """The options every benchmark built on these runs shares (steps, run directory, threads, reuse)."""
    ap.add_argument("--steps", type=int, default=600, help="optimizer steps per run (batch 8, T 64; goose-train "
                                                            "defaults otherwise)")
    ap.add_argument("--work", default=work, help="run directories (reused when the options match)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--retrain", action="store_true", help="train even when a finished run exists")
    ap.add_argument("--measure-only", action="store_true", help="only measure runs that exist")


def work_dir(a) -> Path | None:
    """The run directory of options ``a`` (created), or None after saying which input is missing."""
    bad = check_inputs()
    if bad:
        sys.stderr.write(bad + "\n")
        return None
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    return work


def train_and_measure(d: Path, a, model: dict[str, Any] | None, train_opts: dict[str, Any]) -> dict[str, Any] | None:
    """Train run ``d`` as the options ``a`` of :func:`add_run_options` say, then measure it (None: no run)."""
    if not a.measure_only:
        train(d, a.steps, model=model, train=train_opts, cache=Path(a.work) / ".cache", threads=a.threads,
              retrain=a.retrain)
    if not (d / "model.safetensors").is_file():
        return None
    return measure(d)


def measure(ckpt: Path) -> dict[str, Any]:
    """Test perplexity (student, teacher), sparsity and energy per token of a checkpoint (cached in ckpt)."""
    cached = ckpt / "measure.json"
    stamp = (ckpt / "model.safetensors").stat().st_mtime
    if cached.is_file():
        rec = json.loads(cached.read_text())
        if rec.get("stamp") == stamp and rec.get("version") == MEASURE_VERSION:
            return rec
    import torch

    from goose_neuro.checkpoint import load_checkpoint
    from goose_neuro.data import WindowPool, tokenize_source
    from goose_neuro.energy import build_report, twin_graph
    from goose_neuro.energy.activity import profile_tokens
    from goose_neuro.energy.counts import layer_of
    from goose_neuro.energy.estimate import energy_by_class, price_table, total
    from goose_neuro.export.lower import lower
    from goose_neuro.export.opcost import Precision, node_cost
    from goose_neuro.energy.counts import events_by_node
    from goose_neuro.hardware_profiles import load_profile
    from goose_neuro.teacher import load_teacher
    from goose_neuro.training.evaluation import evaluate

    torch.set_num_threads(1)
    model, info = load_checkpoint(ckpt)
    teacher = load_teacher(TEACHER)
    ids = tokenize_source(TEST, teacher.tokenizer, ckpt.parent / ".cache")
    windows = WindowPool(ids, TEST_CTX).first(TEST_WINDOWS)
    model.freeze_ternary(True)
    ev = evaluate(model, windows, teacher)
    twin_ppl = None
    if model.cfg.spike_mode != "none":  # the same weights with dense activations (the report's dense twin)
        from goose_neuro.energy import dense_twin

        twin_ppl = evaluate(dense_twin(model).freeze_ternary(True), windows)["student_ppl"]
    act = profile_tokens(model, ids[:ACTIVITY_TOKENS].numpy(), progress=False)
    graph = lower(model)
    twin = twin_graph(model) if model.cfg.spike_mode != "none" else None
    rep = build_report(graph, act, list(PROFILES), "cmos45-fp32", str(TEACHER), (int(CONTEXT),), twin=twin,
                       extra_teachers=())
    fair = rep["fair_baseline"]
    out: dict[str, Any] = {
        "stamp": stamp, "version": MEASURE_VERSION, "checkpoint": str(ckpt), "params": model.num_params(), "config": model.cfg.to_dict(),
        "test_ppl": ev["student_ppl"], "teacher_test_ppl": ev["teacher_ppl"],
        "ppl_ratio": ev["student_ppl"] / ev["teacher_ppl"], "dense_twin_test_ppl": twin_ppl,
        "val_ppl": (info.get("meta") or {}).get("eval", {}).get("student_ppl"),
        "zero_fraction": act.activation_sparsity() if model.cfg.spike_mode != "none" else None,
        "rates": {k: p.firing_rate for k, p in act.populations.items()} if model.cfg.spike_mode != "none" else {},
        "teacher_fp32_pj": fair["teachers"]["fp32"][CONTEXT], "teacher_int8_pj": fair["teachers"]["int8"][CONTEXT],
    }
    events = events_by_node(graph, act) if model.cfg.spike_mode != "none" else None
    for name, blk in rep["profiles"].items():
        if name not in PROFILES:
            continue
        st = blk["student"]["energy_pj_per_token"]
        head = sum(r["pj_total"] for r in rep["layers"] if r["profile"] == name and r["layer"] == "head")
        prof = load_profile(name)
        prices, prec = price_table(prof, _host(prof)), Precision.from_profile(prof)
        graph_pj = sum(total(energy_by_class(node_cost(graph, n, events, prec), prices)) for n in graph.nodes)
        where = blk["student"].get("by_where") or {}
        out[name] = {"student_pj": st, "head_share": head / st, "graph_pj": graph_pj,
                     "over_fp32": st / out["teacher_fp32_pj"], "over_int8": st / out["teacher_int8_pj"],
                     "dense_twin_pj": blk.get("dense_twin", {}).get("energy_pj_per_token"),
                     "package": "package" in blk, "package_note": blk.get("package_note", ""),
                     "by_where": {k: v["energy_pj"] for k, v in where.items()}}
    cached.write_text(json.dumps(out, indent=1, default=float))
    return out


def _host(prof):
    from goose_neuro.energy.estimate import host_for

    return host_for(prof)


def fmt(x: Any, f: str = "{:.2f}") -> str:
    return "n/a" if x is None else f.format(x)
