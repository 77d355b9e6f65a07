"""Bit-exact integer reference of an exported Loihi / Loihi 2 package (numpy only).

This module is the semantics of the fixed-point graph that ``export_loihi`` writes. It needs
nothing but numpy (no torch, no goose_neuro imports), because the Lava runner executes it in the
Python 3.10 Lava environment as well: the runner replaces :meth:`IntModel.chain_step` by a Lava
simulation and reuses every host-side op from here, so host ops are identical by construction and
the Lava check compares what the neuromorphic cores compute.

Number formats
--------------
The neuromorphic side (populations and synapses) is integer in every package. The host side
has one of two formats, named by the manifest's ``host_format``:

* ``float64`` (the default): the host ops are IEEE float64 on the host CPU, written as in the
  float model, and each population input is rounded to its integer mantissa
  ``x_mant = clamp(round_half_even(x * gain))`` with ``gain = 2^fx / th``. The PyTorch model run
  in float64 with the same fixed-point neurons (``SpikeLIF.set_fixed_point``) computes the same
  mantissas, so its spikes match the package's exactly unless a float64 rounding difference
  lands on a mantissa boundary.
* ``q16`` (for an integer-only embedded CPU): int64 fixed point with ``FRAC = 16`` fractional
  bits. Every shift is an arithmetic (floor) shift; every division is ``np.floor_divide``;
  every float-derived constant (including the exp2 table) is computed once at export time and
  stored in ``params.npz``. So results do not depend on numpy version or CPU.

Per token and layer (chains in brackets run on neuromorphic cores, the rest on the host)::

    x  = LN0(emb[tok])                                  (layer 0) | x + r_cm * val  (later layers)
    xm = (LN1(x) * mu + prev * (1 - mu)) >> 16          -> [tm_in population -> K,V,R synapses]
    k, v, r = sp * cp + sn * cn                         (TTQ scales x amplitude, per row, Q16)
    wkv = WKV(k, v) (exp2 table, integer division);  y = sigmoid(r) * wkv >> 16
                                                        -> [tm_out population -> O synapses]
    x  = x + o;  xm = shift-mix(LN2(x))                 -> [cm_in population -> K,R synapses]
    k2 = relu(k)^2 >> 16, r_cm = sigmoid(r)             -> [cm_hid population -> V synapses]
    logits = (LN_out(x) @ Wh^T) >> head_shift           (after the last layer)

Population neurons (Lava fixed-point conventions: state in units of ``2^6``; decays 12-bit and
truncated toward zero, ``lava.proc.lif.models.AbstractPyLifModelFixed``)::

    x_mant = clamp((xm * g) >> 32, +-(2^(bits-1) - 1))  g = round(2^(16 + fx) / th)  (q16: the
                                                        threshold folds into the input scale, vth = 2^fx)
    x_mant = clamp(round(x * g), +-(2^(bits-1) - 1))    g = 2^fx / th  (float64 host)
    loihi2 "ternary_sub" (Loihi 2 programmable neuron, graded +-1 spikes):
        v = clip24(trunc(v * (4096 - dv) / 4096) + (x_mant << 6))
        s = (v > vth << 6) - (v < -(vth << 6));   v = v - s * (vth << 6)     (subtract reset)
    loihi, population="host": "host_onoff": the ternary_sub update runs on the host (embedded CPU)
        and its spikes are injected as an ON/OFF pair [s > 0, s < 0] (2n binary axons)
    loihi "cuba_onoff" (Loihi CUBA LIF, 2n compartments, bias = [x, -x], du = 4095):
        u = a << 6 = 0 (no synaptic input);  v = clip24(trunc(v * (4096 - dv) / 4096) + u + (bias << 6))
        s = v > vth << 6;  v[s] = 0                                        (reset to zero)

Chains: ``counts = W @ s`` with W in {-1, 0, +1}: rows ``[P; -N]`` per projection (Loihi 2,
graded input), or ``[[P, -P], [-N, N]]`` on the ON/OFF pair (Loihi 1). In Lava the counts arrive
one step later in a CUBA readout compartment (``du = 4095, dv = 4096``: ``v = counts << 6``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np

FRAC = 16
ONE = 1 << FRAC
P_INIT = -(1 << 40)  # WKV log-scale "minus infinity" in Q16
P_INIT_F64 = -1e30  # the same in float64 (goose_neuro.model.WKV_P_INIT)
HOST_FORMATS = ("float64", "q16")
V_MAX = (1 << 23) - 1  # 24-bit neuron state (Lava clips v to +-(2^23 - 1))
EXP_TABLE_BITS = 8
MANIFEST_FORMAT = "goose-neuro-loihi"
MANIFEST_VERSION = 1


# -- integer primitives ---------------------------------------------------------------------------
def rshift(x: np.ndarray, n: int) -> np.ndarray:
    """Arithmetic right shift by n >= 0 (floor), int64."""
    return np.right_shift(np.asarray(x, dtype=np.int64), n)


def exp_q(x: np.ndarray, table: np.ndarray, log2e: int) -> np.ndarray:
    """exp(x) for Q16 ``x <= 0`` -> Q16. y = x*log2(e); 2^frac(y) from a 257-entry Q16 table with
    linear interpolation; shifted right by -floor(y) (clipped at 62 bits, giving 0)."""
    x = np.minimum(np.asarray(x, dtype=np.int64), 0)
    y = rshift(x * log2e, FRAC)
    n = -rshift(y, FRAC)  # >= 0
    f = y & (ONE - 1)
    idx = rshift(f, FRAC - EXP_TABLE_BITS)
    rem = f & ((1 << (FRAC - EXP_TABLE_BITS)) - 1)
    lo, hi = table[idx], table[idx + 1]
    m = lo + rshift((hi - lo) * rem, FRAC - EXP_TABLE_BITS)
    return rshift(m, 0) >> np.minimum(n, 62)


def sigmoid_q(x: np.ndarray, table: np.ndarray, log2e: int) -> np.ndarray:
    """sigmoid in Q16: e = exp(-|x|); x >= 0: 1/(1+e); x < 0: e/(1+e) (floor division)."""
    x = np.asarray(x, dtype=np.int64)
    e = exp_q(-np.abs(x), table, log2e)
    num = np.where(x >= 0, ONE, e) * ONE
    return np.floor_divide(num, ONE + e)


def isqrt(v: np.ndarray) -> np.ndarray:
    """floor(sqrt(v)) for int64 v >= 0: float64 sqrt (correctly rounded) then exact corrections."""
    v = np.asarray(v, dtype=np.int64)
    s = np.sqrt(v.astype(np.float64)).astype(np.int64)
    s = np.where(s * s > v, s - 1, s)
    s = np.where((s + 1) * (s + 1) <= v, s + 1, s)
    return s


def layer_norm_q(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps_q32: int) -> np.ndarray:
    """LayerNorm in Q16: d = x - floor(mean); std = isqrt(floor(mean(d^2)) + eps) (Q16);
    y = floor((d << 16) / std); out = (y * gamma >> 16) + beta."""
    x = np.asarray(x, dtype=np.int64)
    c = x.shape[-1]
    d = x - np.floor_divide(x.sum(-1, keepdims=True), c)
    var = np.floor_divide((d * d).sum(-1, keepdims=True), c) + eps_q32
    std = np.maximum(isqrt(var), 1)
    y = np.floor_divide(d << FRAC, std)
    return rshift(y * gamma, FRAC) + beta


# -- population neurons ------------------------------------------------------------------------------
def decay_trunc(v: np.ndarray, dv: np.ndarray | int) -> np.ndarray:
    """Lava's decay: sign(v * (4096 - dv)) * (|v * (4096 - dv)| >> 12) (truncation toward zero)."""
    d = np.asarray(v, dtype=np.int64) * (4096 - np.asarray(dv, dtype=np.int64))
    return np.sign(d) * (np.abs(d) >> 12)


