"""ONNX step graph from the deployment IR (one mapping per IR node type).

The exported model computes ONE token step for a batch of sequences::

    inputs : tokens (batch,) int64, and one (batch, width) float32 tensor per state, named as
             ASNNGoose.state_spec() (e.g. "L0.tm_shift", "L0.wkv_p")
    outputs: logits (batch, vocab) float32, and "<state>.next" for every state

The host loops over tokens, feeding each step's ``*.next`` outputs back as the next
step's state inputs (initial values in the sidecar: 0, except ``wkv_p`` = WKV_P_INIT).

Variants
--------
``float``: every TernaryDense becomes one float MatMul with ``W = scale_pos*P - scale_neg*N``
    (exactly the folded integer synapse, evaluated in float32).
``int``: TernaryDense nodes fed by unit spikes run as ``MatMulInteger`` on the integer
    weights; spikes are shifted to uint8 (``s + 1`` with zero point 1 for ternary
    spikes, because ONNX Runtime's CPU kernel is fast for uint8 x int8 and very slow for
    int8 x int8); the int32 sums are cast to float and scaled per output channel
    afterwards: ``y = scale_pos * acc_P - scale_neg * acc_N``. Graded/dense synapses stay float.

Shipped default: ``int``. Measured with benchmarks/onnx_speed.py (1 thread, a shared and
heavily loaded 2-core machine, three runs), the integer step took 0.56-0.73x the float step's
time for ``gpt2-50m`` (batch 1 and 8: a quarter of the synapse weight bytes) and 0.83-1.04x for
``small`` (one outlier run at batch 1: 2.0x), so it is faster or level; both pass the parity
checks, and on a trained checkpoint the integer variant matched PyTorch more closely. ``float`` remains
available (``--variant float``). A uint8 x int8 MatMulInteger of 512x1536 took 0.14 ms at
batch 1 where int8 x int8 took 6.3 ms, hence the shifted uint8 spikes.

Synapses that read the same tensor (k/v/r of a time-mix, key/receptance of a
channel-mix) are fused into one matrix product and split afterwards.

Optional prefill model (``prefill.onnx``): an ONNX ``Scan`` whose body is the same step
graph, taking tokens (batch, time) and returning logits (batch, time, V) and the states
after the last token, so a prompt runs in one call and then continues with the step model.

Files written by :func:`export_onnx` (atomically, into OUT/): ``model.onnx``,
``model.json`` (the sidecar, see :func:`sidecar`), the tokenizer files found in the
checkpoint directory (``tokenizer.json`` ...) and, when asked, ``prefill.onnx``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from goose_neuro.errors import ExportError
from goose_neuro.export.ir import NODE_TYPES, Graph, Node, TernaryDense

from goose_neuro.export.ort_runner import SIDECAR, SIDECAR_FORMAT

OPSET = 18
MODEL_FILE = "model.onnx"
PREFILL_FILE = "prefill.onnx"
SIDECAR_VERSION = 1
VARIANTS = ("float", "int")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "vocab.json", "merges.txt")


def next_name(state: str) -> str:
    """Output name carrying a state's new value."""
    return state + ".next"


