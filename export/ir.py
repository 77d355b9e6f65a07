"""Deployment IR: one small graph of typed nodes that every exporter and counter reads.

A :class:`Graph` is ``nodes: dict[name, Node]`` in topological order plus
``edges: list[(src, dst)]`` (derived from each node's ordered ``inputs``), the
recurrent ``states`` (name -> :class:`StateSpec`, same names as
``ASNNGoose.state_spec()``) and ``meta`` (model config, export facts).

Every node is a small dataclass with numpy fields; its docstring is its
equation for one token, on row vectors ``x`` of shape (B, n). Nodes that carry
a recurrent state name it in a ``state*`` field; the state is read before and
written after the token (see :mod:`goose_neuro.export.interp`).

After TTQ folding (:mod:`goose_neuro.export.lower`) every synapse whose input is
a unit spike tensor is a :class:`TernaryDense` with integer weights, so it is
accumulate-only; the learned scales (``Wp``, ``Wn``, spike amplitude) live in
its per-output ``scale_pos``/``scale_neg``, applied once per output channel
after the accumulation.

Serialization is generic: :func:`node_to_dict` writes the dataclass fields plus
the class name as ``type``; :func:`graph_from_dict` reverses it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from goose_neuro.errors import ConfigError, ExportError
from goose_neuro.fixed_point import NEURONS, NeuronFormat

IR_FORMAT = "goose-neuro-ir"
IR_VERSION = 2  # 2: LIF nodes have no spike_name (a population is named by its node)
INPUT_KINDS = ("spike", "graded", "dense")
SPIKE_MODES = ("ternary", "binary")


def _vec(node: "Node", name: str, n: int | None = None, positive: bool = False) -> None:
    """Check that ``node.<name>`` is a finite 1-D float array (of length n)."""
    a = np.asarray(getattr(node, name))
    if a.ndim != 1 or (n is not None and a.shape[0] != n):
        raise ExportError(f"{node.type}.{name}: expected shape ({n if n is not None else 'n'},), got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ExportError(f"{node.type}.{name}: contains NaN or Inf")
    if positive and np.any(a <= 0):
        raise ExportError(f"{node.type}.{name}: must be > 0")


@dataclass(eq=False)
class Node:
    """Base class. ``inputs``: ordered names of the nodes feeding this one."""

    inputs: tuple[str, ...] = ()
    n_inputs: ClassVar[int] = 1
    state_fields: ClassVar[tuple[str, ...]] = ()

    @property
    def type(self) -> str:
        return type(self).__name__

    def out_width(self, in_widths: list[int]) -> int:
        """Width of this node's output given its inputs' widths (elementwise default)."""
        return in_widths[0]

    def states(self) -> dict[str, int]:
        """State name -> width for the states this node reads and writes."""
        return {}


@dataclass(eq=False)
class TokenInput(Node):
    """Graph input: token ids (B,) int64, one per sequence and step. Output width 1."""

    vocab_size: int = 0
    n_inputs: ClassVar[int] = 0

    def out_width(self, in_widths: list[int]) -> int:
        return 1


@dataclass(eq=False)
class Embedding(Node):
    """y = weight[token]. weight: (V, C) float."""

    weight: np.ndarray = None  # (V, C)

    def __post_init__(self) -> None:
        if np.ndim(self.weight) != 2:
            raise ExportError(f"Embedding.weight: expected (V, C), got {np.shape(self.weight)}")

    def out_width(self, in_widths: list[int]) -> int:
        return self.weight.shape[1]


@dataclass(eq=False)
class LayerNorm(Node):
    """y = (x - mean(x)) / sqrt(var(x) + eps) * weight + bias (over the last axis, biased var)."""

    weight: np.ndarray = None  # (C,)
    bias: np.ndarray = None  # (C,)
    eps: float = 1e-5

    def __post_init__(self) -> None:
        _vec(self, "weight")
        _vec(self, "bias", len(self.weight))


@dataclass(eq=False)
class ShiftMix(Node):
    """Token shift: y = x * mu + prev * (1 - mu); then prev <- x. ``state``: prev (B, C), init 0."""

    mu: np.ndarray = None  # (C,)
    state: str = ""
    state_fields: ClassVar[tuple[str, ...]] = ("state",)

    def __post_init__(self) -> None:
        _vec(self, "mu")

    def states(self) -> dict[str, int]:
        return {self.state: len(self.mu)}


@dataclass(eq=False)
class LIF(Node):
    """Leaky integrate-and-fire population emitting UNIT spikes (amplitude folded downstream).

    ``neuron='subtract'`` (state: membrane (B, n))::

        mem = beta * mem + x
        ternary: s = [mem > th] - [mem < -th]   in {-1, 0, 1}
        binary:  s = [mem > th]                 in {0, 1}
        mem = mem - s * th                      (subtract reset)

    ``neuron='ternary_lif'`` (lava-nc TernaryLIF; state (B, 2n) = [v, u]; ``beta``, ``beta_u``
    hold one value per population, repeated per channel)::

        u = beta_u * u + x;  m = beta * v + u;  s = [m > th] - [m < -th];  v = m * (1 - |s|)

    ``fixed``: empty for float neurons, else the fields of a
    :class:`goose_neuro.fixed_point.NeuronFormat`: the integer neuron of that module runs instead
    (inputs rounded to mantissas, 12-bit decays, 24-bit state) and the state holds integers.

    ``state``: the neuron state, (B, n) or (B, 2n), init 0, named ``<node>.mem``. The node's name is
    the population's one name: the key of its spikes in ``ASNNGoose.run(collect=True).spikes``, in
    activity profiles and in energy reports.
    """

    beta: np.ndarray = None  # (n,) in (0, 1)
    threshold: np.ndarray = None  # (n,) > 0, the effective |threshold| + 1e-4
    mode: str = "ternary"
    state: str = ""
    neuron: str = "subtract"
    beta_u: np.ndarray = None  # (n,) in [0, 1), ternary_lif only
    fixed: dict = field(default_factory=dict)
    state_fields: ClassVar[tuple[str, ...]] = ("state",)

    def __post_init__(self) -> None:
        if self.mode not in SPIKE_MODES:
            raise ExportError(f"LIF.mode={self.mode!r}: must be one of {SPIKE_MODES}")
        if self.neuron not in NEURONS:
            raise ExportError(f"LIF.neuron={self.neuron!r}: must be one of {NEURONS}")
        _vec(self, "beta")
        _vec(self, "threshold", len(self.beta), positive=True)
        if self.neuron == "ternary_lif":
            _vec(self, "beta_u", len(self.beta))
            if self.mode != "ternary":
                raise ExportError("LIF: neuron 'ternary_lif' emits ternary spikes only")
        if self.fixed:
            try:
                fmt = NeuronFormat(**self.fixed)
            except (TypeError, ConfigError) as e:
                raise ExportError(f"LIF.fixed: not a neuron format ({e})") from None
            if fmt.neuron != self.neuron:
                raise ExportError(f"LIF.fixed is for {fmt.neuron!r} neurons, the node is {self.neuron!r}")

    @property
    def n(self) -> int:
        return len(self.beta)

    @property
    def format(self):
        """The integer neuron format (``NeuronFormat``), or None for float neurons."""
        return NeuronFormat(**self.fixed) if self.fixed else None

    def states(self) -> dict[str, int]:
        return {self.state: (2 if self.neuron == "ternary_lif" else 1) * len(self.beta)}


@dataclass(eq=False)
class Scale(Node):
    """Per-channel scale: y = x * scale. Used for per-channel spike amplitudes
    (``amplitude_mode='channel'``), which cannot fold into an integer synapse."""

    scale: np.ndarray = None  # (n,)

    def __post_init__(self) -> None:
        _vec(self, "scale")


@dataclass(eq=False)
class TernaryDense(Node):
    """Ternary synapse with integer weights and per-output scales (no bias).

    encoding ``sign``  (scale_pos == scale_neg): y = scale_pos * (S @ x),  S = ``sign`` in {-1,0,1}
    encoding ``split`` (asymmetric TTQ scales):  y = scale_pos * (P @ x) - scale_neg * (N @ x),
        P = ``pos`` in {0,1}, N = ``neg`` in {0,1}, S = P - N. Both products are exact
        accumulations; folding into one integer matrix would need an approximation.

    Shapes: sign/pos/neg (out, in) int8; scale_pos/scale_neg (out,) float, > = 0.
    ``scale_*`` already include the upstream spike amplitude (TTQ Wp/Wn times a).
    ``input_kind``: ``spike`` (unit spikes: every synaptic op is an accumulate, AC),
    ``graded`` (spikes times per-channel amplitudes: MAC) or ``dense`` (MAC).
    """

    encoding: str = "sign"
    sign: np.ndarray = None  # (out, in) int8, always present (= pos - neg)
    scale_pos: np.ndarray = None  # (out,)
    scale_neg: np.ndarray = None  # (out,)
    input_kind: str = "spike"

    def __post_init__(self) -> None:
        s = np.asarray(self.sign)
        if s.ndim != 2 or s.dtype != np.int8:
            raise ExportError(f"TernaryDense.sign: expected int8 (out, in), got {s.dtype} {s.shape}")
        if not np.isin(s, (-1, 0, 1)).all():
            raise ExportError("TernaryDense.sign: values outside {-1, 0, 1}")
        if self.encoding not in ("sign", "split"):
            raise ExportError(f"TernaryDense.encoding={self.encoding!r}: must be 'sign' or 'split'")
        if self.input_kind not in INPUT_KINDS:
            raise ExportError(f"TernaryDense.input_kind={self.input_kind!r}: must be one of {INPUT_KINDS}")
        _vec(self, "scale_pos", s.shape[0])
        _vec(self, "scale_neg", s.shape[0])
        if self.encoding == "sign" and not np.array_equal(self.scale_pos, self.scale_neg):
            raise ExportError("TernaryDense: encoding 'sign' needs scale_pos == scale_neg (use 'split')")

    @property
    def pos(self) -> np.ndarray:  # (out, in) int8 {0,1}
        return (self.sign > 0).astype(np.int8)

    @property
    def neg(self) -> np.ndarray:  # (out, in) int8 {0,1}
        return (self.sign < 0).astype(np.int8)

    @property
    def in_features(self) -> int:
        return self.sign.shape[1]

    @property
    def out_features(self) -> int:
        return self.sign.shape[0]

    def float_weight(self) -> np.ndarray:
        """Equivalent float matrix W (out, in) = scale_pos*P - scale_neg*N (for float backends)."""
        return self.scale_pos[:, None] * self.pos - self.scale_neg[:, None] * self.neg

    def out_width(self, in_widths: list[int]) -> int:
        return self.out_features


@dataclass(eq=False)
class Dense(Node):
    """Float dense layer, y = x @ weight.T (the LM head). weight: (out, in).
    ``tied_to``: name of the Embedding node sharing this matrix, or ''."""

    weight: np.ndarray = None  # (out, in)
    tied_to: str = ""

    def __post_init__(self) -> None:
        if np.ndim(self.weight) != 2:
            raise ExportError(f"Dense.weight: expected (out, in), got {np.shape(self.weight)}")

    def out_width(self, in_widths: list[int]) -> int:
        return self.weight.shape[0]


@dataclass(eq=False)
class Sigmoid(Node):
    """y = 1 / (1 + exp(-x))."""


@dataclass(eq=False)
class ReLUSquare(Node):
    """y = max(x, 0)^2."""


@dataclass(eq=False)
class Mul(Node):
    """y = x0 * x1 (elementwise, same width)."""

    n_inputs: ClassVar[int] = 2


@dataclass(eq=False)
class Add(Node):
    """y = x0 + x1 (the residual connection)."""

    n_inputs: ClassVar[int] = 2


@dataclass(eq=False)
class WKV(Node):
    """RWKV-4 WKV recurrence in its stable (a, b, p) form; inputs (k, v), each (B, C).

        w = -exp(time_decay), u = time_first
        q = max(p, u + k);  y = (e^{p-q} a + e^{u+k-q} v) / (e^{p-q} b + e^{u+k-q})
        q' = max(p + w, k); a <- e^{p+w-q'} a + e^{k-q'} v; b <- e^{p+w-q'} b + e^{k-q'}; p <- q'

    States ``state_a``, ``state_b`` (init 0) and ``state_p`` (init WKV_P_INIT), each (B, C).
    """

    time_decay: np.ndarray = None  # (C,)
    time_first: np.ndarray = None  # (C,)
    state_a: str = ""
    state_b: str = ""
    state_p: str = ""
    n_inputs: ClassVar[int] = 2
    state_fields: ClassVar[tuple[str, ...]] = ("state_a", "state_b", "state_p")

    def __post_init__(self) -> None:
        _vec(self, "time_decay")
        _vec(self, "time_first", len(self.time_decay))

    def states(self) -> dict[str, int]:
        C = len(self.time_decay)
        return {self.state_a: C, self.state_b: C, self.state_p: C}


@dataclass(eq=False)
class Output(Node):
    """Graph output (identity): the logits (B, V)."""


NODE_TYPES: dict[str, type[Node]] = {c.__name__: c for c in (
    TokenInput, Embedding, LayerNorm, ShiftMix, LIF, Scale, TernaryDense, Dense,
    Sigmoid, ReLUSquare, Mul, Add, WKV, Output)}


@dataclass(frozen=True)
class StateSpec:
    """One recurrent state tensor: shape (B, width), float32, initial value ``init``."""

    width: int
    init: float = 0.0


@dataclass(eq=False)
class Graph:
    """nodes (topological order), edges (src, dst), states, meta. Call :meth:`validate`."""

    nodes: dict[str, Node]
    states: dict[str, StateSpec]
    meta: dict[str, Any] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.edges:
            self.edges = [(src, dst) for dst, n in self.nodes.items() for src in n.inputs]

    # -- queries -----------------------------------------------------------------
    def of_type(self, cls: type[Node]) -> dict[str, Node]:
        return {k: n for k, n in self.nodes.items() if isinstance(n, cls)}

    @property
    def input_name(self) -> str:
        return next(iter(self.of_type(TokenInput)))

    @property
    def output_name(self) -> str:
        return next(iter(self.of_type(Output)))

    def widths(self) -> dict[str, int]:
        """Output width of every node (validates as it goes)."""
        self.validate()
        return self._widths

    # -- validation ----------------------------------------------------------------
    def validate(self) -> "Graph":
        """Check structure and shapes; raise ExportError naming the offending node or edge."""
        widths: dict[str, int] = {}
        seen_states: dict[str, str] = {}
        for name, node in self.nodes.items():
            if type(node).__name__ not in NODE_TYPES:
                raise ExportError(f"node {name!r}: unknown node type {type(node).__name__}")
            if len(node.inputs) != node.n_inputs:
                raise ExportError(f"node {name!r} ({node.type}): expects {node.n_inputs} input(s), has {len(node.inputs)}")
            for src in node.inputs:
                if src not in widths:
                    why = "is not a node" if src not in self.nodes else "comes later (not topological)"
                    raise ExportError(f"edge {src!r} -> {name!r}: source {why}")
            in_w = [widths[s] for s in node.inputs]
            self._check_widths(name, node, in_w)
            widths[name] = node.out_width(in_w)
            for st, w in node.states().items():
                self._check_state(name, st, w, seen_states)
        derived = [(s, d) for d, n in self.nodes.items() for s in n.inputs]
        if sorted(self.edges) != sorted(derived):
            extra = sorted(set(self.edges) - set(derived)) or sorted(set(derived) - set(self.edges))
            raise ExportError(f"edge {extra[0][0]!r} -> {extra[0][1]!r}: edges do not match the nodes' inputs")
        unused = sorted(set(self.states) - set(seen_states))
        if unused:
            raise ExportError(f"state {unused[0]!r}: declared but no node uses it")
        if len(self.of_type(TokenInput)) != 1 or len(self.of_type(Output)) != 1:
            raise ExportError("graph: needs exactly one TokenInput and one Output node")
        self._widths = widths
        return self

    def _check_widths(self, name: str, node: Node, in_w: list[int]) -> None:
        def bad(why: str) -> ExportError:
            return ExportError(f"node {name!r} ({node.type}): {why} (input widths {in_w})")

        if isinstance(node, Embedding):
            if node.weight.shape[0] < 1:
                raise bad("empty embedding")
            return
        if isinstance(node, TernaryDense):
            if in_w[0] != node.in_features:
                raise bad(f"weight has {node.in_features} input columns")
            return
        if isinstance(node, Dense):
            if in_w[0] != node.weight.shape[1]:
                raise bad(f"weight has {node.weight.shape[1]} input columns")
            if node.tied_to and not isinstance(self.nodes.get(node.tied_to), Embedding):
                raise bad(f"tied_to {node.tied_to!r} is not an Embedding node")
            return
        if len(set(in_w)) > 1:
            raise bad("inputs differ in width")
        for f in ("weight", "mu", "beta", "scale", "time_decay"):
            v = getattr(node, f, None)
            if v is not None and len(v) != in_w[0]:
                raise bad(f"{f} has {len(v)} channels")

    def _check_state(self, name: str, st: str, w: int, seen: dict[str, str]) -> None:
        if not st:
            raise ExportError(f"node {name!r}: empty state name")
        if st in seen:
            raise ExportError(f"node {name!r}: state {st!r} already used by node {seen[st]!r}")
        spec = self.states.get(st)
        if spec is None:
            raise ExportError(f"node {name!r}: state {st!r} is not declared in graph.states")
        if spec.width != w:
            raise ExportError(f"node {name!r}: state {st!r} has width {spec.width}, node needs {w}")
        seen[st] = name

    # -- summaries -----------------------------------------------------------------
    def summary(self) -> str:
        """One line per node: name, type, inputs, output width."""
        w = self.widths()
        return "\n".join(f"{k:24s} {n.type:13s} {','.join(n.inputs):40s} -> {w[k]}" for k, n in self.nodes.items())


# -- serialization ---------------------------------------------------------------
def node_to_dict(node: Node, arrays: str = "numpy") -> dict[str, Any]:
    """Dataclass -> dict with ``type``. ``arrays='list'`` makes it JSON-safe."""
    d: dict[str, Any] = {"type": node.type}
    for f in dataclasses.fields(node):
        v = getattr(node, f.name)
        if isinstance(v, np.ndarray) and arrays == "list":
            v = {"dtype": str(v.dtype), "shape": list(v.shape), "data": v.ravel().tolist()}
        elif isinstance(v, tuple):
            v = list(v)
        d[f.name] = v
    return d


def node_from_dict(d: dict[str, Any]) -> Node:
    d = dict(d)
    cls = NODE_TYPES.get(d.pop("type", None))
    if cls is None:
        raise ExportError(f"IR node: unknown type {d.get('type')!r}")
    kw = {}
    for f in dataclasses.fields(cls):
        if f.name not in d:
            continue
        v = d[f.name]
        if isinstance(v, dict) and {"dtype", "shape", "data"} <= set(v):
            v = np.asarray(v["data"], dtype=v["dtype"]).reshape(v["shape"])
        elif f.name == "inputs":
            v = tuple(v)
        kw[f.name] = v
    return cls(**kw)


def graph_to_dict(g: Graph, arrays: str = "numpy") -> dict[str, Any]:
    """The whole graph as a dict: format, version, nodes, edges, states, meta."""
    return {
        "format": IR_FORMAT,
        "version": IR_VERSION,
        "nodes": {k: node_to_dict(n, arrays) for k, n in g.nodes.items()},
        "edges": [list(e) for e in g.edges],
        "states": {k: {"width": s.width, "init": s.init} for k, s in g.states.items()},
        "meta": g.meta,
    }


def graph_from_dict(d: dict[str, Any]) -> Graph:
    """Inverse of :func:`graph_to_dict`; validates the result."""
    if d.get("format") != IR_FORMAT or d.get("version") != IR_VERSION:
        raise ExportError(f"not a {IR_FORMAT} v{IR_VERSION} dict (format={d.get('format')!r}, version={d.get('version')!r})")
    g = Graph(
        nodes={k: node_from_dict(v) for k, v in d["nodes"].items()},
        states={k: StateSpec(int(v["width"]), float(v["init"])) for k, v in d["states"].items()},
        meta=dict(d.get("meta", {})),
        edges=[tuple(e) for e in d.get("edges", [])],
    )
    return g.validate()


def initial_state(g: Graph, batch: int, dtype=np.float32) -> dict[str, np.ndarray]:
    """name -> (B, width) arrays filled with each state's init value."""
    return {k: np.full((batch, s.width), s.init, dtype=dtype) for k, s in g.states.items()}
