"""The one op-cost table: operations per token of every deployment-IR node, by op class.

Both the energy estimator (:mod:`goose_neuro.energy.counts`) and the Loihi exporter (its
resource report and the host-op costs of its manifest) call :func:`node_cost`, so a node is
costed by one formula wherever it is counted. This module imports only numpy,
:mod:`goose_neuro.errors`, :mod:`goose_neuro.export.ir` and :mod:`goose_neuro.hardware_profiles`.

Per node, per token (n = width; w_t, w_d, s_b, a_b = ternary, dense-weight, state and
activation bits of the :class:`Precision`; sp_b = 2 bits for ternary spikes, 1 for binary;
e_j = mean events per token on input channel j)::

    Embedding       mem_dense += C w_d                          (one row read; no MACs)
    LayerNorm(n)    add 4n, mac n, mul 2n, nonlin 1 (rsqrt);    mem_dense += 2n w_d
    ShiftMix(n)     mul 2n, add n;  mem_state += 2n s_b (prev read + write);  mem_dense += 2n w_d
    LIF(n)          neuron n (leak, input, threshold test(s), reset);  spike += sum_j e_j
                    mem_neuron += 4n s_b (membrane read + write, beta and threshold read)
    Scale(n)        mul sum_j e_j (event-driven) or n;          mem_dense += n w_d
    TernaryDense    synops: event-driven  sum_j e_j nnz(S[:, j])     (NeuroBench "effective")
                            dense device  in * out                   (NeuroBench "Dense")
                    class ac if input_kind == spike, else mac
                    scales: mul out (sign) or 2 out + add out (split); mem_dense += out or 2 out w_d
                    mem_syn: event-driven  sum_j e_j * out * w_t   (the active inputs' rows)
                             dense device  in * out * w_t
    Dense (head)    input_kind dense: mac in*out;              mem_dense += in*out w_d
                    input_kind spike/graded (fed by a LIF): synops as TernaryDense (class ac for
                    spike, mac for graded) with nnz(W[:, j]);  mem_dense += rows * out * w_d
    Sigmoid(n)      nonlin n;       ReLUSquare(n): add n, mul n;   Mul(n): mul n;   Add(n): add n
    WKV(C)          add 12C, mul 6C, nonlin 5C (4 exp, 1 division);  mem_state += 6C s_b
                    (a, b, p read and written);  mem_dense += 2C w_d (w = -exp(decay), u)
    activations     each graded node output: n a_b written once and read once per consumer
                    (mem_act); spike maps on a dense device: n sp_b per write/read;
                    on an event-driven device spikes are messages (class ``spike``), not buffers.

``events`` maps each LIF node name to its (n,) mean events per token per channel (measured);
``events=None`` gives static counts: every neuron fires once every token (the upper bound the
resource report quotes). Every count is linear in the events, which is what the break-even
firing rate of :mod:`goose_neuro.energy.baseline` relies on.

NIR graphs (``nir`` package; networks that are not ASNN-Goose students) are costed per time step by
:func:`nir_node_cost` with the same primitives (synapse, neuron, activation buffer); the node types
are recognised by class name, so this module does not import ``nir``::

    Affine/Linear (out x in, W)   synops: event-driven sum_j e_j nnz(W[:, j]) (input spikes: ac; graded: mac)
                                          dense device  in * out
                                  mem_syn += rows * out * w_d (rows: sum_j e_j, or in for dense inputs/devices)
                                  Affine bias: add out, unless every consumer is a neuron (bias register)
    LIF, IF, LI, I (n)            neuron n; spike += sum_j e_j (spiking types); mem_neuron += 4n s_b
    CubaLIF, CubaLI (n)           neuron n; spike as above; mem_neuron += 6n s_b (current and voltage)
    Threshold (n)                 add n (compare); spike += sum_j e_j
    Scale (n)                     mul sum_j e_j (event-driven, spiking input) or n
    Input, Output, Flatten        nothing
    activations                   a graded output that is not a neuron's input current: n a_b (1 + consumers)
                                  (mem_act); spikes are messages on event-driven devices, n bits per
                                  write/read on dense devices

Here ``events`` maps each spiking NIR node (and each Input given spikes) to its (n,) mean spikes per
neuron per time step; a node absent from ``events`` is graded (dense).

A placement (:mod:`goose_neuro.export.placement`: what a Loihi package deploys, where) is costed by
:func:`placement_cost`, per node and per place it runs (``core``, ``host``, ``host_neuron``), with
the formulas above plus what the package adds (k = a population's compartments, r = a chain's
readout rows, s_b = the core's state bits)::

    population on the cores   core: neuron k (n, or 2n for ON/OFF CUBA pairs), spike sum_j e_j,
                                    mem_neuron 4 k s_b
                              host: its input mantissa, x * gain, round, clamp: mul n, add 3n
    population on the host    host_neuron: the LIF row above at the integer host's precision, plus
                              (Loihi 1)    the ON/OFF split, add 2n;  host: input mantissa as above
    synapses on the cores     core: the TernaryDense synops and weight reads (ac or mac, mem_syn);
                                    neuron r (one readout compartment per row, updated every token)
                              host: readout decode, add r (difference of sigma running sums, or the
                                    CUBA state's shift); the TernaryDense scales, scale reads and
                                    output buffer (mul, add, mem_dense, mem_act) at host precision
    every other node          host: the node's row above at host precision (dense: a CPU computes
                                    every synapse)

:func:`crossing_traffic` turns the placement's host-chip crossings into bits per token
(``elements x bits``; event crossings: events per token x bits).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from goose_neuro.errors import ExportError
from goose_neuro.export import ir
from goose_neuro.hardware_profiles import OP_CLASSES

#: WKV per channel per token: see wkv_scan in goose_neuro/model.py
WKV_PER_CHANNEL = {"add": 12, "mul": 6, "nonlin": 5}
#: Synapse node types (NeuroBench "connection layers").
SYNAPSE_TYPES = (ir.TernaryDense, ir.Dense)


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


def zero() -> dict[str, float]:
    """A count dict with every op class at 0."""
    return {k: 0.0 for k in OP_CLASSES}


def layernorm_cost(n: int) -> dict[str, float]:
    """LN over n channels: add 4n, mac n, mul 2n, nonlin 1 (rsqrt). Also used for the teacher."""
    return {"add": 4 * n, "mac": n, "mul": 2 * n, "nonlin": 1}


def input_events(g: ir.Graph, src: str, events: Mapping[str, np.ndarray] | None) -> np.ndarray | None:
    """Mean events per token per channel on the output of ``src`` (None: a dense, graded input).

    A per-channel amplitude (``Scale``) passes its LIF's events through."""
    node = g.nodes[src]
    if isinstance(node, ir.Scale):
        return input_events(g, node.inputs[0], events)
    if not isinstance(node, ir.LIF):
        return None
    n = len(node.beta)
    if events is None:
        return np.ones(n)
    e = events.get(src)
    if e is None:
        raise ExportError(f"node {src!r}: no events given for this spiking population")
    e = np.asarray(e, dtype=np.float64)
    if e.shape != (n,):
        raise ExportError(f"node {src!r}: events have shape {e.shape}, the population has {n} channels")
    return e


