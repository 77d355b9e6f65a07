"""ASNN-Goose: an RWKV-4-style recurrent language model that talks in spikes.

Data flow of one block (C = d_model, F = d_ffn; every projection is a TTQ
ternary matrix and every projection input is a spike tensor)::

    x ─LN1─ shift-mix ─LIF─ s ─┬─ Wk ─ k ─┐
                               ├─ Wv ─ v ─┼─ WKV recurrence ─┐
                               └─ Wr ─ sigmoid ──────────────┴─ * ─LIF─ Wo ─(+x)
    x ─LN2─ shift-mix ─LIF─ s ─┬─ Wk ─ relu² ─LIF─ Wv ─┐
                               └─ Wr ─ sigmoid ────────┴─ * ─(+x)

The WKV recurrence is RWKV-4's (Peng et al. 2023, arXiv 2305.13048), kept in
its numerically stable (a, b, p) form::

    wkv_t = (e^{p-q} a + e^{u+k_t-q} v_t) / (e^{p-q} b + e^{u+k_t-q}),  q = max(p, u+k_t)
    a, b, p <- decay by w = -exp(time_decay), then add e^{k_t} v_t and e^{k_t}

One variant, on purpose: the token shift mixes ``x_t`` and ``x_{t-1}`` once per
mixer (one ``mu``) instead of once per k/v/r, so each mixer needs one spiking
population rather than three.

State is explicit and never mutated in place: ``forward(tokens, state)`` returns
``(logits, new_state)`` where state is a dict of named (B, width) tensors (see
:meth:`ASNNGoose.state_spec`). Step mode (T=1 calls) equals sequence mode.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from goose_neuro.config import ModelConfig
from goose_neuro.errors import ConfigError
from goose_neuro.fixed_point import NeuronFormat, neuron_format
from goose_neuro.neurons import NEURON_CLASSES, SpikeLIF, TernaryLIFNeuron

Neuron = SpikeLIF | TernaryLIFNeuron
from goose_neuro.ternary import TernaryLinear

State = dict[str, Tensor]


def wkv_scan(
    time_decay: Tensor, time_first: Tensor, k: Tensor, v: Tensor, a: Tensor, b: Tensor, p: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Reference RWKV-4 WKV over T tokens. k, v: (B, T, C); a, b, p: (B, C).

    Returns (wkv (B, T, C), a, b, p). ``p`` is the running log-scale that keeps
    ``exp`` in range (A = a e^p, B = b e^p); its initial value is a large
    negative number. This readable loop is the definition; :func:`wkv` is the
    fast path with the same values and a hand-written backward.
    """
    w = -torch.exp(time_decay)  # (C,) log-decay per token
    u = time_first  # (C,)
    outs = []
    for t in range(k.shape[1]):
        kt, vt = k[:, t], v[:, t]  # (B, C)
        ww = u + kt
        q = torch.maximum(p, ww)
        e1, e2 = torch.exp(p - q), torch.exp(ww - q)
        outs.append((e1 * a + e2 * vt) / (e1 * b + e2))
        ww = p + w
        q = torch.maximum(ww, kt)
        e1, e2 = torch.exp(ww - q), torch.exp(kt - q)
        a, b, p = e1 * a + e2 * vt, e1 * b + e2, q
    return torch.stack(outs, dim=1), a, b, p


def _wkv_forward_loop(w: Tensor, u: Tensor, k: Tensor, v: Tensor, a: Tensor, b: Tensor, p: Tensor):
    """Same recurrence as :func:`wkv_scan`; also returns the state before every token."""
    B, T, C = k.shape
    y = k.new_empty(B, T, C)
    a_all, b_all, p_all = k.new_empty(B, T, C), k.new_empty(B, T, C), k.new_empty(B, T, C)
    for t in range(T):
        kt, vt = k[:, t], v[:, t]
        a_all[:, t], b_all[:, t], p_all[:, t] = a, b, p
        ww = u + kt
        q = torch.maximum(p, ww)
        e1, e2 = torch.exp(p - q), torch.exp(ww - q)
        y[:, t] = (e1 * a + e2 * vt) / (e1 * b + e2)
        ww = p + w
        q = torch.maximum(ww, kt)
        e1, e2 = torch.exp(ww - q), torch.exp(kt - q)
        a, b, p = e1 * a + e2 * vt, e1 * b + e2, q
    return y, a_all, b_all, p_all, a, b, p


