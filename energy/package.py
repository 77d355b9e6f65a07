"""Price what a Loihi package deploys: one placement, one op-cost table.

The placement (:func:`goose_neuro.export.placement.place`, or the ``placement`` of an exported
package's manifest) says where every IR node runs and in which number format;
:func:`goose_neuro.export.opcost.placement_cost` counts every node there. This module prices each
place with its own profile and adds what moves and what idles::

    core          the target profile (loihi, loihi2): synaptic ops, one update per compartment
                  (population compartments, n or 2n ON/OFF; one readout per chain row), spikes
    host          the host format's profile: float64 -> the target's host_fallback (cmos45-fp64),
                  q16 -> cmos45-int32 (HOST_PROFILES)
    host neurons  Loihi 1 population=host: the student's integer neuron on the host, cmos45-int32
    host-chip     Placement.crossings: bits per token (elements x bits; ON/OFF events counted from
                  activity) x the profile's traffic.host_chip_bit (a labelled proxy for both Loihis)
    spike hops    messages between cores x Manhattan hops (export.loihi.resources.spike_hops, an
                  estimate of the layout) x traffic.spike_hop_ew / spike_hop_ns
    static        static.power_per_chip x chips x static.time_per_token, only where the profile has
                  both (or a time per token is given); otherwise 0 with the reason stated

Every term is linear in the events, so the break-even firing rate stays exact.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Mapping

import numpy as np

from goose_neuro.energy.estimate import Price, energy_by_class, price_table, total
from goose_neuro.errors import ExportError, ProfileError
from goose_neuro.export import ir
from goose_neuro.export.opcost import Precision, placement_cost, zero
from goose_neuro.export.placement import TARGETS, Placement, place
from goose_neuro.hardware_profiles import OP_CLASSES, HardwareProfile, load_profile

#: Host number format of a package -> profile of the host CPU ("float64": the target's host_fallback).
HOST_PROFILES = {"float64": "cmos45-fp64", "q16": "cmos45-int32"}
#: Loihi 1 host neurons run the integer neuron on the host.
HOST_NEURON_PROFILE = "cmos45-int32"
#: Energy terms of a package, in report order (``by_where`` keys).
TERMS = ("core", "host", "host_neuron", "host_chip", "spike_hops", "static")
TERM_LABELS = {"core": "cores", "host": "host ops", "host_neuron": "host neurons", "host_chip": "host-chip traffic",
               "spike_hops": "spike hops between cores", "static": "static power"}
#: Options a deployment spec may set (as goose-export --opt).
OPTIONS = ("population", "host", "frac_bits")


# -- which deployment ---------------------------------------------------------------------------------
def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``NAME_OR_YAML[:key=value[,key=value]]`` -> (profile, options). Options as goose-export's
    ``--opt`` for Loihi (population, host, frac_bits)."""
    s = str(spec)
    head, sep, tail = s.rpartition(":")
    if not sep or "=" not in tail or not head:
        return s, {}
    opts: dict[str, Any] = {}
    for pair in tail.split(","):
        k, eq, v = pair.partition("=")
        k, v = k.strip(), v.strip()
        if not eq or k not in OPTIONS:
            raise ProfileError(f"profile {s!r}: option {pair!r}: expected KEY=VALUE with KEY one of "
                               f"{', '.join(OPTIONS)}")
        if k in opts:
            raise ProfileError(f"profile {s!r}: option {k} given twice")
        if k == "frac_bits":
            try:
                opts[k] = int(v)
            except ValueError:
                raise ProfileError(f"profile {s!r}: frac_bits={v!r} is not an integer") from None
        else:
            opts[k] = v
    return head, opts


def spec_key(name: str, opts: Mapping[str, Any]) -> str:
    """Report key of a deployment: the profile name, then its options (``loihi:population=core``)."""
    if not opts:
        return name
    return name + ":" + ",".join(f"{k}={opts[k]}" for k in OPTIONS if k in opts)


def package_options(pl: Placement) -> dict[str, Any]:
    """The options of ``pl`` that differ from the target's defaults (what goose-export was given)."""
    out: dict[str, Any] = {}
    if pl.target == "loihi" and pl.population_mode != "host":
        out["population"] = pl.population_mode
    if pl.host_format != "float64":
        out["host"] = pl.host_format
    if not pl.trained_fixed_point:
        from goose_neuro.export.placement import CUBA_FRAC_BITS
        from goose_neuro.fixed_point import DEFAULT_FRAC_BITS

        default = CUBA_FRAC_BITS if pl.population_mode == "core" and pl.target == "loihi" else DEFAULT_FRAC_BITS
        if pl.neuron_format.frac_bits != default:
            out["frac_bits"] = pl.neuron_format.frac_bits
    return out


