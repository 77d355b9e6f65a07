"""Reference numpy interpreter of the deployment IR.

``run(graph, tokens (B, T) int, state=None) -> (logits (B, T, V), new_state, spikes)``

The state dict uses the same names as ``ASNNGoose.state_spec()``; ``state=None``
starts from each state's init value. Calls chain: running T tokens at once equals
running them one per call with the state passed along.

Nodes are evaluated in the graph's topological order over the whole sequence at
once: stateless nodes are vectorised over (B, T); only the recurrent ones
(ShiftMix, LIF, WKV) loop over tokens, each on (B, n) rows. This is possible
because all recurrence in the IR is inside single nodes.

``dtype`` (float32 by default, float64 for exactness checks) is the compute
precision; integer weights are exact in either.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from goose_neuro.errors import ExportError
from goose_neuro.export.ir import (
    LIF, WKV, Add, Dense, Embedding, Graph, LayerNorm, Mul, Node, Output, ReLUSquare, Scale,
    ShiftMix, Sigmoid, TernaryDense, TokenInput, initial_state)

Arr = np.ndarray
State = dict[str, Arr]


def _layer_norm(n: LayerNorm, x: Arr) -> Arr:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + n.eps) * n.weight.astype(x.dtype) + n.bias.astype(x.dtype)


def _shift(n: ShiftMix, x: Arr, st: State, new: State) -> Arr:
    """y_t = x_t mu + x_{t-1} (1 - mu), x_{-1} = state. x: (B, T, C)."""
    prev = np.concatenate([st[n.state][:, None].astype(x.dtype), x[:, :-1]], axis=1)  # (B, T, C)
    mu = n.mu.astype(x.dtype)
    new[n.state] = x[:, -1]
    return x * mu + prev * (1 - mu)


def _lif(n: LIF, x: Arr, st: State, new: State) -> Arr:
    """Unit spikes (B, T, n) from the LIF update (see ir.LIF)."""
    if n.fixed:
        return _lif_fixed(n, x, st, new)
    beta, th = n.beta.astype(x.dtype), n.threshold.astype(x.dtype)
    mem = st[n.state].astype(x.dtype)
    k = n.n
    v, u = mem[:, :k], mem[:, k:]
    beta_u = n.beta_u.astype(x.dtype) if n.neuron == "ternary_lif" else None
    out = np.empty_like(x)
    for t in range(x.shape[1]):
        if beta_u is not None:  # ternary_lif: current, then voltage; reset to zero
            u = beta_u * u + x[:, t]
            m = beta * v + u
        else:
            m = beta * v + x[:, t]
        s = (m > th).astype(x.dtype)
        if n.mode == "ternary":
            s -= (m < -th)
        out[:, t] = s
        v = m * (1 - np.abs(s)) if beta_u is not None else m - s * th
    new[n.state] = np.concatenate([v, u], axis=1) if beta_u is not None else v
    return out


def _trunc_decay(v: Arr, keep: Arr, bits: int) -> Arr:
    """sign(v * keep) * (|v * keep| >> bits), int64 (truncation toward zero)."""
    d = v * keep
    return np.sign(d) * (np.abs(d) >> bits)


def _lif_fixed(n: LIF, x: Arr, st: State, new: State) -> Arr:
    """The integer neuron of goose_neuro.fixed_point (state: integer v, and u for ternary_lif)."""
    f = n.format
    unit, sh, vt = 1 << f.decay_bits, f.shift, f.vth << f.shift
    beta = np.asarray(n.beta, np.float64)
    keep_v = unit - np.clip(unit - np.round(unit * beta), 0, unit - 1).astype(np.int64)
    gain = float(f.vth) / np.asarray(n.threshold, np.float64)
    xm = np.clip(np.round(x.astype(np.float64) * gain), -f.x_limit, f.x_limit).astype(np.int64)
    mem = np.rint(st[n.state].astype(np.float64)).astype(np.int64)
    k = n.n
    v, u = mem[:, :k], mem[:, k:]
    tlif = n.neuron == "ternary_lif"
    if tlif:
        b_u = np.asarray(n.beta_u, np.float64)
        keep_u = unit - 1 - np.clip(unit - 1 - np.round(unit * b_u), 0, unit - 1).astype(np.int64)
        half = 1 << (f.state_bits - 1)
    out = np.empty(x.shape, dtype=x.dtype)
    for t in range(x.shape[1]):
        if tlif:
            d = _trunc_decay(u, keep_u, f.decay_bits) + (xm[:, t] << sh)
            u = np.where(d > half, d - 2 * half, np.where(d <= -half, d + 2 * half, d))
            m = np.clip(_trunc_decay(v, keep_v, f.decay_bits) + u, -f.v_max, f.v_max)
        else:
            m = np.clip(_trunc_decay(v, keep_v, f.decay_bits) + (xm[:, t] << sh), -f.v_max, f.v_max)
        s = (m > vt).astype(np.int64) - (m < -vt).astype(np.int64)
        out[:, t] = s
        v = np.where(s != 0, 0, m) if tlif else m - s * vt
    new[n.state] = (np.concatenate([v, u], axis=1) if tlif else v).astype(x.dtype)
    return out


def _int_mats(n: TernaryDense, dtype) -> tuple[Arr, ...]:
    """(S^T,) or (P^T, N^T) as float matrices (in, out), cached on the node per dtype."""
    cache = n.__dict__.setdefault("_interp_cache", {})
    key = (np.dtype(dtype).str, id(n.sign))
    if key not in cache:
        mats = (n.sign,) if n.encoding == "sign" else (n.pos, n.neg)
        cache[key] = tuple(np.ascontiguousarray(m.T.astype(dtype)) for m in mats)
    return cache[key]


def _ternary(n: TernaryDense, x: Arr) -> Arr:
    """scale_pos * (P x) - scale_neg * (N x), or scale * (S x) for the 'sign' encoding."""
    mats = _int_mats(n, x.dtype)
    if n.encoding == "sign":
        return (x @ mats[0]) * n.scale_pos.astype(x.dtype)
    acc_p, acc_n = x @ mats[0], x @ mats[1]  # (B, T, out) exact sums of unit spikes
    return acc_p * n.scale_pos.astype(x.dtype) - acc_n * n.scale_neg.astype(x.dtype)


def _wkv(n: WKV, k: Arr, v: Arr, st: State, new: State) -> Arr:
    """RWKV-4 stable recurrence over T tokens (see ir.WKV). k, v: (B, T, C)."""
    dt = k.dtype
    w, u = -np.exp(n.time_decay.astype(dt)), n.time_first.astype(dt)
    a, b, p = (st[s].astype(dt) for s in (n.state_a, n.state_b, n.state_p))
    out = np.empty_like(k)
    for t in range(k.shape[1]):
        kt, vt = k[:, t], v[:, t]
        ww = u + kt
        q = np.maximum(p, ww)
        e1, e2 = np.exp(p - q), np.exp(ww - q)
        out[:, t] = (e1 * a + e2 * vt) / (e1 * b + e2)
        ww = p + w
        q = np.maximum(ww, kt)
        e1, e2 = np.exp(ww - q), np.exp(kt - q)
        a, b, p = e1 * a + e2 * vt, e1 * b + e2, q
    new[n.state_a], new[n.state_b], new[n.state_p] = a, b, p
    return out


def _sigmoid(x: Arr) -> Arr:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


_STATELESS: dict[type, Callable[..., Arr]] = {
    LayerNorm: lambda n, x: _layer_norm(n, x),
    Scale: lambda n, x: x * n.scale.astype(x.dtype),
    TernaryDense: lambda n, x: _ternary(n, x),
    Dense: lambda n, x: x @ n.weight.T.astype(x.dtype),
    Sigmoid: lambda n, x: _sigmoid(x),
    ReLUSquare: lambda n, x: np.square(np.maximum(x, 0)),
    Mul: lambda n, x, y: x * y,
    Add: lambda n, x, y: x + y,
    Output: lambda n, x: x,
}


def eval_node(node: Node, args: list[Arr], st: State, new: State, tokens: Arr, dtype) -> Arr:
    """One node's rule on its input values (B, T, ...). Reads states from ``st`` and writes
    the updated ones into ``new``. Used by :func:`run` and by the Loihi package's host program."""
    if isinstance(node, TokenInput):
        return tokens
    if isinstance(node, Embedding):
        return node.weight[args[0]].astype(dtype)  # (B, T, C)
    if isinstance(node, ShiftMix):
        return _shift(node, args[0], st, new)
    if isinstance(node, LIF):
        return _lif(node, args[0], st, new)
    if isinstance(node, WKV):
        return _wkv(node, args[0], args[1], st, new)
    fn = _STATELESS.get(type(node))
    if fn is None:
        raise ExportError(f"interpreter: no rule for node type {node.type}")
    return fn(node, *args)


