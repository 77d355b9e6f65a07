"""Energy per token at scale: the gpt2-50m student against GPT-2 124M on every hardware profile.

Full run (385 s on 2 CPU cores with one torch thread; a gpt2-50m training step of 2 x 64 tokens
takes about 3-4 s, and profiling is the rest; energy/README.md has its table):

    .venv/bin/python benchmarks/energy_scale.py --preset gpt2-50m --train-steps 100 --batch 2 --seq 64 \
        --tokens 1024 --train-text ../shared/data/warpeace/train.txt --text ../shared/data/warpeace/test.txt \
        --tokenizer ../shared/tokenizers/gpt2 -o /tmp/goose_energy_scale

Tiny validation (seconds):

    .venv/bin/python benchmarks/energy_scale.py --preset tiny --train-steps 5 --tokens 128 \
        --train-text ../shared/data/warpeace/train.txt --text ../shared/data/warpeace/test.txt \
        -o /tmp/goose_energy_scale_tiny

What it measures, per profile (pJ per token):
  * student, static counts: every neuron fires every token (the upper bound, no activity needed); on
    Loihi targets the package goose-export writes is priced (energy/README.md: "Pricing the package");
  * student, silent: no spikes at all (the floor: neuron updates, host ops, memory);
  * student, measured: activity profiled on --text by a BRIEFLY TRAINED model (--train-steps of plain
    next-token cross-entropy on --train-text, no distillation; labelled as such in every output), or
    on --checkpoint if one is given;
  * the student's dense twin (same weights, spike_mode none);
  * GPT-2 124M (published sizes) at contexts 128, 512 and 1024, on the same profile, and the fp32 /
    int8 teachers of the fair baseline.
Writes scale.md, scale.json and scale.png to -o.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def brief_training(preset: str, steps: int, text: Path, tokenizer_dir: Path | None, out: Path, seq: int = 128,
                   batch: int = 4, lr: float = 1e-3, seed: int = 0) -> tuple[Path, str]:
    """Train ``preset`` for ``steps`` of next-token cross-entropy; save a checkpoint with its tokenizer."""
    import numpy as np
    import torch

    from goose_neuro.checkpoint import save_checkpoint
    from goose_neuro.config import preset as make_preset
    from goose_neuro.tokenizer import ByteTokenizer
    from goose_neuro.model import ASNNGoose

    torch.manual_seed(seed)
    cfg = make_preset(preset)
    tok = None
    if tokenizer_dir is not None:  # GPT-2's byte-level BPE from vocab.json + merges.txt
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers
        from transformers import PreTrainedTokenizerFast

        bpe = Tokenizer(models.BPE.from_file(str(tokenizer_dir / "vocab.json"), str(tokenizer_dir / "merges.txt")))
        bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        bpe.decoder = decoders.ByteLevel()
        tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>")
        if len(tok) > cfg.vocab_size:
            raise SystemExit(f"tokenizer has {len(tok)} tokens, preset {preset} only {cfg.vocab_size}")
    elif cfg.vocab_size < 256:
        raise SystemExit(f"preset {preset}: vocabulary {cfg.vocab_size} < 256; give --tokenizer")
    enc = tok.encode if tok is not None else ByteTokenizer().encode
    chars = max(200_000, steps * batch * seq * 8)
    ids = np.asarray(enc(text.read_text(encoding="utf-8")[:chars]), dtype=np.int64)
    if len(ids) < seq + 2:
        raise SystemExit(f"{text}: only {len(ids)} tokens, need more than {seq + 1} to train")
    model = ASNNGoose(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    rng = np.random.default_rng(seed)
    t0, loss = time.perf_counter(), float("nan")
    model.train()
    for step in range(steps):
        starts = rng.integers(0, len(ids) - seq - 1, size=batch)
        x = torch.as_tensor(np.stack([ids[s:s + seq] for s in starts]))  # (B, T)
        y = torch.as_tensor(np.stack([ids[s + 1:s + seq + 1] for s in starts]))
        logits, _ = model(x)
        lossv = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
        opt.zero_grad()
        lossv.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss = float(lossv)
        if step % max(1, steps // 10) == 0 or step == steps - 1:
            print(f"  train step {step + 1}/{steps}: loss {loss:.3f} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    label = (f"{preset}, BRIEFLY TRAINED: {steps} steps of next-token cross-entropy (batch {batch} x {seq} tokens, "
             f"no distillation), final loss {loss:.3f}")
    ck = out / "checkpoint"
    save_checkpoint(model.eval(), ck, meta={"label": label})
    if tok is not None:
        tok.save_pretrained(str(ck))
    return ck, label


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="gpt2-50m")
    ap.add_argument("--checkpoint", default=None, help="use this trained checkpoint instead of brief training")
    ap.add_argument("--train-steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--train-text", default=str(SHARED / "data" / "warpeace" / "train.txt"))
    ap.add_argument("--text", default=str(SHARED / "data" / "warpeace" / "test.txt"))
    ap.add_argument("--tokenizer", default=None, help="GPT-2 BPE directory (vocab.json, merges.txt); "
                                                      "default ../shared/tokenizers/gpt2 for vocab >= 50257")
    ap.add_argument("--tokens", type=int, default=1024, help="tokens of --text to profile")
    ap.add_argument("--contexts", default="128,512,1024")
    ap.add_argument("-o", "--out", default="/tmp/goose_energy_scale")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from goose_neuro.checkpoint import load_checkpoint
    from goose_neuro.config import preset as make_preset
    from goose_neuro.energy import builtin_profiles, energy_report
    from goose_neuro.energy.counts import count_graph
    from goose_neuro.energy.estimate import energy_by_class, host_for, price_table, total
    from goose_neuro.energy.package import default_placement, price_placement
    from goose_neuro.export.lower import lower
    from goose_neuro.export.opcost import Precision
    from goose_neuro.hardware_profiles import load_profile

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    contexts = [int(c) for c in args.contexts.split(",")]
    t0 = time.perf_counter()
    if args.checkpoint:
        ck, label = Path(args.checkpoint), ""
    else:
        tdir = Path(args.tokenizer) if args.tokenizer else None
        if tdir is None and make_preset(args.preset).vocab_size >= 50257:
            tdir = SHARED / "tokenizers" / "gpt2"
        ck, label = brief_training(args.preset, args.train_steps, Path(args.train_text), tdir, out, seq=args.seq,
                                   batch=args.batch)
    train_s = time.perf_counter() - t0
    profiles = builtin_profiles()
    rep = energy_report(ck, args.text, args.tokens, profiles, "cmos45-fp32", "gpt2-124m", contexts,
                        out_dir=out / "report", progress=sys.stderr.isatty(), label=label)
    model, _ = load_checkpoint(ck)
    g = lower(model)
    rows = {}
    for name in profiles:
        prof = load_profile(name)
        prices = price_table(prof, host_for(prof))
        b = rep["profiles"][name]
        if "package" in b:  # a Loihi target: its package, every neuron firing every token
            pl = default_placement(g, name)
            static = price_placement(g, pl, None, prof)["energy_pj_per_token"]
        else:
            static = total(energy_by_class(count_graph(g, None, Precision.from_profile(prof)).totals, prices))
        rows[name] = {"student_static_pj": static, "student_silent_pj": b["rate_model"]["e0_pj"],
                      "student_measured_pj": b["student"]["energy_pj_per_token"],
                      "host_chip_share": b["student"].get("host_chip_share"),
                      "dense_twin_pj": b.get("dense_twin", {}).get("energy_pj_per_token"),
                      "gpt2_124m_pj": {str(L): b["teacher"][str(L)]["energy_pj_per_token"] for L in contexts}}
    res = {"preset": args.preset, "params": rep["model"]["params"], "label": rep["model"]["label"],
           "measured_firing_rate": rep["activity"]["firing_rate"], "tokens": rep["activity"]["tokens"],
           "text": rep["activity"]["text"], "contexts": contexts, "profiles": rows,
           "fair_teachers": rep["fair_baseline"]["teachers"], "seconds": {"train": train_s,
                                                                          "total": time.perf_counter() - t0}}
    (out / "scale.json").write_text(json.dumps(res, indent=2) + "\n")
    md = _markdown(res)
    (out / "scale.md").write_text(md)
    _plot(res, out / "scale.png")
    print(md)
    print(f"wrote {out}/scale.md, scale.json, scale.png and report/ ({res['seconds']['total']:.0f} s)")
    return 0


def _markdown(res: dict) -> str:
    from goose_neuro.energy.report import _pj

    C = res["contexts"]
    lines = [f"# Energy per token at scale: `{res['preset']}` ({res['params']:,} parameters) vs GPT-2 124M", "",
             f"Measured activity: {res['label'] or 'given checkpoint'}; {res['tokens']} tokens of `{res['text']}`, "
             f"firing rate {res['measured_firing_rate']:.4f}. Static = every neuron fires every token (upper "
             "bound); silent = no spikes (floor). Loihi targets are priced as the package goose-export writes "
             "(host ops in float64, host-chip traffic; see energy/README.md). GPT-2 124M is costed from its "
             "published sizes on the same target (one new token with a KV cache at each context).", "",
             "| target | student static | student silent | student measured | dense twin | "
             + " | ".join(f"GPT-2 124M ctx {L}" for L in C) + f" | measured / GPT-2 (ctx {C[len(C) // 2]}) |",
             "| --- " * (6 + len(C)) + "|"]
    for n, r in res["profiles"].items():
        mid = r["gpt2_124m_pj"][str(C[len(C) // 2])]
        tw = r["dense_twin_pj"]
        lines.append(f"| `{n}` | {_pj(r['student_static_pj'])} | {_pj(r['student_silent_pj'])} | "
                     f"{_pj(r['student_measured_pj'])} | {_pj(tw) if tw is not None else 'n/a'} | "
                     + " | ".join(_pj(r["gpt2_124m_pj"][str(L)]) for L in C)
                     + f" | {r['student_measured_pj'] / mid:.3g} |")
    t = res["fair_teachers"]
    lines += ["", "Fair-baseline teachers (GPT-2 124M): " + "; ".join(
        f"{k} on `{v['profile']}`: " + ", ".join(f"ctx {L} {_pj(v[str(L)])}" for L in C) for k, v in t.items()) + ".", ""]
    return "\n".join(lines)


def _plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(res["profiles"])
    C = res["contexts"]
    series = [("student static", [res["profiles"][n]["student_static_pj"] for n in names]),
              ("student measured", [res["profiles"][n]["student_measured_pj"] for n in names]),
              ("student silent", [res["profiles"][n]["student_silent_pj"] for n in names])]
    series += [(f"GPT-2 124M ctx {L}", [res["profiles"][n]["gpt2_124m_pj"][str(L)] for n in names]) for L in C]
    x = np.arange(len(names))
    w = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(8, 1.4 * len(names)), 4.5))
    for i, (lab, ys) in enumerate(series):
        ax.bar(x + i * w, ys, w, label=lab)
    ax.set_xticks(x + 0.4 - w / 2, names, rotation=20, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("energy per token (pJ)")
    ax.set_title(f"{res['preset']} student vs GPT-2 124M per target ({res['label'][:60] or 'given checkpoint'})",
                 fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
