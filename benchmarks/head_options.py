"""The LM head at an equal budget: perplexity, energy per token and deployability of each option.

The dense head of the ``small`` student (128 x 4096 MACs per token) is most of its energy on
``loihi2``. Options, each a ModelConfig setting (all other settings the same; recipe: goose-train's
distillation with CTKD and POCL, no energy term)::

    dense           head_input dense, float weights              (the head before this study)
    spike+ternary   head_input spike, quantize_head: a LIF population before a ternary head, so the head
                    is a spike-fed ternary synapse (accumulate-only; on Loihi: LIF -> TernaryDense on cores)
    ternary         quantize_head, dense input (ternary weights, still MACs)
    spike           head_input spike, float weights (accumulates of float weights; no Loihi mapping)
    factorised-R    head_rank R, float weights: C -> R -> V
    dense on host   the ``dense`` run, its head priced on the host profile (cmos45-fp64) instead of the chip

For each: War and Peace test perplexity (and its ratio to the teacher's), zero-spike fraction, energy
per token on loihi2 and cmos45-int8 (and the head's share), and whether the Loihi 2 export (placement)
and the ONNX integer variant take it (the ONNX column says whether the head itself runs as an integer
MatMulInteger).

Usage::

    python benchmarks/head_options.py --steps 600 --work runs/heads       # ~5 runs x 5-8 min on 2 busy cores
    python benchmarks/head_options.py --runs dense,spike+ternary --steps 600 --work runs/heads
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality_runs as q  # noqa: E402

HEADS = {
    "dense": dict(head_input="dense", quantize_head=False, head_rank=0),
    "spike+ternary": dict(head_input="spike", quantize_head=True, head_rank=0),
    "ternary": dict(head_input="dense", quantize_head=True, head_rank=0),
    "spike": dict(head_input="spike", quantize_head=False, head_rank=0),
    "factorised-32": dict(head_input="dense", quantize_head=False, head_rank=32),
}
RECIPE = dict(ctkd=True, pocl=True, energy_weight=0.0)


def deployable(ckpt: Path) -> dict[str, str]:
    """Does the Loihi 2 placement take the model, and does the ONNX int variant run its head as integers?"""
    from goose_neuro.checkpoint import load_checkpoint
    from goose_neuro.errors import ExportError
    from goose_neuro.export.lower import lower
    from goose_neuro.export.onnx_export import build_model
    from goose_neuro.export.placement import place

    model, _ = load_checkpoint(ckpt)
    g = lower(model)
    try:
        pl = place(g, "loihi2")
        on_core = [s.node for s in pl.synapses if s.node.startswith("head")]
        loihi = "yes: head synapses on cores" if on_core else "yes: head on the host"
    except ExportError as e:
        loihi = f"no ({str(e)[:70]}...)"
    m = build_model(g, "int")
    head_int = any(n.op_type == "MatMulInteger" and n.name.startswith("head") for n in m.graph.node)
    return {"loihi2_deploy": loihi, "onnx_int": "yes: head as MatMulInteger" if head_int else "yes: head in float"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default=",".join(HEADS), help="comma-separated subset of: " + ", ".join(HEADS))
    q.add_run_options(ap, "runs/heads")
    a = ap.parse_args(argv)
    work = q.work_dir(a)
    if work is None:
        return 2
    rows = {}
    for name in [r.strip() for r in a.runs.split(",") if r.strip()]:
        if name not in HEADS:
            sys.stderr.write(f"unknown run {name!r}; choose from {', '.join(HEADS)}\n")
            return 2
        d = work / name
        m = q.train_and_measure(d, a, HEADS[name], RECIPE)
        if m is None:
            continue
        rows[name] = {**m, **deployable(d)}
        sys.stderr.write(f"[{name}] test ppl {rows[name]['test_ppl']:.1f}\n")
    text = table(rows, a.steps)
    print(text)
    (work / "heads.md").write_text(text + "\n")
    (work / "heads.json").write_text(json.dumps(rows, indent=1, default=float))
    return 0


def table(rows: dict, steps: int) -> str:
    if not rows:
        return "no runs"
    t = next(iter(rows.values()))
    lines = [f"# LM head options: small student, {steps} steps, batch 8, T 64, CTKD + POCL, no energy term; War and "
             f"Peace test ({q.TEST_WINDOWS} windows x {q.TEST_CTX} tokens), teacher test ppl "
             f"{t['teacher_test_ppl']:.1f}; energy per token in uJ (teacher: fp32 {t['teacher_fp32_pj'] / 1e6:.1f}, "
             f"int8 {t['teacher_int8_pj'] / 1e6:.1f} at context {q.CONTEXT})",
             "",
             "| head | params | test ppl | x teacher | zero spikes | loihi2 package | cores / host / host-chip "
             "| head share | vs fp32 teacher | loihi2 graph | cmos45-int8 | head share | Loihi 2 export | ONNX int |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in rows.items():
        l2, c8 = r["loihi2"], r["cmos45-int8"]
        w = l2.get("by_where") or {}
        split = (f"{w['core'] / 1e6:.1f} / {w['host'] / 1e6:.1f} / {w['host_chip'] / 1e6:.1f}" if w else
                 "no package: graph price")
        label = f"{name} (= (d): dense, on the host)" if name == "dense" else name
        lines.append(f"| {label} | {r['params']:,} | {r['test_ppl']:.1f} | {r['ppl_ratio']:.2f} | "
                     f"{q.fmt(r['zero_fraction'], '{:.1%}')} | {l2['student_pj'] / 1e6:.2f} | {split} | "
                     f"{l2['head_share']:.0%} | 1/{1 / l2['over_fp32']:.0f} | {l2['graph_pj'] / 1e6:.2f} | "
                     f"{c8['student_pj'] / 1e6:.2f} | {c8['head_share']:.0%} | {r['loihi2_deploy']} | {r['onnx_int']} |")
    lines += ["", "loihi2 package: the energy report's price of the package goose-export writes (each node where the "
                  "placement runs it: populations and spike-fed ternary synapses on the cores, every other node on the "
                  "float64 host priced as cmos45-fp64; host-chip traffic at the profile's proxy figure; spike hops). "
                  "loihi2 graph: the deployment graph on loihi2's class table without a placement (a dense head's "
                  "MACs at the synaptic-op figure, no traffic), as the report priced it before packages were priced."]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
