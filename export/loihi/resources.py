"""Resource estimate of a Loihi package, from its placement and the target profile's limits.

An ESTIMATE: open-source Lava has no per-core packing or fan-in check (that lives in Intel's closed
compiler), so cores and chips are computed here from the profile's limits (neurons per core,
synaptic memory per core, input axons per core, cores per chip), one group at a time.
Compartments are the placement's: every population compartment (ON/OFF pairs count twice) and
every readout compartment (one per chain row).
"""

from __future__ import annotations

import math

from goose_neuro.export import ir
from goose_neuro.export.opcost import Precision, node_cost
from goose_neuro.export.placement import Placement
from goose_neuro.hardware_profiles import COMPUTE_CLASSES


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


def _host_op_count(graph: ir.Graph, name: str) -> float:
    """Operations per token of one host op, from the shared op-cost table (compute classes)."""
    cost = node_cost(graph, name, None, Precision())
    return float(sum(cost[k] for k in COMPUTE_CLASSES))


def resource_report(manifest: dict, graph: ir.Graph) -> dict:
    """Neurons, synapses, memory, fan-in, cores and chips (an ESTIMATE) plus the share of
    per-token operations on cores vs host."""
    pl = Placement.from_dict(manifest["placement"])
    lim, src = _limits(pl.target)
    wbits = lim.get("weight_bits", 8)
    groups, core_ops, host_ops = [], 0.0, 0.0
    for c, (pop, ch) in enumerate(zip(pl.populations, manifest["chains"])):
        rows, cols = ch["weight_shape"]
        syn = int(ch["synapse_count"])
        syn_bytes = syn * wbits / 8
        if pop.compartments:
            groups.append({"name": f"{pop.node} (population)", "neurons": pop.compartments, "synapses": 0,
                           "fan_in": 1, "fan_out": rows, "cores": _cores(pop.compartments, 0, 1, lim)})
        groups.append({"name": f"{pop.node} (synapses + readout)", "neurons": rows, "synapses": syn,
                       "synaptic_memory_bytes": syn_bytes, "fan_in": cols, "fan_out": 0,
                       "cores": _cores(rows, syn_bytes, cols, lim)})
        core_ops += syn + pop.compartments + rows
        host_ops += 4 * pop.n if pop.runs_on == "host" else 0  # host neuron update
        host_ops += sum(2 * s.out_features for s in pl.synapses_of(c))  # readout scales
    host_ops += sum(_host_op_count(graph, h.node) for h in pl.host_ops)
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
                    "compiler. Core ops count every synapse once per token (all inputs spiking: an upper "
                    "bound) plus one update per compartment; host ops are those of the host program."}


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