def _wkv_backward_loop(inj_a: Tensor, inj_b: Tensor, f: Tensor, ga: Tensor, gb: Tensor):
    """Reverse recursion g_t = inj_t + f_t * g_{t+1} for the (scaled) state gradients.
    Returns the gradients after each token (B, T, C) and the ones of the initial state."""
    T = inj_a.shape[1]
    ga_next, gb_next = torch.empty_like(inj_a), torch.empty_like(inj_b)
    for t in range(T - 1, -1, -1):
        ga_next[:, t], gb_next[:, t] = ga, gb
        ga = inj_a[:, t] + f[:, t] * ga
        gb = inj_b[:, t] + f[:, t] * gb
    return ga_next, gb_next, ga, gb


try:  # TorchScript removes most per-token Python overhead; the plain loops are identical
    _wkv_forward_loop = torch.jit.script(_wkv_forward_loop)
    _wkv_backward_loop = torch.jit.script(_wkv_backward_loop)
except Exception:  # pragma: no cover
    pass


class _WKV(torch.autograd.Function):
    """WKV in one autograd node. Backward, in the scaled form that keeps every
    exponent <= 0 (A_t = a_t e^{p_t}, hats are gradients w.r.t. a_t, b_t)::

        q = max(p_t, u+k_t), e1 = e^{p_t-q}, e2 = e^{u+k_t-q}, D = e1 b_t + e2, y_t = (e1 a_t + e2 v_t)/D
        dL/dv_t += g_t e2/D ;  dL/dk_t, dL/du += g_t e2 (v_t - y_t)/D
        ga_t = g_t e1/D + f_t ga_{t+1},  gb_t = -g_t y_t e1/D + f_t gb_{t+1},  f_t = e^{p_t + w - p_{t+1}}
        dL/dk_t += (ga_{t+1} v_t + gb_{t+1}) e^{k_t - p_{t+1}},  dL/dv_t += ga_{t+1} e^{k_t - p_{t+1}}
        dL/dw = sum_t (ga_{t+1} a_t + gb_{t+1} b_t) f_t,  w = -exp(time_decay)

    Gradients of the returned state are taken w.r.t. (A, B), the quantities the
    state stands for; the log-scale ``p`` only carries them (dL/dp_0 = ga_0 a_0 + gb_0 b_0).
    """

    @staticmethod
    def forward(ctx, time_decay, time_first, k, v, a, b, p):
        w = -torch.exp(time_decay)
        y, a_all, b_all, p_all, a_n, b_n, p_n = _wkv_forward_loop(w, time_first, k, v, a, b, p)
        ctx.save_for_backward(w, time_first, k, v, y, a_all, b_all, p_all, p_n)
        return y, a_n, b_n, p_n

    @staticmethod
    def backward(ctx, g_y, g_a, g_b, g_p):
        w, u, k, v, y, a_all, b_all, p_all, p_n = ctx.saved_tensors
        g_y = torch.zeros_like(y) if g_y is None else g_y
        q = torch.maximum(p_all, u + k)
        e1, e2 = torch.exp(p_all - q), torch.exp(u + k - q)
        gyd = g_y / (e1 * b_all + e2)  # g_t / D
        g_direct_k = gyd * e2 * (v - y)
        p_next = torch.cat([p_all[:, 1:], p_n[:, None]], 1)  # p_{t+1}
        f = torch.exp(p_all + w - p_next)
        ga0 = torch.zeros_like(p_n) if g_a is None else g_a
        gb0 = torch.zeros_like(p_n) if g_b is None else g_b
        ga_next, gb_next, ga, gb = _wkv_backward_loop(gyd * e1, -gyd * y * e1, f, ga0, gb0)
        ek = torch.exp(k - p_next)
        g_k = g_direct_k + (ga_next * v + gb_next) * ek
        g_v = gyd * e2 + ga_next * ek
        g_w = ((ga_next * a_all + gb_next * b_all) * f).sum((0, 1))
        g_u = g_direct_k.sum((0, 1))
        g_p0 = ga * a_all[:, 0] + gb * b_all[:, 0]
        return g_w * w, g_u, g_k, g_v, ga, gb, g_p0


