"""Quality per joule: perplexity against estimated energy per token, sweeping the energy term's weight.

Every point is ``goose-train`` with its defaults (preset ``small``, its default head, the default
recipe) and ``--steps S --energy-weight W`` (or ``--rate-target R``), trained on War and Peace and
measured on its test split (:mod:`quality_runs`). Reference points: the teacher (its perplexity at
its fp32 and int8 energy per token at context 512, ``cmos45-fp32`` / ``cmos45-int8``) and the dense
student (the same preset and recipe with ``spike_mode none``, trained alike: the dense twin as a
trained network; each spiking point's report also prices its own same-weights dense twin).

Goals measured against: test perplexity <= 1.30 x the teacher's with >= 80% zero spikes, and energy
per token on loihi2 >= 20 x below the fp32 teacher at context 512.

Usage::

    python benchmarks/pareto.py --steps 600 --weights 0,0.5,1,2,4 --work runs/pareto
    python benchmarks/pareto.py --steps 600 --weights 1 --rate-targets 0.1:2 --work runs/pareto

Writes WORK/pareto.md, WORK/pareto.json and WORK/pareto.png.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality_runs as q  # noqa: E402

GOAL_PPL, GOAL_ZERO, GOAL_ENERGY = 1.30, 0.80, 20.0


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _targets(text: str) -> list[tuple[float, float]]:
    """'0.1:2,0.05:4' -> [(0.1, 2.0), (0.05, 4.0)] (rate target : weight)."""
    out = []
    for item in text.split(","):
        if item.strip():
            r, w = item.split(":")
            out.append((float(r), float(w)))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    q.add_run_options(ap, "runs/pareto")
    ap.add_argument("--weights", default="0,0.5,1,2,4", help="energy weights of the priced term, comma separated")
    ap.add_argument("--rate-targets", default="", help="rate-target runs as TARGET:WEIGHT, comma separated")
    ap.add_argument("--no-dense", action="store_true", help="skip the dense (spike_mode none) reference run")
    a = ap.parse_args(argv)
    work = q.work_dir(a)
    if work is None:
        return 2
    plan: list[tuple[str, dict, dict]] = [(f"w={w:g}", {}, {"energy_weight": w}) for w in _floats(a.weights)]
    plan += [(f"rate<={r:g} w={w:g}", {}, {"energy_weight": w, "rate_target": r}) for r, w in _targets(a.rate_targets)]
    if not a.no_dense:
        plan.append(("dense student", {"spike_mode": "none"}, {"energy_weight": 0.0}))
    rows = {}
    for name, model, train in plan:
        m = q.train_and_measure(work / name.replace(" ", "_").replace("<=", "le").replace("=", ""), a, model, train)
        if m is None:
            continue
        rows[name] = {**m, "train": train}
        sys.stderr.write(f"[{name}] test ppl {rows[name]['test_ppl']:.1f}\n")
    if not rows:
        print("no runs")
        return 0
    text = table(rows, a.steps)
    print(text)
    (work / "pareto.md").write_text(text + "\n")
    (work / "pareto.json").write_text(json.dumps(rows, indent=1, default=float))
    plot(rows, work / "pareto.png", a.steps)
    return 0


def table(rows: dict, steps: int) -> str:
    t = next(iter(rows.values()))
    tp, f32, i8 = t["teacher_test_ppl"], t["teacher_fp32_pj"], t["teacher_int8_pj"]
    lines = [f"# Pareto: goose-train defaults, small, {steps} steps (batch 8, T 64); War and Peace test "
             f"({q.TEST_WINDOWS} windows x {q.TEST_CTX} tokens); energy per token (uJ) as the energy report prices it; "
             f"teacher at context {q.CONTEXT}",
             "",
             "| run | val ppl | test ppl | x teacher | zero spikes | loihi2 uJ | cores / host / host-chip | vs fp32 "
             "teacher | vs int8 teacher | cmos45-int8 uJ | dense twin: test ppl, loihi2 uJ, cmos45-int8 uJ | goals met |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in rows.items():
        l2, c8 = r["loihi2"], r["cmos45-int8"]
        goals = []
        if r["ppl_ratio"] <= GOAL_PPL:
            goals.append("ppl")
        if r["zero_fraction"] is not None and r["zero_fraction"] >= GOAL_ZERO:
            goals.append("zeros")
        if f32 / l2["student_pj"] >= GOAL_ENERGY:
            goals.append("energy")
        lines.append(f"| {name} | {q.fmt(r['val_ppl'], '{:.1f}')} | {r['test_ppl']:.1f} | {r['ppl_ratio']:.2f} | "
                     f"{q.fmt(r['zero_fraction'], '{:.1%}')} | {l2['student_pj'] / 1e6:.2f} | {_split(l2)} | "
                     f"{f32 / l2['student_pj']:.1f}x lower | {i8 / l2['student_pj']:.1f}x lower | "
                     f"{c8['student_pj'] / 1e6:.2f} | {q.fmt(r.get('dense_twin_test_ppl'), '{:.1f}')}, "
                     f"{q.fmt(l2['dense_twin_pj'] and l2['dense_twin_pj'] / 1e6)}, "
                     f"{q.fmt(c8['dense_twin_pj'] and c8['dense_twin_pj'] / 1e6)} | {', '.join(goals) or '-'} |")
    lines.append(f"| teacher (wp-gpt2-4L256) | - | {tp:.1f} | 1.00 | - | fp32 {f32 / 1e6:.1f} / int8 {i8 / 1e6:.1f} "
                 f"(cmos45) | - | 1 | - | int8 {i8 / 1e6:.1f} | - | - |")
    lines += ["", "loihi2: the energy report's price of the package goose-export writes (cores; host ops on the float64 "
                  "host, cmos45-fp64; host-chip traffic at the profile's proxy figure; spike hops). The dense twin: the "
                  "same weights with spike_mode none (the report's), its perplexity measured like the student's.",
              "", f"Goals: test ppl <= {GOAL_PPL:.2f} x teacher, >= {GOAL_ZERO:.0%} zero spikes, loihi2 energy per "
                  f"token >= {GOAL_ENERGY:.0f}x below the fp32 teacher at context {q.CONTEXT}."]
    return "\n".join(lines)


def _split(l2: dict) -> str:
    w = l2.get("by_where") or {}
    return f"{w['core'] / 1e6:.1f} / {w['host'] / 1e6:.1f} / {w['host_chip'] / 1e6:.1f}" if w else "no package"


def plot(rows: dict, path: Path, steps: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    t = next(iter(rows.values()))
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2))
    for ax, prof in zip(axes, q.PROFILES):
        top = 1.15 * max([r["test_ppl"] for r in rows.values()] + [t["teacher_test_ppl"] * GOAL_PPL])
        for name, r in rows.items():
            x = r[prof]["student_pj"] / 1e6
            dense = r["config"]["spike_mode"] == "none"
            rate = r["train"].get("rate_target") is not None
            label = name if dense else f"{name}: {r['zero_fraction']:.0%} zeros"
            ax.scatter([x], [r["test_ppl"]], marker="s" if dense else ("^" if rate else "o"), s=36, zorder=3,
                       label=label)
            tw = r[prof].get("dense_twin_pj")  # the same weights with dense activations
            if tw and r.get("dense_twin_test_ppl") and r["dense_twin_test_ppl"] < top:
                ax.scatter([tw / 1e6], [r["dense_twin_test_ppl"]], marker="x", color="tab:gray", zorder=2)
        for key, mark, color in (("teacher_fp32_pj", "fp32", "tab:red"), ("teacher_int8_pj", "int8", "darkred")):
            ax.scatter([t[key] / 1e6], [t["teacher_test_ppl"]], marker="*", s=140, color=color, zorder=3,
                       label=f"teacher {mark} (cmos45, context {q.CONTEXT})")
        ax.scatter([], [], marker="x", color="tab:gray", label="dense twins (same weights, spike_mode none)")
        ax.axhline(t["teacher_test_ppl"] * GOAL_PPL, ls=":", color="tab:red", lw=0.8,
                   label=f"goal: {GOAL_PPL:.2f} x teacher perplexity")
        ax.axvline(t["teacher_fp32_pj"] / GOAL_ENERGY / 1e6, ls=":", color="tab:green", lw=0.8,
                   label=f"goal: fp32 teacher / {GOAL_ENERGY:.0f}")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_ylim(0.9 * t["teacher_test_ppl"], top)
        ax.set_xlabel(f"uJ per token on {prof} (estimate; teachers on cmos45)")
        ax.set_ylabel("War and Peace test perplexity")
        ax.set_title(f"{prof}: small student, {steps} steps", fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
    axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
