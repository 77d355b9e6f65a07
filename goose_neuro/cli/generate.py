"""goose-generate: sample text from a checkpoint (PyTorch) or an exported ONNX step graph.

    goose-generate SOURCE --prompt "Once upon a time" [--prompt "..." ...] [--tokens 64]
                   [--temperature 0.8] [--top-k 40] [--seed 0] [--threads N] [--device cpu|cuda] [--compile]

SOURCE is a checkpoint directory (config.json + model.safetensors: runs in PyTorch, all
prompts in one batch, see ``goose_neuro.generate``) or a ``goose-export --target onnx``
directory (model.json + model.onnx: ONNX Runtime, numpy and the tokenizer only, prompts one
after another). Temperature 0 is greedy decoding. Each prompt and its continuation go to
stdout; the speed (new tokens per second) goes to stderr.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Sequence

from goose_neuro.cli import make_parser, run_cli


def _from_checkpoint(a) -> tuple[list[str], int, float, str]:
    import torch

    from goose_neuro.checkpoint import load_checkpoint
    from goose_neuro.errors import ConfigError
    from goose_neuro.fast_step import FastStep
    from goose_neuro.generate import generate

    if a.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {a.device}: CUDA is not available here")
    if a.threads:
        torch.set_num_threads(a.threads)
    from goose_neuro.tokenizer import load_tokenizer

    model, info = load_checkpoint(a.source, device=a.device)
    tok = load_tokenizer(a.source, model.cfg.vocab_size, reference=info.get("tokenizer"))
    prompts = [tok.encode(p) for p in a.prompt]
    res = generate(model, prompts, a.tokens, a.temperature, a.top_k, a.seed,
                   step=FastStep(model, compile=a.compile), progress=sys.stderr.isatty())
    texts = [p + tok.decode(ids) for p, ids in zip(a.prompt, res.tokens)]
    return texts, res.new_tokens, res.decode_s, f"PyTorch {a.device}, batch {len(prompts)}"


def _from_onnx(a) -> tuple[list[str], int, float, str]:
    from goose_neuro.export.ort_runner import OrtStep, generate
    from goose_neuro.tokenizer import load_tokenizer

    step = OrtStep(a.source, threads=a.threads)
    tok = load_tokenizer(a.source, step.vocab)
    texts, n, secs = [], 0, 0.0
    for p in a.prompt:
        t0 = time.perf_counter()
        ids = generate(step, tok.encode(p), a.tokens, a.temperature, a.top_k, a.seed)
        secs += time.perf_counter() - t0
        n += len(ids)
        texts.append(p + tok.decode(ids))
    return texts, n, secs, "ONNX Runtime, one prompt at a time (prompt included in the time)"


def _body(argv: Sequence[str] | None) -> int:
    from goose_neuro.errors import GooseError

    p = make_parser("goose-generate", "Sample text from a checkpoint (PyTorch) or an exported ONNX model.")
    p.add_argument("source", help="checkpoint directory, or a directory written by goose-export --target onnx")
    p.add_argument("--prompt", required=True, action="append",
                   help="text to continue; repeat for several prompts (one batch in PyTorch)")
    p.add_argument("--tokens", type=int, default=64, help="new tokens per prompt")
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=40, help="keep the k most likely tokens (0 = all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="PyTorch / ONNX Runtime intra-op threads")
    p.add_argument("--device", default="cpu", help="checkpoints only: cpu or cuda[:N]")
    p.add_argument("--compile", action="store_true", help="checkpoints only: torch.compile the decode step")
    a = p.parse_args(argv)
    if a.tokens < 0 or a.temperature < 0 or a.top_k < 0:
        raise GooseError("--tokens, --temperature and --top-k must be >= 0")
    if a.threads is not None and a.threads < 1:
        raise GooseError("--threads must be >= 1")
    src = Path(a.source)
    if (src / "model.json").is_file():
        run = _from_onnx
    elif (src / "config.json").is_file():
        run = _from_checkpoint
    elif not src.exists():
        raise GooseError(f"{src} does not exist (pass a checkpoint or an ONNX export directory)")
    else:
        raise GooseError(f"{src / 'model.json'}: missing (not an ONNX export; not a checkpoint either: "
                         f"no config.json)")
    texts, n, secs, how = run(a)
    for t in texts:
        sys.stdout.write(t + "\n")
    rate = n / secs if secs > 0 else float("inf")
    sys.stderr.write(f"goose-generate: {n} new tokens in {secs:.2f} s, {rate:.1f} tokens/s ({how})\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("goose-generate", _body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