def default_placement(graph: ir.Graph, target: str, **opts: Any) -> Placement:
    """The placement ``goose-export --target TARGET [--opt ...]`` would write for ``graph``."""
    from goose_neuro.export.loihi import target_formats

    unknown = sorted(set(opts) - set(OPTIONS))
    if unknown:
        raise ExportError(f"unknown Loihi option(s): {', '.join(unknown)} (known: {', '.join(OPTIONS)})")
    return place(graph, target, opts.get("population"), opts.get("host", "float64"), opts.get("frac_bits"),
                 target_formats(target))


def package_placement(package: str | os.PathLike, graph: ir.Graph, trained_fixed_point: bool) -> Placement:
    """The placement of an exported package (``load_package(dir).placement``), checked against the
    checkpoint's graph: the same populations and synapses, and the same kind of neurons."""
    from goose_neuro.export.loihi import load_package

    pkg = load_package(package)
    pl = pkg.placement
    lifs = graph.of_type(ir.LIF)
    pops = {p.node: p.n for p in pl.populations}
    if pops != {k: len(v.beta) for k, v in lifs.items()}:
        raise ExportError(f"{package} was exported from a different model than the checkpoint (its populations "
                          f"differ: {len(pops)} vs {len(lifs)}, widths or names)")
    for s in pl.synapses:
        node = graph.nodes.get(s.node)
        nnz = None if not isinstance(node, ir.TernaryDense) else int(np.count_nonzero(node.sign))
        if nnz is None or tuple(node.sign.shape) != (s.out_features, s.in_features) or \
                s.synapses != nnz * (2 if pl.target == "loihi" else 1):
            raise ExportError(f"{package} was exported from a different model than the checkpoint (synapses "
                              f"{s.node} differ)")
    if pl.trained_fixed_point != bool(trained_fixed_point):
        raise ExportError(f"{package} was exported from a model {'with' if pl.trained_fixed_point else 'without'} "
                          f"fixed-point training; the checkpoint is {'' if trained_fixed_point else 'not '}"
                          f"fixed-point trained")
    return pl


def host_profiles(pl: Placement, prof: HardwareProfile) -> tuple[HardwareProfile, HardwareProfile | None]:
    """(host profile, host-neuron profile or None) for a placement priced on ``prof``."""
    if pl.host_format == "float64":
        host = load_profile(prof.host_fallback or HOST_PROFILES["float64"])
    else:
        host = load_profile(HOST_PROFILES[pl.host_format])
    neurons = load_profile(HOST_NEURON_PROFILE) if any(p.runs_on == "host" for p in pl.populations) else None
    return host, neurons


# -- pricing ----------------------------------------------------------------------------------------------
def _limits(prof: HardwareProfile) -> dict[str, float]:
    return {k: float(f.value) for k, f in prof.limits.items()}


def _figure(prof: HardwareProfile, key: str) -> dict[str, Any] | None:
    f = prof.traffic.get(key)
    if f is None:
        return None
    return {"pj": float(f.pj), "value": f.value, "unit": f.unit, "source": f.source, "confidence": f.confidence,
            "note": f.note}


