"""The host side of a Loihi package: every IR node that runs on the host CPU, segment by segment.

This module needs numpy and, from goose_neuro, only ``errors``, ``fixed_point`` and
``export.ir`` / ``export.interp`` (no torch), because the Lava runner executes it in the Python
3.10 Lava environment: each ``HostSegment`` process there owns one segment of a
:class:`HostProgram`.

Segment ``c`` runs before chain ``c`` (segment ``M`` after the last chain and yields the logits)::

    vals = carried values from segment c - 1
    for every synapse node of chain c - 1:  vals[node] = scale_pos * counts_P - scale_neg * counts_N
                                            (split rows [P; N])  or  scale * counts_S  (sign rows [S])
    for every host op of segment c, in topological order:  vals[op] = rule(op)(vals[inputs])
    output: population c's input mantissa  (or the logits, c = M);  carry the values later segments need

Number formats (manifest ``host.format``):

* ``float64`` (default): each op runs the IR interpreter's own rule (:mod:`goose_neuro.export.interp`)
  in float64; a population's input is ``clamp(round_half_even(x * gain), +-(2^(bits-1) - 1))``.
* ``q16``: int64 fixed point with 16 fractional bits for an integer-only embedded CPU; every shift
  floors, every division is ``floor_divide``, exp comes from a 257-entry table stored in the
  package, so results do not depend on numpy version or CPU::

      LayerNorm   d = x - floor(mean x); std = isqrt(floor(mean d^2) + eps); y = floor((d << 16) / std)
                  out = (y gamma >> 16) + beta
      ShiftMix    (x mu + prev (1 - mu)) >> 16            Mul (a b) >> 16        Add a + b
      ReLUSquare  (max(x, 0)^2) >> 16                     Sigmoid 1/(1+e) or e/(1+e), e = exp(-|x|)
      WKV         the stable (a, b, p) recurrence with table exp and floor division
      Dense       (x W_q^T) >> shift                      Embedding: Q16 rows
      TernaryDense on the host: (sp (P x) - sn (N x)) >> 16
      readouts    sp cp - sn cn (Q16)                     population input (x gain) >> 32, gain = round(2^(16+fx) / th)
"""

from __future__ import annotations

import math

import numpy as np

from goose_neuro.errors import ExportError
from goose_neuro.export import interp
from goose_neuro.export.ir import NODE_TYPES, Node, node_from_dict

FRAC = 16
ONE = 1 << FRAC
P_INIT_Q16 = -(1 << 40)  # WKV log-scale "minus infinity" in Q16
EXP_TABLE_BITS = 8


# -- Q16 primitives ----------------------------------------------------------------------------
def rshift(x, n: int) -> np.ndarray:
    """Arithmetic right shift by n >= 0 (floor), int64."""
    return np.right_shift(np.asarray(x, dtype=np.int64), n)


def q16(x, bits: int = FRAC) -> np.ndarray:
    """round(x * 2^bits) as int64."""
    return np.round(np.asarray(x, dtype=np.float64) * (1 << bits)).astype(np.int64)


def exp2_table() -> np.ndarray:
    return np.round(2.0 ** (np.arange(257) / 256.0) * ONE).astype(np.int64)


def exp_q(x, table: np.ndarray, log2e: int) -> np.ndarray:
    """exp(x) for Q16 ``x <= 0`` -> Q16: y = x log2(e); 2^frac(y) from the table with linear
    interpolation; shifted right by -floor(y) (clipped at 62 bits, giving 0)."""
    x = np.minimum(np.asarray(x, dtype=np.int64), 0)
    y = rshift(x * log2e, FRAC)
    n = -rshift(y, FRAC)
    f = y & (ONE - 1)
    idx = rshift(f, FRAC - EXP_TABLE_BITS)
    rem = f & ((1 << (FRAC - EXP_TABLE_BITS)) - 1)
    lo, hi = table[idx], table[idx + 1]
    m = lo + rshift((hi - lo) * rem, FRAC - EXP_TABLE_BITS)
    return m >> np.minimum(n, 62)


def sigmoid_q(x, table: np.ndarray, log2e: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.int64)
    e = exp_q(-np.abs(x), table, log2e)
    return np.floor_divide(np.where(x >= 0, ONE, e) * ONE, ONE + e)


