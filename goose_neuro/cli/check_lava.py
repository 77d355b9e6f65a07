"""``goose-check lava PACKAGE --checkpoint CKPT --text FILE [--json]``.

Checks that a Loihi / Loihi 2 package computes what the checkpoint's student computes with the
integer neurons it deploys with (its own, when it was trained with ``--fixed-point``): the
package's parameters against a fresh quantization of the checkpoint, a Lava simulation
(``Loihi2SimCfg``, fixed point, lava-nc's own process models where they exist, in the Python 3.10
environment made by ``make lava-env``) spike for spike against the checkpoint's model, and the
deployed arithmetic's perplexity against the trained model's. Exit 0 pass, 1 a check failed (one
line names what differs), 2 bad input (a malformed package, a missing file).
"""

from __future__ import annotations

import sys

from goose_neuro.cli import finish_check
from goose_neuro.errors import GooseError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("lava", help="Lava simulation of a Loihi package vs the checkpoint's model")
    p.add_argument("package", help="directory written by goose-export --target loihi|loihi2")
    p.add_argument("--checkpoint", required=True, help="checkpoint the package was exported from (the reference)")
    p.add_argument("--text", required=True, help="UTF-8 text file (tokens for the checks)")
    p.add_argument("--lava-tokens", type=int, default=128, help="tokens simulated in Lava")
    p.add_argument("--eval-tokens", type=int, default=512,
                   help="next-token predictions for the perplexity check (PyTorch)")
    p.add_argument("--min-agreement", type=float, default=0.99, help="Lava vs checkpoint argmax agreement required")
    p.add_argument("--ppl-rtol", type=float, default=0.02,
                   help="allowed relative perplexity difference, deployed vs trained")
    p.add_argument("--lava-python", help="interpreter of the Lava environment (default .venv-lava)")
    p.add_argument("--timeout", type=float, default=600, help="seconds allowed for the Lava run")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(run=run)


def _print(rep: dict) -> None:
    lv, q = rep["lava"], rep["quality"]
    rows = [("target / neuron", f"{rep['target']} / {rep['neuron']}"), ("reference", rep["reference"])]
    if "static" in rep:
        st = rep["static"]
        rows.append(("package vs checkpoint quantization", "identical" if st["identical"] else
                     f"{len(st['differences'])} differences: {'; '.join(st['differences'][:2])}"))
    rows += [("lava tokens", lv["tokens"]),
             ("lava spikes differing", f"{lv['spike_mismatches']} of {lv['spikes_total']}"),
             ("lava population inputs differing", lv["input_mismatches"]),
             ("lava logits max |diff|", f"{lv['logits_max_abs_diff']:.3g}"),
             ("lava argmax agreement", f"{lv['argmax_agreement']:.2%}"),
             ("lava / reference perplexity", f"{lv['ppl_lava']:.3f} / {lv['ppl_reference']:.3f}"),
             ("lava tokens/s (Loihi2SimCfg)", f"{lv['lava_tokens_per_s']:.2f}"),
             ("lava process models", ", ".join(m.rsplit(".", 1)[-1] for ms in lv["models"].values() for m in ms)),
             (f"perplexity trained / deployed ({q['eval_tokens']} tok)",
              f"{q['ppl_trained']:.3f} / {q['ppl_deployed']:.3f} ({q['ppl_rel_diff']:.2%})"),
             ("argmax agreement deployed vs trained", f"{q['argmax_agreement_trained']:.2%}")]
    rows += [(f"check {k}", "pass" if ok else "FAIL") for k, ok in rep["checks"].items()]
    sys.stdout.write("".join(f"{k:40s} {v}\n" for k, v in rows))


def run(args) -> int:
    from pathlib import Path

    from goose_neuro.export.loihi.check import check_lava, failure_line

    if args.lava_tokens < 2 or args.eval_tokens < 2:
        raise GooseError("--lava-tokens and --eval-tokens must be >= 2")
    if not 0 < args.min_agreement <= 1 or args.ppl_rtol < 0:
        raise GooseError("--min-agreement must be in (0, 1] and --ppl-rtol >= 0")
    py = Path(args.lava_python) if args.lava_python else None
    if py is not None and not py.is_file():
        raise GooseError(f"--lava-python {py}: no such interpreter")
    rep = check_lava(args.package, args.checkpoint, args.text, lava_tokens=args.lava_tokens,
                     eval_tokens=args.eval_tokens, min_agreement=args.min_agreement, ppl_rtol=args.ppl_rtol,
                     python=py, timeout=args.timeout)
    return finish_check("goose-check", rep, args.json, _print, failure_line)
