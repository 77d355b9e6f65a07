"""``goose-check lava OUT/ [--checkpoint CKPT --text FILE] [--json]``.

Runs an exported Loihi / Loihi 2 package in Lava (``Loihi2SimCfg``, fixed point, in the Python 3.10
environment made by ``make lava-env``) and compares it bit for bit with the integer reference; with
``--checkpoint`` and ``--text`` also compares the integer reference with the PyTorch model (argmax
agreement >= 99% against the PyTorch model running the package's fixed-point neurons where the
package allows it, perplexity within 2% of the float-neuron model). Exit 0 pass, 1 a check
failed, 2 bad input.
"""

from __future__ import annotations

import sys

from goose_neuro.cli import finish_check
from goose_neuro.errors import GooseError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("lava", help="Lava simulation vs integer reference vs PyTorch")
    p.add_argument("package", help="directory written by goose-export --target loihi|loihi2")
    p.add_argument("--checkpoint", help="checkpoint the package was exported from")
    p.add_argument("--text", help="UTF-8 text file (tokens for both checks)")
    p.add_argument("--lava-tokens", type=int, default=16, help="tokens simulated in Lava")
    p.add_argument("--eval-tokens", type=int, default=256, help="next-token predictions compared with PyTorch")
    p.add_argument("--min-agreement", type=float, default=0.99, help="argmax agreement required")
    p.add_argument("--ppl-rtol", type=float, default=0.02, help="allowed relative perplexity difference")
    p.add_argument("--lava-python", help="interpreter of the Lava environment (default .venv-lava)")
    p.add_argument("--timeout", type=float, default=600, help="seconds allowed for the Lava run")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(run=run)


def _print(rep: dict) -> None:
    rows = [("target", rep["target"])]
    if "float" in rep:
        f = rep["float"]
        rows += [("eval tokens", f["eval_tokens"]), ("PyTorch reference", f["reference"]),
                 ("argmax agreement int vs PyTorch", f"{f['argmax_agreement']:.2%}")]
        if "spike_mismatches_vs_pytorch" in f:
            rows += [("spike mismatches int vs PyTorch", f"{f['spike_mismatches_vs_pytorch']} of {f['spikes_total']}"),
                     ("argmax agreement vs float neurons", f"{f['argmax_agreement_float_neurons']:.2%}")]
        rows += [("perplexity float / int", f"{f['ppl_float']:.3f} / {f['ppl_int']:.3f} ({f['ppl_rel_diff']:.2%})")]
    lv = rep["lava"]
    rows += [("lava tokens", lv["tokens"]), ("lava spike mismatches", f"{lv['spike_mismatches']} of "
                                                                      f"{lv['spikes_total']} spikes"),
             ("lava logits", "identical" if lv["logits_identical"] else f"max |diff| {lv['logits_max_abs_diff']:.3g}"),
             ("lava tokens/s (Loihi2SimCfg)", f"{lv['lava_tokens_per_s']:.2f}")]
    rows += [(f"check {k}", "pass" if ok else "FAIL") for k, ok in rep["checks"].items()]
    sys.stdout.write("".join(f"{k:34s} {v}\n" for k, v in rows))


def run(args) -> int:
    from pathlib import Path

    from goose_neuro.export.lava_check import check_lava, failure_line

    if (args.checkpoint is None) != (args.text is None):
        raise GooseError("--checkpoint and --text go together")
    if args.text is None:
        raise GooseError("--text and --checkpoint are required (tokens to run)")
    if args.lava_tokens < 1 or args.eval_tokens < 1:
        raise GooseError("--lava-tokens and --eval-tokens must be >= 1")
    py = Path(args.lava_python) if args.lava_python else None
    if py is not None and not py.is_file():
        raise GooseError(f"--lava-python {py}: no such interpreter")
    rep = check_lava(args.package, args.checkpoint, args.text, lava_tokens=args.lava_tokens,
                     eval_tokens=args.eval_tokens, min_agreement=args.min_agreement, ppl_rtol=args.ppl_rtol,
                     python=py, timeout=args.timeout)
    return finish_check("goose-check", rep, args.json, _print, failure_line)
