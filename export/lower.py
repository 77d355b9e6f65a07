"""Lowering: an :class:`~goose_neuro.model.ASNNGoose` (or checkpoint) -> deployment IR, with TTQ folding.

The walk is explicit: every child module the model has must be one this file
knows, else :class:`ExportError` names it (nothing is skipped).

TTQ folding. A frozen ternary layer computes ``y = Wq @ (a * s)`` with unit
spikes ``s``, spike amplitude ``a`` and ``Wq[i, j] = Wp_i [S_ij = 1] - Wn_i [S_ij = -1]``.
With a shared (scalar) amplitude this is exactly::

    y_i = (a Wp_i) * sum_{j: S_ij = +1} s_j - (a Wn_i) * sum_{j: S_ij = -1} s_j

so the synapse is two accumulations over integer {0,1} masks (``split``), or one
over the sign matrix S when ``Wp_i == Wn_i`` for every row (``sign``), followed by
one multiply per output channel. Both forms are exact rearrangements of the same
sum (equal up to float summation order). Per-channel amplitudes
(``amplitude_mode='channel'``) cannot leave the sum: they become a
:class:`~goose_neuro.export.ir.Scale` node and the synapse is marked ``graded``.
Spike mode ``none`` has no LIF nodes and marks synapses ``dense``.

Node names follow the module paths: ``emb``, ``ln0``, ``L{i}.ln1``,
``L{i}.tm.{shift,lif_in,key,value,receptance,r_sig,wkv,rwkv,lif_out,output}``,
``L{i}.add_tm``, ``L{i}.ln2``,
``L{i}.cm.{shift,lif_in,key,relu2,lif_hid,value,receptance,r_sig,gate}``,
``L{i}.add_cm``, ``ln_out``, ``head``, ``logits``; the token input is ``tokens``.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from goose_neuro.errors import ExportError
from goose_neuro.export.ir import (
    LIF, WKV, Add, Dense, Embedding, Graph, LayerNorm, Mul, Node, Output, ReLUSquare, Scale,
    ShiftMix, Sigmoid, StateSpec, TernaryDense, TokenInput)
from goose_neuro.model import WKV_P_INIT, ASNNGoose, Block, ChannelMix, TimeMix
from goose_neuro.neurons import SpikeLIF, TernaryLIFNeuron
from goose_neuro.ternary import TernaryLinear

EXPORT_VERSION = "2"  # 2: one name per spiking population (membrane state "<node>.mem")
_NEURONS = (SpikeLIF, TernaryLIFNeuron)


def _np(t: torch.Tensor) -> np.ndarray:
    """Parameter -> numpy in its own precision (float32 normally; float64 for a .double() model)."""
    return t.detach().to("cpu").numpy().copy()


def _expect_children(mod: nn.Module, path: str, expected: dict[str, type | tuple]) -> None:
    """Raise ExportError for any child module not in ``expected`` or of the wrong type."""
    for name, child in mod.named_children():
        full = f"{path}.{name}" if path else name
        want = expected.get(name)
        if want is None:
            raise ExportError(f"module {full!r} ({type(child).__name__}): not known to the lowering")
        if type(child) not in (want if isinstance(want, tuple) else (want,)):
            raise ExportError(f"module {full!r}: expected {want}, found {type(child).__name__}")
    missing = sorted(set(expected) - {n for n, _ in mod.named_children()})
    if missing:
        raise ExportError(f"module {path or 'model'!r}: missing child module(s) {missing}")


class _Builder:
    """Appends nodes in topological order and tracks the spike amplitude feeding each synapse."""

    def __init__(self, model: ASNNGoose) -> None:
        self.model, self.cfg = model, model.cfg
        self.nodes: dict[str, Node] = {}

    def add(self, name: str, node: Node) -> str:
        if name in self.nodes:
            raise ExportError(f"node {name!r}: defined twice")
        self.nodes[name] = node
        return name

    # -- spiking population + its synapses --------------------------------------
    def spikes(self, name: str, lif: SpikeLIF | TernaryLIFNeuron, src: str) -> tuple[str, np.ndarray | None, str]:
        """LIF node ``name`` (if spiking), state ``name.mem``.
        Returns (output node, amplitude to fold or None, input_kind)."""
        if lif.mode == "none":
            return src, None, "dense"
        n = lif.n
        extra = {}
        if lif.kind == "ternary_lif":  # one decay pair per population, repeated per channel
            extra["beta_u"] = np.repeat(_np(lif.beta_u), n)
        fmt = lif.fixed_format
        out = self.add(name, LIF(inputs=(src,), beta=np.broadcast_to(_np(lif.beta), (n,)).copy(),
                                 threshold=_np(lif.th), mode=lif.mode, state=name + ".mem",
                                 neuron=lif.kind, fixed=fmt.to_dict() if fmt is not None else {}, **extra))
        amp = _np(lif.amplitude)  # (1,) shared or (n,) per channel
        if amp.shape[0] == 1:
            return out, amp, "spike"
        return self.add(name + "_amp", Scale(inputs=(out,), scale=amp)), None, "graded"

    def synapse(self, name: str, lin: nn.Module, src: str, amp: np.ndarray | None, kind: str) -> str:
        """TernaryDense with the amplitude folded into the per-output scales."""
        if type(lin) is not TernaryLinear:
            raise ExportError(f"module {name!r} ({type(lin).__name__}): expected TernaryLinear")
        sign, wp, wn = (t.detach().cpu() for t in lin.ternary_parts())
        a = torch.from_numpy(amp[:1]) if amp is not None else torch.ones(1, dtype=wp.dtype)
        # one rounding per product, as in the model's own (a * s) * Wp
        sp, sn = (wp * a).numpy(), (wn * a).numpy()
        enc = "sign" if np.array_equal(sp, sn) else "split"
        return self.add(name, TernaryDense(inputs=(src,), encoding=enc, sign=sign.numpy().astype(np.int8),
                                           scale_pos=sp, scale_neg=sn, input_kind=kind))

    def layer_norm(self, name: str, ln: nn.LayerNorm, src: str) -> str:
        if ln.weight is None or ln.bias is None:
            raise ExportError(f"module {name!r}: LayerNorm without affine weight/bias is not supported")
        return self.add(name, LayerNorm(inputs=(src,), weight=_np(ln.weight), bias=_np(ln.bias), eps=float(ln.eps)))

    # -- blocks ----------------------------------------------------------------------
    def time_mix(self, p: str, tm: TimeMix, src: str) -> str:
        _expect_children(tm, p + "tm", {"lif_in": _NEURONS, "key": TernaryLinear, "value": TernaryLinear,
                                         "receptance": TernaryLinear, "lif_out": _NEURONS, "output": TernaryLinear})
        q = p + "tm."
        x = self.add(q + "shift", ShiftMix(inputs=(src,), mu=_np(tm.mu), state=p + "tm_shift"))
        s, amp, kind = self.spikes(q + "lif_in", tm.lif_in, x)
        k = self.synapse(q + "key", tm.key, s, amp, kind)  # (B, C)
        v = self.synapse(q + "value", tm.value, s, amp, kind)
        r = self.synapse(q + "receptance", tm.receptance, s, amp, kind)
        r = self.add(q + "r_sig", Sigmoid(inputs=(r,)))
        w = self.add(q + "wkv", WKV(inputs=(k, v), time_decay=_np(tm.time_decay), time_first=_np(tm.time_first),
                                    state_a=p + "wkv_a", state_b=p + "wkv_b", state_p=p + "wkv_p"))
        y = self.add(q + "rwkv", Mul(inputs=(r, w)))
        s2, amp2, kind2 = self.spikes(q + "lif_out", tm.lif_out, y)
        return self.synapse(q + "output", tm.output, s2, amp2, kind2)

    def channel_mix(self, p: str, cm: ChannelMix, src: str) -> str:
        _expect_children(cm, p + "cm", {"lif_in": _NEURONS, "key": TernaryLinear, "lif_hid": _NEURONS,
                                         "value": TernaryLinear, "receptance": TernaryLinear})
        q = p + "cm."
        x = self.add(q + "shift", ShiftMix(inputs=(src,), mu=_np(cm.mu), state=p + "cm_shift"))
        s, amp, kind = self.spikes(q + "lif_in", cm.lif_in, x)
        k = self.synapse(q + "key", cm.key, s, amp, kind)  # (B, F)
        k = self.add(q + "relu2", ReLUSquare(inputs=(k,)))
        h, amp_h, kind_h = self.spikes(q + "lif_hid", cm.lif_hid, k)
        v = self.synapse(q + "value", cm.value, h, amp_h, kind_h)  # (B, C)
        r = self.synapse(q + "receptance", cm.receptance, s, amp, kind)
        r = self.add(q + "r_sig", Sigmoid(inputs=(r,)))
        return self.add(q + "gate", Mul(inputs=(r, v)))

    def block(self, i: int, blk: Block, x: str) -> str:
        p = f"L{i}."
        _expect_children(blk, f"blocks.{i}", {"ln1": nn.LayerNorm, "ln2": nn.LayerNorm, "tm": TimeMix, "cm": ChannelMix})
        dx = self.time_mix(p, blk.tm, self.layer_norm(p + "ln1", blk.ln1, x))
        x = self.add(p + "add_tm", Add(inputs=(x, dx)))
        dx = self.channel_mix(p, blk.cm, self.layer_norm(p + "ln2", blk.ln2, x))
        return self.add(p + "add_cm", Add(inputs=(x, dx)))

    def head(self, x: str) -> str:
        head = self.model.head
        if type(head) is TernaryLinear:
            return self.synapse("head", head, x, None, "dense")
        if type(head) is nn.Linear and head.bias is None:
            tied = "emb" if head.weight is self.model.emb.weight else ""
            w = self.nodes["emb"].weight if tied else _np(head.weight)
            return self.add("head", Dense(inputs=(x,), weight=w, tied_to=tied))
        raise ExportError(f"module 'head' ({type(head).__name__}): expected bias-free Linear or TernaryLinear")


def lower(model: ASNNGoose, meta: dict | None = None) -> Graph:
    """Lower a student model to a validated, TTQ-folded :class:`Graph`.

    ``graph.states`` has exactly ``model.state_spec()``'s names and widths.
    """
    if not isinstance(model, ASNNGoose):
        raise ExportError(f"cannot lower {type(model).__name__}: expected ASNNGoose")
    top = {"emb": nn.Embedding, "ln0": nn.LayerNorm, "blocks": nn.ModuleList, "ln_out": nn.LayerNorm,
           "head": (nn.Linear, TernaryLinear)}
    _expect_children(model, "", top)
    cfg = model.cfg
    b = _Builder(model)
    with torch.no_grad():
        x = b.add("tokens", TokenInput(vocab_size=cfg.vocab_size))
        x = b.add("emb", Embedding(inputs=(x,), weight=_np(model.emb.weight)))
        x = b.layer_norm("ln0", model.ln0, x)
        for i, blk in enumerate(model.blocks):
            if type(blk) is not Block:
                raise ExportError(f"module 'blocks.{i}' ({type(blk).__name__}): expected Block")
            x = b.block(i, blk, x)
        x = b.layer_norm("ln_out", model.ln_out, x)
        x = b.head(x)
        b.add("logits", Output(inputs=(x,)))
    states = {n: StateSpec(w, WKV_P_INIT if n.endswith("wkv_p") else 0.0) for n, w in model.state_spec().items()}
    info = {"model_config": cfg.to_dict(), "export_version": EXPORT_VERSION, **(meta or {})}
    return Graph(nodes=b.nodes, states=states, meta=info).validate()


def lower_checkpoint(directory: str | os.PathLike) -> tuple[Graph, dict]:
    """Load a checkpoint directory and lower it. Returns (graph, checkpoint info)."""
    from goose_neuro.checkpoint import load_checkpoint

    model, info = load_checkpoint(directory)
    meta = {"tokenizer": info.get("tokenizer"), "checkpoint": str(directory)}
    return lower(model, meta), info