def price_placement(graph: ir.Graph, pl: Placement, events: Mapping[str, np.ndarray] | None,
                    prof: HardwareProfile, host: HardwareProfile | None = None,
                    host_neuron: HardwareProfile | None = None,
                    seconds_per_token: float | None = None) -> dict[str, Any]:
    """Energy per token of placement ``pl`` on ``prof`` with ``events`` (LIF name -> (n,) events per
    token; None: every neuron fires every token). Returns ``{energy_pj_per_token, by_where,
    energy_pj_by_class, counts_per_token, nodes, crossings, hops, static}`` (see the module docstring)."""
    from goose_neuro.export.loihi.resources import core_groups, spike_hops
    from goose_neuro.export.opcost import crossing_traffic

    if host is None or (host_neuron is None and any(p.runs_on == "host" for p in pl.populations)):
        h, hn = host_profiles(pl, prof)
        host, host_neuron = host or h, host_neuron or hn
    precs = {"core": Precision.from_profile(prof), "host": Precision.from_profile(host),
             "host_neuron": Precision.from_profile(host_neuron) if host_neuron is not None else None}
    costs = placement_cost(graph, pl, events, precs["core"], precs["host"], precs["host_neuron"])
    profs = {"core": prof, "host": host, "host_neuron": host_neuron}
    prices: dict[str, dict[str, Price]] = {"core": price_table(prof, host), "host": price_table(host)}
    if host_neuron is not None:
        prices["host_neuron"] = price_table(host_neuron)
    nodes, sums = [], {w: zero() for w in prices}
    for c in costs:
        if c.where == "core":
            bad = [k for k, v in c.counts.items() if v and prof.energy[k].host]
            if bad:
                raise ProfileError(f"hardware profile {prof.path}: class {bad[0]!r} is counted on the cores of a "
                                   f"{pl.target} package ({c.node}) but the profile prices it on the host")
        by = energy_by_class(c.counts, prices[c.where])
        nodes.append({"node": c.node, "where": c.where, "what": c.what, "counts": c.counts, "pj_by_class": by,
                      "pj": total(by)})
        for k, v in c.counts.items():
            sums[c.where][k] += v
    by_where: dict[str, Any] = {}
    for w, counts in sums.items():
        by = energy_by_class(counts, prices[w])
        by_where[w] = {"profile": profs[w].name, "energy_pj": total(by), "energy_pj_by_class": by,
                       "counts_per_token": {k: float(counts[k]) for k in OP_CLASSES}}
    by_where["host"]["format"] = pl.host_format
    # host-chip traffic
    crossings = crossing_traffic(pl, events)
    fig = _figure(prof, "host_chip_bit")
    bits = sum(c["bits_per_token"] for c in crossings)
    for c in crossings:
        c["energy_pj"] = c["bits_per_token"] * fig["pj"] if fig else 0.0
    by_where["host_chip"] = {"energy_pj": bits * fig["pj"] if fig else 0.0, "bits_per_token": bits,
                             "host_to_chip_bits": sum(c["bits_per_token"] for c in crossings
                                                      if c["direction"] == "host_to_chip"),
                             "chip_to_host_bits": sum(c["bits_per_token"] for c in crossings
                                                      if c["direction"] == "chip_to_host"),
                             "figure": fig, "priced": fig is not None,
                             "reason": "" if fig else f"profile {prof.name} has no traffic.host_chip_bit figure"}
    # spike hops between cores
    lim = _limits(prof)
    hops = spike_hops(pl, events, lim)
    ew, ns = _figure(prof, "spike_hop_ew"), _figure(prof, "spike_hop_ns")
    priced = ew is not None and ns is not None
    for row in hops["per_population"].values():
        row["energy_pj"] = row["hops_ew"] * ew["pj"] + row["hops_ns"] * ns["pj"] if priced else 0.0
    by_where["spike_hops"] = {"energy_pj": hops["hops_ew"] * ew["pj"] + hops["hops_ns"] * ns["pj"] if priced else 0.0,
                              "messages": hops["messages"], "hops_ew": hops["hops_ew"], "hops_ns": hops["hops_ns"],
                              "inter_chip_messages": hops["inter_chip_messages"], "how": hops["how"],
                              "figures": {"spike_hop_ew": ew, "spike_hop_ns": ns}, "priced": priced,
                              "reason": "" if priced else f"profile {prof.name} has no traffic.spike_hop_ew/ns figures"}
    # static power
    groups = core_groups(pl, lim)
    cores = sum(g["cores"] for g in groups)
    chips = max(1, math.ceil(cores / lim.get("cores_per_chip", 128)))
    st = prof.static_pj_per_token(chips, seconds_per_token)
    p = prof.static.get("power_per_chip")
    t = seconds_per_token if seconds_per_token is not None else (
        prof.static["time_per_token"].si if "time_per_token" in prof.static else None)
    if st is not None:
        reason = ""
    elif p is None:
        reason = f"profile {prof.name} states no static power"
    else:
        reason = (f"profile {prof.name} states {p.value:g} {p.unit} per chip ({p.source}) but no time per token; "
                  f"static energy per token is not priced")
    by_where["static"] = {"energy_pj": st or 0.0, "priced": st is not None, "chips": chips, "cores": cores,
                          "power_w_per_chip": float(p.si) if p is not None else None,
                          "power_source": p.source if p is not None else None,
                          "seconds_per_token": t, "reason": reason}
    tot = sum(by_where[w]["energy_pj"] for w in by_where)
    by_class = {k: sum(by_where[w]["energy_pj_by_class"][k] for w in prices) for k in OP_CLASSES}
    counts = {k: sum(by_where[w]["counts_per_token"][k] for w in prices) for k in OP_CLASSES}
    return {"energy_pj_per_token": tot, "by_where": by_where, "energy_pj_by_class": by_class,
            "counts_per_token": counts, "nodes": nodes, "crossings": crossings, "hops": hops,
            "constants": {w: {k: p.to_dict() for k, p in prices[w].items()} for w in prices}}