class _OnnxBuilder:
    """Collects ONNX nodes and initializers while walking the IR in order."""

    def __init__(self, graph: Graph, variant: str, io_prefix: str = "") -> None:
        from onnx import helper, numpy_helper

        self.h, self.nh = helper, numpy_helper
        self.pre = io_prefix  # prefix for graph input/output names (a Scan body needs its own)
        self.g, self.variant = graph, variant
        self.nodes: list = []
        self.inits: list = []
        self.out: dict[str, str] = {}  # IR node -> ONNX tensor name
        self.state_out: dict[str, str] = {}  # state -> ONNX tensor holding its new value
        self._n = 0
        self._fused: set[str] = set()

    # -- helpers ------------------------------------------------------------------
    def io(self, name: str) -> str:
        """Name of a graph input/output (tokens, logits, states) in this graph."""
        return self.pre + name

    def uid(self, base: str) -> str:
        self._n += 1
        return f"{base}/{self._n}"

    def const(self, base: str, arr: np.ndarray) -> str:
        name = self.uid(base)
        self.inits.append(self.nh.from_array(np.ascontiguousarray(arr), name))
        return name

    def op(self, op: str, inputs: list[str], base: str, **attrs) -> str:
        out = self.uid(base)
        self.nodes.append(self.h.make_node(op, inputs, [out], name=out + ":" + op, **attrs))
        return out

    def op_n(self, op: str, inputs: list[str], base: str, n: int, **attrs) -> list[str]:
        outs = [self.uid(base) for _ in range(n)]
        self.nodes.append(self.h.make_node(op, inputs, outs, name=outs[0] + ":" + op, **attrs))
        return outs

    def f32(self, a) -> np.ndarray:
        return np.asarray(a, dtype=np.float32)

    # -- node mappings (x: (B, n) tensors) -------------------------------------------
    def emit(self, name: str, node: Node) -> None:
        ins = [self.out[i] for i in node.inputs]
        fn = getattr(self, "_" + node.type, None) if node.type in NODE_TYPES else None
        if fn is None:
            raise ExportError(f"ONNX export: node {name!r} has type {node.type} with no ONNX mapping")
        res = fn(name, node, ins)
        if res is not None:
            self.out[name] = res

    def _TokenInput(self, name, node, ins):
        return self.io("tokens")

    def _Embedding(self, name, node, ins):
        self.emb_init = self.const(name + ".weight", self.f32(node.weight))  # (V, C)
        return self.op("Gather", [self.emb_init, ins[0]], name, axis=0)  # (B, C)

    def _LayerNorm(self, name, node, ins):
        w, b = self.const(name + ".w", self.f32(node.weight)), self.const(name + ".b", self.f32(node.bias))
        return self.op("LayerNormalization", [ins[0], w, b], name, axis=-1, epsilon=float(node.eps))

    def _ShiftMix(self, name, node, ins):
        """y = x*mu + prev*(1-mu); prev' = x."""
        mu = self.f32(node.mu)
        a = self.op("Mul", [ins[0], self.const(name + ".mu", mu)], name)
        b = self.op("Mul", [self.io(node.state), self.const(name + ".1-mu", np.float32(1) - mu)], name)
        self.state_out[node.state] = ins[0]
        return self.op("Add", [a, b], name)

    def _LIF(self, name, node, ins):
        """The population's update (see ir.LIF) on (B, n) rows. Returns float unit spikes."""
        if node.fixed:
            s = self._lif_fixed(name, node, ins[0])
        elif node.neuron == "ternary_lif":
            s = self._lif_ternary(name, node, ins[0])
        else:  # mem = beta*mem + x; s = [mem>th] - [mem<-th]; mem -= s*th
            beta, th = self.f32(node.beta), self.f32(node.threshold)
            mem = self.op("Add", [self.op("Mul", [self.io(node.state), self.const(name + ".beta", beta)], name), ins[0]],
                          name)
            th_c = self.const(name + ".th", th)
            s = self._spikes(name, node, mem, th_c, self.const(name + ".-th", -th))
            self.state_out[node.state] = self.op("Sub", [mem, self.op("Mul", [s, th_c], name)], name)
        self.spike_mode[s] = node.mode
        return s

    def _spikes(self, name, node, m, th, neg_th, to=1):
        """[m > th] - [m < -th] (ternary) or [m > th], as a float tensor (to: ONNX dtype)."""
        s = self.op("Cast", [self.op("Greater", [m, th], name)], name, to=to)
        if node.mode == "ternary":
            s = self.op("Sub", [s, self.op("Cast", [self.op("Less", [m, neg_th], name)], name, to=to)], name)
        return s

    def _split_state(self, name, node):
        """TernaryLIF state (B, 2n) -> (v, u)."""
        n = node.n
        return self.op_n("Split", [self.io(node.state), self.const(name + ".split", np.array([n, n], np.int64))],
                         name, 2, axis=1)

    def _lif_ternary(self, name, node, x):
        """u = beta_u*u + x; m = beta*v + u; s = [m>th] - [m<-th]; v = m*(1-|s|); state [v, u]."""
        v, u = self._split_state(name, node)
        u = self.op("Add", [self.op("Mul", [u, self.const(name + ".beta_u", self.f32(node.beta_u))], name), x], name)
        m = self.op("Add", [self.op("Mul", [v, self.const(name + ".beta", self.f32(node.beta))], name), u], name)
        th = self.f32(node.threshold)
        s = self._spikes(name, node, m, self.const(name + ".th", th), self.const(name + ".-th", -th))
        keep = self.op("Sub", [self.const(name + ".one", np.ones(1, np.float32)), self.op("Abs", [s], name)], name)
        self.state_out[node.state] = self.op("Concat", [self.op("Mul", [m, keep], name), u], name, axis=1)
        return s

    def _trunc_decay(self, name, v, keep, bits: int):
        """sign(v*keep) * floor(|v*keep| / 2^bits), in float64 (exact: |v*keep| < 2^36)."""
        d = self.op("Mul", [v, keep], name)
        q = self.op("Floor", [self.op("Div", [self.op("Abs", [d], name),
                                              self.const(name + ".2^D", np.array(2.0 ** bits))], name)], name)
        return self.op("Mul", [self.op("Sign", [d], name), q], name)

    def _lif_fixed(self, name, node, x):
        """The integer neuron of goose_neuro.fixed_point, in float64 (integers are exact there);
        the state holds the integer compartments. Returns float32 unit spikes."""
        f = node.format
        unit, d64 = 1 << f.decay_bits, lambda a: np.asarray(a, dtype=np.float64)  # noqa: E731
        c = lambda k, a: self.const(f"{name}.{k}", d64(a))  # noqa: E731
        gain = float(f.vth) / d64(node.threshold)
        keep_v = unit - np.clip(unit - np.round(unit * d64(node.beta)), 0, unit - 1)
        xm = self.op("Clip", [self.op("Round", [self.op("Mul", [self.op("Cast", [x], name, to=11), c("gain", gain)],
                                                         name)], name), c("-lim", -f.x_limit), c("lim", f.x_limit)], name)
        xs = self.op("Mul", [xm, c("2^S", 2.0 ** f.shift)], name)  # x_mant << S
        vt = float(f.vth << f.shift)
        if node.neuron == "ternary_lif":
            v, u = (self.op("Cast", [t], name, to=11) for t in self._split_state(name, node))
            keep_u = unit - 1 - np.clip(unit - 1 - np.round(unit * d64(node.beta_u)), 0, unit - 1)
            d = self.op("Add", [self._trunc_decay(name, u, c("keep_u", keep_u), f.decay_bits), xs], name)
            half = float(1 << (f.state_bits - 1))
            up = self.op("Sub", [d, c("2^B", 2 * half)], name)
            dn = self.op("Add", [d, c("2^B+", 2 * half)], name)
            u = self.op("Where", [self.op("Greater", [d, c("half", half)], name), up,
                                  self.op("Where", [self.op("LessOrEqual", [d, c("-half", -half)], name), dn, d], name)],
                        name)  # lava wraps the current to 24 bits
            m = self.op("Clip", [self.op("Add", [self._trunc_decay(name, v, c("keep_v", keep_v), f.decay_bits), u],
                                         name), c("-vmax", -f.v_max), c("vmax", f.v_max)], name)
            s = self._spikes(name, node, m, c("vt", vt), c("-vt", -vt), to=11)
            keep = self.op("Sub", [c("one", 1.0), self.op("Abs", [s], name)], name)
            new = self.op("Concat", [self.op("Mul", [m, keep], name), u], name, axis=1)
        else:
            v = self.op("Cast", [self.io(node.state)], name, to=11)
            m = self.op("Clip", [self.op("Add", [self._trunc_decay(name, v, c("keep_v", keep_v), f.decay_bits), xs],
                                         name), c("-vmax", -f.v_max), c("vmax", f.v_max)], name)
            s = self._spikes(name, node, m, c("vt", vt), c("-vt", -vt), to=11)
            new = self.op("Sub", [m, self.op("Mul", [s, c("vt*", vt)], name)], name)
        self.state_out[node.state] = self.op("Cast", [new], name, to=1)
        return self.op("Cast", [s], name, to=1)

    def _Scale(self, name, node, ins):
        return self.op("Mul", [ins[0], self.const(name + ".scale", self.f32(node.scale))], name)

    def _TernaryDense(self, name, node, ins):
        if name in self._fused:
            return None  # already emitted with a sibling
        sibs = [k for k, n in self.g.nodes.items() if isinstance(n, TernaryDense)
                and n.inputs == node.inputs and n.input_kind == node.input_kind]
        self._fused.update(sibs)
        nodes = [self.g.nodes[k] for k in sibs]
        integer = self.variant == "int" and node.input_kind == "spike"
        outs = self._dense_int(name, nodes, ins[0]) if integer else self._dense_float(name, nodes, ins[0])
        for k, o in zip(sibs, outs):
            self.out[k] = o
        return self.out[name]

    def _dense_float(self, name, nodes: list[TernaryDense], x: str) -> list[str]:
        """One MatMul over the concatenated float-equivalent weights, then Split."""
        wt = np.concatenate([self.f32(n.float_weight()).T for n in nodes], axis=1)  # (in, sum out)
        y = self.op("MatMul", [x, self.const(name + ".wT", wt)], name)
        return self._split(name, y, [n.out_features for n in nodes])

    def _dense_int(self, name, nodes: list[TernaryDense], x: str) -> list[str]:
        """MatMulInteger on uint8-shifted spikes and int8 0/1 or sign matrices; scales after."""
        mats, scales, parts = [], [], []
        for n in nodes:
            if n.encoding == "sign":
                mats.append(n.sign.T)
                scales.append(n.scale_pos)
                parts.append([n.out_features])
            else:
                mats += [n.pos.T, n.neg.T]
                scales += [n.scale_pos, -n.scale_neg]
                parts.append([n.out_features, n.out_features])
        w = np.ascontiguousarray(np.concatenate(mats, axis=1).astype(np.int8))  # (in, sum out)
        if x not in self.spike_mode:
            raise ExportError(f"ONNX export: node {name!r} is marked input_kind='spike' but is not fed by a LIF node")
        ternary = self.spike_mode[x] == "ternary"
        a = self.op("Cast", [self.op("Add", [x, self.const(name + ".shift", np.float32(1))], name)
                             if ternary else x], name, to=2)  # uint8 {0,1,2} or {0,1}
        zp = self.const(name + ".a_zp", np.uint8(1 if ternary else 0))
        acc = self.op("MatMulInteger", [a, self.const(name + ".w_int8", w), zp], name)  # int32
        y = self.op("Mul", [self.op("Cast", [acc], name, to=1),
                            self.const(name + ".scale", self.f32(np.concatenate(scales)))], name)
        pieces = self._split(name, y, [p for ps in parts for p in ps])
        outs, i = [], 0
        for ps in parts:
            if len(ps) == 1:
                outs.append(pieces[i])
            else:  # scale_pos*acc_P + (-scale_neg)*acc_N
                outs.append(self.op("Add", [pieces[i], pieces[i + 1]], name))
            i += len(ps)
        return outs

    def _split(self, name, y, sizes: list[int]) -> list[str]:
        if len(sizes) == 1:
            return [y]
        return self.op_n("Split", [y, self.const(name + ".split", np.asarray(sizes, np.int64))], name,
                         len(sizes), axis=-1)

    def _Dense(self, name, node, ins):
        if node.tied_to and getattr(self, "emb_init", None):
            return self.op("Gemm", [ins[0], self.emb_init], name, transB=1)  # x @ E^T, shares E
        return self.op("MatMul", [ins[0], self.const(name + ".wT", self.f32(node.weight).T)], name)

    def _Sigmoid(self, name, node, ins):
        return self.op("Sigmoid", ins, name)

    def _ReLUSquare(self, name, node, ins):
        r = self.op("Relu", ins, name)
        return self.op("Mul", [r, r], name)

    def _Mul(self, name, node, ins):
        return self.op("Mul", ins, name)

    def _Add(self, name, node, ins):
        return self.op("Add", ins, name)

    def _WKV(self, name, node, ins):
        """RWKV-4 stable WKV step (see ir.WKV)."""
        k, v = ins
        a, b, p = (self.io(s) for s in (node.state_a, node.state_b, node.state_p))
        op = lambda o, *xs: self.op(o, list(xs), name)  # noqa: E731
        w = self.const(name + ".w", -np.exp(self.f32(node.time_decay)))
        u = self.const(name + ".u", self.f32(node.time_first))
        ww = op("Add", u, k)
        q = op("Max", p, ww)
        e1, e2 = op("Exp", op("Sub", p, q)), op("Exp", op("Sub", ww, q))
        y = op("Div", op("Add", op("Mul", e1, a), op("Mul", e2, v)), op("Add", op("Mul", e1, b), e2))
        ww2 = op("Add", p, w)
        q2 = op("Max", ww2, k)
        f1, f2 = op("Exp", op("Sub", ww2, q2)), op("Exp", op("Sub", k, q2))
        self.state_out[node.state_a] = op("Add", op("Mul", f1, a), op("Mul", f2, v))
        self.state_out[node.state_b] = op("Add", op("Mul", f1, b), f2)
        self.state_out[node.state_p] = q2
        return y

    def _Output(self, name, node, ins):
        self.nodes.append(self.h.make_node("Identity", ins, [self.io("logits")], name=self.io("logits") + ":Identity"))
        return self.io("logits")

    # -- whole graph ------------------------------------------------------------------
    def step_graph(self, name: str, token_shape: list, with_inits: bool):
        """Emit every IR node; return the one-step GraphProto (inputs: tokens + states)."""
        from onnx import TensorProto

        self.spike_mode: dict[str, str] = {}
        for n, node in self.g.nodes.items():
            self.emit(n, node)
        V = self.g.nodes[self.g.input_name].vocab_size
        vi = self.h.make_tensor_value_info
        ins, outs = [], []
        for st, spec in self.g.states.items():
            ins.append(vi(self.io(st), TensorProto.FLOAT, ["batch", spec.width]))
            self.nodes.append(self.h.make_node("Identity", [self.state_out[st]], [self.io(next_name(st))],
                                               name=self.io(next_name(st)) + ":Identity"))
            outs.append(vi(self.io(next_name(st)), TensorProto.FLOAT, ["batch", spec.width]))
        tokens = vi(self.io("tokens"), TensorProto.INT64, token_shape)
        logits = vi(self.io("logits"), TensorProto.FLOAT, ["batch", V])
        return self.h.make_graph(self.nodes, name, [tokens, *ins], [logits, *outs],
                                 self.inits if with_inits else [])

    def build(self):
        """The step model: tokens (batch,) + states -> logits (batch, V) + states."""
        graph = self.step_graph("goose_step", ["batch"], with_inits=True)
        return self.h.make_model(graph, opset_imports=[self.h.make_opsetid("", OPSET)],
                                 producer_name="goose-neuro", ir_version=9)

    def build_prefill(self):
        """The prefill model: an ONNX Scan of the step over tokens (batch, time) -> logits
        (batch, time, V) and the states after the last token (same names as the step model)."""
        from onnx import TensorProto

        body = self.step_graph("goose_step_body", ["batch"], with_inits=False)
        # Scan wants loop-carried states first, then the scanned input; outputs states then scanned
        body_in = list(body.input)
        body_out = list(body.output)
        del body.input[:], body.output[:]
        body.input.extend(body_in[1:] + body_in[:1])
        body.output.extend(body_out[1:] + body_out[:1])
        vi = self.h.make_tensor_value_info
        states = list(self.g.states.items())
        scan = self.h.make_node(
            "Scan", [st for st, _ in states] + ["tokens"], [next_name(st) for st, _ in states] + ["logits"],
            name="prefill:Scan", body=body, num_scan_inputs=1, scan_input_axes=[1], scan_output_axes=[1])
        V = self.g.nodes[self.g.input_name].vocab_size
        inputs = [vi("tokens", TensorProto.INT64, ["batch", "time"])]
        inputs += [vi(st, TensorProto.FLOAT, ["batch", sp.width]) for st, sp in states]
        outputs = [vi("logits", TensorProto.FLOAT, ["batch", "time", V])]
        outputs += [vi(next_name(st), TensorProto.FLOAT, ["batch", sp.width]) for st, sp in states]
        graph = self.h.make_graph([scan], "goose_prefill", inputs, outputs, self.inits)
        return self.h.make_model(graph, opset_imports=[self.h.make_opsetid("", OPSET)],
                                 producer_name="goose-neuro", ir_version=9)