def isqrt(v) -> np.ndarray:
    """floor(sqrt(v)) for int64 v >= 0 (float64 sqrt, then exact corrections)."""
    v = np.asarray(v, dtype=np.int64)
    s = np.sqrt(v.astype(np.float64)).astype(np.int64)
    s = np.where(s * s > v, s - 1, s)
    return np.where((s + 1) * (s + 1) <= v, s + 1, s)


def layer_norm_q(x, gamma, beta, eps_q32: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.int64)
    c = x.shape[-1]
    d = x - np.floor_divide(x.sum(-1, keepdims=True), c)
    var = np.floor_divide((d * d).sum(-1, keepdims=True), c) + eps_q32
    y = np.floor_divide(d << FRAC, np.maximum(isqrt(var), 1))
    return rshift(y * gamma, FRAC) + beta


# -- parameters of host ops, per number format ----------------------------------------------------
def host_arrays(node: Node, fmt: str) -> dict[str, np.ndarray]:
    """The arrays a host op needs in the package, by field name (float64, or Q16 integers)."""
    t = node.type
    f64 = lambda a: np.asarray(a, dtype=np.float64)  # noqa: E731
    if fmt == "float64":
        out = {}
        for name in ("weight", "bias", "mu", "time_decay", "time_first", "scale", "scale_pos", "scale_neg"):
            v = getattr(node, name, None)
            if v is not None:
                out[name] = f64(v)
        if t == "TernaryDense":
            out["sign"] = np.asarray(node.sign, dtype=np.int8)
        for k, v in out.items():
            if v.dtype.kind == "f" and not np.all(np.isfinite(v)):
                raise ExportError(f"{t} {k}: contains NaN or Inf")
        return out
    if t in ("Embedding",):
        return {"weight": _q_checked(node.weight, FRAC, t, 31)}
    if t == "LayerNorm":
        return {"weight": _q_checked(node.weight, FRAC, t, 31), "bias": _q_checked(node.bias, FRAC, t, 31),
                "eps_q32": np.int64(max(1, round(float(node.eps) * 2.0 ** 32)))}
    if t == "ShiftMix":
        return {"mu": _q_checked(node.mu, FRAC, t, 31)}
    if t == "WKV":
        return {"w": _q_checked(-np.exp(f64(node.time_decay)), FRAC, t, 39),
                "u": _q_checked(node.time_first, FRAC, t, 39)}
    if t == "Scale":
        return {"scale": _q_checked(node.scale, FRAC, t, 31)}
    if t == "Dense":
        w = f64(node.weight)
        peak = float(np.abs(w).max(initial=0.0)) or 1.0
        shift = int(min(30, max(0, 15 - math.ceil(math.log2(peak)))))
        return {"weight": _q_checked(w, shift, t, 16), "shift": np.int64(shift)}
    if t == "TernaryDense":
        return {"sign": np.asarray(node.sign, dtype=np.int8), "scale_pos": _q_checked(node.scale_pos, FRAC, t, 31),
                "scale_neg": _q_checked(node.scale_neg, FRAC, t, 31)}
    return {}


