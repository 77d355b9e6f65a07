"""Placement: where every IR node runs on a Loihi target, in which number format, with how many
compartments, and what crosses the host-chip boundary each token.

One description feeds both the Loihi exporter (``goose_neuro.export.loihi`` builds the package
from it) and the energy estimator (which prices it), so what is priced is what is deployed.
:func:`place` is generic over the IR: it never looks at node names, only at node types and edges.

Rules::

    LIF (ternary)            -> a population, one chain each, in topological order
        loihi2                  core neuron: ``ternary_lif`` = lava-nc TernaryLIF, ``subtract`` = a
                                programmable neuron; n compartments; graded +-1 spikes
        loihi, population=host  the same integer neuron on the host (0 compartments); its spikes
                                enter the cores as binary ON/OFF axon pairs (2n axons)
        loihi, population=core  an ON/OFF pair of CUBA LIF compartments (2n), reset to zero, one
                                decay per population: an approximation of the student's neuron
    TernaryDense fed by a LIF -> synapses on the cores, in that population's chain, and one readout
                                compartment per row (rows [P; N] for split TTQ scales, [S] for equal
                                ones); the per-row scales are applied on the host
    every other node         -> a host op, in the host number format (float64 or q16), in a
                                segment: segment c runs before chain c, segment M (= #chains) after
                                the last one (it holds the head)

Crossings per token (``elements`` x ``bits``; ``events`` = only nonzero spikes travel)::

    host -> chip  each core population's input mantissas (n x input bits), or a host population's
                  spikes as ON/OFF axon events (2n axons, events)
    chip -> host  each chain's readout values (rows x readout bits)

Readouts: Loihi 2 sends each chain's row counts to the host as graded spikes from sigma
(integrator) neurons, netx ``SDNN`` with ``sigma_output``; Loihi 1 has no graded spikes, so the
host reads the state of CUBA readout compartments (``v = counts << 6``) each step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from goose_neuro.errors import ExportError
from goose_neuro.export import ir
from goose_neuro.fixed_point import DEFAULT_FRAC_BITS, NeuronFormat, neuron_format

TARGETS = ("loihi", "loihi2")
HOST_FORMATS = ("float64", "q16")
POPULATION_MODES = ("core", "host")
CUBA_FRAC_BITS = 8  # Loihi 1 on-core CUBA: the 13-bit bias mantissa then holds 16 thresholds
READOUT_BITS = 24  # a readout value: sigma neuron payload / CUBA state (24-bit)


@dataclass(frozen=True)
class Population:
    """One spiking population (an IR ``LIF`` node) and how it is deployed."""

    node: str
    n: int
    neuron: str  # "ternary_lif" | "subtract" | "cuba_onoff"
    runs_on: str  # "core" | "host"
    transport: str  # "graded" (+-1 payloads) | "onoff" (binary axon pairs)
    compartments: int
    input_bits: int  # signed width of the input mantissa the host sends
    process: str  # the Lava process that runs it


@dataclass(frozen=True)
class Synapses:
    """One ternary synapse node (IR ``TernaryDense``) whose input is a population's spikes."""

    node: str
    chain: int  # index of the population's chain
    encoding: str  # "split" ([P; N] rows) | "sign" ([S] rows)
    out_features: int
    in_features: int
    rows: int  # readout rows in the chain
    synapses: int  # nonzero weights on the cores (ON/OFF duplicated on Loihi 1)


@dataclass(frozen=True)
class HostOp:
    """An IR node that runs on the host, in ``segment`` (before chain ``segment``)."""

    node: str
    op: str
    segment: int


@dataclass(frozen=True)
class Crossing:
    """Values crossing the host-chip boundary each token."""

    src: str
    dst: str
    direction: str  # "host_to_chip" | "chip_to_host"
    elements: int
    bits: int
    events: bool  # True: only nonzero spikes travel (count from activity); False: every element


