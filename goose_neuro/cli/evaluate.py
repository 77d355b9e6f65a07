"""goose-eval: perplexity of a student checkpoint (and its teacher) on a text.

Student and teacher see the same tokenizer and the same windows: the teacher's with
``--teacher``, else the checkpoint's (``goose_neuro.tokenizer.load_tokenizer``, the loader
goose-check and goose-energy use too).
"""

from __future__ import annotations

import json
import sys
from typing import Sequence

from goose_neuro.cli import make_parser, run_cli

PROG = "goose-eval"


def build_parser():
    p = make_parser(PROG, "Evaluate a student checkpoint: perplexity, spike sparsity, tokens/s.")
    p.add_argument("--checkpoint", required=True, help="student checkpoint directory (e.g. runs/NAME)")
    p.add_argument("--data", required=True, help="evaluation text: file, directory or hf:DATASET")
    p.add_argument("--teacher", default=None, help="teacher to compare with (hub name or directory)")
    p.add_argument("--seq-len", type=int, default=64, help="window length in tokens")
    p.add_argument("--windows", type=int, default=64, help="number of (non-overlapping) windows evaluated")
    p.add_argument("--batch-size", type=int, default=8, help="windows per forward pass")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--cache-dir", default=None, help="token cache directory")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    return p


def _body(argv: Sequence[str] | None) -> int:
    a = build_parser().parse_args(argv)
    from goose_neuro.checkpoint import load_checkpoint
    from goose_neuro.data import WindowPool, tokenize_source
    from goose_neuro.errors import ConfigError
    from goose_neuro.teacher import check_vocab, load_teacher
    from goose_neuro.tokenizer import load_tokenizer
    from goose_neuro.training import evaluate, pick_device, set_threads

    if a.seq_len < 1 or a.windows < 1 or a.batch_size < 1:
        raise ConfigError("--seq-len, --windows and --batch-size must be >= 1")
    set_threads(a.threads)
    dev = pick_device(a.device)
    model, info = load_checkpoint(a.checkpoint, device=dev)
    model.freeze_ternary(True)
    teacher = load_teacher(a.teacher, device=dev) if a.teacher else None
    if teacher is not None:
        check_vocab(teacher, model.cfg.vocab_size)
    tok = teacher.tokenizer if teacher is not None else \
        load_tokenizer(a.checkpoint, model.cfg.vocab_size, reference=info["tokenizer"])
    ids = tokenize_source(a.data, tok, a.cache_dir)
    windows = WindowPool(ids, a.seq_len).first(a.windows)
    res = evaluate(model, windows, teacher, batch=a.batch_size)
    res["tokens_per_s"] = res.pop("eval_tokens_per_s")
    res["spike_mode"] = model.cfg.spike_mode
    if a.json:
        sys.stdout.write(json.dumps(res, sort_keys=True) + "\n")
    else:
        _print_table(res)
    return 0


def _print_table(r: dict) -> None:
    lines = [f"tokens evaluated : {r['tokens']}", f"student ppl      : {r['student_ppl']:.2f}"]
    if "teacher_ppl" in r:
        lines.append(f"teacher ppl      : {r['teacher_ppl']:.2f}  (ratio {r['student_ppl'] / r['teacher_ppl']:.2f})")
    sp = r.get("spike_sparsity")
    lines.append("spike sparsity   : " + (f"{sp:.3f}" if sp is not None else "n/a (dense mode)"))
    for lay, rate in r.get("spike_rates", {}).items():
        lines.append(f"  {lay} firing rate: {rate:.3f}")
    lines.append(f"student tokens/s : {r['tokens_per_s']:.0f}")
    sys.stdout.write("\n".join(lines) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(PROG, _body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