def sidecar(graph: Graph, variant: str, tokenizer_file: str | None) -> dict[str, Any]:
    """JSON description of the step graph's tensors, enough to drive it from ONNX Runtime alone."""
    V = graph.nodes[graph.input_name].vocab_size
    return {
        "format": SIDECAR_FORMAT,
        "version": SIDECAR_VERSION,
        "model_file": MODEL_FILE,
        "variant": variant,
        "opset": OPSET,
        "inputs": {"tokens": {"shape": ["batch"], "dtype": "int64", "range": [0, V]}},
        "outputs": {"logits": {"shape": ["batch", V], "dtype": "float32"}},
        "states": [
            {"name": k, "input": k, "output": next_name(k), "shape": ["batch", s.width], "dtype": "float32",
             "init": s.init}
            for k, s in graph.states.items()
        ],
        "tokenizer": tokenizer_file,
        "model_config": graph.meta.get("model_config", {}),
        "export_version": graph.meta.get("export_version"),
        "usage": ("state = {s.input: full((B,)+shape[1:], init)}; each step: outs = session.run(None, "
                  "{'tokens': ids (B,) int64, **state}); logits = outs['logits']; state[s.input] = outs[s.output]"),
    }


def build_model(graph: Graph, variant: str = "float", tokenizer_ref: str | None = None, prefill: bool = False):
    """IR -> checked onnx.ModelProto with metadata: the step model, or with ``prefill`` the
    Scan-over-time model (tokens (batch, time) -> logits (batch, time, V), same states)."""
    import onnx

    if variant not in VARIANTS:
        raise ExportError(f"unknown ONNX variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    graph.validate()
    if prefill:
        model = _OnnxBuilder(graph, variant, io_prefix="step/").build_prefill()
    else:
        model = _OnnxBuilder(graph, variant).build()
    side = sidecar(graph, variant, None)
    meta = {
        "goose_neuro.model_config": json.dumps(graph.meta.get("model_config", {}), sort_keys=True),
        "goose_neuro.export_version": str(graph.meta.get("export_version")),
        "goose_neuro.tokenizer": json.dumps(tokenizer_ref),
        "goose_neuro.variant": variant,
        "goose_neuro.states": json.dumps(side["states"]),
    }
    onnx.helper.set_model_props(model, meta)
    onnx.checker.check_model(model, full_check=True)
    return model


def _public_modes(d: Path) -> None:
    """Temporary files/dirs are created private (0600/0700); give the export the usual
    umask-based modes so other users can read it."""
    mask = os.umask(0)
    os.umask(mask)
    d.chmod(0o777 & ~mask)
    for f in d.iterdir():
        f.chmod(0o666 & ~mask)


def export_onnx(graph: Graph, out_dir: str | os.PathLike, variant: str = "int",
                checkpoint_dir: str | os.PathLike | None = None, prefill: bool = False) -> Path:
    """Write model.onnx + model.json (+ tokenizer files, + prefill.onnx with ``prefill``)
    into ``out_dir`` atomically."""
    from goose_neuro.fileio import atomic_dir, atomic_write_json, check_writable_dir

    out = check_writable_dir(out_dir)
    tok_files = [Path(checkpoint_dir) / f for f in TOKENIZER_FILES
                 if checkpoint_dir and (Path(checkpoint_dir) / f).is_file()]
    tok_main = "tokenizer.json" if any(p.name == "tokenizer.json" for p in tok_files) else None
    ref = graph.meta.get("tokenizer")
    model = build_model(graph, variant, tokenizer_ref=ref)
    files = {MODEL_FILE: model}
    if prefill:
        files[PREFILL_FILE] = build_model(graph, variant, tokenizer_ref=ref, prefill=True)
    try:
        with atomic_dir(out) as tmp:
            for fname, proto in files.items():
                data = proto.SerializeToString()
                if len(data) >= 2**31 - 1:
                    raise ExportError(f"{fname} is {len(data) / 2**30:.1f} GiB, over protobuf's 2 GiB limit")
                (tmp / fname).write_bytes(data)
            side = sidecar(graph, variant, tok_main)
            side["tokenizer_ref"] = ref
            if prefill:
                V = side["outputs"]["logits"]["shape"][1]
                side["prefill"] = {"model_file": PREFILL_FILE,
                                   "inputs": {"tokens": {"shape": ["batch", "time"], "dtype": "int64"}},
                                   "outputs": {"logits": {"shape": ["batch", "time", V], "dtype": "float32"}},
                                   "states": "same inputs and outputs as the step model"}
            atomic_write_json(tmp / SIDECAR, side)
            for p in tok_files:
                shutil.copyfile(p, tmp / p.name)
            _public_modes(tmp)
    except OSError as e:
        raise ExportError(f"cannot write {out}: {e.strerror or e}") from None
    return out
