"""Measured energy and sparsity figures for a student checkpoint (prints them; writes a report).

    .venv/bin/python benchmarks/energy_report.py --checkpoint RUN_DIR --label "small, 300 KD steps" \
        [--text ../shared/data/warpeace/test.txt] [--tokens 4096] [--teacher ../shared/teachers/wp-gpt2-4L256] \
        [-o /tmp/energy_report]

Prints: energy per token on every built-in profile, student/teacher ratio at context 512
(same target, and against the teacher on the cmos45-fp32 baseline), the fair baseline (student /
int8 teacher, / fp32 teacher, / dense twin and the break-even firing rates), overall sparsity,
the share of energy that is not synaptic ACs, profiling speed (tokens/s), and an
operator-level check of the teacher cost formula on the real teacher.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def teacher_check(teacher_dir: Path, steps: int = 8) -> str:
    """Compare the config-based teacher cost with an aten-level count on the real teacher."""
    from transformers import AutoModelForCausalLM

    from goose_neuro.energy.teacher_cost import GPT2Shape, hook_count, teacher_cost

    model = AutoModelForCausalLM.from_pretrained(str(teacher_dir), attn_implementation="eager").eval()
    shape = GPT2Shape.from_config(model.config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = hook_count(model, steps)
    bad = []
    for t, g in enumerate(got, start=1):
        d = teacher_cost(shape, t).detail
        want = d["mac_proj"] + d["mac_attn"] + d["mac_head"]
        if g["mac"] != want or g["softmax_elems"] != d["softmax_elems"] or g["ln_elems"] != d["ln_elems"]:
            bad.append((t, g["mac"], want))
    return "exact at contexts 1..%d" % steps if not bad else f"MISMATCH {bad}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--label", default="", help="what the checkpoint is (e.g. 'briefly trained, 300 steps')")
    ap.add_argument("--text", default=str(SHARED / "data" / "warpeace" / "test.txt"))
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--teacher", default=str(SHARED / "teachers" / "wp-gpt2-4L256"))
    ap.add_argument("-o", "--out", default="/tmp/goose_energy_report")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from goose_neuro.energy import builtin_profiles, energy_report

    profiles = [p for p in builtin_profiles() if p != "cmos45-fp32"]
    t0 = time.perf_counter()
    rep = energy_report(args.checkpoint, args.text, args.tokens, profiles, "cmos45-fp32", args.teacher,
                        out_dir=args.out, progress=sys.stderr.isatty(), label=args.label)
    wall = time.perf_counter() - t0
    a = rep["activity"]
    print(f"checkpoint: {args.checkpoint} ({args.label or rep['model'].get('label') or 'unlabelled'}), "
          f"{rep['model']['params']:,} params")
    print(f"text: {a['text']}, {a['tokens']} tokens; tokenizer {a['tokenizer']}")
    print(f"profiling speed: {a['tokens_per_s']:.0f} tokens/s (1 torch thread); whole report {wall:.1f} s")
    print(f"overall firing rate {a['firing_rate']:.4f}, activation sparsity {a['activation_sparsity']:.4f}")
    nb = rep["neurobench"]
    print(f"NeuroBench per token: Effective_ACs {nb['Effective_ACs']:.0f}, Effective_MACs {nb['Effective_MACs']:.0f}, "
          f"Dense {nb['Dense']:.0f}")
    print()
    print(f"{'target':16s} {'student pJ/tok':>15s} {'teacher@512':>13s} {'ratio same':>11s} "
          f"{'ratio vs fp32 teacher':>22s} {'not-AC share':>13s} {'memory share':>13s}")
    for n, b in rep["profiles"].items():
        s = b["student"]
        print(f"{n:16s} {s['energy_pj_per_token']:15.4g} {b['teacher']['512']['energy_pj_per_token']:13.4g} "
              f"{b['student_over_teacher']['512']:11.4g} {rep['comparison']['512'][n]:22.4g} "
              f"{100 * s['non_ac_share']:12.1f}% {100 * s['memory_share']:12.1f}%")
    print()
    from goose_neuro.energy.report import fmt_rate

    fair = rep["fair_baseline"]
    print(f"fair baseline at ctx 512 (teacher {fair['teacher']}: fp32 {fair['teachers']['fp32']['512']:.4g} pJ, "
          f"int8 {fair['teachers']['int8']['512']:.4g} pJ per token); measured rate {a['firing_rate']:.4f}")
    print(f"{'target':16s} {'/ int8 teacher':>15s} {'/ fp32 teacher':>15s} {'/ dense twin':>13s}  "
          f"break-even vs int8 teacher | vs dense twin")
    for n in rep["profiles"]:
        r, be = fair["ratios"][n], fair["break_even"][n]
        print(f"{n:16s} {r['student_over_teacher_int8']['512']:15.4g} {r['student_over_teacher_fp32']['512']:15.4g} "
              f"{r.get('student_over_dense_twin', float('nan')):13.4g}  {fmt_rate(be['teacher_int8']['512'])} | "
              f"{fmt_rate(be.get('dense_twin'))}")
    print("host-chip traffic share: not priced yet (needs the package placement, issue 13 part B)")
    print()
    for n in ("cmos45-fp32", "loihi2"):
        rows = [r for r in rep["layers"] if r["profile"] == n]
        tot = sum(r["pj_total"] for r in rows)
        print(f"share of student energy per layer on {n}: "
              + ", ".join(f"{r['layer']} {100 * r['pj_total'] / tot:.1f}%" for r in rows))
    print(f"GPT-2 124M (config) on cmos45-fp32 at ctx 512: "
          f"{rep['profiles']['cmos45-fp32']['extra_teachers']['gpt2-124m']['512']['energy_pj_per_token']:.4g} pJ/token")
    print(f"teacher cost formula vs aten-level count on {Path(args.teacher).name}: {teacher_check(Path(args.teacher))}")
    print(f"report: {args.out}/report.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
