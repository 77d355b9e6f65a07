"""Prices for energy-aware distillation, from the energy report's own op-cost table.

The training term (:mod:`goose_neuro.training.energy_term`) needs, for one hardware profile,
the energy per token as a line in each population's events::

    E_token = E0 + sum_p c_p E_p        E_p: events per token of population p

Every term of the energy report is linear in the events, so both numbers are exact evaluations of the
price the report gives the lowered model (:func:`energy_function`: on a Loihi target the package
goose-export writes, :func:`goose_neuro.energy.package.price_placement`; on any other profile the
op-cost table and the profile's class table, :func:`goose_neuro.energy.counts.count_graph`)::

    E0  = E(no events)
    c_p = (E(every channel of p firing once per token, nothing else) - E0) / n_p

``c_p`` is the mean over p's channels of what one event costs (channels differ only by how many
nonzero weights their columns hold). The core package takes these numbers as plain floats.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from goose_neuro.energy.counts import count_graph
from goose_neuro.errors import ConfigError
from goose_neuro.energy.estimate import energy_by_class, host_for, price_table, total
from goose_neuro.export import ir
from goose_neuro.export.lower import lower
from goose_neuro.export.opcost import Precision
from goose_neuro.hardware_profiles import HardwareProfile, load_profile
from goose_neuro.training.energy_term import ActivityPrices, Pricer


def energy_function(graph: ir.Graph, profile: HardwareProfile) -> tuple[Callable[[dict], float], str]:
    """``events -> energy per token (pJ)`` of ``graph`` on ``profile``, priced as the energy report prices it:
    a Loihi target as the package goose-export writes (its default placement: each node where it runs,
    host-chip traffic, spike hops, static power where stated), any other profile with its class table.
    Returns the function and a note saying which."""
    from goose_neuro.energy.api import resolve_targets
    from goose_neuro.energy.package import price_placement

    dep = resolve_targets(graph, [profile])[0]
    if dep.placement is not None:
        pl = dep.placement

        def placed(events: dict) -> float:
            return price_placement(graph, pl, events, profile, seconds_per_token=dep.seconds_per_token)[
                "energy_pj_per_token"]

        return placed, f"the {profile.name} package as goose-export places it"
    prices = price_table(profile, host_for(profile))
    prec = Precision.from_profile(profile)

    def counted(events: dict) -> float:
        return total(energy_by_class(count_graph(graph, None, prec, events=events).totals, prices))

    return counted, dep.note or f"the deployment graph on {profile.name}'s class table"


def activity_prices(model, profile: str | HardwareProfile) -> ActivityPrices:
    """E0 and the price of one event of each spiking population of ``model`` on ``profile``."""
    prof = profile if isinstance(profile, HardwareProfile) else load_profile(profile)
    g = lower(model)
    energy, note = energy_function(g, prof)
    lifs = g.of_type(ir.LIF)
    zero = {k: np.zeros(n.n) for k, n in lifs.items()}
    e0 = energy(zero)
    per = {k: (energy({**zero, k: np.ones(n.n)}) - e0) / n.n for k, n in lifs.items()}
    return ActivityPrices(prof.name, e0, per, {k: n.n for k, n in lifs.items()}, note=note)


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
                          f"(loihi2), a rate target, or energy weight 0")

    def pricer(model) -> ActivityPrices:
        return activity_prices(model, prof)

    return pricer
