"""Energy-aware distillation: a loss term that prices the student's spike activity.

Energy per token on a target is linear in the spike events (every count of the op-cost table,
:func:`goose_neuro.export.opcost.node_cost`, is), so with ``E_p`` the events per token of
population ``p`` (nonzero spikes, +1 and -1 alike)::

    E_token = E0 + sum_p c_p E_p                                          (pJ)

``c_p`` is what one event of ``p`` costs downstream on the target, averaged over its channels
(the synaptic operations it triggers, the weight rows it reads, its spike message), and ``E0`` is
everything that does not depend on events (neuron updates, host ops, a dense head). Both come
from the energy report's own table and a hardware profile
(:func:`goose_neuro.energy.training.activity_pricer` computes them from the lowered model); this
module only takes the numbers (the core package does not import the export or energy layers).

The training term (``TrainConfig.energy_weight`` = w), per token of the batch::

    priced (default):    w * sum_p c_p E_p / sum_p c_p n_p
                       = w * (E_token - E0) / (E_full - E0)     E_full: every neuron firing every token
    rate target r*:      w * sum_p n_p relu(r_p - r*) / sum_p n_p,   r_p = E_p / n_p

Both are rates in [0, 1], so w reads the same in either form. ``|s|`` carries the surrogate
gradient of the spike function (the LIF scans return gradients on their spike output), so the
priced term pushes hardest on the populations whose events are dearest (on ``loihi2`` an event
of the head's population reads a V-row column of the head; an event of ``cm.lif_hid`` a C-row
one). On a dense device (CMOS) events cost nothing (every synapse is computed anyway), so the
priced term refuses such a profile.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import torch
from torch import Tensor

from goose_neuro.errors import ConfigError


@dataclass(frozen=True)
class ActivityPrices:
    """Energy per token on one profile as a function of the events: ``e0_pj + sum_p per_event_pj[p] E_p``.

    ``per_event_pj``: population name -> pJ per event; ``neurons``: population name -> n."""

    profile: str
    e0_pj: float
    per_event_pj: dict[str, float]
    neurons: dict[str, int]
    note: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if set(self.per_event_pj) != set(self.neurons):
            raise ConfigError("activity prices: per_event_pj and neurons name different populations")

    @property
    def full_pj(self) -> float:
        """Event energy per token when every neuron fires every token (E_full - E0)."""
        return float(sum(self.per_event_pj[p] * self.neurons[p] for p in self.per_event_pj))

    def energy_pj(self, events_per_token: Mapping[str, float]) -> float:
        """Estimated energy per token for the given events per token of each population."""
        return self.e0_pj + float(sum(self.per_event_pj[p] * float(events_per_token.get(p, 0.0))
                                      for p in self.per_event_pj))

    def to_dict(self) -> dict:
        return {"profile": self.profile, "e0_pj": self.e0_pj, "per_event_pj": dict(self.per_event_pj),
                "neurons": dict(self.neurons), "full_pj": self.full_pj, "note": self.note}


#: What the trainer calls (at the start and at every evaluation, as the weights change).
Pricer = Callable[[object], ActivityPrices]


def events_per_token(spikes: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Population -> mean events per token (a differentiable scalar): mean over (B, T) of sum_j |s|."""
    return {name: s.abs().sum(-1).mean() for name, s in spikes.items()}


def check_populations(prices: ActivityPrices, names) -> None:
    """The prices must cover exactly the model's spiking populations."""
    got, want = set(prices.per_event_pj), set(names)
    if got != want:
        diff = sorted(got ^ want)
        raise ConfigError(f"activity prices for profile {prices.profile!r} do not match the model's populations "
                          f"(differ in {diff[:3]})")


def priced_rate(spikes: Mapping[str, Tensor], prices: ActivityPrices) -> Tensor:
    """sum_p c_p E_p / sum_p c_p n_p: the event energy as a share of its all-firing maximum."""
    full = prices.full_pj
    if not full > 0:
        raise ConfigError(f"profile {prices.profile!r} charges nothing per spike event (a dense device computes "
                          f"every synapse anyway): the energy term has nothing to price; use an event-driven "
                          f"profile (loihi2), a rate target, or energy weight 0")
    ev = events_per_token(spikes)
    return sum(ev[p] * (prices.per_event_pj[p] / full) for p in ev)


def rate_excess(spikes: Mapping[str, Tensor], target: float) -> Tensor:
    """sum_p n_p relu(r_p - target) / sum_p n_p: how far populations fire above a target rate."""
    num, den = 0.0, 0
    for s in spikes.values():
        n = s.shape[-1]
        num = num + n * torch.relu(s.abs().mean() - target)
        den += n
    return num / max(den, 1)
