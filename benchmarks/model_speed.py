"""Student speed on this machine: training tokens/s per spike mode and one-token decode.

Prints, for a preset (default `small`): forward+backward+AdamW tokens/s at B=16, T=128 for
the ternary, binary and none spike modes (the modes interleaved in every round, median of
``--repeats`` rounds), the time ratio ternary/none (target <= 1.5), and decode tokens/s at
batch 1 and 8 for the fast step (``goose_neuro.fast_step.FastStep``) and for sequence mode
called with one token (the older path). ``--runs N`` repeats the training measurement N
times (one ratio per run); ``--profile`` adds a per-op profile of one training step in
ternary and none modes, listing what the spiking neurons add; ``--neurons`` times training with
each neuron (subtract, ternary_lif) in float and with the fixed-point neurons that
``goose-train --fixed-point`` uses.

    .venv/bin/python benchmarks/model_speed.py                        # full
    .venv/bin/python benchmarks/model_speed.py --runs 3 --threads 2   # the ratio three times
    .venv/bin/python benchmarks/model_speed.py --quick --profile      # fewer repeats + op profile
    .venv/bin/python benchmarks/model_speed.py --neurons --no-decode  # float vs fixed-point neurons

The machine's load average is printed with the figures: on a shared CPU the ratio moves
with it (every full-tensor pass of the neuron backward is a parallel region that waits
for its slowest thread).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

from goose_neuro.config import preset
from goose_neuro.fast_step import FastStep
from goose_neuro.model import ASNNGoose

MODES = ("ternary", "binary", "none")


def load() -> str:
    a = os.getloadavg()
    return f"load {a[0]:.2f}/{a[1]:.2f}/{a[2]:.2f}"


def make_train_step(mode: str, args, device, **model):
    """A closure running one forward+backward+AdamW step of a fresh model in ``mode`` (``model``:
    more ModelConfig overrides)."""
    torch.manual_seed(0)
    m = ASNNGoose(preset(args.preset, spike_mode=mode, **model)).to(device).train()
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


def train_tokens_per_s(args, device) -> dict[str, float]:
    """Median tokens/s per mode over ``repeats`` rounds, the modes interleaved within each
    round so that a noisy neighbour slows all of them alike."""
    steps = {mode: make_train_step(mode, args, device) for mode in MODES}
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(args.repeats):
        for mode in MODES:
            times[mode].append(timed(steps[mode], device))
    return {mode: args.batch * args.seq / statistics.median(ts) for mode, ts in times.items()}


def neuron_tokens_per_s(args, device) -> dict[str, float]:
    """Training tokens/s of the ternary mode per neuron, float and fixed point, interleaved as in
    :func:`train_tokens_per_s`."""
    variants = {f"{n}, {'fixed point' if fx else 'float'}": dict(neuron=n, fixed_point=fx)
                for n in ("subtract", "ternary_lif") for fx in (False, True)}
    steps = {k: make_train_step("ternary", args, device, **kw) for k, kw in variants.items()}
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.repeats):
        for k in variants:
            times[k].append(timed(steps[k], device))
    return {k: args.batch * args.seq / statistics.median(ts) for k, ts in times.items()}


@torch.no_grad()
def decode_tokens_per_s(batch: int, args, device) -> dict[str, float]:
    """tokens/s of the fast step and of one-token sequence-mode calls, interleaved rounds."""
    torch.manual_seed(0)
    m = ASNNGoose(preset(args.preset)).to(device).eval().freeze_ternary()
    fast = FastStep(m)
    tok = torch.randint(0, m.cfg.vocab_size, (batch,), device=device)
    st = {"fast": fast.init_state(batch), "seq": m.init_state(batch, device)}

    def run_fast():
        _, st["fast"] = fast(tok, st["fast"])

    def run_seq():
        _, st["seq"] = m(tok[:, None], st["seq"])

    fns = {"fast": run_fast, "seq": run_seq}
    for f in fns.values():
        for _ in range(5):
            f()
    n = max(1, args.decode_steps // 5)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(5):
        for k, f in fns.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(n):
                f()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[k].append((time.perf_counter() - t0) / n)
    return {k: batch / statistics.median(v) for k, v in times.items()}


def profile(args, device) -> None:
    """Per-op self time of one training step (no optimizer) in ternary and none modes: what
    the spiking neurons add, and how much of it is the neurons' own autograd node."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as tprofile

    res, totals = {}, {}
    for mode in ("ternary", "none"):
        torch.manual_seed(0)
        m = ASNNGoose(preset(args.preset, spike_mode=mode)).to(device).train()
        tok = torch.randint(0, m.cfg.vocab_size, (args.batch, args.seq + 1), device=device)

        def step():
            logits, _ = m(tok[:, :-1])
            torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), tok[:, 1:].flatten()).backward()
            m.zero_grad(set_to_none=True)

        step()
        step()
        with tprofile(activities=[ProfilerActivity.CPU]) as prof:
            step()
        ev = prof.key_averages()
        res[mode] = {e.key: (e.self_cpu_time_total, e.count, e.cpu_time_total) for e in ev}
        totals[mode] = sum(e.self_cpu_time_total for e in ev)
    t, n = res["ternary"], res["none"]
    print(f"profile ({load()}): one fwd+bwd step, self CPU time ternary {totals['ternary'] / 1e3:.0f} ms, "
          f"none {totals['none'] / 1e3:.0f} ms (profiler overhead included)")
    for key in ("_LIFScan", "_LIFScanBackward", "_lif_forward_loop", "_lif_backward_loop"):
        if key in t:
            print(f"  {key:24s} total {t[key][2] / 1e3:8.1f} ms over {t[key][1]} calls")
    print("  ops whose self time grows most from none to ternary:")
    diff = sorted(t, key=lambda k: -(t[k][0] - n.get(k, (0, 0, 0))[0]))
    for k in diff[:12]:
        a, b = t[k], n.get(k, (0, 0, 0))
        print(f"    {k:34s} +{(a[0] - b[0]) / 1e3:8.1f} ms   ternary {a[0] / 1e3:7.1f} ms x{a[1]:5d}   "
              f"none {b[0] / 1e3:7.1f} ms x{b[1]:5d}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--runs", type=int, default=1, help="repeat the training measurement (one ratio per run)")
    ap.add_argument("--decode-steps", type=int, default=300)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    ap.add_argument("--quick", action="store_true", help="3 repeats, 100 decode steps")
    ap.add_argument("--profile", action="store_true", help="also print a per-op profile, ternary vs none")
    ap.add_argument("--no-decode", action="store_true")
    ap.add_argument("--neurons", action="store_true",
                    help="also time training per neuron, float and fixed point (goose-train --fixed-point)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", action="store_true", help="also print one JSON line")
    args = ap.parse_args()
    if args.quick:
        args.repeats, args.decode_steps = 3, 100
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"preset={args.preset} device={device} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"cpus={os.cpu_count()} {load()}")
    res: dict = {"threads": torch.get_num_threads(), "runs": []}
    for run in range(args.runs):
        tps = train_tokens_per_s(args, device)
        r = {f"train_tok_s_{mode}": v for mode, v in tps.items()}
        r["time_ratio_ternary_over_none"] = tps["none"] / tps["ternary"]
        r["load"] = os.getloadavg()
        res["runs"].append(r)
        for mode, v in tps.items():
            print(f"run {run + 1}: train fwd+bwd B={args.batch} T={args.seq} mode={mode:8s}: {v:9.0f} tokens/s "
                  f"(median of {args.repeats}, modes interleaved)")
        print(f"run {run + 1}: time ratio ternary/none: {r['time_ratio_ternary_over_none']:.2f} (target <= 1.5), "
              f"{load()}")
    if args.neurons:
        nps = neuron_tokens_per_s(args, device)
        res["train_tok_s_by_neuron"] = nps
        for k, v in nps.items():
            print(f"train fwd+bwd B={args.batch} T={args.seq} ternary, {k:24s}: {v:9.0f} tokens/s "
                  f"(median of {args.repeats}, interleaved)")
        for n in ("subtract", "ternary_lif"):
            print(f"{n}: fixed point / float time ratio {nps[f'{n}, float'] / nps[f'{n}, fixed point']:.2f}")
    if not args.no_decode:
        for b in (1, 8):
            d = decode_tokens_per_s(b, args, device)
            res[f"decode_tok_s_b{b}"] = d["fast"]
            res[f"decode_tok_s_b{b}_sequence_mode"] = d["seq"]
            print(f"decode batch={b}: FastStep {d['fast']:9.0f} tokens/s ({1e3 * b / d['fast']:.3f} ms/step), "
                  f"sequence mode T=1 {d['seq']:9.0f} tokens/s ({1e3 * b / d['seq']:.3f} ms/step), {load()}")
    if args.profile:
        profile(args, device)
    if args.json:
        print(json.dumps(res))


if __name__ == "__main__":
    main()