def synapse_ops(g: ir.Graph, name: str, events: Mapping[str, np.ndarray] | None) -> tuple[float, float, str]:
    """NeuroBench SynapticOperations of one synapse node per token: (effective, dense, 'ac' | 'mac').

    Effective = nonzero inputs times the nonzero weights they reach; dense = in * out."""
    node = g.nodes[name]
    if isinstance(node, ir.Dense):
        out_f, in_f = node.weight.shape
        if node.input_kind == "dense":
            return float((node.weight != 0).sum()), float(in_f * out_f), "mac"  # every input nonzero
        col_nnz = (node.weight != 0).sum(axis=0).astype(np.float64)  # (in,)
    elif isinstance(node, ir.TernaryDense):
        out_f, in_f = node.sign.shape
        col_nnz = (node.sign != 0).sum(axis=0).astype(np.float64)  # (in,)
    else:
        raise ExportError(f"node {name!r} ({node.type}): not a synapse")
    e = input_events(g, node.inputs[0], events)
    eff = float(col_nnz.sum()) if e is None else float(np.dot(e, col_nnz))
    return eff, float(in_f * out_f), "ac" if node.input_kind == "spike" else "mac"


def _consumers(g: ir.Graph, name: str) -> int:
    return sum(1 for src, _ in g.edges if src == name)


