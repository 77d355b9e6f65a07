"""Prices for energy-aware distillation, from the energy report's own op-cost table.

The training term (:mod:`goose_neuro.training.energy_term`) needs, for one hardware profile,
the energy per token as a line in each population's events::

    E_token = E0 + sum_p c_p E_p        E_p: events per token of population p

Every count of :func:`goose_neuro.export.opcost.node_cost` is linear in the events, so both numbers
are exact evaluations of the same count the report makes (:func:`goose_neuro.energy.counts.count_graph`
on the lowered model, priced by :func:`goose_neuro.energy.estimate.price_table`)::

    E0  = E(no events)
    c_p = (E(every channel of p firing once per token, nothing else) - E0) / n_p

``c_p`` is the mean over p's channels of what one event costs (channels differ only by how many
nonzero weights their columns hold). The core package takes these numbers as plain floats.
"""

from __future__ import annotations

import numpy as np

from goose_neuro.energy.counts import count_graph
from goose_neuro.errors import ConfigError
from goose_neuro.energy.estimate import energy_by_class, host_for, price_table, total
from goose_neuro.export import ir
from goose_neuro.export.lower import lower
from goose_neuro.export.opcost import Precision
from goose_neuro.hardware_profiles import HardwareProfile, load_profile
from goose_neuro.training.energy_term import ActivityPrices, Pricer


def activity_prices(model, profile: str | HardwareProfile) -> ActivityPrices:
    """E0 and the price of one event of each spiking population of ``model`` on ``profile``."""
    prof = profile if isinstance(profile, HardwareProfile) else load_profile(profile)
    prices = price_table(prof, host_for(prof))
    prec = Precision.from_profile(prof)
    g = lower(model)
    lifs = g.of_type(ir.LIF)
    zero = {k: np.zeros(n.n) for k, n in lifs.items()}

    def energy(events: dict[str, np.ndarray]) -> float:
        return total(energy_by_class(count_graph(g, None, prec, events=events).totals, prices))

    e0 = energy(zero)
    per = {k: (energy({**zero, k: np.ones(n.n)}) - e0) / n.n for k, n in lifs.items()}
    return ActivityPrices(prof.name, e0, per, {k: n.n for k, n in lifs.items()},
                          note="op-cost table x profile prices, deployment graph without placement")


def activity_pricer(profile: str | HardwareProfile, priced_term: bool = False) -> Pricer:
    """``model -> ActivityPrices`` on ``profile`` (loaded once; a bad profile fails here).

    ``priced_term``: the caller trains with the priced energy term, so a profile of a dense device
    (not event-driven: it computes every synapse whatever the spikes) is refused now, before any
    work, with the reason."""
    prof = profile if isinstance(profile, HardwareProfile) else load_profile(profile)
    host_for(prof)  # a missing host profile fails now, not at the first step
    if priced_term and not prof.event_driven:
        raise ConfigError(f"profile {prof.name!r} charges nothing per spike event (a dense device computes every "
                          f"synapse anyway): the energy term has nothing to price; use an event-driven profile "
                          f"(loihi2) or a rate target")

    def pricer(model) -> ActivityPrices:
        return activity_prices(model, prof)

    return pricer