def run(graph: Graph, tokens, state: State | None = None, dtype=np.float32,
        collect: bool = False) -> tuple[Arr, State, dict[str, Arr]]:
    """Run the graph on ``tokens`` (B, T) (or (B,) for one step).

    Returns (logits (B, T, V) [or (B, V)], new state, spikes) where ``spikes`` maps each
    LIF node's name to its (B, T, n) unit spikes when ``collect`` is set.
    """
    tokens = np.asarray(tokens)
    one_step = tokens.ndim == 1
    if one_step:
        tokens = tokens[:, None]
    if tokens.ndim != 2 or not np.issubdtype(tokens.dtype, np.integer):
        raise ExportError(f"tokens must be an integer array (B, T), got {tokens.dtype} {tokens.shape}")
    V = graph.nodes[graph.input_name].vocab_size
    if tokens.size and (tokens.min() < 0 or tokens.max() >= V):
        raise ExportError(f"token ids must be in [0, {V}), got [{tokens.min()}, {tokens.max()}]")
    st = initial_state(graph, tokens.shape[0], dtype) if state is None else state
    missing = sorted(set(graph.states) - set(st))
    if missing:
        raise ExportError(f"state is missing {missing[:3]}")
    last_use = {src: dst for dst, n in graph.nodes.items() for src in n.inputs}  # free values early
    vals: dict[str, Arr] = {}
    new: State = {}
    spikes: dict[str, Arr] = {}
    for name, node in graph.nodes.items():
        vals[name] = eval_node(node, [vals[i] for i in node.inputs], st, new, tokens, dtype)
        if collect and isinstance(node, LIF):
            spikes[name] = vals[name]
        for i in node.inputs:
            if last_use[i] == name:
                vals.pop(i, None)
    logits = vals[graph.output_name]
    new = {k: new[k] for k in graph.states}
    return (logits[:, 0] if one_step else logits), new, spikes