def node_cost(g: ir.Graph, name: str, events: Mapping[str, np.ndarray] | None,
              precision: Precision) -> dict[str, float]:
    """Operations per token of node ``name`` of ``g``, by op class (memory classes in bits).

    Raises ``NotImplementedError`` for a node type this table does not know (nothing is skipped)."""
    node = g.nodes[name]
    p = precision
    c = zero()
    widths = getattr(g, "_widths", None)  # set by Graph.validate(); recomputed if stale
    if widths is None or name not in widths:
        widths = g.widths()
    n = widths[name]
    if isinstance(node, (ir.TokenInput, ir.Output)):
        return c
    if isinstance(node, ir.Embedding):
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
        c["spike"] += float(input_events(g, name, events).sum())
        c["mem_neuron_bits"] += 4 * n * p.state_bits
    elif isinstance(node, ir.Scale):
        e = input_events(g, node.inputs[0], events)
        c["mul"] += float(e.sum()) if (p.event_driven and e is not None) else n
        c["mem_dense_bits"] += n * p.weight_bits_dense
    elif isinstance(node, ir.TernaryDense):
        eff, dense, cls = synapse_ops(g, name, events)
        out_f, in_f = node.sign.shape
        c[cls] += eff if p.event_driven else dense
        split = node.encoding == "split"
        c["mul"] += out_f * (2 if split else 1)
        c["add"] += out_f if split else 0
        c["mem_dense_bits"] += out_f * (2 if split else 1) * p.weight_bits_dense
        e = input_events(g, node.inputs[0], events)
        rows = float(e.sum()) if (p.event_driven and e is not None) else float(in_f)
        c["mem_syn_bits"] += rows * out_f * p.weight_bits_ternary
    elif isinstance(node, ir.Dense):
        out_f, in_f = node.weight.shape
        if node.input_kind == "dense":
            c["mac"] += in_f * out_f
            c["mem_dense_bits"] += in_f * out_f * p.weight_bits_dense
        else:  # fed by spikes: event-driven like a ternary synapse, with dense-width weights
            eff, dense, cls = synapse_ops(g, name, events)
            c[cls] += eff if p.event_driven else dense
            e = input_events(g, node.inputs[0], events)
            rows = float(e.sum()) if (p.event_driven and e is not None) else float(in_f)
            c["mem_dense_bits"] += rows * out_f * p.weight_bits_dense
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
        raise NotImplementedError(f"op-cost table: IR node type {node.type} ({name}) is not costed")
    # activation buffers: written once, read once per consumer
    k = _consumers(g, name)
    if isinstance(node, ir.LIF):
        if not p.event_driven:
            c["mem_act_bits"] += n * (2 if node.mode == "ternary" else 1) * (1 + k)
    else:
        c["mem_act_bits"] += n * p.activation_bits * (1 + k)
    return c


# -- NIR graphs --------------------------------------------------------------------------------------
NIR_SPIKING = ("LIF", "IF", "CubaLIF", "Threshold")
NIR_NEURONS = {"LIF": 4, "IF": 4, "LI": 4, "I": 4, "CubaLIF": 6, "CubaLI": 6}  # state words read+written
NIR_PASS = ("Input", "Output", "Flatten")


def _nir_type(node) -> str:
    return type(node).__name__


def nir_width(node) -> int:
    """Number of channels a NIR node outputs (1-D shapes only)."""
    t = _nir_type(node)
    if t in ("Affine", "Linear"):
        return int(np.asarray(node.weight).shape[0])
    shape = np.asarray(node.output_type.get("output", [0])).ravel()
    if shape.size != 1:
        raise ExportError(f"NIR node of type {t}: only 1-D populations are costed, got shape {shape.tolist()}")
    return int(shape[0])


def nir_sources(g, name: str) -> list[str]:
    return [src for src, dst in g.edges if dst == name]