def wkv(time_decay: Tensor, time_first: Tensor, k: Tensor, v: Tensor, a: Tensor, b: Tensor, p: Tensor):
    """Fast WKV with the values of :func:`wkv_scan` (one fused autograd node)."""
    return _WKV.apply(time_decay, time_first, k, v, a, b, p)


WKV_P_INIT = -1e30  # "minus infinity" for the WKV log-scale, finite for ONNX/fixed point


@contextmanager
def forward_pre_hooks(modules, hook):
    """``hook(module, args)`` as a forward pre-hook on every module inside a ``with`` block."""
    handles = [m.register_forward_pre_hook(hook) for m in modules]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _shift(x: Tensor, prev: Tensor) -> Tensor:
    """Token shift: (B, T, C) -> previous token's vector at each position."""
    return torch.cat([prev[:, None], x[:, :-1]], dim=1)


def _lif(cfg: ModelConfig, n: int) -> Neuron:
    lif = NEURON_CLASSES[cfg.neuron](
        n,
        mode=cfg.spike_mode,
        surrogate_name=cfg.surrogate,
        slope=cfg.surrogate_slope,
        threshold_init=cfg.threshold_init,
        beta_init=cfg.beta_init,
        amplitude_mode=cfg.amplitude_mode,
    )
    if cfg.fixed_point:
        lif.set_fixed_point(neuron_format(cfg.neuron, cfg.frac_bits))
    return lif


def _tlin(cfg: ModelConfig, d_in: int, d_out: int) -> TernaryLinear:
    return TernaryLinear(d_in, d_out, t=cfg.ttq_threshold, dead_lambda=cfg.ttq_deadzone_lambda)


