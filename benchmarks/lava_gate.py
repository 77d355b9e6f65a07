"""Does ``goose-check lava`` fail when it should? The corruption matrix on a real checkpoint.

    .venv/bin/python benchmarks/lava_gate.py --checkpoint CKPT --text FILE [--target loihi2]
        [--lava-tokens 128] [--eval-tokens 256]

Exports the checkpoint, runs ``goose-check lava`` on the good package, then on copies with one thing
corrupted at a time (a decay, a gain, one chain weight row, one host-op parameter, a threshold
mantissa, a chain's size), and prints each case with the exit code and the one line the command
printed on stderr. A good package must exit 0; a corrupted one 1 (its parameters differ from the
checkpoint's quantization and Lava's spikes from the checkpoint's model) or 2 (malformed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BIN = Path(sys.executable).with_name("goose-check")


def _params(fn):
    def edit(pkg: Path) -> None:
        with np.load(pkg / "params.npz") as z:
            p = {k: z[k] for k in z.files}
        fn(p)
        np.savez(pkg / "params.npz", **p)
    return edit


def _manifest(fn):
    def edit(pkg: Path) -> None:
        m = json.loads((pkg / "manifest.json").read_text())
        fn(m)
        (pkg / "manifest.json").write_text(json.dumps(m))
    return edit


def _weight_row(pkg: Path) -> None:
    import h5py

    m = json.loads((pkg / "manifest.json").read_text())
    with h5py.File(pkg / m["chains"][0]["net_file"], "r+") as f:
        k = str(len(f["layer"]) - 1)
        w = f[f"layer/{k}/weight"][()]
        w[5] = -w[5]
        f[f"layer/{k}/weight"][...] = w


def cases(man: dict) -> dict:
    first, second, third = (ch["population"] for ch in man["chains"][:3])
    ln = next(op["name"] for op in man["host"]["ops"] if op["type"] == "LayerNorm" and op["name"] != "ln0")
    dv = man["chains"][0]["params"]["dv"]
    gain = man["chains"][1]["params"]["gain"]
    return {
        "none (the exported package)": lambda pkg: None,
        f"decay of {first}: dv set to 4095": _params(lambda p: p.__setitem__(dv, np.full_like(p[dv], 4095))),
        f"gain (threshold) of {second} x 1.5": _params(lambda p: p.__setitem__(gain, p[gain] * 1.5)),
        f"one weight row of {first}'s chain negated": _weight_row,
        f"host-op parameter {ln}.weight x 1.5": _params(lambda p: p.__setitem__(f"{ln}.weight", p[f"{ln}.weight"] * 1.5)),
        f"threshold mantissa of {third} halved": _manifest(lambda m: m["chains"][2].update(vth=m["chains"][2]["vth"] // 2)),
        f"size of {second}'s chain + 1": _manifest(lambda m: m["chains"][1].update(n=m["chains"][1]["n"] + 1)),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--text", required=True)
    ap.add_argument("--target", default="loihi2", choices=["loihi", "loihi2"])
    ap.add_argument("--lava-tokens", type=int, default=128)
    ap.add_argument("--eval-tokens", type=int, default=256)
    a = ap.parse_args(argv)
    from goose_neuro.export import export_checkpoint

    rows = ["| corruption | exit | what goose-check lava printed (stderr) | wall s |", "| --- | --- | --- | --- |"]
    with tempfile.TemporaryDirectory(prefix="goose-gate-") as d:
        good = export_checkpoint(a.checkpoint, a.target, Path(d) / "good")
        man = json.loads((good / "manifest.json").read_text())
        for i, (name, edit) in enumerate(cases(man).items()):
            pkg = Path(d) / f"case{i}"
            shutil.copytree(good, pkg)
            edit(pkg)
            t0 = time.perf_counter()
            r = subprocess.run([str(BIN), "lava", str(pkg), "--checkpoint", a.checkpoint, "--text", a.text,
                                "--lava-tokens", str(a.lava_tokens), "--eval-tokens", str(a.eval_tokens)],
                               capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
            err = [ln for ln in r.stderr.splitlines() if ln.strip()]
            line = err[-1] if err else "(nothing)"
            rows.append(f"| {name} | {r.returncode} | {line.replace('|', '/')} | {time.perf_counter() - t0:.0f} |")
            sys.stderr.write(f"[{name}] exit {r.returncode}\n")
    sys.stdout.write(f"# goose-check lava corruption matrix: {a.checkpoint} ({a.target}, {a.lava_tokens} Lava "
                     f"tokens)\n\n" + "\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
