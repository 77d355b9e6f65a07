"""An independent implementation of NeuroBench's workload definitions, for cross-checks.

NeuroBench 2.3 (``neurobench/metrics/workload/synaptic_operations.py`` and
``metrics/utils/layers/*.py``) counts synaptic operations like this: a forward
pre-hook records each connection layer's input on every call; then

    effective = sum( B(W) @ B(x) )      B(.) sets every nonzero entry to 1, bias set to 0
    dense     = sum( 1(W) @ 1(x) )      every entry set to 1  (= in * out per input row)
    spiking   = every entry of x is in {-1, 0, 1}  ->  effective counted as ACs, else MACs

and ``ActivationSparsity = 1 - nnz / numel`` over the outputs of the activation
(neuron) layers. Results are per sample; here a sample is a token.

This module applies exactly that to an :class:`~goose_neuro.model.ASNNGoose` run by
PyTorch: its own plain forward pass (``model(tokens)``), forward pre-hooks on the
connection layers and forward hooks on the neuron layers, no IR, no activity profile
and no collected spike tensors, so it shares no code or data with
:mod:`goose_neuro.energy.counts` beyond the model itself. Two deliberate adaptations, documented in the
README: (1) the connection layers are ``TernaryLinear`` and the bias-free head
(NeuroBench only hooks ``nn.Linear``/conv/RNN types, and would read a
``TernaryLinear``'s latent float ``.weight`` rather than the ternary weight it
uses), so the binary copy is made from the quantized weight; (2) NeuroBench's
AC/MAC split looks at input values, so spikes scaled by a learned amplitude
``a != 1`` count as MACs there, while the deployed graph folds ``a`` into the
weight scales and counts ACs. Totals (AC + MAC) and Dense agree either way.
"""

from __future__ import annotations

import torch
from torch import nn

from goose_neuro.neurons import SpikeLIF
from goose_neuro.ternary import TernaryLinear


def _binary_weight(layer: nn.Module, all_ones: bool) -> torch.Tensor:
    w = layer.quantized_weight() if isinstance(layer, TernaryLinear) else layer.weight
    w = w.detach()
    return torch.ones_like(w) if all_ones else (w != 0).to(w.dtype)


def neurobench_synops(model, tokens: torch.Tensor) -> dict[str, float]:
    """Effective_ACs, Effective_MACs, Dense and ActivationSparsity per token for ``tokens`` (1, N)."""
    layers = [m for m in model.modules() if isinstance(m, TernaryLinear) or type(m) is nn.Linear]
    neurons = [m for m in model.modules() if isinstance(m, SpikeLIF)]
    seen: list[tuple[nn.Module, torch.Tensor]] = []
    acts: list[torch.Tensor] = []  # what each activation layer outputs (amplitude x spikes)
    handles = [m.register_forward_pre_hook(lambda mod, inp: seen.append((mod, inp[0].detach().clone())))
               for m in layers]
    handles += [m.register_forward_hook(lambda mod, inp, out: acts.append(out[0].detach().clone()))
                for m in neurons]
    try:
        with torch.no_grad():
            model(tokens)
    finally:
        for h in handles:
            h.remove()
    ac = mac = dense = 0.0
    with torch.no_grad():
        for mod, x in seen:
            spiking = bool(torch.isin(x, torch.tensor([-1.0, 0.0, 1.0], dtype=x.dtype)).all())
            xb = (x != 0).to(x.dtype)
            eff = float((xb @ _binary_weight(mod, False).T).sum())
            dense += float((torch.ones_like(x) @ _binary_weight(mod, True).T).sum())
            if spiking:
                ac += eff
            else:
                mac += eff
    nnz = sum(int((a != 0).sum()) for a in acts)
    numel = sum(a.numel() for a in acts)
    n = tokens.shape[0] * tokens.shape[1]
    return {"Effective_ACs": ac / n, "Effective_MACs": mac / n, "Dense": dense / n,
            "ActivationSparsity": 1 - nnz / numel if numel else 0.0}
