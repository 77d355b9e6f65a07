"""Loihi / Loihi 2 figures for one checkpoint: integer model vs float, Lava speed, resources.

    .venv/bin/python benchmarks/loihi_report.py --checkpoint CKPT --text FILE [--label "..."]
        [--eval-tokens 512] [--lava-tokens 32] [--out DIR]

For each configuration (Loihi 2; Loihi 1 with host neurons, the default; Loihi 1 with on-core CUBA
ON/OFF neurons; Loihi 2 with a Q16 integer host): export the package, compare the integer reference
with the PyTorch model on the text (next-token argmax agreement against the PyTorch model running the
package's fixed-point neurons where the package allows it, and against the float neurons;
perplexity), run ``--lava-tokens`` tokens in Lava (Loihi2SimCfg, fixed point, CPU) against the
integer reference (bit-exact check, tokens/s), and print the resource estimate. Writes
``loihi_report.json`` and ``loihi_report.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from goose_neuro.export import lava_check, loihi
from goose_neuro.export.lower import lower_checkpoint
from goose_neuro.fileio import atomic_write_json, atomic_write_text


CONFIGS = {"loihi2": ("loihi2", "core", "float64"), "loihi": ("loihi", "host", "float64"),
           "loihi-coreneuron": ("loihi", "core", "float64"), "loihi2-q16": ("loihi2", "core", "q16")}
TITLES = {"loihi2": "Loihi 2 (`loihi2`)", "loihi": "Loihi 1, host neurons (`loihi`)",
          "loihi-coreneuron": "Loihi 1, on-core CUBA ON/OFF (`population=core`)",
          "loihi2-q16": "Loihi 2, Q16 integer host (`host=q16`)"}


def measure(checkpoint: str, text: str, eval_tokens: int, lava_tokens: int, work: Path) -> dict:
    graph, _ = lower_checkpoint(checkpoint)
    out = {}
    for key, (target, population, host) in CONFIGS.items():
        pkg = loihi.export_loihi(graph, work / key, target, population=population, host=host)
        man = json.loads((pkg / "manifest.json").read_text())
        ids = lava_check.text_tokens(text, checkpoint, man["model"]["vocab_size"], eval_tokens + 1)
        fl = lava_check.compare_float(pkg, checkpoint, ids)
        lv = lava_check.compare_lava(pkg, ids[:lava_tokens], timeout=1200) if lava_tokens else None
        res = json.loads((pkg / "resources.json").read_text())["summary"]
        out[key] = {"float": fl, "lava": lv, "resources": res, "host": host,
                    "frac_bits": man["chains"][0]["population"]["frac_bits"]}
    return out


def markdown(rep: dict, label: str) -> str:
    rows = ["| figure | " + " | ".join(TITLES[k] for k in CONFIGS) + " |", "| --- " * (len(CONFIGS) + 1) + "|"]

    def row(name, f):
        rows.append(f"| {name} | " + " | ".join(f(rep[k]) for k in CONFIGS) + " |")

    row("PyTorch reference neurons", lambda r: "fixed-point" if "spike_mismatches_vs_pytorch" in r["float"] else "float")
    row("argmax agreement, integer vs PyTorch reference", lambda r: f"{r['float']['argmax_agreement']:.2%}")
    row("spikes differing, integer vs PyTorch fixed-point", lambda r: "-" if "spike_mismatches_vs_pytorch" not in
        r["float"] else f"{r['float']['spike_mismatches_vs_pytorch']} of {r['float']['spikes_total']}")
    row("argmax agreement, integer vs float neurons", lambda r: f"{r['float']['argmax_agreement_float_neurons']:.2%}")
    row("perplexity float / integer", lambda r: f"{r['float']['ppl_float']:.3f} / {r['float']['ppl_int']:.3f}")
    row("perplexity difference", lambda r: f"{r['float']['ppl_rel_diff']:.2%}")
    row("input clamps (all populations)", lambda r: str(sum(r['float']['input_clamps'].values())))
    row("Lava tokens, spikes identical", lambda r: "-" if r["lava"] is None else
        f"{r['lava']['tokens']} tokens, {r['lava']['spike_mismatches']} mismatches of {r['lava']['spikes_total']}")
    row("Lava logits identical", lambda r: "-" if r["lava"] is None else str(r["lava"]["logits_identical"]))
    row("host number format", lambda r: r["host"])
    row("Lava tokens/s incl. pipeline fill (Loihi2SimCfg, CPU)",
        lambda r: "-" if r["lava"] is None else f"{r['lava']['lava_tokens_per_s']:.2f}")
    row("Lava steps/s (= steady-state tokens/s)",
        lambda r: "-" if r["lava"] is None else f"{r['lava']['lava_steps_per_s']:.2f}")
    row("integer reference tokens/s (numpy)", lambda r: f"{r['float']['int_ref_tokens_per_s']:.1f}")
    row("neurons (compartments)", lambda r: str(r["resources"]["neurons"]))
    row("synapses", lambda r: str(r["resources"]["synapses"]))
    row("cores / chips (ESTIMATE)", lambda r: f"{r['resources']['cores']} / {r['resources']['chips']}")
    row("on-core share of per-token ops", lambda r: f"{r['resources']['on_core_share_of_ops']:.1%}")
    row("threshold mantissa bits", lambda r: str(r["frac_bits"]))
    return f"# Loihi export figures: {label}\n\n" + "\n".join(rows) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--text", required=True)
    ap.add_argument("--label", default="", help="what the checkpoint is (e.g. 'small, 400 steps')")
    ap.add_argument("--eval-tokens", type=int, default=512)
    ap.add_argument("--lava-tokens", type=int, default=32)
    ap.add_argument("--out", default=None, help="directory for loihi_report.json/.md")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="goose-loihi-") as d:
        rep = measure(a.checkpoint, a.text, a.eval_tokens, a.lava_tokens, Path(d))
    md = markdown(rep, a.label or a.checkpoint)
    sys.stdout.write(md)
    if a.out:
        Path(a.out).mkdir(parents=True, exist_ok=True)
        atomic_write_json(Path(a.out) / "loihi_report.json", {"label": a.label, "checkpoint": a.checkpoint,
                                                               "text": a.text, "targets": rep})
        atomic_write_text(Path(a.out) / "loihi_report.md", md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