@dataclass
class Population:
    """One spiking population as exported (integer parameters only)."""

    name: str
    n: int
    kind: str  # "ternary_sub" (Loihi 2), "cuba_onoff" or "host_onoff" (Loihi 1)
    dv: np.ndarray  # (n,) 12-bit voltage decay, 4096 - round(4096 * beta)
    vth: int  # threshold mantissa (effective vth << 6)
    gain: np.ndarray  # (n,) input gain: int64 round(2^(16+fx) / th) (q16) or float64 2^fx / th
    x_bits: int  # signed width of the input mantissa
    v: np.ndarray = field(default=None)  # type: ignore[assignment]
    clamps: int = 0

    def __post_init__(self) -> None:
        width = 2 * self.n if self.kind == "cuba_onoff" else self.n  # host_onoff keeps one membrane
        self.v = np.zeros(width, dtype=np.int64)

    def input_mantissa(self, xm: np.ndarray) -> np.ndarray:
        """x_mant = clamp((xm * gain) >> 32) for a Q16 host, clamp(round(xm * gain)) for a float64
        host (round half to even, as torch.round); counts clamps."""
        lim = (1 << (self.x_bits - 1)) - 1
        if self.gain.dtype.kind == "f":
            scaled = np.round(np.asarray(xm, dtype=np.float64) * self.gain)
            raw = np.clip(scaled, -lim - 1.0, lim + 1.0).astype(np.int64)  # no int64 overflow
        else:
            raw = rshift(np.asarray(xm, dtype=np.int64) * self.gain, 2 * FRAC)
        self.clamps += int((np.abs(raw) > lim).sum())
        return np.clip(raw, -lim, lim)

    def bias(self, x_mant: np.ndarray) -> np.ndarray:
        """What the host writes into the compartments' bias each step."""
        return np.concatenate([x_mant, -x_mant]) if self.kind == "cuba_onoff" else x_mant

    def step(self, x_mant: np.ndarray) -> np.ndarray:
        """One token: returns spikes ((n,) in {-1,0,1}, or (2n,) in {0,1} for the ON/OFF kinds)."""
        vt = self.vth << 6
        if self.kind == "cuba_onoff":
            dv = self.dv[0]
            v = np.clip(decay_trunc(self.v, dv) + (self.bias(x_mant) << 6), -V_MAX, V_MAX)
            s = (v > vt).astype(np.int64)
            self.v = np.where(s > 0, 0, v)
            return s
        v = np.clip(decay_trunc(self.v, self.dv) + (x_mant << 6), -V_MAX, V_MAX)
        s = (v > vt).astype(np.int64) - (v < -vt).astype(np.int64)
        self.v = v - s * vt
        if self.kind == "host_onoff":
            return np.concatenate([(s > 0), (s < 0)]).astype(np.int64)
        return s