def twin_placement(twin: ir.Graph, pl: Placement, prof: HardwareProfile) -> Placement | None:
    """The student's dense twin (spike_mode none) as the target would run it, for a like-for-like
    comparison with the package: on a chip with graded spikes (``formats.spike_payload_bits`` > 1:
    Loihi 2) its dense activations enter the same synapses on the cores as graded spikes, with the
    same readouts and host ops; the host sends every input value each token (n x payload bits). A
    chip with binary spikes only (Loihi 1) cannot take graded inputs: None (the twin runs on the
    host)."""
    from goose_neuro.export.placement import READOUT_BITS, Crossing, HostOp

    payload = prof.formats.get("spike_payload_bits")
    if payload is None or int(payload.value) <= 1:
        return None
    syns, crossings, chains = [], [], {}
    for s in pl.synapses:
        node = twin.nodes.get(s.node)
        if not isinstance(node, ir.TernaryDense):
            raise ExportError(f"dense twin: synapse node {s.node} is missing or not a TernaryDense")
        src = node.inputs[0]
        c = chains.setdefault(src, len(chains))
        syns.append(dataclasses.replace(s, chain=c, synapses=int(np.count_nonzero(node.sign))))
    for src, c in chains.items():
        n = int(twin.widths()[src])
        crossings.append(Crossing(src, f"chain {c}", "host_to_chip", n, int(payload.value), False))
        crossings.append(Crossing(f"{src}:readout", f"chain {c} host", "chip_to_host",
                                  sum(s.rows for s in syns if s.chain == c), READOUT_BITS, False))
    core = {s.node for s in syns}
    host_ops = [HostOp(k, n.type, 0) for k, n in twin.nodes.items() if k not in core]
    return Placement(pl.target, pl.population_mode, pl.host_format, pl.neuron_format, False, [], syns, host_ops,
                     crossings, pl.readout)


def price_twin(twin: ir.Graph, pl: Placement, prof: HardwareProfile) -> dict[str, Any]:
    """Energy per token of the dense twin on the target of placement ``pl`` (see :func:`twin_placement`):
    ``{energy_pj_per_token, energy_pj_by_class, counts_per_token, by_where (when placed), note}``."""
    from goose_neuro.energy.counts import count_graph

    tp = twin_placement(twin, pl, prof)
    host, _ = host_profiles(pl, prof)
    if tp is None:
        counts = count_graph(twin, None, Precision.from_profile(host)).totals
        by = energy_by_class(counts, price_table(host))
        return {"energy_pj_per_token": total(by), "energy_pj_by_class": by,
                "counts_per_token": {c: float(counts[c]) for c in OP_CLASSES},
                "note": f"{prof.name} has binary spikes only: the dense twin's graded activations cannot enter its "
                        f"cores, so the twin runs on the host ({host.name}, {pl.host_format})"}
    pp = price_placement(twin, tp, {}, prof, host)
    return {"energy_pj_per_token": pp["energy_pj_per_token"], "energy_pj_by_class": pp["energy_pj_by_class"],
            "counts_per_token": pp["counts_per_token"], "by_where": pp["by_where"],
            "note": f"the dense twin as {prof.name} would run it: dense activations sent from the host as graded "
                    f"spikes into the same synapses and readouts on the cores (every input every token), host ops "
                    f"as in the student's package ({host.name}, {pl.host_format})"}


def placement_summary(pl: Placement) -> dict[str, Any]:
    """What the report says about a placement."""
    return {"target": pl.target, "population": pl.population_mode, "host_format": pl.host_format,
            "neuron_format": pl.neuron_format.to_dict(), "trained_fixed_point": pl.trained_fixed_point,
            "readout": pl.readout, "compartments": pl.compartments(),
            "populations": [dataclasses.asdict(p) for p in pl.populations],
            "synapses_on_cores": int(sum(s.synapses for s in pl.synapses)),
            "host_ops": len(pl.host_ops)}


def zero_events(events: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.zeros_like(np.asarray(v, dtype=np.float64)) for k, v in events.items()}


def placement_rate_model(graph: ir.Graph, pl: Placement, events: Mapping[str, np.ndarray], rate: float,
                         prof: HardwareProfile, seconds_per_token: float | None = None) -> tuple[float, float]:
    """(e0, slope): the placement's energy per token as e0 + slope * r, from two exact evaluations
    (no events, and the measured pattern ``events`` at overall rate ``rate``)."""
    if rate <= 0:
        events = {k: np.ones_like(np.asarray(v, dtype=np.float64)) for k, v in events.items()}
        rate = 1.0
    e0 = price_placement(graph, pl, zero_events(events), prof, seconds_per_token=seconds_per_token)
    e1 = price_placement(graph, pl, events, prof, seconds_per_token=seconds_per_token)
    return e0["energy_pj_per_token"], (e1["energy_pj_per_token"] - e0["energy_pj_per_token"]) / rate


__all__ = ["HOST_PROFILES", "HOST_NEURON_PROFILE", "TERMS", "TERM_LABELS", "TARGETS", "parse_spec", "spec_key",
           "package_options", "default_placement", "package_placement", "host_profiles", "price_placement",
           "placement_summary", "placement_rate_model", "twin_placement", "price_twin"]