class TimeMix(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        C = cfg.d_model
        ratio = layer / max(1, cfg.n_layers - 1)
        self.mu = nn.Parameter(torch.full((C,), 0.5))
        self.lif_in = _lif(cfg, C)
        self.key, self.value, self.receptance = (_tlin(cfg, C, C) for _ in range(3))
        # decay speeds spread over channels, slower in deeper layers (RWKV-4 habit)
        h = torch.arange(C, dtype=torch.float32) / max(1, C - 1)
        self.time_decay = nn.Parameter(-5.0 + 8.0 * h ** (0.7 + 1.3 * ratio))
        self.time_first = nn.Parameter(torch.full((C,), math.log(0.3)))
        self.lif_out = _lif(cfg, C)
        self.output = _tlin(cfg, C, C)

    def forward(self, x: Tensor, st: State, pre: str, aux: dict | None) -> tuple[Tensor, State]:
        # x: (B, T, C), already layer-normed
        new: State = {}
        xm = x * self.mu + _shift(x, st[pre + "tm_shift"]) * (1 - self.mu)  # (B, T, C)
        new[pre + "tm_shift"] = x[:, -1]
        h, s_in, new[pre + "tm.lif_in.mem"] = self.lif_in(xm, st[pre + "tm.lif_in.mem"])
        k, v = self.key(h), self.value(h)  # (B, T, C)
        r = torch.sigmoid(self.receptance(h))
        wdt = torch.promote_types(k.dtype, torch.float32)  # at least fp32, never downcast fp64
        wkv_out, a, b, p = wkv(
            self.time_decay, self.time_first, k.to(wdt), v.to(wdt),
            st[pre + "wkv_a"], st[pre + "wkv_b"], st[pre + "wkv_p"],
        )
        new[pre + "wkv_a"], new[pre + "wkv_b"], new[pre + "wkv_p"] = a, b, p
        y, s_out, new[pre + "tm.lif_out.mem"] = self.lif_out(r * wkv_out.to(r.dtype), st[pre + "tm.lif_out.mem"])
        if aux is not None:
            aux[pre + "tm.lif_in"], aux[pre + "tm.lif_out"] = s_in, s_out
        return self.output(y), new


class ChannelMix(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        C, Fh = cfg.d_model, cfg.d_ffn
        self.mu = nn.Parameter(torch.full((C,), 0.5))
        self.lif_in = _lif(cfg, C)
        self.key = _tlin(cfg, C, Fh)
        self.lif_hid = _lif(cfg, Fh)
        self.value = _tlin(cfg, Fh, C)
        self.receptance = _tlin(cfg, C, C)

    def forward(self, x: Tensor, st: State, pre: str, aux: dict | None) -> tuple[Tensor, State]:
        new: State = {}
        xm = x * self.mu + _shift(x, st[pre + "cm_shift"]) * (1 - self.mu)  # (B, T, C)
        new[pre + "cm_shift"] = x[:, -1]
        h, s_in, new[pre + "cm.lif_in.mem"] = self.lif_in(xm, st[pre + "cm.lif_in.mem"])
        k = torch.square(torch.relu(self.key(h)))  # (B, T, F)
        hk, s_hid, new[pre + "cm.lif_hid.mem"] = self.lif_hid(k, st[pre + "cm.lif_hid.mem"])
        r = torch.sigmoid(self.receptance(h))  # (B, T, C)
        if aux is not None:
            aux[pre + "cm.lif_in"], aux[pre + "cm.lif_hid"] = s_in, s_hid
        return r * self.value(hk), new


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.ln2 = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.tm = TimeMix(cfg, layer)
        self.cm = ChannelMix(cfg)

    def forward(self, x: Tensor, st: State, pre: str, aux: dict | None) -> tuple[Tensor, State]:
        dx, new = self.tm(self.ln1(x), st, pre, aux)
        x = x + dx
        dx, new2 = self.cm(self.ln2(x), st, pre, aux)
        return x + dx, {**new, **new2}


@dataclass
class GooseOutput:
    """Everything one call computes. ``hidden``: residual stream after each block
    (list of (B, T, C)); ``spikes``: name -> (B, T, n) spike values in {-1,0,1}
    (or the dense activation in mode ``none``), keyed by the population's name, which is its
    module path and its IR node name (``L0.tm.lif_in``). Both filled only when asked."""

    logits: Tensor  # (B, T, V)
    state: State
    hidden: list[Tensor] = field(default_factory=list)
    spikes: dict[str, Tensor] = field(default_factory=dict)


class ASNNGoose(nn.Module):
    """The student. ``forward(tokens (B, T) int64, state=None) -> (logits (B, T, V), state)``."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        nn.init.normal_(self.emb.weight, std=0.02)
        self.ln0 = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layers))
        self.ln_out = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        if cfg.quantize_head:
            self.head: nn.Module = _tlin(cfg, cfg.d_model, cfg.vocab_size)
        else:
            self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
            nn.init.normal_(self.head.weight, std=cfg.d_model**-0.5)
            if cfg.tie_embeddings:
                self.head.weight = self.emb.weight

    # -- state ---------------------------------------------------------------
    def state_spec(self) -> dict[str, int]:
        """Name -> width of every recurrent state tensor (each is (B, width))."""
        spiking = self.cfg.spike_mode != "none"
        k = 2 if spiking and self.cfg.neuron == "ternary_lif" else 1  # [v, u] per TernaryLIF neuron
        C, Fh, spec = self.cfg.d_model, self.cfg.d_ffn, {}
        for i in range(self.cfg.n_layers):
            pre = f"L{i}."
            spec[pre + "tm_shift"] = C
            if spiking:
                spec[pre + "tm.lif_in.mem"] = k * C
            spec[pre + "wkv_a"] = C
            spec[pre + "wkv_b"] = C
            spec[pre + "wkv_p"] = C
            if spiking:
                spec[pre + "tm.lif_out.mem"] = k * C
            spec[pre + "cm_shift"] = C
            if spiking:
                spec[pre + "cm.lif_in.mem"] = k * C
                spec[pre + "cm.lif_hid.mem"] = k * Fh
        return spec

    def init_state(self, batch: int, device=None, dtype=torch.float32) -> State:
        st = {n: torch.zeros(batch, w, device=device, dtype=dtype) for n, w in self.state_spec().items()}
        for n in st:
            if n.endswith("wkv_p"):
                st[n] = torch.full_like(st[n], WKV_P_INIT)
        return st

    # -- forward ---------------------------------------------------------------
    def run(self, tokens: Tensor, state: State | None = None, collect: bool = False) -> GooseOutput:
        """Full forward. With ``collect`` also returns hidden states and spikes."""
        B, T = tokens.shape
        if state is None:
            state = self.init_state(B, tokens.device, self.emb.weight.dtype)
        missing = set(self.state_spec()) - set(state)
        if missing:
            raise ValueError(f"state is missing {sorted(missing)[:3]}...")
        if self.cfg.spike_mode == "none":  # membranes unused; placeholders keep the block code uniform
            state = {**state, **{f"{n}.mem": state.get(f"{n}.mem") for n in self.populations()}}
        aux: dict | None = {} if collect else None
        x = self.ln0(self.emb(tokens))  # (B, T, C)
        new_state: State = {}
        hidden = []
        for i, block in enumerate(self.blocks):
            x, st_i = block(x, state, f"L{i}.", aux)
            new_state.update(st_i)
            if collect:
                hidden.append(x)
        logits = self.head(self.ln_out(x))  # (B, T, V)
        spec = self.state_spec()
        new_state = {n: new_state[n] for n in spec}
        return GooseOutput(logits, new_state, hidden, aux or {})

    def forward(self, tokens: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        out = self.run(tokens, state)
        return out.logits, out.state

    # -- utilities ---------------------------------------------------------------
    def ternary_layers(self) -> dict[str, TernaryLinear]:
        return {n: m for n, m in self.named_modules() if isinstance(m, TernaryLinear)}

    def freeze_ternary(self, on: bool = True) -> "ASNNGoose":
        """Cache quantized weights for fast inference (see TernaryLinear.freeze)."""
        for m in self.ternary_layers().values():
            m.freeze(on)
        return self

    def populations(self) -> dict[str, Neuron]:
        """Spiking populations by name: the module path, which is also the IR node name and the key of
        ``run(collect=True).spikes``; the neuron state is ``<name>.mem`` (``L{i}.tm.lif_in`` ...
        ``L{i}.cm.lif_hid``)."""
        out = {}
        for i, b in enumerate(self.blocks):
            for part, names in (("tm", ("lif_in", "lif_out")), ("cm", ("lif_in", "lif_hid"))):
                for n in names:
                    out[f"L{i}.{part}.{n}"] = getattr(getattr(b, part), n)
        return out

    def set_fixed_point(self, fmt: NeuronFormat | None) -> "ASNNGoose":
        """Run every population with the integer neuron of ``fmt`` (``None``: float neurons).
        A model built with ``cfg.fixed_point`` already runs its own format; this switches a float
        model to its deployed arithmetic (post-training quantization) or back."""
        for m in self.populations().values():
            m.set_fixed_point(fmt)
        return self

    def deployed_format(self, frac_bits: int | None = None) -> NeuronFormat:
        """The integer neuron format this model deploys with: its own when trained in fixed point
        (``frac_bits`` must then agree), else the post-training format for ``frac_bits``."""
        cfg = self.cfg
        if cfg.fixed_point and frac_bits not in (None, cfg.frac_bits):
            raise ConfigError(f"this model was trained with fixed-point neurons at frac_bits={cfg.frac_bits}; "
                              f"it cannot be deployed with frac_bits={frac_bits}")
        return neuron_format(cfg.neuron, cfg.frac_bits if frac_bits is None else frac_bits)

    def num_params(self) -> int:
        return sum(p.numel() for p in {id(p): p for p in self.parameters()}.values())
