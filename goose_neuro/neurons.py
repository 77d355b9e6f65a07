"""Leaky integrate-and-fire neurons with ternary, binary or no spikes.

Built on snnTorch: :class:`SpikeLIF` subclasses ``snntorch.SpikingNeuron`` (its
threshold and graded-spike-factor parameters, subtract reset) and uses
snnTorch's surrogate-gradient functions. Unlike snnTorch's own neurons, the
membrane is passed in and returned explicitly (no hidden state in the module),
because tokens are the time axis and the state must travel with the model's
recurrent state.

Update rule, per channel c and token t (``beta = sigmoid(beta_logit)``,
``th = |threshold|``)::

    mem_t = beta * mem_{t-1} + x_t
    ternary: s_t = H(mem_t - th) - H(-mem_t - th)        in {-1, 0, +1}
    binary:  s_t = H(mem_t - th)                          in {0, 1}
    mem_t <- mem_t - s_t * th                             (subtract reset)
    out_t = a * s_t                                       (a = amplitude)

H is the Heaviside step in the forward pass and the chosen surrogate's
derivative in the backward pass. Mode ``none`` is the dense ablation:
``out_t = x_t`` and the membrane is untouched.
"""

from __future__ import annotations

import math

import snntorch
import torch
from snntorch import surrogate
from torch import Tensor, nn

from goose_neuro.errors import ConfigError


def make_surrogate(name: str, slope: float):
    """snnTorch surrogate spike function by name.

    ``atan``: dS/dU = (alpha/2) / (1 + (pi/2 * alpha * U)^2)   (Fang et al. 2021)
    ``fast_sigmoid``: dS/dU = 1 / (1 + k|U|)^2                  (Zenke & Ganguli 2018)
    ``sigmoid``: dS/dU = k e^{-kU} / (1 + e^{-kU})^2
    ``triangular``: dS/dU = slope * max(0, 1 - |U|) ... (snnTorch's triangular)
    """
    if name == "atan":
        return surrogate.atan(alpha=slope)
    if name == "fast_sigmoid":
        return surrogate.fast_sigmoid(slope=slope)
    if name == "sigmoid":
        return surrogate.sigmoid(slope=slope)
    if name == "triangular":
        return surrogate.triangular(threshold=slope)
    raise ConfigError(f"unknown surrogate {name!r}")


def surrogate_grad_closed_form(name: str, slope: float, u: Tensor) -> Tensor:
    """dS/dU of the surrogate at ``u``, in closed form (used by tests and docs)."""
    if name == "atan":
        return (slope / 2) / (1 + (math.pi / 2 * slope * u) ** 2)
    if name == "fast_sigmoid":
        return 1.0 / (slope * u.abs() + 1.0) ** 2
    if name == "sigmoid":
        e = torch.exp(-slope * u)
        return slope * e / (1 + e) ** 2
    raise ConfigError(f"no closed form recorded for surrogate {name!r}")


class SpikeLIF(snntorch.SpikingNeuron):
    """A population of ``n`` LIF neurons emitting ternary, binary or no spikes.

    Example::

        lif = SpikeLIF(4, mode="ternary")
        mem = lif.init_mem(batch=2)                      # (B, n)
        out, spikes, mem = lif(torch.randn(2, 7, 4), mem)  # x: (B, T, n)

    Inputs: ``x`` (B, T, n) and ``mem`` (B, n). Outputs: ``out`` (B, T, n) =
    amplitude * spikes, ``spikes`` (B, T, n) in {-1, 0, 1} (or {0, 1}), and the
    new membrane (B, n). For mode ``none``: ``out = x``, ``spikes = x`` and the
    membrane is returned unchanged.
    """

    def __init__(
        self,
        n: int,
        mode: str = "ternary",
        surrogate_name: str = "atan",
        slope: float = 2.0,
        threshold_init: float = 0.5,
        beta_init: float = 0.5,
        amplitude_mode: str = "shared",
    ) -> None:
        if mode not in ("ternary", "binary", "none"):
            raise ConfigError(f"spike mode must be ternary, binary or none, got {mode!r}")
        amp_shape = (n,) if amplitude_mode == "channel" else (1,)
        super().__init__(
            threshold=torch.full((n,), float(threshold_init)),
            spike_grad=make_surrogate(surrogate_name, slope),
            learn_threshold=True,
            reset_mechanism="subtract",
            graded_spikes_factor=torch.ones(amp_shape),
            learn_graded_spikes_factor=True,
        )
        # snnTorch keeps a class-wide list of every neuron for its init_hidden
        # mode; we pass state explicitly, so do not keep this instance alive there.
        if snntorch.SpikingNeuron.instances and snntorch.SpikingNeuron.instances[-1] is self:
            snntorch.SpikingNeuron.instances.pop()
        self.n = n
        self.mode = mode
        self.beta_logit = nn.Parameter(torch.full((n,), math.log(beta_init / (1 - beta_init))))

    # -- parameters as used by the update rule -------------------------------
    @property
    def beta(self) -> Tensor:  # (n,)
        return torch.sigmoid(self.beta_logit)

    @property
    def th(self) -> Tensor:  # (n,)  positive threshold
        return self.threshold.abs() + 1e-4

    @property
    def amplitude(self) -> Tensor:  # (n,) or (1,)
        return self.graded_spikes_factor

    def init_mem(self, batch: int, device=None, dtype=None) -> Tensor:
        return torch.zeros(batch, self.n, device=device, dtype=dtype)

    def fire(self, mem: Tensor) -> Tensor:  # type: ignore[override]
        """Spike function (values {-1,0,1} or {0,1}) with surrogate gradients."""
        th = self.th
        s = self.spike_grad(mem - th)
        if self.mode == "ternary":
            s = s - self.spike_grad(-mem - th)
        return s.to(mem.dtype)

    def forward(self, x: Tensor, mem: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if self.mode == "none":
            return x, x, mem
        beta, th = self.beta, self.th
        spikes = []
        for t in range(x.shape[1]):  # tokens are the time axis
            mem = beta * mem + x[:, t]  # (B, n)
            s = self.fire(mem)  # (B, n)
            mem = mem - s * th
            spikes.append(s)
        s_all = torch.stack(spikes, dim=1)  # (B, T, n)
        return s_all * self.amplitude, s_all, mem
