"""goose-generate: sample text from an exported ONNX step graph.

    goose-generate OUT/ --prompt "Once upon a time" [--tokens 64] [--temperature 0.8] [--top-k 40] [--seed 0]

Uses only onnxruntime, numpy and the tokenizer (OUT/tokenizer.json via the
``tokenizers`` library, or UTF-8 bytes when the export has none); no PyTorch model
is built. Temperature 0 is greedy decoding.
"""

from __future__ import annotations

import sys
from typing import Sequence

from goose_neuro.cli import make_parser, run_cli


def _body(argv: Sequence[str] | None) -> int:
    from goose_neuro.errors import GooseError
    from goose_neuro.export.ort_runner import OrtStep, generate
    from goose_neuro.tokenizer import load_tokenizer

    p = make_parser("goose-generate", "Sample text from an exported ONNX model (ONNX Runtime only).")
    p.add_argument("onnx_dir", help="directory written by goose-export --target onnx")
    p.add_argument("--prompt", required=True, help="text to continue")
    p.add_argument("--tokens", type=int, default=64, help="new tokens to generate")
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=40, help="keep the k most likely tokens (0 = all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    a = p.parse_args(argv)
    if a.tokens < 0 or a.temperature < 0 or a.top_k < 0:
        raise GooseError("--tokens, --temperature and --top-k must be >= 0")
    step = OrtStep(a.onnx_dir, threads=a.threads)
    tok = load_tokenizer(a.onnx_dir, step.vocab)
    ids = generate(step, tok.encode(a.prompt), a.tokens, a.temperature, a.top_k, a.seed)
    sys.stdout.write(a.prompt + tok.decode(ids) + "\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("goose-generate", _body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
