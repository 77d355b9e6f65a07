"""Trained ternary quantization (TTQ; Zhu, Han, Mao, Dally, ICLR 2017, arXiv 1612.01064).

Each output row i of a latent full-precision weight ``w`` is quantized as::

    delta_i = t * max_j |w_ij|
    q_ij = +Wp_i  if w_ij >  delta_i
            0     if |w_ij| <= delta_i
           -Wn_i  if w_ij < -delta_i

with learned positive scales Wp, Wn per output channel. Gradients (TTQ eq. 6-7):
dL/dWp = sum over the positive set of dL/dq; dL/dWn = -sum over the negative set;
latent weights get a straight-through gradient scaled by Wp, 1 or Wn on the three
sets. With ``deadzone_lambda > 0`` weights in the zero set get an extra gradient
lambda * dL/dq * sign-free pass-through, a simple form of TEQUILA's reactivation
of deadzone-trapped weights (arXiv 2509.23809).

Once frozen, ``sign`` (int8 in {-1, 0, 1}) and the two scale vectors are all an
exporter needs: the products with ternary spikes are accumulate-only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class _TTQ(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w: Tensor, wp: Tensor, wn: Tensor, t: float, dead_lambda: float) -> Tensor:
        delta = t * w.abs().amax(dim=1, keepdim=True)  # (out, 1)
        pos = (w > delta).to(w.dtype)
        neg = (w < -delta).to(w.dtype)
        ctx.save_for_backward(pos, neg, wp, wn)
        ctx.dead_lambda = dead_lambda
        return wp[:, None] * pos - wn[:, None] * neg

    @staticmethod
    def backward(ctx, g: Tensor):
        pos, neg, wp, wn = ctx.saved_tensors
        zero = 1.0 - pos - neg
        g_wp = (g * pos).sum(dim=1)
        g_wn = -(g * neg).sum(dim=1)
        g_w = g * (wp[:, None] * pos + wn[:, None] * neg + zero * (1.0 + ctx.dead_lambda))
        return g_w, g_wp, g_wn, None, None


def ttq_quantize(w: Tensor, wp: Tensor, wn: Tensor, t: float, dead_lambda: float = 0.0) -> Tensor:
    """Ternary weight {-Wn_i, 0, +Wp_i} per row with TTQ gradients."""
    return _TTQ.apply(w, wp, wn, t, dead_lambda)


class TernaryLinear(nn.Module):
    """Linear layer with TTQ ternary weights (no bias: spiking synapses add only).

    ``forward(x)``: x (..., in) -> (..., out). After :meth:`freeze` the quantized
    weight is cached, so inference does not re-quantize every call.
    """

    def __init__(self, d_in: int, d_out: int, t: float = 0.05, dead_lambda: float = 0.0) -> None:
        super().__init__()
        self.d_in, self.d_out, self.t, self.dead_lambda = d_in, d_out, t, dead_lambda
        self.weight = nn.Parameter(torch.empty(d_out, d_in))
        nn.init.normal_(self.weight, std=d_in**-0.5)
        # TTQ initialises the scales from the mean magnitude of the kept weights.
        with torch.no_grad():
            m = self.weight.abs().mean(dim=1)
        self.wp = nn.Parameter(m.clone())
        self.wn = nn.Parameter(m.clone())
        self._frozen: Tensor | None = None

    def quantized_weight(self) -> Tensor:  # (out, in)
        if self._frozen is not None:
            return self._frozen
        return ttq_quantize(self.weight, self.wp.abs(), self.wn.abs(), self.t, self.dead_lambda)

    @torch.no_grad()
    def ternary_parts(self) -> tuple[Tensor, Tensor, Tensor]:
        """(sign int8 {-1,0,1} (out, in), Wp (out,), Wn (out,)) exactly as used in forward."""
        w = self.weight.detach()
        delta = self.t * w.abs().amax(dim=1, keepdim=True)
        sign = (w > delta).to(torch.int8) - (w < -delta).to(torch.int8)
        return sign, self.wp.detach().abs(), self.wn.detach().abs()

    def freeze(self, on: bool = True) -> None:
        """Cache the quantized weight for inference (call again with False to train)."""
        self._frozen = None
        if on:
            self._frozen = self.quantized_weight().detach()

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.quantized_weight().to(x.dtype))

    def extra_repr(self) -> str:
        return f"{self.d_in} -> {self.d_out}, ternary (TTQ t={self.t})"
