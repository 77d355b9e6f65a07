"""goose-check: verify an export against the PyTorch model.

    goose-check onnx OUT/ --checkpoint CKPT --text FILE [--tokens N] [--json]
    goose-check lava PKG/ --checkpoint CKPT --text FILE [--json]   (goose_neuro.cli.check_lava)

Exit codes: 0 all checks pass; 1 a check ran and failed (the figures are printed and
stderr names the failing numbers); 2 bad input (one line on stderr).
"""

from __future__ import annotations

import sys
from typing import Sequence

from goose_neuro.cli import check_lava, finish_check, make_parser, run_cli


def _add_onnx(sub) -> None:
    p = sub.add_parser("onnx", help="ONNX Runtime vs PyTorch on real text")
    p.add_argument("onnx_dir", help="directory written by goose-export --target onnx")
    p.add_argument("--checkpoint", required=True, help="checkpoint the export was made from")
    p.add_argument("--text", required=True, help="UTF-8 text file to evaluate on")
    p.add_argument("--tokens", type=int, default=32, help="greedy tokens to generate with both")
    p.add_argument("--max-eval-tokens", type=int, default=512, help="next-token predictions compared")
    p.add_argument("--ppl-rtol", type=float, default=0.005, help="allowed relative perplexity difference")
    p.add_argument("--atol", type=float, default=None, help="also require max |logit diff| <= ATOL")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    p.set_defaults(run=_run_onnx)


def _print_report(rep: dict) -> None:
    rows = [
        ("variant", rep["variant"]), ("eval tokens", rep["eval_tokens"]),
        ("max |logit diff|", f"{rep['max_abs_logit_diff']:.3g}"),
        ("argmax agreement", f"{rep['argmax_agreement']:.4%}"),
        ("perplexity torch / onnx", f"{rep['ppl_torch']:.4f} / {rep['ppl_onnx']:.4f} ({rep['ppl_rel_diff']:.4%})"),
        (f"greedy {rep['gen_tokens']} tokens identical", rep["greedy_identical"]),
        ("tokens/s torch / onnx", f"{rep['torch_tokens_per_s']:.1f} / {rep['onnx_tokens_per_s']:.1f} "
                                  f"(x{rep['speedup']:.2f})"),
    ]
    if "ppl_prefill" in rep:
        rows.append(("prefill perplexity / max |diff|",
                     f"{rep['ppl_prefill']:.4f} / {rep['prefill_max_abs_logit_diff']:.3g}"))
    rows += [(f"check {k}", "pass" if ok else "FAIL") for k, ok in rep["checks"].items()]
    sys.stdout.write("".join(f"{k:34s} {v}\n" for k, v in rows))


def _run_onnx(a) -> int:
    from goose_neuro.errors import GooseError
    from goose_neuro.export.onnx_check import check_onnx, failure_line

    for name in ("tokens", "max_eval_tokens"):
        if getattr(a, name) < 1:
            raise GooseError(f"--{name.replace('_', '-')} must be >= 1")
    rep = check_onnx(a.onnx_dir, a.checkpoint, a.text, gen_tokens=a.tokens, max_eval_tokens=a.max_eval_tokens,
                     ppl_rtol=a.ppl_rtol, atol=a.atol, threads=a.threads)
    return finish_check("goose-check", rep, a.json, _print_report, failure_line)


def _body(argv: Sequence[str] | None) -> int:
    p = make_parser("goose-check", "Check an export against the PyTorch model.")
    sub = p.add_subparsers(dest="command", required=True)
    _add_onnx(sub)
    check_lava.add_parser(sub)
    a = p.parse_args(argv)
    return a.run(a)


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("goose-check", _body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