# -- the model -----------------------------------------------------------------------------------------
class IntModel:
    """The exported fixed-point network, one token at a time.

    ``run(tokens)`` returns logits (T, V) int64 (Q16) plus the spikes and chain counts of every
    chain, which is what the Lava check compares. :meth:`segment` is the host side between
    chains; :meth:`chain_step` is what runs on neuromorphic cores.
    """

    def __init__(self, manifest: dict, params: dict[str, np.ndarray]) -> None:
        if manifest.get("format") != MANIFEST_FORMAT or manifest.get("format_version") != MANIFEST_VERSION:
            raise ValueError(f"not a {MANIFEST_FORMAT} v{MANIFEST_VERSION} manifest")
        self.m, self.p = manifest, params
        self.n_layers = manifest["model"]["n_layers"]
        self.chains = manifest["chains"]
        self.host_format = manifest.get("host_format", "q16")  # packages before float64 hosts: q16
        if self.host_format not in HOST_FORMATS:
            raise ValueError(f"unknown host_format {self.host_format!r}")
        self.fp = self.host_format == "float64"
        if self.fp:
            self.eps = float(params["ln_eps"])
        else:
            self.table, self.log2e = params["exp2_table"], int(params["log2e_q16"])
            self.eps_q32 = int(params["ln_eps_q32"])
        self.reset()

    @classmethod
    def load(cls, out_dir: str | os.PathLike) -> "IntModel":
        with open(os.path.join(out_dir, "manifest.json"), encoding="utf-8") as f:
            manifest = json.load(f)
        with np.load(os.path.join(out_dir, manifest["params_file"])) as z:
            params = {k: z[k] for k in z.files}
        return cls(manifest, params)

    def reset(self) -> None:
        """Fresh recurrent state (membranes, token shift, WKV)."""
        self.pops = []
        for ch in self.chains:
            pop = ch["population"]
            key = ch["name"]
            self.pops.append(Population(key, pop["n"], pop["kind"], self.p[key + ".dv"],
                                        int(pop["vth_mant"]), self.p[key + ".gain"], int(pop["x_bits"])))
        C = self.m["model"]["d_model"]
        dt = np.float64 if self.fp else np.int64
        self.state = {}
        for i in range(self.n_layers):
            for k in ("tm_shift", "cm_shift", "wkv_a", "wkv_b"):
                self.state[f"L{i}.{k}"] = np.zeros(C, dtype=dt)
            self.state[f"L{i}.wkv_p"] = np.full(C, P_INIT_F64 if self.fp else P_INIT, dtype=dt)

    # -- host ops ------------------------------------------------------------------------------------
    def _ln(self, name: str, x: np.ndarray) -> np.ndarray:
        gamma, beta = self.p[name + ".gamma"], self.p[name + ".beta"]
        if self.fp:
            d = x - x.mean(-1, keepdims=True)
            return d / np.sqrt((d * d).mean(-1, keepdims=True) + self.eps) * gamma + beta
        return layer_norm_q(x, gamma, beta, self.eps_q32)

    def _mix(self, pre: str, which: str, h: np.ndarray) -> np.ndarray:
        mu = self.p[f"{pre}{which}.mu"]
        prev = self.state[f"{pre}{which}_shift"]
        self.state[f"{pre}{which}_shift"] = h
        if self.fp:
            return h * mu + prev * (1.0 - mu)
        return rshift(h * mu + prev * (ONE - mu), FRAC)

    def _mul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a * b if self.fp else rshift(a * b, FRAC)

    def _sigmoid(self, x: np.ndarray) -> np.ndarray:
        if self.fp:
            return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic
        return sigmoid_q(x, self.table, self.log2e)

    def _proj(self, chain: dict, counts: np.ndarray, proj: str) -> np.ndarray:
        """y = sp * cp + sn * cn (Q16 or float64) for one projection's rows of the chain output."""
        off, m = chain["outputs"][proj]
        cp, cn = counts[off:off + m], counts[off + m:off + 2 * m]
        key = f"{chain['name']}.{proj}"
        return self.p[key + ".sp"] * cp + self.p[key + ".sn"] * cn

    def _wkv(self, pre: str, k: np.ndarray, v: np.ndarray) -> np.ndarray:
        """RWKV-4 WKV (stable a, b, p form): float64, or Q16 with exp from the table."""
        if self.fp:
            return self._wkv_f64(pre, k, v)
        st, w, u = self.state, self.p[pre + "tm.w"], self.p[pre + "tm.u"]
        a, b, p = st[pre + "wkv_a"], st[pre + "wkv_b"], st[pre + "wkv_p"]
        ww = u + k
        q = np.maximum(p, ww)
        e1, e2 = exp_q(p - q, self.table, self.log2e), exp_q(ww - q, self.table, self.log2e)
        num = rshift(e1 * a + e2 * v, FRAC)
        den = np.maximum(rshift(e1 * b + e2 * ONE, FRAC), 1)
        out = np.floor_divide(num << FRAC, den)
        ww = p + w
        q = np.maximum(ww, k)
        e1, e2 = exp_q(ww - q, self.table, self.log2e), exp_q(k - q, self.table, self.log2e)
        st[pre + "wkv_a"] = rshift(e1 * a + e2 * v, FRAC)
        st[pre + "wkv_b"] = rshift(e1 * b + e2 * ONE, FRAC)
        st[pre + "wkv_p"] = q
        return out

    def _wkv_f64(self, pre: str, k: np.ndarray, v: np.ndarray) -> np.ndarray:
        st, w, u = self.state, self.p[pre + "tm.w"], self.p[pre + "tm.u"]
        a, b, p = st[pre + "wkv_a"], st[pre + "wkv_b"], st[pre + "wkv_p"]
        ww = u + k
        q = np.maximum(p, ww)
        e1, e2 = np.exp(p - q), np.exp(ww - q)
        out = (e1 * a + e2 * v) / (e1 * b + e2)
        ww = p + w
        q = np.maximum(ww, k)
        e1, e2 = np.exp(ww - q), np.exp(k - q)
        st[pre + "wkv_a"], st[pre + "wkv_b"], st[pre + "wkv_p"] = e1 * a + e2 * v, e1 * b + e2, q
        return out

    def segment(self, c: int, ctx: dict, counts: np.ndarray | None) -> np.ndarray:
        """Host work before chain ``c`` (c = len(chains): the head). ``counts``: chain c-1's output.
        Returns chain c's population input mantissa, or the logits (Q16 or float64) for the head."""
        i, role = divmod(c, 4)
        pre = f"L{i}."
        if role == 0:  # finish previous layer's channel mix (or embed), then time-mix input
            if c == 0:
                x = self._ln("ln0", self.p["emb"][ctx["token"]])
            else:
                prev = self.chains[c - 1]
                val = self._proj(prev, counts, "value")
                x = ctx["x"] + self._mul(ctx["r_cm"], val)
            ctx["x"] = x
            if c == len(self.chains):
                h = self._ln("ln_out", x)
                if self.fp:
                    return self.p["head.w"] @ h
                return rshift(h @ self.p["head.w"].T, int(self.p["head.shift"]))
            return self.pops[c].input_mantissa(self._mix(pre, "tm", self._ln(pre + "ln1", x)))
        prev = self.chains[c - 1]
        if role == 1:
            k, v = self._proj(prev, counts, "key"), self._proj(prev, counts, "value")
            r = self._sigmoid(self._proj(prev, counts, "receptance"))
            y = self._mul(r, self._wkv(pre, k, v))
            return self.pops[c].input_mantissa(y)
        if role == 2:
            x = ctx["x"] + self._proj(prev, counts, "output")
            ctx["x"] = x
            return self.pops[c].input_mantissa(self._mix(pre, "cm", self._ln(pre + "ln2", x)))
        k = np.maximum(self._proj(prev, counts, "key"), 0)
        ctx["r_cm"] = self._sigmoid(self._proj(prev, counts, "receptance"))
        return self.pops[c].input_mantissa(self._mul(k, k))

    # -- neuromorphic side --------------------------------------------------------------------------
    def chain_weight(self, c: int) -> np.ndarray:
        return self.p[self.chains[c]["name"] + ".weight"]

    def chain_step(self, c: int, x_mant: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Population update then synapses: returns (spikes, counts = W @ spikes)."""
        s = self.pops[c].step(x_mant)
        return s, self.chain_weight(c) @ s

    def run(self, tokens, record: bool = True) -> dict:
        """Run tokens in order (continuing the current state). Returns logits (T, V) (int64 Q16 or
        float64, by host format) and,
        with ``record``, per chain the spikes (T, width) and counts (T, rows)."""
        M = len(self.chains)
        logits, spikes, counts_all = [], [[] for _ in range(M)], [[] for _ in range(M)]
        for tok in tokens:
            ctx, counts = {"token": int(tok)}, None
            for c in range(M):
                x_mant = self.segment(c, ctx, counts)
                s, counts = self.chain_step(c, x_mant)
                if record:
                    spikes[c].append(s)
                    counts_all[c].append(counts)
            logits.append(self.segment(M, ctx, counts))
        out = {"logits": np.array(logits, dtype=np.float64 if self.fp else np.int64)}
        if record:
            out["spikes"] = [np.array(s, dtype=np.int64) for s in spikes]
            out["counts"] = [np.array(s, dtype=np.int64) for s in counts_all]
        return out

    def clamp_counts(self) -> dict[str, int]:
        """Input-mantissa clamps so far, per population."""
        return {p.name: p.clamps for p in self.pops}
