"""Energy per token of a checkpoint's Loihi packages, before and after pricing the package (issue 13 B).

    .venv/bin/python benchmarks/energy_package.py --checkpoint RUN_DIR \
        [--before ../main/.venv/bin/goose-energy] [--text ../shared/data/warpeace/test.txt] [--tokens 2048] \
        [--teacher ../shared/teachers/wp-gpt2-4L256] [-o /tmp/goose_energy_package]

After: goose-export writes the checkpoint's packages (loihi2; loihi with host neurons, the default;
loihi with population=core; and, for comparison, loihi2 with host=q16) into -o/packages/, and
goose-energy's library call prices them from their manifests (``energy_report(..., packages=[...])``)
next to cmos45-int8 and the cmos45-fp32 baseline.
Before: ``--before`` names the goose-energy executable of an earlier version (for example the main
checkout's, before this change), run on the same checkpoint, text, tokens and teacher; its one
``loihi`` figure stands for both Loihi 1 rows (it had no placement). Without ``--before`` that column
is left out.

Prints one table: energy per token, the share spent on host-chip traffic, student / int8 teacher,
/ fp32 teacher and / dense twin at context 512, the measured firing rate of the neurons each target
runs and the break-even rates; then where each package's energy goes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
#: (label, report key, key of the same target in the earlier report)
ROWS = (("loihi2", "loihi2", "loihi2"), ("loihi (host neurons)", "loihi", "loihi"),
        ("loihi (core neurons)", "loihi:population=core", "loihi"), ("cmos45-int8", "cmos45-int8", "cmos45-int8"),
        ("loihi2, q16 host", "loihi2:host=q16", "loihi2"))
PACKAGES = (("loihi2", "loihi2", {}), ("loihi", "loihi", {}), ("loihi-core", "loihi", {"population": "core"}),
            ("loihi2-q16", "loihi2", {"host": "q16"}))
PLACED = [r for r in ROWS if r[1] != "cmos45-int8"]


#: ModelConfig fields newer than the earlier tool, at the values that mean "as before"
NEWER_FIELDS = {"neuron": "subtract", "fixed_point": False, "frac_bits": 11, "head_input": "dense", "head_rank": 0}


def earlier_checkpoint(ckpt: Path, out: Path) -> Path:
    """``ckpt`` as an earlier version reads it: a copy whose config drops the newer fields where they
    hold their as-before values. A checkpoint that uses a newer feature cannot be priced before."""
    cfg = json.loads((ckpt / "config.json").read_text())
    model = cfg["model"]
    used = {k: model[k] for k, v in NEWER_FIELDS.items() if k in model and model[k] != v}
    if used:
        raise SystemExit(f"{ckpt}: uses {used}, which the earlier version cannot price; run without --before")
    out.mkdir(parents=True)
    for f in ckpt.iterdir():
        if f.is_file() and f.name != "config.json":
            (out / f.name).symlink_to(f.resolve())
    cfg["model"] = {k: v for k, v in model.items() if k not in NEWER_FIELDS}
    (out / "config.json").write_text(json.dumps(cfg, indent=1))
    return out


def run_before(exe: str, args, out: Path) -> dict:
    """Run an earlier goose-energy on the same inputs; its report.json."""
    ckpt = earlier_checkpoint(Path(args.checkpoint), out.parent / "before-checkpoint")
    cmd = [exe, "--checkpoint", str(ckpt), "--text", str(args.text), "--tokens", str(args.tokens),
           "--profile", "loihi2", "--profile", "loihi", "--profile", "cmos45-int8", "--teacher", str(args.teacher),
           "-o", str(out), "--no-plots", "--no-progress"]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "HF_HUB_OFFLINE": "1"}
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return json.loads((out / "report.json").read_text())


def _uj(pj: float | None) -> str:
    return "n/a" if pj is None else f"{pj / 1e6:.3g} uJ"


def _rate(r: float | None) -> str:
    from goose_neuro.energy.report import fmt_rate

    return fmt_rate(r).replace(" (energy does not grow with the rate)", " (dense)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, type=Path)
    ap.add_argument("--before", default=None, help="goose-energy executable of the version to compare with")
    ap.add_argument("--text", default=str(SHARED / "data" / "warpeace" / "test.txt"))
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--teacher", default=str(SHARED / "teachers" / "wp-gpt2-4L256"))
    ap.add_argument("-o", "--out", default="/tmp/goose_energy_package", type=Path)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from goose_neuro.energy import energy_report
    from goose_neuro.errors import ExportError
    from goose_neuro.export import export_checkpoint

    t0 = time.perf_counter()
    pkgs, profiles, refused = [], ["cmos45-int8"], {}
    for (d, target, opts), (label, key, _) in zip(PACKAGES, PLACED):
        path = args.out / "packages" / d
        try:
            export_checkpoint(args.checkpoint, target, path, **opts)
        except ExportError as e:  # e.g. CUBA ON/OFF for a fixed-point-trained model: the exporter refuses
            refused[key] = str(e)
            continue
        pkgs.append(path)
        profiles.append(target)
    rep = energy_report(args.checkpoint, args.text, args.tokens, profiles, "cmos45-fp32", args.teacher,
                        out_dir=args.out / "report", progress=sys.stderr.isatty(), packages=pkgs)
    after_s = time.perf_counter() - t0
    before = None
    if args.before:
        with tempfile.TemporaryDirectory() as tmp:
            t1 = time.perf_counter()
            before = run_before(args.before, args, Path(tmp) / "before")
            before_s = time.perf_counter() - t1
    fair, a = rep["fair_baseline"], rep["activity"]
    print(f"checkpoint {args.checkpoint} ({rep['model']['params']:,} parameters, "
          f"{'fixed-point' if rep['model']['trained_fixed_point'] else 'float'} neurons as trained, "
          f"neuron {rep['model']['config']['neuron']}); {a['tokens']} tokens of {a['text']}")
    print(f"teacher {fair['teacher']} at context 512: fp32 {_uj(fair['teachers']['fp32']['512'])}, "
          f"int8 {_uj(fair['teachers']['int8']['512'])} per token; model-as-trained firing rate "
          f"{a['firing_rate']:.4f}")
    print()
    head = (["target"] + (["before"] if before else []) +
            ["after", "host-chip share", "/ int8 teacher", "/ fp32 teacher", "/ dense twin", "rate",
             "break-even vs int8 teacher", "vs fp32 teacher", "vs dense twin"])
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    for label, key, old in ROWS:
        if key in refused:
            lines.append(f"| `{label}` | " + " | ".join(["-"] * (len(head) - 1)) + " |")
            continue
        b = rep["profiles"][key]
        s = b["student"]
        r, be = fair["ratios"][key], fair["break_even"][key]
        row = [f"`{label}`"]
        if before:
            row.append(_uj(before["profiles"][old]["student"]["energy_pj_per_token"]))
        row += [_uj(s["energy_pj_per_token"]),
                f"{100 * s['host_chip_share']:.1f}%" if "host_chip_share" in s else "-",
                f"{r['student_over_teacher_int8']['512']:.3g}", f"{r['student_over_teacher_fp32']['512']:.3g}",
                f"{r['student_over_dense_twin']:.3g}" if "student_over_dense_twin" in r else "n/a",
                f"{b['rate_model']['measured_rate']:.3g}", _rate(be["teacher_int8"]["512"]),
                _rate(be["teacher_fp32"]["512"]), _rate(be.get("dense_twin"))]
        lines.append("| " + " | ".join(row) + " |")
    print("\n".join(lines))
    print()
    print("where each package's energy goes (per token):")
    for label, key, _ in PLACED:
        if key in refused:
            print(f"  {label}: no package: goose-export refuses it ({refused[key]})")
            continue
        b = rep["profiles"][key]
        w, pk = b["student"]["by_where"], b["package"]
        parts = ", ".join(f"{k} {_uj(w[k]['energy_pj'])}" for k in ("core", "host", "host_neuron", "host_chip",
                                                                     "spike_hops", "static") if k in w)
        c = pk["compartments"]
        print(f"  {label}: {parts}; compartments {c['populations']:,} + {c['readouts']:,} readouts; host ops on "
              f"{w['host']['profile']}; host-chip {w['host_chip']['bits_per_token']:,.0f} bits/token; "
              f"static: {'priced' if w['static']['priced'] else w['static']['reason']}")
        print(f"    activity: {pk['activity']['note']}")
    if before:
        print(f"\nbefore: {args.before} ({before_s:.0f} s); after: this tree ({after_s:.0f} s)")
    print(f"report: {args.out / 'report' / 'report.md'}; packages: {args.out / 'packages'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
