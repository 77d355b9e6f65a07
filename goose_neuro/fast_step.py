"""One-token decode step of an ASNN-Goose student, without the sequence-mode machinery.

Sequence mode (``ASNNGoose.forward``) at T=1 pays for what only long sequences need: an
autograd node and a scripted token loop per population and per WKV, three separate k/v/r
products, state dictionaries rebuilt per block. :class:`FastStep` runs the same
equations on (B, C) rows with fused weights::

    step = FastStep(model)                       # fuses weights once, finds the state layout
    state = step.init_state(batch)               # the model's own state dict (same names)
    logits, state = step(tokens, state)          # tokens (B,) int64 -> logits (B, V)

Per block: one product for time-mix k|v|r, one for channel-mix key|receptance; the WKV
update on (B, C); every spiking population through its own ``step(x (B, n), mem) ->
(out, spikes, new_mem)`` method (:meth:`goose_neuro.neurons.SpikeLIF.step`), so other
neuron classes take part by implementing that method. Logits and state equal sequence
mode (a float64 test checks every spike mode).

The head follows the model's head options (a population before it, a factorised head), and a
spike-fed head is an event-driven synapse like the others.

Which state entry belongs to which population or mixer is not spelled out here: it is
read off the model itself by one probe call of sequence mode (see :func:`state_layout`),
so this path follows whatever names ``ASNNGoose.state_spec`` uses.

Event-driven synapses: on CPU, a projection of at least ``SPARSE_MIN_WEIGHTS`` weights whose
input (a population's output) has fewer than ``SPARSE_MAX_DENSITY`` x width nonzeros in the
whole batch reads only the weight rows of the inputs that spiked (:func:`synapse`), so the
step's cost follows the spike activity, as on neuromorphic hardware; denser inputs take the
dense product.

Weights are fused when the step is built and rebuilt automatically when a parameter of
the model changes (checked per call from tensor versions and storages). Runs on the
model's device (CPU or CUDA; the CUDA path is untested here). ``compile=True`` wraps the
step in ``torch.compile`` (needs a C++ compiler on CPU; the first calls compile).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from goose_neuro.errors import ConfigError

State = dict[str, Tensor]


@dataclass(frozen=True)
class MixerKeys:
    """State entries of one mixer: its token-shift entry, its populations' membranes
    (by population module id; empty in spike mode ``none``) and, for a time-mix, the WKV
    (a, b, p) entries."""

    shift: str
    mems: dict[int, str]
    wkv: tuple[str, str, str] | None = None


class StateLayout(list):
    """(time-mix keys, channel-mix keys) per block (a list), and ``head``: the state entry of the head's
    population (``head_input='spike'``; None for a dense head or spike mode ``none``)."""

    head: str | None = None


def state_layout(model) -> StateLayout:
    """(time-mix keys, channel-mix keys) per block, read off one sequence-mode call.

    A probe state (batch 1) runs one token through ``model.run`` with hooks on every
    population and mixer: a population's membrane entry is the state tensor it receives;
    a mixer's entries are the keys of the new-state dict it returns; among those, the
    token-shift entry is the one that is a view of the mixer's input, and the WKV
    entries are the rest in the order the mixer writes them (a, b, p; ``p`` must be the
    entry that starts at ``WKV_P_INIT``).
    """
    from goose_neuro.model import WKV_P_INIT

    p0 = next(model.parameters())
    probe = model.init_state(1, p0.device, p0.dtype)
    by_id = {id(v): k for k, v in probe.items()}
    mem_of: dict[int, str] = {}
    owned: dict[int, tuple[Tensor, list[tuple[str, Tensor]]]] = {}

    def pop_hook(mod, args):
        if len(args) > 1 and args[1] is not None and id(args[1]) in by_id:
            mem_of[id(mod)] = by_id[id(args[1])]

    def mixer_hook(mod, args, out):
        owned[id(mod)] = (args[0], [(k, v) for k, v in out[1].items() if k in probe])

    handles = [p.register_forward_pre_hook(pop_hook) for p in model.populations().values()]
    for b in model.blocks:
        handles += [b.tm.register_forward_hook(mixer_hook), b.cm.register_forward_hook(mixer_hook)]
    try:
        with torch.no_grad():
            model.run(torch.zeros(1, 1, dtype=torch.long, device=p0.device), probe)
    finally:
        for h in handles:
            h.remove()

    def keys_of(mixer: nn.Module, pops: list[nn.Module], wkv: bool) -> MixerKeys:
        x, entries = owned[id(mixer)]
        mems = {id(p): mem_of[id(p)] for p in pops if id(p) in mem_of}
        rest = [(k, v) for k, v in entries if k not in mems.values()]
        shift = [k for k, v in rest if v.data_ptr() == x[:, -1].data_ptr() and v.shape == x[:, -1].shape]
        others = tuple(k for k, _ in rest if k not in shift)
        if len(shift) != 1 or len(others) != (3 if wkv else 0) or (wkv and not bool((probe[others[2]] == WKV_P_INIT).all())):
            raise ConfigError(f"fast step: cannot map the state entries {[k for k, _ in entries]} of a "
                              f"{type(mixer).__name__} (is this an ASNNGoose?)")
        return MixerKeys(shift[0], mems, others if wkv else None)

    layout = StateLayout()
    for b in model.blocks:
        layout.append((keys_of(b.tm, [b.tm.lif_in, b.tm.lif_out], True),
                       keys_of(b.cm, [b.cm.lif_in, b.cm.lif_hid], False)))
    head_lif = getattr(model, "head_lif", None)
    layout.head = mem_of.get(id(head_lif)) if head_lif is not None else None
    covered = {k for tm, cm in layout for mk in (tm, cm) for k in (mk.shift, *mk.mems.values(), *(mk.wkv or ()))}
    covered |= {layout.head} - {None}
    if covered != set(probe):
        raise ConfigError(f"fast step: state entries {sorted(set(probe) - covered)[:3]} are not used by any mixer")
    return layout


def _wkv_step(w: Tensor, u: Tensor, k: Tensor, v: Tensor, a: Tensor, b: Tensor, p: Tensor):
    """One token of RWKV-4's stable WKV (the T=1 case of ``goose_neuro.model.wkv_scan``).
    k, v, a, b, p: (B, C); w = -exp(time_decay), u = time_first: (C,). Returns (y, a, b, p)."""
    ww = u + k
    q = torch.maximum(p, ww)
    e1, e2 = torch.exp(p - q), torch.exp(ww - q)
    y = torch.addcmul(e2 * v, e1, a) / torch.addcmul(e2, e1, b)
    ww = p + w
    q = torch.maximum(ww, k)
    e1, e2 = torch.exp(ww - q), torch.exp(k - q)
    return y, torch.addcmul(e2 * v, e1, a), torch.addcmul(e2, e1, b), q


wkv_step = _wkv_step
try:  # TorchScript trims the per-op overhead of this small function; the plain one is identical
    wkv_step = torch.jit.script(_wkv_step)
except Exception:  # pragma: no cover
    pass


def _weight(lin: nn.Module) -> Tensor:
    """The (out, in) matrix a projection multiplies by (TTQ-quantized for ternary layers)."""
    w = lin.quantized_weight() if hasattr(lin, "quantized_weight") else lin.weight
    return w.detach()


def _rhs(*lins: nn.Module, dtype: torch.dtype) -> Tensor:
    """The projections' matrices side by side, transposed: x (B, in) @ result = (B, sum of outs).
    A contiguous (in, out) operand is the fastest product at batch 1-8 on CPU."""
    return torch.cat([_weight(lin) for lin in lins]).to(dtype).t().contiguous()


class _StaleLayout(Exception):
    """A population holds a membrane the layout does not know (it was replaced after the layout was read)."""


SPARSE_MIN_WEIGHTS = 1 << 18  # matrices smaller than this (1 MB in float32) are always multiplied densely
SPARSE_MAX_DENSITY = 0.3  # event-driven product when nonzero inputs < this fraction of the input width


def synapse(x: Tensor, w_t: Tensor, event_driven: bool) -> Tensor:
    """x (B, K) @ w_t (K, N). With ``event_driven`` and few nonzero inputs (spikes), only the
    weight rows of the inputs that fired are read: ``embedding_bag`` sums them, weighted by
    the input values, per batch row. Same sums as the dense product, in another order."""
    if event_driven:
        rows, cols = x.nonzero(as_tuple=True)  # sorted by row
        if rows.numel() < SPARSE_MAX_DENSITY * x.shape[1]:
            offsets = torch.searchsorted(rows, torch.arange(x.shape[0], device=x.device))
            return F.embedding_bag(cols, w_t, offsets, mode="sum", per_sample_weights=x[rows, cols])
    return torch.mm(x, w_t)


class FastStep:
    """Decode step for ``model`` (an ``ASNNGoose``): ``step(tokens (B,), state) -> (logits (B, V), state)``.

    ``state`` is the model's own state dict (``model.init_state``); it is not modified in
    place. Inference only: runs under ``torch.no_grad()``."""

    def __init__(self, model, compile: bool = False) -> None:
        self.model = model
        self.layout = state_layout(model)
        self.keys = list(model.state_spec())
        self._sig = None
        self.compiled = compile
        self._prepare()
        self._wkv = wkv_step
        self._core = self._step
        if compile:
            self._wkv = _wkv_step  # the compiler traces Python, not TorchScript
            self._core = torch.compile(self._step, dynamic=False)

    # -- weights -------------------------------------------------------------------
    def _signature(self) -> tuple:
        """Changes when any parameter is updated in place (versions only grow) or the model
        is moved or converted (new storage)."""
        w = self.model.emb.weight
        return sum(p._version for p in self._params), w.data_ptr(), w.dtype

    @torch.no_grad()
    def _prepare(self) -> None:
        m = self.model
        self._params = list(m.parameters())
        self.dtype = m.emb.weight.dtype
        self.device = m.emb.weight.device
        wdt = torch.promote_types(self.dtype, torch.float32)  # WKV in at least float32, as in sequence mode
        self.blocks = []
        for blk in m.blocks:
            tm, cm = blk.tm, blk.cm
            self.blocks.append({
                "tm_mu": tm.mu.detach(), "tm_1mu": (1 - tm.mu).detach(),
                "tm_kvr": _rhs(tm.key, tm.value, tm.receptance, dtype=self.dtype),
                "w": (-torch.exp(tm.time_decay)).to(wdt), "u": tm.time_first.detach().to(wdt),
                "tm_out": _rhs(tm.output, dtype=self.dtype),
                "cm_mu": cm.mu.detach(), "cm_1mu": (1 - cm.mu).detach(),
                "cm_kr": _rhs(cm.key, cm.receptance, dtype=self.dtype),
                "cm_v": _rhs(cm.value, dtype=self.dtype),
                "F": _weight(cm.key).shape[0],
            })
        self.head = _rhs(m.head, dtype=self.dtype)
        self.head_down = _rhs(m.head_down, dtype=self.dtype) if m.cfg.head_rank else None
        eligible = self.device.type == "cpu" and not self.compiled  # data-dependent shapes: eager CPU only
        self.event = {k: eligible and self.blocks[0][k].numel() >= SPARSE_MIN_WEIGHTS
                      for k in ("tm_kvr", "tm_out", "cm_kr", "cm_v")} if self.blocks else {}
        # a head fed by spikes (and not factorised) reads only the weight rows of the inputs that fired
        self.event["head"] = (eligible and m.cfg.head_input == "spike" and m.cfg.spike_mode != "none"
                              and not m.cfg.head_rank and self.head.numel() >= SPARSE_MIN_WEIGHTS)
        self._sig = self._signature()

    # -- step -------------------------------------------------------------------------
    def init_state(self, batch: int) -> State:
        """The model's initial state for ``batch`` sequences, on its device and in its dtype."""
        self._refresh()
        return self.model.init_state(batch, self.device, self.dtype)

    def _refresh(self) -> None:
        if self._signature() != self._sig:
            self._prepare()

    def __call__(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        if tokens.dim() != 1:
            raise ConfigError(f"fast step takes tokens of shape (B,), got {tuple(tokens.shape)}")
        self._refresh()
        with torch.no_grad():
            try:
                return self._core(tokens.to(self.device), state)
            except _StaleLayout:  # a population was replaced since the layout was read: read it again
                self.layout = state_layout(self.model)
                self._prepare()
                return self._core(tokens.to(self.device), state)

    def _step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        m = self.model
        new: State = {}

        def fire(pop: nn.Module, keys: MixerKeys, x: Tensor) -> Tensor:
            """Run one population's step on its membrane entry (none in spike mode ``none``)."""
            key = keys.mems.get(id(pop))
            if key is None and keys.mems:  # this mixer's populations hold membranes, this one is unknown
                raise _StaleLayout
            out, _, mem = pop.step(x, None if key is None else state[key])
            if key is not None:
                new[key] = mem
            return out

        def ln(mod: nn.LayerNorm, x: Tensor) -> Tensor:
            return F.layer_norm(x, mod.normalized_shape, mod.weight, mod.bias, mod.eps)

        x = ln(m.ln0, F.embedding(tokens, m.emb.weight))  # (B, C)
        C = x.shape[-1]
        for blk, pw, (tk, ck) in zip(m.blocks, self.blocks, self.layout):
            tm, cm = blk.tm, blk.cm
            # time-mix: shift-mix, spikes, k|v|r in one product, WKV, spikes, output projection
            h = ln(blk.ln1, x)
            new[tk.shift] = h
            s = fire(tm.lif_in, tk, torch.addcmul(h * pw["tm_mu"], state[tk.shift], pw["tm_1mu"]))  # (B, C)
            k, v, r = synapse(s, pw["tm_kvr"], self.event["tm_kvr"]).split(C, dim=-1)  # (B, C) each
            ka, kb, kp = tk.wkv
            if k.dtype != pw["w"].dtype:
                k, v = k.to(pw["w"].dtype), v.to(pw["w"].dtype)
            y, new[ka], new[kb], new[kp] = self._wkv(pw["w"], pw["u"], k, v, state[ka], state[kb], state[kp])
            s = fire(tm.lif_out, tk, torch.sigmoid(r) * (y if y.dtype == r.dtype else y.to(r.dtype)))
            x = x + synapse(s, pw["tm_out"], self.event["tm_out"])
            # channel-mix: shift-mix, spikes, key|receptance in one product, relu^2, spikes, value
            h = ln(blk.ln2, x)
            new[ck.shift] = h
            s = fire(cm.lif_in, ck, torch.addcmul(h * pw["cm_mu"], state[ck.shift], pw["cm_1mu"]))
            kk, r = synapse(s, pw["cm_kr"], self.event["cm_kr"]).split([pw["F"], C], dim=-1)  # (B, F), (B, C)
            s = fire(cm.lif_hid, ck, torch.relu(kk).square_())
            x = x + torch.sigmoid(r) * synapse(s, pw["cm_v"], self.event["cm_v"])
        h = ln(m.ln_out, x)  # (B, C)
        if m.cfg.head_input == "spike":  # the head's population, then the head reads its spikes
            key = self.layout.head
            if key is None and m.cfg.spike_mode != "none":
                raise _StaleLayout
            h, _, mem = m.head_lif.step(h, None if key is None else state[key])
            if key is not None:
                new[key] = mem
        if self.head_down is not None:
            h = torch.mm(h, self.head_down)  # (B, r)
        logits = synapse(h, self.head, self.event["head"])  # (B, V)
        return logits, {k: new[k] for k in self.keys}
