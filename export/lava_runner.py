"""Run an exported Loihi / Loihi 2 package in Lava (``Loihi2SimCfg``, fixed point, CPU).

This file runs in the Python 3.10 Lava environment (``.venv-lava``, made by
``scripts/make_lava_env.py``), as a subprocess of ``goose-check lava``::

    .venv-lava/bin/python export/lava_runner.py --package OUT/ --tokens tokens.npy --out result.npz

It never imports goose_neuro (whose core needs torch); it loads the sibling ``int_ref.py`` by path
for the host-side ops, and ``lava.lib.dl.netx`` through light stand-in modules (netx imports
``lava.lib.dl.slayer``, which imports torch, but netx itself needs none of it).

Process graph, per chain c (see ``goose_neuro.export.loihi``)::

    population_c --spikes--> netx Network(chains/<c>.net) = Dense synapses -> CUBA readout
    Loihi 2: population = GooseTernaryNeuron (custom process: the programmable neuron's model)
    Loihi 1: population = lava LIF (2n ON/OFF compartments) built from the file's netx `input`
             layer, bias = [x, -x]
             or, with population="host", HostSpikeInjector (the host's ON/OFF spikes)
    readout_c --> HostLink_c --> population_{c+1}.a_in   (carries nothing: host values travel
                                                          through Var get/set, like a host probe)

Schedule: one Lava step per token, pipelined over chains. Before step tau the host writes the
bias of population c for token t = tau - 2c; after step tau it reads each readout's ``v >> 6``,
which holds the counts of token tau - 1 - 2c (the dense synapse delivers one step later).
Spikes are recorded with ``lava.proc.monitor`` probes on every population's ``s_out``.
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


class GooseTernaryNeuron(AbstractProcess):
    """Ternary LIF with subtract reset, per-neuron 12-bit decay, graded +-1 spikes:
    ``v = clip24(trunc(v*(4096-dv)/4096) + ((bias + a) << 6))``,
    ``s = [v > vth<<6] - [v < -(vth<<6)]``, ``v -= s * (vth << 6)``."""

    def __init__(self, shape, dv, vth):
        super().__init__(shape=shape)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.v = Var(shape=shape, init=0)
        self.dv = Var(shape=shape, init=np.asarray(dv, dtype=np.int32))
        self.vth = Var(shape=(1,), init=int(vth))
        self.bias_mant = Var(shape=shape, init=0)

@implements(proc=GooseTernaryNeuron, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyGooseTernaryNeuron(PyLoihiProcessModel):
    a_in = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=2)
    v = LavaPyType(np.ndarray, np.int32, precision=24)
    dv = LavaPyType(np.ndarray, np.int32, precision=12)
    vth = LavaPyType(np.ndarray, np.int32, precision=17)
    bias_mant = LavaPyType(np.ndarray, np.int32, precision=16)

    def run_spk(self):
        a = self.a_in.recv().astype(np.int64)
        d = self.v.astype(np.int64) * (4096 - self.dv.astype(np.int64))
        v = np.sign(d) * (np.abs(d) >> 12) + ((self.bias_mant.astype(np.int64) + a) << 6)
        lim = (1 << 23) - 1
        v = np.clip(v, -lim, lim)
        vt = int(self.vth[0]) << 6
        s = (v > vt).astype(np.int64) - (v < -vt).astype(np.int64)
        self.v[:] = v - s * vt
        self.s_out.send(s.astype(np.int32))

class HostSpikeInjector(AbstractProcess):
    """Host-side population (Loihi 1, population='host'): the host computes the spikes and
    injects them as binary ON/OFF axon events; this process sends the ``spikes`` Var."""

    def __init__(self, shape):
        super().__init__(shape=shape)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.bias_mant = Var(shape=shape, init=0)  # the spikes to send (0/1), written by the host


@implements(proc=HostSpikeInjector, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyHostSpikeInjector(PyLoihiProcessModel):
    a_in = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=1)
    bias_mant = LavaPyType(np.ndarray, np.int32, precision=1)

    def run_spk(self):
        self.a_in.recv()
        self.s_out.send(self.bias_mant.copy())


class HostLink_(AbstractProcess):
    """Orders chain c before chain c+1 in one process graph; forwards zeros."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.inp = InPort(shape=(n_in,))
        self.out = OutPort(shape=(n_out,))

@implements(proc=HostLink_, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyHostLink(PyLoihiProcessModel):
    inp = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    out = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)

    def run_spk(self):
        self.inp.recv()
        self.out.send(np.zeros(self.out.shape, dtype=np.int32))