def nir_input_events(g, name: str, events: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """Events per step on the summed input of node ``name`` (None: some input is graded)."""
    total_e = None
    for src in nir_sources(g, name):
        node = g.nodes[src]
        if _nir_type(node) in ("Scale", "Flatten"):
            e = nir_input_events(g, src, events)
        else:
            e = events.get(src)
        if e is None:
            return None
        e = np.asarray(e, dtype=np.float64)
        total_e = e if total_e is None else total_e + e
    return total_e


def nir_node_cost(g, name: str, events: Mapping[str, np.ndarray], precision: Precision) -> dict[str, float]:
    """Operations per time step of node ``name`` of a NIR graph (``nodes``/``edges``), by op class."""
    node = g.nodes[name]
    t = _nir_type(node)
    p = precision
    c = zero()
    consumers = [dst for src, dst in g.edges if src == name]
    if t in NIR_PASS:
        return c
    n = nir_width(node)
    graded_out = True
    if t in ("Affine", "Linear"):
        w = np.asarray(node.weight, dtype=np.float64)
        if w.ndim != 2:
            raise ExportError(f"NIR node {name!r} ({t}): weight must be 2-D, got shape {w.shape}")
        out_f, in_f = w.shape
        e = nir_input_events(g, name, events)
        if e is not None and e.shape != (in_f,):
            raise ExportError(f"NIR node {name!r}: input has {e.shape[0]} channels, weight has {in_f} columns")
        src_is_spike = e is not None and all(_nir_type(g.nodes[s]) != "Scale" for s in nir_sources(g, name))
        col_nnz = (w != 0).sum(axis=0).astype(np.float64)
        eff = float(col_nnz.sum()) if e is None else float(np.dot(e, col_nnz))
        c["ac" if src_is_spike else "mac"] += eff if p.event_driven else float(in_f * out_f)
        rows = float(e.sum()) if (p.event_driven and e is not None) else float(in_f)
        c["mem_syn_bits"] += rows * out_f * p.weight_bits_dense
        to_neurons = bool(consumers) and all(_nir_type(g.nodes[d]) in NIR_NEURONS for d in consumers)
        if t == "Affine" and np.any(np.asarray(node.bias) != 0) and not to_neurons:
            c["add"] += out_f
        graded_out = not to_neurons
    elif t in NIR_NEURONS:
        c["neuron"] += n
        c["mem_neuron_bits"] += NIR_NEURONS[t] * n * p.state_bits
        graded_out = t not in NIR_SPIKING
    elif t == "Threshold":
        c["add"] += n
        graded_out = False
    elif t == "Scale":
        e = nir_input_events(g, name, events)
        c["mul"] += float(e.sum()) if (p.event_driven and e is not None) else n
    else:
        raise NotImplementedError(f"op-cost table: NIR node type {t} ({name}) is not costed")
    if t in NIR_SPIKING:
        e = events.get(name)
        if e is None:
            raise ExportError(f"NIR node {name!r} ({t}): no spike rate given or simulated")
        c["spike"] += float(np.asarray(e, dtype=np.float64).sum())
        if not p.event_driven:
            c["mem_act_bits"] += n * (1 + len(consumers))
    elif graded_out:
        c["mem_act_bits"] += n * p.activation_bits * (1 + len(consumers))
    return c


def graph_cost(g: ir.Graph, events: Mapping[str, np.ndarray] | None, precision: Precision) -> dict[str, dict[str, float]]:
    """``node_cost`` of every node: name -> class -> count per token."""
    g.validate()
    return {name: node_cost(g, name, events, precision) for name in g.nodes}


# -- a placement (a Loihi package) ---------------------------------------------------------------------
#: Where a placed cost runs: the neuromorphic cores, the host CPU in the package's host format, or the
#: host CPU running Loihi 1 host neurons (integer).
WHERE = ("core", "host", "host_neuron")
#: Classes of a core synapse node that the cores pay (the rest of its row runs on the host).
CORE_SYNAPSE_CLASSES = ("ac", "mac", "mem_syn_bits")


@dataclass(frozen=True)
class PlacedCost:
    """Operations per token of one IR node in one place (``where`` in :data:`WHERE`)."""

    node: str
    where: str
    what: str
    counts: dict[str, float]


def _only(c: dict[str, float], keep) -> dict[str, float]:
    out = zero()
    for k in keep:
        out[k] = c[k]
    return out


def placement_cost(g: ir.Graph, pl, events: Mapping[str, np.ndarray] | None, core: Precision, host: Precision,
                   host_neuron: Precision | None = None) -> list[PlacedCost]:
    """Operations per token of every node of ``g`` as placement ``pl`` deploys it (see the module
    docstring). ``core``, ``host``: the precisions of the cores and of the host format; ``host_neuron``:
    of the integer host that runs Loihi 1 host neurons (needed only when the placement has some)."""
    g.validate()
    pops = {p.node: p for p in pl.populations}
    syns = {s.node: s for s in pl.synapses}
    missing = sorted((set(pops) | set(syns) | {h.node for h in pl.host_ops}) - set(g.nodes))
    if missing:
        raise ExportError(f"placement names node {missing[0]!r}, which the graph does not have (another model?)")
    unplaced = sorted(set(g.of_type(ir.LIF)) - set(pops))
    if unplaced:
        raise ExportError(f"population {unplaced[0]!r} of the graph is not in the placement (another model?)")
    out: list[PlacedCost] = []
    for name, node in g.nodes.items():
        if name in pops:
            p = pops[name]
            n = int(p.n)
            if n != len(node.beta):
                raise ExportError(f"placement: population {name} has {n} neurons, the graph's has {len(node.beta)}")
            out.append(PlacedCost(name, "host", "input mantissa", {**zero(), "mul": float(n), "add": 3.0 * n}))
            if p.runs_on == "core":
                c = zero()
                c["neuron"] = float(p.compartments)
                c["spike"] = float(input_events(g, name, events).sum())
                c["mem_neuron_bits"] = 4.0 * p.compartments * core.state_bits
                out.append(PlacedCost(name, "core", "population", c))
            else:
                if host_neuron is None:
                    raise ExportError(f"population {name} runs on the host: give the integer host's precision")
                c = node_cost(g, name, events, host_neuron)
                c["add"] += 2.0 * n  # ON/OFF split: [s > 0, s < 0]
                out.append(PlacedCost(name, "host_neuron", "population", c))
        elif name in syns:
            s = syns[name]
            if tuple(node.sign.shape) != (s.out_features, s.in_features):
                raise ExportError(f"placement: synapses {name} are {s.out_features}x{s.in_features}, the graph's "
                                  f"{node.sign.shape[0]}x{node.sign.shape[1]}")
            cc = _only(node_cost(g, name, events, core), CORE_SYNAPSE_CLASSES)
            cc["neuron"] += float(s.rows)  # readout compartments
            out.append(PlacedCost(name, "core", "synapses and readouts", cc))
            hc = node_cost(g, name, events, host)
            for k in CORE_SYNAPSE_CLASSES:
                hc[k] = 0.0
            hc["add"] += float(s.rows)  # readout decode
            out.append(PlacedCost(name, "host", "readout decode and scales", hc))
        else:
            out.append(PlacedCost(name, "host", "host op", node_cost(g, name, events, host)))
    return out


def crossing_traffic(pl, events: Mapping[str, np.ndarray] | None) -> list[dict]:
    """Values and bits crossing the host-chip boundary per token, one entry per crossing of ``pl``.

    An event crossing (a Loihi 1 host population's ON/OFF axon events) carries one message per
    event of the population (an ON or an OFF axon, never both); ``events=None``: every neuron
    fires every token."""
    out = []
    for cr in pl.crossings:
        # the population a crossing belongs to: it feeds it (host -> chip), is it (events), or reads its chain out
        pop = cr.src if cr.events else cr.dst if cr.direction == "host_to_chip" else cr.src.split(":")[0]
        if cr.events:
            if events is None:
                vals = float(next(p.n for p in pl.populations if p.node == pop))
            else:
                e = events.get(pop)
                if e is None:
                    raise ExportError(f"crossing {cr.src} -> {cr.dst}: no events given for population {pop!r}")
                vals = float(np.asarray(e, dtype=np.float64).sum())
        else:
            vals = float(cr.elements)
        out.append({"src": cr.src, "dst": cr.dst, "population": pop, "direction": cr.direction,
                    "elements": int(cr.elements),
                    "bits": int(cr.bits), "events": bool(cr.events), "values_per_token": vals,
                    "bits_per_token": vals * cr.bits})
    return out