@dataclass
class Placement:
    """Where everything runs (see the module docstring). ``to_dict`` is JSON-safe."""

    target: str
    population_mode: str
    host_format: str
    neuron_format: NeuronFormat
    trained_fixed_point: bool
    populations: list[Population]
    synapses: list[Synapses]
    host_ops: list[HostOp]
    crossings: list[Crossing]
    readout: str  # "sigma" (Loihi 2 graded) | "cuba_state" (Loihi 1, read by the host)
    carry: list[list[str]] = field(default_factory=list)  # values carried from segment s to s + 1

    @property
    def segments(self) -> int:
        return len(self.populations) + 1

    def chain_of(self, node: str) -> int:
        return next(i for i, p in enumerate(self.populations) if p.node == node)

    def synapses_of(self, chain: int) -> list[Synapses]:
        return [s for s in self.synapses if s.chain == chain]

    def chain_rows(self, chain: int) -> int:
        return sum(s.rows for s in self.synapses_of(chain))

    def runs_on(self, node: str) -> str:
        """'core' or 'host' for any IR node (synapses: their accumulation)."""
        for p in self.populations:
            if p.node == node:
                return p.runs_on
        if any(s.node == node for s in self.synapses):
            return "core"
        return "host"

    def compartments(self) -> dict[str, int]:
        """Compartments on the cores: populations, readouts, total."""
        pops = sum(p.compartments for p in self.populations)
        rows = sum(s.rows for s in self.synapses)
        return {"populations": pops, "readouts": rows, "total": pops + rows}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["neuron_format"] = self.neuron_format.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Placement":
        try:
            return cls(d["target"], d["population_mode"], d["host_format"], NeuronFormat(**d["neuron_format"]),
                       bool(d["trained_fixed_point"]), [Population(**p) for p in d["populations"]],
                       [Synapses(**s) for s in d["synapses"]], [HostOp(**h) for h in d["host_ops"]],
                       [Crossing(**c) for c in d["crossings"]], d["readout"], [list(c) for c in d["carry"]])
        except (KeyError, TypeError) as e:
            raise ExportError(f"placement: malformed ({type(e).__name__}: {e})") from None


def _check_supported(graph: ir.Graph) -> list[str]:
    """The LIF nodes, after refusing what no Loihi target can run."""
    if graph.of_type(ir.Scale):
        raise ExportError("per-channel spike amplitudes (amplitude_mode='channel') make graded synapse "
                          "inputs; the Loihi exporter supports amplitude_mode='shared' only")
    lifs = graph.of_type(ir.LIF)
    if not lifs:
        raise ExportError("the model has no spiking populations (spike_mode='none'): nothing to map "
                          "onto neuromorphic cores; export ONNX instead")
    bad = sorted(k for k, n in lifs.items() if n.mode != "ternary")
    if bad:
        raise ExportError(f"LIF {bad[0]} has mode {lifs[bad[0]].mode!r}; the Loihi exporter supports "
                          f"ternary populations only")
    kinds = {n.neuron for n in lifs.values()}
    if len(kinds) != 1:
        raise ExportError(f"populations mix neuron kinds {sorted(kinds)}; one kind per package")
    return list(lifs)


def deployed_format(graph: ir.Graph, frac_bits: int | None, cuba: bool) -> tuple[NeuronFormat, bool]:
    """(format, trained_fixed_point): the format the model was trained with, or the post-training
    format for ``frac_bits``. A fixed-point-trained model refuses any other frac_bits."""
    lifs = list(graph.of_type(ir.LIF).values())
    trained = {tuple(sorted(n.fixed.items())) for n in lifs if n.fixed}
    if trained:
        if len(trained) != 1 or any(not n.fixed for n in lifs):
            raise ExportError("populations were trained with different fixed-point formats")
        fmt = lifs[0].format
        if frac_bits not in (None, fmt.frac_bits):
            raise ExportError(f"this model was trained with fixed-point neurons at frac_bits={fmt.frac_bits}; "
                              f"exporting it with frac_bits={frac_bits} would deploy a different model")
        if cuba:
            raise ExportError("population=core (CUBA ON/OFF) approximates the neuron; a model trained "
                              "with fixed-point neurons deploys exactly only with host or Loihi 2 neurons")
        return fmt, True
    fb = (CUBA_FRAC_BITS if cuba else DEFAULT_FRAC_BITS) if frac_bits is None else frac_bits
    if not isinstance(fb, int) or isinstance(fb, bool):
        raise ExportError(f"frac_bits={fb!r}: expected an integer")
    try:
        return neuron_format(lifs[0].neuron, fb), False
    except Exception as e:  # ConfigError names the limit
        raise ExportError(str(e)) from None


def _segments(graph: ir.Graph, chains: list[str], core_syn: dict[str, int]) -> tuple[dict[str, int], list[list[str]]]:
    """Segment of every host node, and the values carried across each segment boundary.

    A host node runs in the first segment where all its inputs exist: a synapse output of
    chain c exists from segment c + 1 on, a host value from its own segment on. The value that
    feeds population c is sent by segment c, so it must exist by then."""
    chain_of = {name: c for c, name in enumerate(chains)}
    seg: dict[str, int] = {}
    for name, node in graph.nodes.items():
        if name in chain_of or name in core_syn:
            continue
        s = 0
        for src in node.inputs:
            if src in core_syn:
                s = max(s, core_syn[src] + 1)
            elif src in chain_of:
                raise ExportError(f"IR node {name} ({node.type}) reads the spikes of {src} directly; only "
                                  f"TernaryDense synapses can (no Loihi mapping)")
            else:
                s = max(s, seg[src])
        seg[name] = s
    M = len(chains)
    need: dict[str, int] = {}  # value -> last segment that needs it
    for name, node in graph.nodes.items():
        if name in core_syn:
            continue
        at = chain_of[name] if name in chain_of else seg[name]
        for src in node.inputs:
            if src in seg or src in core_syn:
                need[src] = max(need.get(src, -1), at)
    for c, name in enumerate(chains):
        src = graph.nodes[name].inputs[0]
        made = seg.get(src, core_syn.get(src, -2) + 1)
        if made > c:
            raise ExportError(f"population {name}: its input {src} is computed after the chain runs")
    made_at = {**seg, **{k: c + 1 for k, c in core_syn.items()}}
    carry = [sorted(v for v, last in need.items() if made_at[v] <= s < last) for s in range(M)]
    return seg, carry


