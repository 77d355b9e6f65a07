"""Student speed on this machine: training tokens/s per spike mode and step-mode decode.

Prints, for a preset (default `small`): forward+backward tokens/s at B=16, T=128 for
the ternary, binary and none spike modes, the time ratio ternary/none (target <= 1.5),
and step-mode (T=1) decode tokens/s at batch 1 and 8.

    .venv/bin/python benchmarks/model_speed.py            # full
    .venv/bin/python benchmarks/model_speed.py --quick    # fewer repeats
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from goose_neuro.config import preset
from goose_neuro.model import ASNNGoose


def make_train_step(mode: str, args, device):
    """A closure running one forward+backward+AdamW step of a fresh model in ``mode``."""
    torch.manual_seed(0)
    m = ASNNGoose(preset(args.preset, spike_mode=mode)).to(device).train()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    tok = torch.randint(0, m.cfg.vocab_size, (args.batch, args.seq + 1), device=device)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)

    def step():
        with amp:
            logits, _ = m(tok[:, :-1])
            loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), tok[:, 1:].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up (TorchScript compiles its loops on the first calls)
    step()
    return step


def timed(step, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def train_tokens_per_s(modes, args, device) -> dict[str, float]:
    """Median tokens/s per mode over ``repeats`` rounds, the modes interleaved within each
    round so that a noisy neighbour slows all of them alike."""
    steps = {mode: make_train_step(mode, args, device) for mode in modes}
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    for _ in range(args.repeats):
        for mode in modes:
            times[mode].append(timed(steps[mode], device))
    return {mode: args.batch * args.seq / statistics.median(ts) for mode, ts in times.items()}


@torch.no_grad()
def decode_tokens_per_s(batch: int, args, device) -> float:
    torch.manual_seed(0)
    m = ASNNGoose(preset(args.preset)).to(device).eval().freeze_ternary()
    tok = torch.randint(0, m.cfg.vocab_size, (batch, 1), device=device)
    st = None
    for _ in range(5):
        _, st = m(tok, st)
    n = args.decode_steps
    t0 = time.perf_counter()
    for _ in range(n):
        logits, st = m(tok, st)
        tok = logits[:, -1].argmax(-1, keepdim=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n * batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--decode-steps", type=int, default=300)
    ap.add_argument("--quick", action="store_true", help="3 repeats, 100 decode steps")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", action="store_true", help="also print one JSON line")
    args = ap.parse_args()
    if args.quick:
        args.repeats, args.decode_steps = 3, 100
    device = torch.device(args.device)
    print(f"preset={args.preset} device={device} torch={torch.__version__} threads={torch.get_num_threads()}")
    res = {}
    tps = train_tokens_per_s(("ternary", "binary", "none"), args, device)
    for mode, v in tps.items():
        res[f"train_tok_s_{mode}"] = v
        print(f"train fwd+bwd B={args.batch} T={args.seq} mode={mode:8s}: {v:9.0f} tokens/s "
              f"(median of {args.repeats}, modes interleaved)")
    res["time_ratio_ternary_over_none"] = res["train_tok_s_none"] / res["train_tok_s_ternary"]
    print(f"time ratio ternary/none: {res['time_ratio_ternary_over_none']:.2f} (target <= 1.5)")
    for b in (1, 8):
        res[f"decode_tok_s_b{b}"] = decode_tokens_per_s(b, args, device)
        print(f"step-mode decode batch={b}: {res[f'decode_tok_s_b{b}']:9.0f} tokens/s")
    if args.json:
        print(json.dumps(res))


if __name__ == "__main__":
    main()
