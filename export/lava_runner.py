"""Run an exported Loihi / Loihi 2 package in Lava (``Loihi2SimCfg``, fixed point, CPU).

This file runs in the Python 3.10 Lava environment (``.venv-lava``, made by
``scripts/make_lava_env.py``), as a subprocess of ``goose-check lava``::

    .venv-lava/bin/python export/lava_runner.py --package OUT/ --tokens tokens.npy --out result.npz

It never imports goose_neuro (whose core needs torch); it loads the sibling ``int_ref.py`` by path
for the host-side ops, and ``lava.lib.dl.netx`` through light stand-in modules (netx imports
``lava.lib.dl.slayer``, which imports torch, but netx itself needs none of it).

Process graph (everything runs inside Lava; no values pass through Var get/set), per chain c::

    HostSegment_c --x--> population_c --spikes--> netx Network(chains/<c>.net) = Dense -> readout
    Dense_c.a_out (counts) --> HostSegment_{c+1};   HostSegment_c --ctx--> HostSegment_{c+1}
    HostSegment_M (after the last chain) is the head: it writes the logits into its ``logits`` Var

    Loihi 2: population = GooseTernaryNeuron (custom process: the programmable neuron's model)
    Loihi 1: population = HostSpikeInjector (population="host", the default: the host's ON/OFF
             spikes), or lava LIF (population="core": 2n ON/OFF compartments built from the
             file's netx `input` layer, input [x, -x])

A HostSegment is a small custom process that runs the host-side ops before one chain with the
integer reference's own code (``IntModel.segment``); it stands for the host CPU.

Schedule: one Lava step per token, pipelined over chains: chain c handles token t at step
t + 1 + c; its synapse output reaches HostSegment_{c+1} at step t + 2 + c (Dense delivers one step
later), together with the token's context sent by HostSegment_c one step earlier; the head
writes token t's logits at step t + 1 + M. Spikes are recorded with ``lava.proc.monitor`` probes
on every population's ``s_out``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
import types
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def install_netx_shim() -> None:
    """Register stand-ins for the torch-importing modules that ``lava.lib.dl.netx`` imports.

    netx's ``hdf5.py`` imports ``lava.lib.dl.slayer.neuron.rf.neuron_params`` (used for RF
    neurons only) and its ``__init__`` imports ``sequential_modules`` (torch). The stand-in for
    the latter needs a real ``__file__``: the Lava compiler rejects modules without one.
    """
    names = ["lava.lib.dl.slayer", "lava.lib.dl.slayer.neuron", "lava.lib.dl.slayer.neuron.rf",
             "lava.lib.dl.netx.sequential_modules"]
    for name in names:
        if name not in sys.modules:
            mod = types.ModuleType(name)
            mod.__file__ = os.path.abspath(__file__)
            sys.modules[name] = mod

    def neuron_params(*_a, **_k):
        raise NotImplementedError("RF neurons are not used by goose-neuro packages")

    sys.modules["lava.lib.dl.slayer.neuron.rf"].neuron_params = neuron_params
    sys.modules["lava.lib.dl.slayer"].neuron = sys.modules["lava.lib.dl.slayer.neuron"]
    sys.modules["lava.lib.dl.slayer.neuron"].rf = sys.modules["lava.lib.dl.slayer.neuron.rf"]


def load_int_ref():
    """The sibling int_ref.py as a standalone module (numpy only)."""
    spec = importlib.util.spec_from_file_location("goose_int_ref", os.path.join(HERE, "int_ref.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules["goose_int_ref"] = mod
    spec.loader.exec_module(mod)
    return mod


# -- custom processes (module level: Lava finds a process's models in the process's module) --
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol


def _cpu_fixed_pt_model(proc):
    """Register a Python process model for ``proc``: Loihi protocol, CPU, tag ``fixed_pt`` (the tag
    ``Loihi2SimCfg(select_tag="fixed_pt")`` picks)."""
    def register(model):
        return implements(proc=proc, protocol=LoihiProtocol)(requires(CPU)(tag("fixed_pt")(model)))
    return register


class GooseTernaryNeuron(AbstractProcess):
    """Ternary LIF with subtract reset, per-neuron 12-bit decay, graded +-1 spikes:
    ``v = clip24(trunc(v*(4096-dv)/4096) + (a << 6))``,
    ``s = [v > vth<<6] - [v < -(vth<<6)]``, ``v -= s * (vth << 6)``; ``a`` is the input mantissa
    that the host sends each step."""

    def __init__(self, shape, dv, vth):
        super().__init__(shape=shape)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.v = Var(shape=shape, init=0)
        self.dv = Var(shape=shape, init=np.asarray(dv, dtype=np.int32))
        self.vth = Var(shape=(1,), init=int(vth))


@_cpu_fixed_pt_model(GooseTernaryNeuron)
class PyGooseTernaryNeuron(PyLoihiProcessModel):
    a_in = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=2)
    v = LavaPyType(np.ndarray, np.int32, precision=24)
    dv = LavaPyType(np.ndarray, np.int32, precision=12)
    vth = LavaPyType(np.ndarray, np.int32, precision=17)

    def run_spk(self):
        a = self.a_in.recv().astype(np.int64)
        d = self.v.astype(np.int64) * (4096 - self.dv.astype(np.int64))
        v = np.sign(d) * (np.abs(d) >> 12) + (a << 6)
        lim = (1 << 23) - 1
        v = np.clip(v, -lim, lim)
        vt = int(self.vth[0]) << 6
        s = (v > vt).astype(np.int64) - (v < -vt).astype(np.int64)
        self.v[:] = v - s * vt
        self.s_out.send(s.astype(np.int32))


class HostSpikeInjector(AbstractProcess):
    """Host-side population (Loihi 1, population='host'): the host computes the spikes and
    injects them as binary ON/OFF axon events; this process forwards them to the synapses."""

    def __init__(self, shape):
        super().__init__(shape=shape)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)


@_cpu_fixed_pt_model(HostSpikeInjector)
class PyHostSpikeInjector(PyLoihiProcessModel):
    a_in = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=1)

    def run_spk(self):
        self.s_out.send(self.a_in.recv())


class HostSegment(AbstractProcess):
    """The host-side ops before chain ``c`` (``c`` = number of chains: the head), as a Lava process.

    In: ``counts_in`` (chain c-1's synapse output, one step after its spikes) and ``ctx_in`` (the
    residual stream and channel-mix gate of the same token from segment c-1, one step earlier).
    Out: ``x_out`` (population c's input: mantissas, [x, -x] for CUBA ON/OFF, or host-computed
    ON/OFF spikes) and ``ctx_out``. The head writes the logits into its ``logits`` Var. The ops are
    ``IntModel.segment`` from int_ref.py, so they equal the integer reference by construction."""

    def __init__(self, package, c, tokens, counts_rows, x_width, ctx_width, vocab, head):
        super().__init__(package=package, c=c, first=c == 0, head=head)
        n = len(tokens)
        self.counts_in = InPort(shape=(counts_rows,))
        self.ctx_in = InPort(shape=(ctx_width,))
        self.x_out = OutPort(shape=(x_width,))
        self.ctx_out = OutPort(shape=(ctx_width,))
        self.tokens = Var(shape=(n,), init=np.asarray(tokens, dtype=np.int64))
        self.logits = Var(shape=(n, vocab) if head else (1, 1), init=0)


@_cpu_fixed_pt_model(HostSegment)
class PyHostSegment(PyLoihiProcessModel):
    counts_in = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    ctx_in = LavaPyType(PyInPort.VEC_DENSE, np.float64)
    x_out = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    ctx_out = LavaPyType(PyOutPort.VEC_DENSE, np.float64)
    tokens = LavaPyType(np.ndarray, np.int64)
    logits = LavaPyType(np.ndarray, np.float64)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.model, self.pending = None, None

    def run_spk(self):
        prm = self.proc_params
        c, first, head = prm["c"], prm["first"], prm["head"]
        if self.model is None:
            self.model = load_int_ref().IntModel.load(prm["package"])
        m = self.model
        counts = None if first else self.counts_in.recv().astype(np.int64)
        ctx_msg = None if first else self.ctx_in.recv()
        t = self.time_step - 1 - c  # the token whose counts arrive now (chain c-1 ran it last step)
        ctx, self.pending = self.pending, ctx_msg  # segment c-1 sent token t's context one step ago
        active = 0 <= t < len(self.tokens)
        if active:
            ctx = {"token": int(self.tokens[t])} if first else _unpack(ctx, m.fp)
            out = m.segment(c, ctx, counts)
            if head:
                self.logits[t] = out
                return
            pop = m.pops[c]
            x = pop.step(out) if pop.kind == "host_onoff" else pop.bias(out)
            self.x_out.send(x.astype(np.int32))
            self.ctx_out.send(_pack(ctx, len(ctx["x"])))
        elif not head:
            self.x_out.send(np.zeros(self.x_out.shape, dtype=np.int32))
            self.ctx_out.send(np.zeros(self.ctx_out.shape, dtype=np.float64))


def _pack(ctx: dict, C: int) -> np.ndarray:
    """Residual stream and channel-mix gate as one float64 message (Q16 integers stay exact
    below 2^53)."""
    r = ctx.get("r_cm")
    out = np.concatenate([np.asarray(ctx["x"]), np.zeros(C) if r is None else np.asarray(r)]).astype(np.float64)
    if not np.all(np.abs(out) < 2.0**53):
        raise OverflowError("host context does not fit a float64 message exactly")
    return out


def _unpack(msg: np.ndarray, fp: bool) -> dict:
    C = msg.shape[0] // 2
    x, r = msg[:C], msg[C:]
    if not fp:
        x, r = np.rint(x).astype(np.int64), np.rint(r).astype(np.int64)
    return {"x": x, "r_cm": r}


def cuba_population(path: str):
    """lava LIF for the netx ``input`` layer of a chain file (ON/OFF CUBA compartments); its input
    arrives on ``a_in`` (``u = a << 6`` with du = 4095), which equals the bias path ``bias << 6``."""
    import h5py
    from lava.proc.lif.process import LIF

    with h5py.File(path, "r") as f:
        g = f["layer/0"]
        n = g["neuron"]
        return LIF(shape=(int(g["shape"][0]),), du=int(n["iDecay"][()]) - 1, dv=int(n["vDecay"][()]),
                   vth=int(n["vThMant"][()]), bias_mant=0, bias_exp=6)


def build(package: str, manifest: dict, tokens: np.ndarray, steps: int):
    """Populations, netx chains, host segments and spike monitors for the whole network."""
    from lava.lib.dl.netx import hdf5
    from lava.proc.monitor.process import Monitor

    params = np.load(os.path.join(package, manifest["params_file"]))
    loihi2 = manifest["target"] == "loihi2"
    chains = manifest["chains"]
    pops, nets, mons, segs = [], [], [], []
    for ch in chains:
        p = ch["population"]
        path = os.path.join(package, ch["net_file"])
        if p["kind"] == "host_onoff":
            pop = HostSpikeInjector(shape=(2 * p["n"],))
        elif loihi2:
            pop = GooseTernaryNeuron(shape=(p["n"],), dv=params[ch["name"] + ".dv"], vth=p["vth_mant"])
        if p["kind"] == "cuba_onoff":
            # The population is the file's netx `input` layer. lava-nc 0.10 cannot compile netx's
            # Input block driven this way (NotImplementedError: no subcompiler for PyInputModel),
            # so the same LIF is built from that layer's parameters (netx's own mapping:
            # du = iDecay - 1, dv = vDecay, vth = vThMant, bias_exp = 6) and the chain is loaded
            # from the dense layer on (skip_layers=1).
            pop = cuba_population(path)
            net = hdf5.Network(path, skip_layers=1, input_message_bits=0)
        else:
            net = hdf5.Network(path, input_message_bits=2 if loihi2 else 0)
        pop.s_out.connect(net.inp)
        mon = Monitor()
        mon.probe(pop.s_out, steps)
        pops.append(pop), nets.append(net), mons.append(mon)
    C, V = manifest["model"]["d_model"], manifest["model"]["vocab_size"]
    for c in range(len(chains) + 1):
        head = c == len(chains)
        seg = HostSegment(package=package, c=c, tokens=tokens,
                          counts_rows=chains[c - 1]["weight_shape"][0] if c else 1,
                          x_width=1 if head else pops[c].a_in.shape[0], ctx_width=2 * C, vocab=V, head=head)
        if c:  # the synapses' output also feeds the netx readout compartments (unused here)
            nets[c - 1].layers[-1].synapse.a_out.connect(seg.counts_in)
            segs[-1].ctx_out.connect(seg.ctx_in)
        if not head:
            seg.x_out.connect(pops[c].a_in)
        segs.append(seg)
    return pops, nets, mons, segs


def run(package: str, tokens: np.ndarray) -> dict:
    """Simulate ``tokens`` through the package; returns spikes, logits and timing."""
    install_netx_shim()
    # Lava's model search executes every sibling module (torch-importing ones fail): harmless
    warnings.filterwarnings("ignore", message="Cannot import module")
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg

    with open(os.path.join(package, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    fp = manifest.get("host_format", "q16") == "float64"
    M, N = len(manifest["chains"]), len(tokens)
    steps = N + M  # token t: chain c at step t + 1 + c, logits at step t + 1 + M
    t0 = time.time()
    pops, nets, mons, segs = build(package, manifest, np.asarray(tokens, dtype=np.int64), steps)
    root = segs[-1]
    root.create_runtime(run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
    t_build = time.time() - t0
    t0 = time.time()
    try:
        root.run(condition=RunSteps(steps))
        t_run = time.time() - t0
        spikes = [np.asarray(m.get_data()[p.name]["s_out"]).astype(np.int64)[c:c + N]
                  for c, (m, p) in enumerate(zip(mons, pops))]
        logits = np.asarray(root.logits.get(), dtype=np.float64)
    finally:
        root.stop()
    return {"spikes": spikes, "logits": logits if fp else np.rint(logits).astype(np.int64),
            "build_s": t_build, "run_s": t_run, "steps": steps}


def inspect_package(package: str) -> dict:
    """Load every chain file with ``lava.lib.dl.netx.hdf5.Network`` and check that the synapse's
    effective weights (mantissa * 2^weight_exp) equal the integers in the file."""
    install_netx_shim()
    warnings.filterwarnings("ignore", message="Cannot import module")
    import h5py
    from lava.lib.dl.netx import hdf5

    with open(os.path.join(package, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    out = {}
    for ch in manifest["chains"]:
        path = os.path.join(package, ch["net_file"])
        net = hdf5.Network(path, input_message_bits=2 if manifest["target"] == "loihi2" else 0)
        syn = net.layers[-1].synapse
        exp = int(syn.proc_params["weight_exp"])
        eff = np.asarray(syn.weights.init).astype(np.int64)
        eff = eff << exp if exp >= 0 else eff >> -exp
        with h5py.File(path, "r") as h:
            written = h[f"layer/{len(net) - 1}/weight"][()].astype(np.int64)
        out[ch["name"]] = {"layers": len(net), "rows": int(net.out.shape[0]), "inputs": int(syn.s_in.shape[0]),
                           "weight_exp": exp, "weights_exact": bool(np.array_equal(eff, written))}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Run a goose-neuro Loihi package in Lava (Loihi2SimCfg).")
    ap.add_argument("--package", required=True)
    ap.add_argument("--tokens", help=".npy of int token ids")
    ap.add_argument("--out", help=".npz to write")
    ap.add_argument("--inspect", action="store_true", help="only load the .net files with netx, print JSON")
    a = ap.parse_args(argv)
    if a.inspect:
        sys.stdout.write(json.dumps(inspect_package(a.package)) + "\n")
        return 0
    if not a.tokens or not a.out:
        ap.error("--tokens and --out are required to run")
    res = run(a.package, np.load(a.tokens))
    M = len(res["spikes"])
    N = len(res["logits"])
    arrays = {"logits": res["logits"]}
    for c, s in enumerate(res["spikes"]):
        arrays[f"spikes_{c}"] = s
    arrays["timing"] = np.array([res["build_s"], res["run_s"], res["steps"]], dtype=np.float64)
    tmp = a.out + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, a.out)
    sys.stdout.write(json.dumps({"chains": M, "tokens": N, "build_s": res["build_s"],
                                 "run_s": res["run_s"]}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