def _q_checked(x, bits: int, what: str, limit_bits: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ExportError(f"{what}: contains NaN or Inf, cannot be represented in fixed point")
    q = np.round(x * (1 << bits))
    if np.abs(q).max(initial=0.0) >= float(1 << limit_bits):
        raise ExportError(f"{what}: |value| up to {np.abs(x).max():.3g} does not fit {limit_bits}-bit fixed point "
                          f"with {bits} fractional bits")
    return q.astype(np.int64)


# -- the program ------------------------------------------------------------------------------------
class _Op:
    """One host op: its IR node (float64) or its type, inputs and Q16 arrays."""

    def __init__(self, d: dict, params: dict[str, np.ndarray], fmt: str) -> None:
        self.name, self.type, self.inputs = d["name"], d["type"], tuple(d["inputs"])
        if self.type not in NODE_TYPES:
            raise ExportError(f"host op {self.name}: unknown type {self.type!r}")
        self.arrays = {k: params[key] for k, key in d.get("arrays", {}).items()}
        self.fields = dict(d.get("fields", {}))
        self.node = None
        if fmt == "float64":  # the IR node itself, so interp's rule runs it
            spec = {"type": self.type, "inputs": list(self.inputs), **self.fields, **self.arrays}
            try:
                self.node = node_from_dict(spec)
            except (TypeError, ValueError) as e:
                raise ExportError(f"host op {self.name}: {e}") from None


class HostProgram:
    """All host segments of a package (see the module docstring). ``run_segment`` is one segment
    for one token; state (token shift, WKV) lives here, one copy per op."""

    def __init__(self, manifest: dict, params: dict[str, np.ndarray]) -> None:
        host = manifest["host"]
        self.fmt = host["format"]
        if self.fmt not in ("float64", "q16"):
            raise ExportError(f"host format {self.fmt!r}: expected float64 or q16")
        self.chains = manifest["chains"]
        self.M = len(self.chains)
        self.ops = [[] for _ in range(self.M + 1)]
        for d in host["ops"]:
            s = int(d["segment"])
            if not 0 <= s <= self.M:
                raise ExportError(f"host op {d.get('name')}: segment {s} outside 0..{self.M}")
            self.ops[s].append(_Op(d, params, self.fmt))
        self.carry = [list(c) for c in host["carry"]]
        self.states0 = {k: float(v["init"]) for k, v in host["states"].items()}
        self.widths = {k: int(v["width"]) for k, v in host["states"].items()}
        self.value_widths = {k: int(v) for k, v in host["value_widths"].items()}
        self.output = host["output"]
        self.params = params
        self.scales = {}
        for ch in self.chains:
            for o in ch["outputs"]:
                self.scales[o["node"]] = (params[o["scale_pos"]], params[o["scale_neg"]])
        self.gain = [params[ch["params"]["gain"]] for ch in self.chains]
        if self.fmt == "q16":
            self.table, self.log2e = params["exp2_table"], int(params["log2e_q16"])
        self.reset()

    def reset(self) -> None:
        """Fresh state (token shift, WKV) for every op."""
        self.state = {}
        for k, w in self.widths.items():
            v = self.states0[k]
            if self.fmt == "float64":
                self.state[k] = np.full((1, w), v, dtype=np.float64)
            else:  # Q16; the WKV log-scale's "minus infinity" has its own Q16 value
                self.state[k] = np.full((1, w), P_INIT_Q16 if v < -1e29 else int(round(v * ONE)), dtype=np.int64)

    # -- one segment ---------------------------------------------------------------------
    def readouts(self, c: int, counts: np.ndarray) -> dict[str, np.ndarray]:
        """Synapse outputs of chain ``c`` from its readout counts (rows as in the manifest)."""
        out = {}
        for o in self.chains[c]["outputs"]:
            off, m = o["offset"], o["out_features"]
            sp, sn = self.scales[o["node"]]
            if o["encoding"] == "split":
                cp, cn = counts[off:off + m], counts[off + m:off + 2 * m]
                y = sp * cp - sn * cn
            else:
                y = sp * counts[off:off + m]
            out[o["node"]] = y.reshape(1, 1, m) if self.fmt == "float64" else y.reshape(1, m)
        return out

    def run_segment(self, c: int, token: int | None, counts: np.ndarray | None,
                    carry: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Segment ``c`` for one token. Returns (population c's input mantissa (n,) int64, or the
        logits (V,) for c = M; the values to carry to segment c + 1)."""
        vals = dict(carry)
        if c > 0:
            vals.update(self.readouts(c - 1, np.asarray(counts, dtype=np.int64)))
        for op in self.ops[c]:
            vals[op.name] = self._eval(op, [vals[i] for i in op.inputs], token)
        nxt = {k: vals[k] for k in self.carry[c]} if c < self.M else {}
        if c == self.M:
            y = vals[self.output].reshape(-1)
            return (y.astype(np.float64) if self.fmt == "float64" else y), nxt
        ch = self.chains[c]
        return self.input_mantissa(c, vals[ch["input"]].reshape(-1)), nxt

    def input_mantissa(self, c: int, x: np.ndarray) -> np.ndarray:
        """Population c's input: integer mantissas (Loihi 1 CUBA ON/OFF: [x, -x] as its bias)."""
        ch = self.chains[c]
        lim = (1 << (int(ch["x_bits"]) - 1)) - 1
        g = self.gain[c]
        if self.fmt == "float64":
            raw = np.clip(np.round(x * g), -lim - 1.0, lim + 1.0).astype(np.int64)
        else:
            raw = rshift(x * g, 2 * FRAC)
        xm = np.clip(raw, -lim, lim)
        return np.concatenate([xm, -xm]) if ch["neuron"] == "cuba_onoff" else xm

    # -- op rules ---------------------------------------------------------------------------
    def _eval(self, op: _Op, args: list, token: int | None):
        if op.type == "TokenInput":
            if token is None:
                raise ExportError("segment 0 needs the token id")
            return np.array([[int(token)]], dtype=np.int64)
        if self.fmt == "float64":
            new: dict = {}
            out = interp.eval_node(op.node, args, self.state, new, args[0] if op.type == "Embedding" else None,
                                   np.float64)
            self.state.update({k: v.reshape(1, -1) for k, v in new.items()})
            return out
        return self._eval_q16(op, args)

    def _eval_q16(self, op: _Op, args: list) -> np.ndarray:
        a, t = op.arrays, op.type
        x = args[0] if args else None
        if t == "Embedding":
            return a["weight"][int(np.asarray(x).reshape(-1)[0])].reshape(1, -1)
        if t == "LayerNorm":
            return layer_norm_q(x, a["weight"], a["bias"], int(a["eps_q32"]))
        if t == "ShiftMix":
            st = op.fields["state"]
            prev, self.state[st] = self.state[st], x
            return rshift(x * a["mu"] + prev * (ONE - a["mu"]), FRAC)
        if t == "Sigmoid":
            return sigmoid_q(x, self.table, self.log2e)
        if t == "ReLUSquare":
            k = np.maximum(x, 0)
            return rshift(k * k, FRAC)
        if t == "Mul":
            return rshift(args[0] * args[1], FRAC)
        if t == "Add":
            return args[0] + args[1]
        if t == "Scale":
            return rshift(x * a["scale"], FRAC)
        if t == "Dense":
            return rshift(x @ a["weight"].T, int(a["shift"]))
        if t == "TernaryDense":
            s = a["sign"].astype(np.int64)
            acc_p, acc_n = x @ (s > 0).T.astype(np.int64), x @ (s < 0).T.astype(np.int64)
            return rshift(acc_p * a["scale_pos"] - acc_n * a["scale_neg"], FRAC)
        if t == "WKV":
            return self._wkv_q16(op, args[0], args[1])
        if t == "Output":
            return x
        raise ExportError(f"host op {op.name}: no Q16 rule for {t}")

    def _wkv_q16(self, op: _Op, k: np.ndarray, v: np.ndarray) -> np.ndarray:
        f, st = op.fields, self.state
        w, u = op.arrays["w"], op.arrays["u"]
        a, b, p = st[f["state_a"]], st[f["state_b"]], st[f["state_p"]]
        tab, l2e = self.table, self.log2e
        ww = u + k
        q = np.maximum(p, ww)
        e1, e2 = exp_q(p - q, tab, l2e), exp_q(ww - q, tab, l2e)
        num = rshift(e1 * a + e2 * v, FRAC)
        den = np.maximum(rshift(e1 * b + e2 * ONE, FRAC), 1)
        out = np.floor_divide(num << FRAC, den)
        ww = p + w
        q = np.maximum(ww, k)
        e1, e2 = exp_q(ww - q, tab, l2e), exp_q(k - q, tab, l2e)
        st[f["state_a"]] = rshift(e1 * a + e2 * v, FRAC)
        st[f["state_b"]] = rshift(e1 * b + e2 * ONE, FRAC)
        st[f["state_p"]] = q
        return out

    # -- carried values as one float64 message ----------------------------------------------
    def carry_width(self, c: int) -> int:
        return max(1, sum(self.value_widths[k] for k in self.carry[c]))

    def pack(self, c: int, vals: dict[str, np.ndarray]) -> np.ndarray:
        """Values carried from segment c to c + 1 as one float64 vector (Q16 integers stay exact)."""
        if not self.carry[c]:
            return np.zeros(1)
        out = np.concatenate([np.asarray(vals[k], dtype=np.float64).reshape(-1) for k in self.carry[c]])
        if not np.all(np.abs(out) < 2.0 ** 53):
            raise OverflowError("carried host values do not fit a float64 message exactly")
        return out

    def unpack(self, c: int, msg: np.ndarray) -> dict[str, np.ndarray]:
        out, off = {}, 0
        for k in self.carry[c]:
            w = self.value_widths[k]
            v = np.asarray(msg[off:off + w])
            out[k] = v.reshape(1, 1, w) if self.fmt == "float64" else np.rint(v).astype(np.int64).reshape(1, w)
            off += w
        return out
