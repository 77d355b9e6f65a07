"""Operation counts per token: static costs of every IR node times measured activity.

Reads the deployment graph (:mod:`goose_neuro.export.ir`), so what is counted is what
is deployed. Every node is counted; an unknown node type raises ``NotImplementedError``.

Per node, per token (n = width; C, F, V as in the model; w_t, w_d, s_b, a_b = ternary,
dense-weight, state and activation bits from the profile; sp_b = 2 bits for ternary
spikes, 1 for binary)::

    Embedding       mem_dense += C w_d                          (one row read; no MACs)
    LayerNorm(n)    add 4n, mac n, mul 2n, nonlin 1 (rsqrt);    mem_dense += 2n w_d
    ShiftMix(n)     mul 2n, add n;  mem_state += 2n s_b (prev read + write);  mem_dense += 2n w_d
    LIF(n)          neuron n (leak, input, threshold test(s), reset);  spike += events
                    mem_neuron += 4n s_b (membrane read + write, beta and threshold read)
    Scale(n)        mul e (event-driven: e = events) or n;      mem_dense += n w_d
    TernaryDense    synops: event-driven  sum_j e_j nnz(S[:, j])     (NeuroBench "effective")
                            dense device  in * out                   (NeuroBench "Dense")
                    class ac if input_kind == spike, else mac
                    scales: mul out (sign) or 2 out + add out (split); mem_dense += out or 2 out w_d
                    mem_syn: event-driven  sum_j e_j * out * w_t   (the active inputs' rows)
                             dense device  in * out * w_t
    Dense (head)    mac in*out;                                mem_dense += in*out w_d
    Sigmoid(n)      nonlin n;       ReLUSquare(n): add n, mul n;   Mul(n): mul n;   Add(n): add n
    WKV(C)          add 12C, mul 6C, nonlin 5C (4 exp, 1 division);  mem_state += 6C s_b
                    (a, b, p read and written);  mem_dense += 2C w_d (w = -exp(decay), u)
    activations     each graded node output: n a_b written once and read once per consumer
                    (mem_act); spike maps on a dense device: n sp_b per write/read;
                    on an event-driven device spikes are messages (class ``spike``), not buffers.

e_j is the mean number of nonzero spikes per token on input channel j (measured).
Zero spikes therefore give zero ACs, and effective <= dense always.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from goose_neuro.energy.activity import ActivityProfile
from goose_neuro.energy.profiles import OP_CLASSES
from goose_neuro.energy.teacher_cost import layernorm_cost
from goose_neuro.errors import ExportError
from goose_neuro.export import ir

#: WKV per channel per token: see wkv_scan in goose_neuro/model.py
WKV_PER_CHANNEL = {"add": 12, "mul": 6, "nonlin": 5}


@dataclass(frozen=True)
class Precision:
    """Bit widths and device style used for memory traffic and synop counting."""

    weight_bits_ternary: int = 2
    weight_bits_dense: int = 32
    state_bits: int = 32
    activation_bits: int = 32
    event_driven: bool = True

    @classmethod
    def from_profile(cls, prof) -> "Precision":
        return cls(prof.bits("weight_bits_ternary"), prof.bits("weight_bits_dense"), prof.bits("state_bits"),
                   prof.bits("activation_bits"), prof.event_driven)


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


def _zero() -> dict[str, float]:
    return {k: 0.0 for k in OP_CLASSES}


def _events_for(g: ir.Graph, src: str, act: ActivityProfile | None) -> np.ndarray | None:
    """Mean events per token per channel feeding a synapse from ``src`` (None: dense input)."""
    node = g.nodes[src]
    if isinstance(node, ir.Scale):  # per-channel amplitudes: nonzeros are the LIF's
        return _events_for(g, node.inputs[0], act)
    if not isinstance(node, ir.LIF):
        return None
    if act is None:
        raise ExportError(f"node {src!r}: counting spikes needs an activity profile")
    pop = act.populations.get(src)
    if pop is None:
        raise ExportError(f"node {src!r}: no activity recorded for this population")
    if pop.n != len(node.beta):
        raise ExportError(f"node {src!r}: activity has {pop.n} channels, node has {len(node.beta)}")
    return pop.events_per_token()


def _synapse(g: ir.Graph, name: str, node: ir.TernaryDense, act, p: Precision, c: dict) -> tuple[float, float, str]:
    out_f, in_f = node.sign.shape
    col_nnz = (node.sign != 0).sum(axis=0).astype(np.float64)  # (in,)
    e = _events_for(g, node.inputs[0], act)
    dense = float(in_f * out_f)
    if e is None:  # dense input: every input nonzero (NeuroBench effective = nonzero weights reached)
        eff = float(col_nnz.sum())
        e_rows = float(in_f)
    else:
        eff = float(np.dot(e, col_nnz))
        e_rows = float(e.sum())
    cls = "ac" if node.input_kind == "spike" else "mac"
    c[cls] += eff if p.event_driven else dense
    split = node.encoding == "split"
    c["mul"] += out_f * (2 if split else 1)
    c["add"] += out_f if split else 0
    c["mem_dense_bits"] += out_f * (2 if split else 1) * p.weight_bits_dense
    rows = e_rows if (p.event_driven and e is not None) else float(in_f)
    c["mem_syn_bits"] += rows * out_f * p.weight_bits_ternary
    return eff, dense, cls


def _node_counts(g: ir.Graph, name: str, node: ir.Node, width: int, act, p: Precision) -> NodeCount:
    c = _zero()
    eff = dense = 0.0
    scls = ""
    n = width
    if isinstance(node, (ir.TokenInput, ir.Output)):
        pass
    elif isinstance(node, ir.Embedding):
        c["mem_dense_bits"] += node.weight.shape[1] * p.weight_bits_dense
    elif isinstance(node, ir.LayerNorm):
        for k, v in layernorm_cost(n).items():
            c[k] += v
        c["mem_dense_bits"] += 2 * n * p.weight_bits_dense
    elif isinstance(node, ir.ShiftMix):
        c["mul"] += 2 * n
        c["add"] += n
        c["mem_state_bits"] += 2 * n * p.state_bits
        c["mem_dense_bits"] += 2 * n * p.weight_bits_dense
    elif isinstance(node, ir.LIF):
        c["neuron"] += n
        c["spike"] += float(_events_for(g, name, act).sum())
        c["mem_neuron_bits"] += 4 * n * p.state_bits
    elif isinstance(node, ir.Scale):
        e = _events_for(g, node.inputs[0], act)
        c["mul"] += float(e.sum()) if (p.event_driven and e is not None) else n
        c["mem_dense_bits"] += n * p.weight_bits_dense
    elif isinstance(node, ir.TernaryDense):
        eff, dense, scls = _synapse(g, name, node, act, p, c)
    elif isinstance(node, ir.Dense):
        out_f, in_f = node.weight.shape
        c["mac"] += in_f * out_f
        eff = float((node.weight != 0).sum())  # dense input: every input nonzero
        dense, scls = float(in_f * out_f), "mac"
        c["mem_dense_bits"] += in_f * out_f * p.weight_bits_dense
    elif isinstance(node, ir.Sigmoid):
        c["nonlin"] += n
    elif isinstance(node, ir.ReLUSquare):
        c["add"] += n
        c["mul"] += n
    elif isinstance(node, ir.Mul):
        c["mul"] += n
    elif isinstance(node, ir.Add):
        c["add"] += n
    elif isinstance(node, ir.WKV):
        for k, v in WKV_PER_CHANNEL.items():
            c[k] += v * n
        c["mem_state_bits"] += 6 * n * p.state_bits
        c["mem_dense_bits"] += 2 * n * p.weight_bits_dense
    else:
        raise NotImplementedError(f"energy counting: IR node type {node.type} ({name}) is not counted")
    return NodeCount(name, node.type, layer_of(name), c, eff, dense, scls)


def _activation_traffic(g: ir.Graph, widths: dict[str, int], nc: dict[str, NodeCount], p: Precision) -> None:
    """Add buffer traffic: each output written once, read once per consumer."""
    consumers: dict[str, int] = {k: 0 for k in g.nodes}
    for src, _dst in g.edges:
        consumers[src] += 1
    for name, node in g.nodes.items():
        if isinstance(node, (ir.TokenInput, ir.Output)):
            continue
        n, k = widths[name], consumers[name]
        if isinstance(node, ir.LIF):
            if not p.event_driven:
                sp_b = 2 if node.mode == "ternary" else 1
                nc[name].counts["mem_act_bits"] += n * sp_b * (1 + k)
            continue
        nc[name].counts["mem_act_bits"] += n * p.activation_bits * (1 + k)


def count_graph(g: ir.Graph, act: ActivityProfile | None, precision: Precision) -> GraphCounts:
    """Per-token counts of every node of ``g`` given measured ``act`` (see module docstring)."""
    widths = g.widths()
    nc = {name: _node_counts(g, name, node, widths[name], act, precision) for name, node in g.nodes.items()}
    _activation_traffic(g, widths, nc, precision)
    out = GraphCounts(list(nc.values()), precision)
    out.totals = _zero()
    for r in out.nodes:
        lay = out.layers.setdefault(r.layer, _zero())
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