def place(graph: ir.Graph, target: str, population: str | None = None, host: str = "float64",
          frac_bits: int | None = None, formats: dict[str, int] | None = None) -> Placement:
    """Placement of ``graph`` on ``target`` (see the module docstring).

    ``population`` (Loihi 1 only; default ``host``): ``host`` runs the student's integer neuron on
    the host, ``core`` maps it to CUBA ON/OFF compartments (an approximation). ``host``: the host
    ops' number format. ``frac_bits``: threshold mantissa bits (a fixed-point-trained model brings
    its own). ``formats``: the target profile's integer formats (``bias_mantissa_bits`` is used for
    the CUBA bias input)."""
    if target not in TARGETS:
        raise ExportError(f"unknown Loihi target {target!r}; choose one of {', '.join(TARGETS)}")
    if host not in HOST_FORMATS:
        raise ExportError(f"host={host!r}: choose one of {', '.join(HOST_FORMATS)}")
    if population is None:
        population = "host" if target == "loihi" else "core"
    if population not in POPULATION_MODES or (population == "host" and target != "loihi"):
        raise ExportError(f"population={population!r}: use 'core', or 'host' with target loihi "
                          f"(Loihi 2 runs the exact neuron on its cores)")
    graph.validate()
    chains = _check_supported(graph)
    cuba = target == "loihi" and population == "core"
    fmt, trained = deployed_format(graph, frac_bits, cuba)
    bias_bits = int((formats or {}).get("bias_mantissa_bits", 13))
    pops = []
    for name in chains:
        lif = graph.nodes[name]
        if cuba:
            pops.append(Population(name, lif.n, "cuba_onoff", "core", "onoff", 2 * lif.n, bias_bits, "LIF"))
        elif target == "loihi":
            proc = "TernaryLIF" if lif.neuron == "ternary_lif" else "GooseSubtractLIF"
            pops.append(Population(name, lif.n, lif.neuron, "host", "onoff", 0, fmt.x_bits, proc))
        else:
            proc = "TernaryLIF" if lif.neuron == "ternary_lif" else "GooseSubtractLIF"
            pops.append(Population(name, lif.n, lif.neuron, "core", "graded", lif.n, fmt.x_bits, proc))
    chain_of = {name: c for c, name in enumerate(chains)}
    syns, core_syn = [], {}
    for name, node in graph.nodes.items():
        if not isinstance(node, ir.TernaryDense) or node.inputs[0] not in chain_of:
            continue
        if node.input_kind != "spike":
            raise ExportError(f"{name}: synapse input kind {node.input_kind!r}; cores take unit spikes only")
        c = chain_of[node.inputs[0]]
        m, k = node.sign.shape
        rows = 2 * m if node.encoding == "split" else m
        nnz = int(np.count_nonzero(node.sign)) * (2 if target == "loihi" else 1)  # ON/OFF doubles axons
        syns.append(Synapses(name, c, node.encoding, m, k, rows, nnz))
        core_syn[name] = c
    for c, name in enumerate(chains):
        if not any(s.chain == c for s in syns):
            raise ExportError(f"population {name} feeds no synapse")
    seg, carry = _segments(graph, chains, core_syn)
    host_ops = [HostOp(k, graph.nodes[k].type, s) for k, s in seg.items()]
    crossings = []
    for c, p in enumerate(pops):
        src = graph.nodes[p.node].inputs[0]
        if p.runs_on == "core":
            crossings.append(Crossing(src, p.node, "host_to_chip", p.compartments, p.input_bits, False))
        else:  # host neuron: its spikes enter the chip as ON/OFF axon events
            crossings.append(Crossing(p.node, p.node + ":synapses", "host_to_chip", 2 * p.n, 1, True))
        rows = sum(s.rows for s in syns if s.chain == c)
        crossings.append(Crossing(p.node + ":readout", f"segment {c + 1}", "chip_to_host", rows, READOUT_BITS, False))
    return Placement(target, population, host, fmt, trained, pops, syns, host_ops, crossings,
                     "sigma" if target == "loihi2" else "cuba_state", carry)
