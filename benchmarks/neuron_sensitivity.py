"""How sensitive is a trained student to tiny errors at its LIF inputs? (Why a float-trained
student cannot match its fixed-point deployment token for token, and why ``goose-train
--fixed-point`` trains with the deployed arithmetic instead.)

    .venv/bin/python benchmarks/neuron_sensitivity.py --checkpoint CKPT --text FILE [--tokens 512]

Every row runs the checkpoint in PyTorch (float64) over the first ``--tokens`` tokens of the text
as one stream and compares it with an unperturbed run: next-token argmax agreement, spikes that
differ (of all population outputs over all tokens) and perplexity.

* float neurons vs float neurons with Gaussian noise ``sigma * threshold`` added to every LIF
  input at every token, and with the decays rounded to Loihi's 12-bit grid;
* the fixed-point neurons it deploys with on Loihi 2 (``ASNNGoose.set_fixed_point(
  model.deployed_format())``, derived from the checkpoint) vs the same with noise.

A row with more than 0 spike flips and agreement under 99% says that errors of that size
(e.g. Q16 rounding in the host ops, ~1e-5) move the model off its trajectory.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from goose_neuro.checkpoint import load_checkpoint
from goose_neuro.export.loihi.check import text_tokens
from goose_neuro.export.onnx_check import perplexity
from goose_neuro.model import forward_pre_hooks


def run(model, tokens: torch.Tensor, sigma: float = 0.0, seed: int = 0):
    """Logits (T, V) and spikes {name: (T, n)} with optional input noise ``sigma * th``."""
    gen = torch.Generator().manual_seed(seed)

    def noisy(mod, args):
        x, mem = args
        noise = torch.randn(x.shape, generator=gen, dtype=torch.float64)
        return x + sigma * mod.th.detach().double() * noise, mem

    pops = list(model.populations().values()) if sigma > 0 else []
    with forward_pre_hooks(pops, noisy), torch.no_grad():
        out = model.run(tokens, collect=True)
    return out.logits[0].numpy(), {k: v[0].numpy() for k, v in out.spikes.items()}


def compare(name: str, ref, got, y: np.ndarray) -> str:
    (lr, sr), (lg, sg) = ref, got
    flips = sum(int((sr[k] != sg[k]).sum()) for k in sr)
    total = sum(int(np.abs(v).sum()) for v in sr.values())
    agree = float((lr.argmax(-1) == lg.argmax(-1)).mean())
    return (f"| {name} | {agree:.2%} | {flips} of {total} | {perplexity(lr, y):.3f} / "
            f"{perplexity(lg, y):.3f} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--text", required=True)
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--sigmas", default="1e-7,1e-6,1e-5,1e-4,1e-3",
                    help="noise levels, in units of each neuron's threshold")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    sigmas = [float(s) for s in a.sigmas.split(",")]
    model, info = load_checkpoint(a.checkpoint)
    model.double().freeze_ternary()
    ids = text_tokens(a.text, a.checkpoint, info["config"].vocab_size, a.tokens + 1)
    x, y = torch.from_numpy(ids[:-1])[None], ids[1:]
    rows = ["| perturbation | argmax agreement | spikes differing | ppl reference / perturbed |",
            "| --- | --- | --- | --- |"]
    ref = run(model, x)
    for s in sigmas:
        rows.append(compare(f"float neurons, input noise {s:g} x th", ref, run(model, x, s, a.seed), y))
    saved = {n: m.beta_logit.detach().clone() for n, m in model.populations().items()}
    with torch.no_grad():
        for m in model.populations().values():
            q = (torch.round(torch.sigmoid(m.beta_logit.double()) * 4096) / 4096).clamp(1 / 4096, 4095 / 4096)
            m.beta_logit.copy_(torch.log(q / (1 - q)))
    rows.append(compare("float neurons, decays on the 12-bit grid", ref, run(model, x), y))
    with torch.no_grad():
        for n, m in model.populations().items():
            m.beta_logit.copy_(saved[n])
    model.set_fixed_point(model.deployed_format())
    fixed = run(model, x)
    rows.append(compare("fixed-point neurons (as deployed on Loihi 2) vs float neurons", ref, fixed, y))
    for s in sigmas:
        rows.append(compare(f"fixed-point neurons, input noise {s:g} x th", fixed, run(model, x, s, a.seed), y))
    sys.stdout.write(f"# neuron_sensitivity: {a.checkpoint}, {len(y)} tokens of {a.text}\n\n" + "\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