def cuba_population(path: str):
    """lava LIF for the netx ``input`` layer of a chain file (ON/OFF CUBA compartments)."""
    import h5py
    from lava.proc.lif.process import LIF

    with h5py.File(path, "r") as f:
        g = f["layer/0"]
        n = g["neuron"]
        return LIF(shape=(int(g["shape"][0]),), du=int(n["iDecay"][()]) - 1, dv=int(n["vDecay"][()]),
                   vth=int(n["vThMant"][()]), bias_mant=0, bias_exp=6)


def build(package: str, manifest: dict, steps: int):
    """Populations, netx chains, links and spike monitors for every chain."""
    from lava.lib.dl.netx import hdf5
    from lava.proc.monitor.process import Monitor

    Neuron, HostLink = GooseTernaryNeuron, HostLink_
    params = np.load(os.path.join(package, manifest["params_file"]))
    loihi2 = manifest["target"] == "loihi2"
    pops, nets, mons = [], [], []
    for c, ch in enumerate(manifest["chains"]):
        p = ch["population"]
        dv = params[ch["name"] + ".dv"]
        if p["kind"] == "host_onoff":
            pop = HostSpikeInjector(shape=(2 * p["n"],))
        elif loihi2:
            pop = Neuron(shape=(p["n"],), dv=dv, vth=p["vth_mant"])
        path = os.path.join(package, ch["net_file"])
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
        if c:
            link = HostLink(nets[-1].out.shape[0], pop.a_in.shape[0])
            nets[-1].out.connect(link.inp)
            link.out.connect(pop.a_in)
        mon = Monitor()
        mon.probe(pop.s_out, steps)
        pops.append(pop), nets.append(net), mons.append(mon)
    return pops, nets, mons


def run(package: str, tokens: np.ndarray) -> dict:
    """Simulate ``tokens`` through the package; returns spikes, counts, logits and timing."""
    install_netx_shim()
    # Lava's model search executes every sibling module (torch-importing ones fail): harmless
    warnings.filterwarnings("ignore", message="Cannot import module")
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg

    ir = load_int_ref()
    model = ir.IntModel.load(package)
    with open(os.path.join(package, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    M, N = len(manifest["chains"]), len(tokens)
    steps = N + 2 * M
    t0 = time.time()
    pops, nets, mons = build(package, manifest, steps + 1)
    root = nets[-1]
    # step 0 starts the runtime with every bias 0: from the zero state it changes nothing
    root.run(condition=RunSteps(1), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
    t_build = time.time() - t0
    counts = [dict() for _ in range(M)]
    ctxs, logits = {}, {}
    readout = [net.layers[-1].neuron.v for net in nets]
    t0 = time.time()
    try:
        for tau in range(steps):
            for c in range(M):
                t = tau - 2 * c
                if 0 <= t < N:
                    ctx = ctxs.setdefault(t, {"token": int(tokens[t])})
                    x = model.segment(c, ctx, counts[c - 1].pop(t) if c else None)
                    host_pop = model.pops[c].kind == "host_onoff"
                    bias = model.pops[c].step(x) if host_pop else model.pops[c].bias(x)
                else:
                    bias = np.zeros(pops[c].bias_mant.shape, dtype=np.int64)
                pops[c].bias_mant.set(bias.astype(np.int32))
            root.run(condition=RunSteps(1))
            for c in range(M):
                t = tau - 1 - 2 * c
                if 0 <= t < N:
                    counts[c][t] = np.asarray(readout[c].get()).astype(np.int64) >> 6
                    if c == M - 1:
                        logits[t] = model.segment(M, ctxs.pop(t), counts[c][t])
                        counts[c][t] = counts[c][t]
        t_run = time.time() - t0
        spikes = [np.asarray(m.get_data()[p.name]["s_out"]).astype(np.int64) for m, p in zip(mons, pops)]
    finally:
        root.stop()
    return {"spikes": spikes, "logits": np.array([logits[t] for t in range(N)], dtype=np.int64),
            "counts_last": np.array([counts[M - 1][t] for t in range(N)], dtype=np.int64),
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
    arrays = {"logits": res["logits"], "counts_last": res["counts_last"]}
    for c, s in enumerate(res["spikes"]):
        arrays[f"spikes_{c}"] = s[1 + 2 * c:1 + 2 * c + N]  # token t at step 1 + t + 2c
    arrays["timing"] = np.array([res["build_s"], res["run_s"], res["steps"]], dtype=np.float64)
    tmp = a.out + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, a.out)
    sys.stdout.write(json.dumps({"chains": M, "tokens": N, "build_s": res["build_s"],
                                 "run_s": res["run_s"]}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
