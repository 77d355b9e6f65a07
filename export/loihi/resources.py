"""Resource estimate of a Loihi package, from its placement and the target profile's limits.

An ESTIMATE: open-source Lava has no per-core packing or fan-in check (that lives in Intel's closed
compiler), so cores and chips are computed here from the profile's limits (neurons per core,
synaptic memory per core, input axons per core, cores per chip), one group at a time.
Compartments are the placement's: every population compartment (ON/OFF pairs count twice) and
every readout compartment (one per chain row). Operations per token come from the one op-cost
table (:func:`goose_neuro.export.opcost.placement_cost`).

Core layout (an ESTIMATE, used to count spike hops between cores): the groups get consecutive
cores in the order of the report (each population's compartments, then its synapses and
readouts); the cores of a chip sit on a mesh ``W = ceil(sqrt(cores_per_chip))`` columns wide,
one core per mesh position, filled row by row in alternating directions (consecutive cores are
neighbours). A spike of a population on the cores goes to every
core of its chain's synapse group (each of those cores holds readout rows for every input) and
travels the Manhattan distance: ``|dx|`` east-west hops and ``|dy|`` north-south hops; a
population's neurons are spread evenly over its own cores. Messages between chips are counted but
not priced (no figure); Loihi 1 host neurons' spikes and the host's inputs enter at the chip
boundary and are priced as host-chip traffic, not as hops.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from goose_neuro.export import ir
from goose_neuro.export.opcost import Precision, placement_cost
from goose_neuro.export.placement import Placement
from goose_neuro.hardware_profiles import COMPUTE_CLASSES

HOW_HOPS = ("groups on consecutive cores (population, then its synapses and readouts), cores row by row "
            "(alternating direction) on a mesh ceil(sqrt(cores_per_chip)) wide; each spike goes to every core "
            "of its synapse group over the Manhattan distance (E-W = columns, N-S = rows); neurons spread evenly "
            "over their cores")


def _limits(target: str) -> tuple[dict[str, float], str]:
    """Limits from hardware_profiles/<target>.yaml."""
    from goose_neuro.hardware_profiles import load_profile

    prof = load_profile(target)
    return {k: float(f.value) for k, f in prof.limits.items()}, prof.path or target


def _cores(neurons: int, syn_bytes: float, fan_in: int, lim: dict[str, float]) -> int:
    """Cores for one group: enough for its neurons, its synaptic memory and its input axons."""
    need = [math.ceil(neurons / lim["neurons_per_core"])] if "neurons_per_core" in lim else [1]
    if "synaptic_memory_per_core" in lim:
        need.append(math.ceil(syn_bytes / lim["synaptic_memory_per_core"]))
    if "fan_in_axons_per_core" in lim:
        need.append(math.ceil(fan_in / lim["fan_in_axons_per_core"]))
    return max(1, *need)


def core_groups(pl: Placement, lim: dict[str, float]) -> list[dict]:
    """The placement's groups (population compartments; synapses + readouts per chain) with their
    cores, laid on consecutive cores (``first_core``)."""
    wbits = lim.get("weight_bits", 8)
    groups, first = [], 0
    for c, pop in enumerate(pl.populations):
        rows = pl.chain_rows(c)
        cols = 2 * pop.n if pop.transport == "onoff" else pop.n
        syn = sum(s.synapses for s in pl.synapses_of(c))
        syn_bytes = syn * wbits / 8
        if pop.compartments:
            k = _cores(pop.compartments, 0, 1, lim)
            groups.append({"name": f"{pop.node} (population)", "chain": c, "kind": "population",
                           "neurons": pop.compartments, "synapses": 0, "fan_in": 1, "fan_out": rows, "cores": k,
                           "first_core": first})
            first += k
        k = _cores(rows, syn_bytes, cols, lim)
        groups.append({"name": f"{pop.node} (synapses + readout)", "chain": c, "kind": "synapses", "neurons": rows,
                       "synapses": syn, "synaptic_memory_bytes": syn_bytes, "fan_in": cols, "fan_out": 0,
                       "cores": k, "first_core": first})
        first += k
    return groups


def _core_xy(i: int, lim: dict[str, float]) -> tuple[int, int, int]:
    """(chip, x, y) of global core index ``i``: rows filled alternately east and west (so consecutive
    cores are neighbours)."""
    cpc = int(lim.get("cores_per_chip", 128))
    w = math.ceil(math.sqrt(cpc))
    j = i % cpc
    y = j // w
    x = j % w if y % 2 == 0 else w - 1 - j % w
    return i // cpc, x, y


def spike_hops(pl: Placement, events: Mapping[str, np.ndarray] | None, lim: dict[str, float] | None = None) -> dict:
    """Spike messages between cores per token and their hops (see the module docstring).

    ``events``: LIF node name -> (n,) mean events per token (None: every neuron fires every token)."""
    if lim is None:
        lim = _limits(pl.target)[0]
    groups = core_groups(pl, lim)
    per, tot = {}, {"messages": 0.0, "hops_ew": 0.0, "hops_ns": 0.0, "inter_chip_messages": 0.0}
    for c, pop in enumerate(pl.populations):
        if pop.runs_on != "core":
            continue
        src = next(g for g in groups if g["chain"] == c and g["kind"] == "population")
        dst = next(g for g in groups if g["chain"] == c and g["kind"] == "synapses")
        e = float(pop.n) if events is None else float(np.asarray(events[pop.node], dtype=np.float64).sum())
        S = [_core_xy(i, lim) for i in range(src["first_core"], src["first_core"] + src["cores"])]
        D = [_core_xy(i, lim) for i in range(dst["first_core"], dst["first_core"] + dst["cores"])]
        ew = sum(abs(s[1] - d[1]) for s in S for d in D if s[0] == d[0]) / len(S)
        ns = sum(abs(s[2] - d[2]) for s in S for d in D if s[0] == d[0]) / len(S)
        cross = sum(1 for s in S for d in D if s[0] != d[0]) / len(S)
        row = {"events": e, "destination_cores": len(D), "messages": e * len(D), "hops_ew": e * ew,
               "hops_ns": e * ns, "inter_chip_messages": e * cross}
        per[pop.node] = row
        for k in tot:
            tot[k] += row[k]
    return {**tot, "per_population": per, "how": HOW_HOPS}


def _ops(costs, where: tuple[str, ...]) -> float:
    return float(sum(c.counts[k] for c in costs if c.where in where for k in COMPUTE_CLASSES))


def placement_resources(pl: Placement, graph: ir.Graph) -> dict:
    """Neurons, synapses, memory, fan-in, cores and chips (an ESTIMATE) plus the share of
    per-token operations on cores vs host (every neuron firing every token: an upper bound)."""
    from goose_neuro.hardware_profiles import load_profile

    lim, src = _limits(pl.target)
    groups = core_groups(pl, lim)
    core = Precision.from_profile(load_profile(pl.target))
    host = Precision(event_driven=False)
    costs = placement_cost(graph, pl, None, core, host, host)
    core_ops, host_ops = _ops(costs, ("core",)), _ops(costs, ("host", "host_neuron"))
    neurons = sum(g["neurons"] for g in groups)
    synapses = sum(g["synapses"] for g in groups)
    cores = sum(g["cores"] for g in groups)
    chips = math.ceil(cores / lim.get("cores_per_chip", 128))
    checks = {"neurons_per_chip": neurons / chips <= lim.get("neurons_per_chip", float("inf")),
              "synapses_per_chip": synapses / chips <= lim.get("synapses_per_chip", float("inf")),
              "fan_in_per_core": max(g["fan_in"] for g in groups) <= lim.get("fan_in_axons_per_core", float("inf"))}
    comp = pl.compartments()
    summary = {"estimate": True, "target": pl.target, "neurons": neurons, "compartments": comp,
               "synapses": synapses, "synaptic_memory_bytes": sum(g.get("synaptic_memory_bytes", 0) for g in groups),
               "cores": cores, "chips": chips, "fits": all(checks.values()),
               "ops_per_token_on_cores_max": core_ops, "ops_per_token_host": host_ops,
               "on_core_share_of_ops": core_ops / max(1.0, core_ops + host_ops)}
    return {"summary": summary, "groups": groups, "checks": checks, "limits": lim, "limits_source": src,
            "note": "ESTIMATE from hardware profile limits; the real placement is done by Intel's closed "
                    "compiler. Operations per token come from the op-cost table (export.opcost.placement_cost) "
                    "with every neuron firing once per token (an upper bound): on the cores, synaptic ops, one "
                    "update per compartment (populations and readouts) and spike messages; on the host, every "
                    "host op (dense), input mantissas, readout decoding and scales, and Loihi 1 host neurons."}


def resource_report(manifest: dict, graph: ir.Graph) -> dict:
    """:func:`placement_resources` of a package manifest's placement."""
    return placement_resources(Placement.from_dict(manifest["placement"]), graph)


def resource_markdown(res: dict) -> str:
    s = res["summary"]
    lines = [f"# Resource estimate: {s['target']} (ESTIMATE, not a placement)", "", res["note"], "",
             f"- compartments: {s['neurons']} ({s['compartments']['populations']} in populations, "
             f"{s['compartments']['readouts']} readouts)", f"- synapses: {s['synapses']}",
             f"- synaptic memory: {s['synaptic_memory_bytes']:.0f} bytes",
             f"- cores: {s['cores']}, chips: {s['chips']}, fits the profile limits: {s['fits']}",
             f"- on-core share of per-token ops: {100 * s['on_core_share_of_ops']:.1f}%", "",
             "| group | compartments | synapses | fan-in | fan-out | cores |", "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {g['name']} | {g['neurons']} | {g['synapses']} | {g['fan_in']} | {g['fan_out']} | {g['cores']} |"
              for g in res["groups"]]
    lines += ["", f"Limits from {res['limits_source']}: " + ", ".join(f"{k}={v:g}" for k, v in res["limits"].items()
                                                               if k != "static_power_per_chip")]
    return "\n".join(lines) + "\n"
