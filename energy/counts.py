"""Operation counts per token: the op-cost table applied to every IR node with measured activity.

Reads the deployment graph (:mod:`goose_neuro.export.ir`), so what is counted is what is
deployed. The formulas live in one place, :mod:`goose_neuro.export.opcost` (``node_cost``),
which the Loihi exporter also calls; this module turns an :class:`ActivityProfile` into the
per-node events that table takes, sums per layer and in total, and derives NeuroBench's
SynapticOperations. An unknown node type raises ``NotImplementedError``.

Spiking populations are matched to activity by the LIF node's name (``L0.tm.lif_in``), or by
an older spike name the node still carries, so the count does not depend on how populations
are named.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from goose_neuro.energy.activity import ActivityProfile
from goose_neuro.errors import ExportError
from goose_neuro.export import ir
from goose_neuro.export.opcost import SYNAPSE_TYPES, Precision, node_cost, synapse_ops, zero


@dataclass
class NodeCount:
    """Counts of one node per token (class -> count) and NeuroBench-style synop figures."""

    name: str
    type: str
    layer: str
    counts: dict[str, float]
    synops_effective: float = 0.0
    synops_dense: float = 0.0
    synop_class: str = ""  # "ac" or "mac" for synapse nodes


@dataclass
class GraphCounts:
    """Per-node counts and their per-layer and total sums (all per token)."""

    nodes: list[NodeCount]
    precision: Precision
    totals: dict[str, float] = field(default_factory=dict)
    layers: dict[str, dict[str, float]] = field(default_factory=dict)
    neurobench: dict[str, float] = field(default_factory=dict)


def layer_of(name: str) -> str:
    """'L3.tm.key' -> 'L3'; embedding side -> 'embed'; head side -> 'head'."""
    if name.startswith("L") and "." in name and name[1:name.index(".")].isdigit():
        return name[: name.index(".")]
    return "head" if name in ("ln_out", "head", "logits") else "embed"


def events_by_node(g: ir.Graph, act: ActivityProfile | None) -> dict[str, np.ndarray] | None:
    """Mean events per token per channel of every LIF node (None when ``act`` is None: static counts)."""
    if act is None:
        return None
    out = {}
    for name, node in g.of_type(ir.LIF).items():
        pop = act.populations.get(name)
        if pop is None:
            raise ExportError(f"node {name!r}: no activity recorded for this spiking population")
        if pop.n != len(node.beta):
            raise ExportError(f"node {name!r}: activity has {pop.n} channels, node has {len(node.beta)}")
        out[name] = pop.events_per_token()
    return out


def count_graph(g: ir.Graph, act: ActivityProfile | None, precision: Precision,
                events: dict[str, np.ndarray] | None = None) -> GraphCounts:
    """Per-token counts of every node of ``g`` given measured ``act`` (or per-node ``events``
    directly; both None: static counts, every neuron firing every token)."""
    g.validate()
    ev = events if events is not None else events_by_node(g, act)
    nc = {}
    for name, node in g.nodes.items():
        eff = dense = 0.0
        cls = ""
        if isinstance(node, SYNAPSE_TYPES):
            eff, dense, cls = synapse_ops(g, name, ev)
        nc[name] = NodeCount(name, node.type, layer_of(name), node_cost(g, name, ev, precision), eff, dense, cls)
    out = GraphCounts(list(nc.values()), precision)
    out.totals = zero()
    for r in out.nodes:
        lay = out.layers.setdefault(r.layer, zero())
        for k, v in r.counts.items():
            lay[k] += v
            out.totals[k] += v
    out.neurobench = neurobench_summary(out.nodes)
    return out


def neurobench_summary(nodes: list[NodeCount]) -> dict[str, float]:
    """NeuroBench SynapticOperations per token: Effective_ACs, Effective_MACs, Dense.

    Connection layers are the synapse nodes (TernaryDense, Dense). A synapse whose
    deployed input is unit spikes counts as ACs, otherwise MACs. Effective = nonzero
    inputs times nonzero weights they reach; Dense = in * out. Biases: none here.
    """
    ac = sum(r.synops_effective for r in nodes if r.synop_class == "ac")
    mac = sum(r.synops_effective for r in nodes if r.synop_class == "mac")
    dense = sum(r.synops_dense for r in nodes if r.synop_class)
    return {"Effective_ACs": ac, "Effective_MACs": mac, "Dense": dense}
