"""Loihi / Loihi 2 figures for one checkpoint: what ``goose-check lava`` measures, per configuration.

    .venv/bin/python benchmarks/loihi_report.py --checkpoint CKPT --text FILE [--label "..."]
        [--lava-tokens 512] [--eval-tokens 512] [--configs loihi2,loihi] [--out DIR]

For each configuration (Loihi 2; Loihi 1 with host neurons, the default; Loihi 1 with on-core CUBA
ON/OFF neurons, an approximation; Loihi 2 with a Q16 integer host) the checkpoint is exported and
checked as ``goose-check lava`` does: the package against a fresh quantization of the checkpoint,
``--lava-tokens`` tokens in Lava (``Loihi2SimCfg``, fixed point, lava-nc's process models where they
exist) spike for spike against the checkpoint's model with the neurons it deploys with, and the
deployed arithmetic's perplexity against the trained model's over ``--eval-tokens`` tokens. Writes
``loihi_report.json`` and ``loihi_report.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from goose_neuro.export.loihi import check, export_loihi
from goose_neuro.export.lower import lower_checkpoint
from goose_neuro.fileio import atomic_write_json, atomic_write_text

CONFIGS = {"loihi2": ("loihi2", None, "float64"), "loihi": ("loihi", "host", "float64"),
           "loihi-coreneuron": ("loihi", "core", "float64"), "loihi2-q16": ("loihi2", None, "q16")}
TITLES = {"loihi2": "Loihi 2 (`loihi2`)", "loihi": "Loihi 1, host neurons (`loihi`)",
          "loihi-coreneuron": "Loihi 1, on-core CUBA ON/OFF (`population=core`)",
          "loihi2-q16": "Loihi 2, Q16 integer host (`host=q16`)"}


def measure(checkpoint: str, text: str, keys: list[str], lava_tokens: int, eval_tokens: int, work: Path) -> dict:
    graph, _ = lower_checkpoint(checkpoint)
    out = {}
    for key in keys:
        target, population, host = CONFIGS[key]
        try:
            pkg = export_loihi(graph, work / key, target, population=population, host=host)
        except Exception as e:  # e.g. a fixed-point-trained student refuses the CUBA approximation
            out[key] = {"skipped": str(e)}
            continue
        t0 = time.perf_counter()
        rep = check.check_lava(pkg, checkpoint, text, lava_tokens=lava_tokens, eval_tokens=eval_tokens,
                               timeout=3600)
        rep["wall_s"] = time.perf_counter() - t0
        rep["resources"] = json.loads((pkg / "resources.json").read_text())["summary"]
        rep["failure"] = "" if rep["passed"] else check.failure_line(rep)
        out[key] = rep
    return out


def markdown(rep: dict, label: str) -> str:
    keys = [k for k in rep if "skipped" not in rep[k]]
    rows = ["| figure | " + " | ".join(TITLES[k] for k in keys) + " |", "| --- " * (len(keys) + 1) + "|"]

    def row(name, f):
        rows.append(f"| {name} | " + " | ".join(f(rep[k]) for k in keys) + " |")

    row("neuron / trained with fixed point", lambda r: f"{r['neuron']} / {r['trained_fixed_point']}")
    row("package vs checkpoint quantization", lambda r: "identical" if r["static"]["identical"] else
        f"{len(r['static']['differences'])} differences")
    row("Lava tokens", lambda r: str(r["lava"]["tokens"]))
    row("Lava spikes differing from the checkpoint's model",
        lambda r: f"{r['lava']['spike_mismatches']} of {r['lava']['spikes_total']}")
    row("Lava argmax agreement with the checkpoint's model", lambda r: f"{r['lava']['argmax_agreement']:.2%}")
    row("Lava / PyTorch perplexity (Lava tokens)", lambda r: f"{r['lava']['ppl_lava']:.3f} / {r['lava']['ppl_reference']:.3f}")
    row("perplexity trained / deployed (eval tokens)",
        lambda r: f"{r['quality']['ppl_trained']:.3f} / {r['quality']['ppl_deployed']:.3f} "
                  f"({r['quality']['ppl_rel_diff']:.2%})")
    row("argmax agreement deployed vs trained", lambda r: f"{r['quality']['argmax_agreement_trained']:.2%}")
    row("Lava tokens/s incl. pipeline fill", lambda r: f"{r['lava']['lava_tokens_per_s']:.2f}")
    row("Lava steps/s (= steady-state tokens/s)", lambda r: f"{r['lava']['lava_steps_per_s']:.2f}")
    row("Lava build s / run s", lambda r: f"{r['lava']['lava_build_s']:.1f} / {r['lava']['lava_run_s']:.1f}")
    row("Lava process models", lambda r: ", ".join(m.rsplit(".", 1)[1] for ms in r["lava"]["models"].values()
                                                     for m in ms))
    row("compartments (populations + readouts)", lambda r: f"{r['resources']['neurons']} "
        f"({r['resources']['compartments']['populations']} + {r['resources']['compartments']['readouts']})")
    row("cores / chips (ESTIMATE)", lambda r: f"{r['resources']['cores']} / {r['resources']['chips']}")
    row("goose-check lava", lambda r: "pass" if r["passed"] else "FAIL")
    skipped = [f"- {TITLES[k]}: not exported ({rep[k]['skipped']})" for k in rep if "skipped" in rep[k]]
    fails = [f"- {TITLES[k]}: {rep[k]['failure']}" for k in keys if rep[k]["failure"]]
    return (f"# Loihi export figures: {label}\n\n" + "\n".join(rows) + "\n" +
            ("\n" + "\n".join(skipped + fails) + "\n" if skipped or fails else ""))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--text", required=True)
    ap.add_argument("--label", default="", help="what the checkpoint is (e.g. 'small, long setting')")
    ap.add_argument("--lava-tokens", type=int, default=512)
    ap.add_argument("--eval-tokens", type=int, default=512)
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"subset of {', '.join(CONFIGS)}")
    ap.add_argument("--out", default=None, help="directory for loihi_report.json/.md")
    a = ap.parse_args(argv)
    keys = [k.strip() for k in a.configs.split(",") if k.strip()]
    bad = [k for k in keys if k not in CONFIGS]
    if bad:
        ap.error(f"unknown config {bad[0]!r}")
    with tempfile.TemporaryDirectory(prefix="goose-loihi-") as d:
        rep = measure(a.checkpoint, a.text, keys, a.lava_tokens, a.eval_tokens, Path(d))
    md = markdown(rep, a.label or a.checkpoint)
    sys.stdout.write(md)
    if a.out:
        Path(a.out).mkdir(parents=True, exist_ok=True)
        atomic_write_json(Path(a.out) / "loihi_report.json", {"label": a.label, "checkpoint": a.checkpoint,
                                                               "text": a.text, "configs": rep})
        atomic_write_text(Path(a.out) / "loihi_report.md", md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
