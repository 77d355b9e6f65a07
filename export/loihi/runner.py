"""Run a goose-neuro Loihi package in Lava (``Loihi2SimCfg``, fixed point, CPU).

This file runs in the Python 3.10 Lava environment (``.venv-lava``, made by
``scripts/make_lava_env.py``), as a subprocess of ``goose-check lava``::

    .venv-lava/bin/python export/loihi/runner.py --package OUT/ --tokens tokens.npy --out result.npz

It never imports torch: it registers the goose_neuro package folders by path and imports only the
numpy-level modules (the host program, the IR), and loads ``lava.lib.dl.netx`` through light
stand-in modules (netx imports ``lava.lib.dl.slayer``, which imports torch; netx itself needs none).

Process graph, per chain c (every compartment of the package is simulated)::

    HostSegment_c --x_out--> population_c --s_out--> netx Network(chains/<pop>.net) = Dense -> readouts
    readouts_c --> HostSegment_{c+1};   HostSegment_c --ctx_out--> HostSegment_{c+1}
    HostSegment_M (after the last chain) is the head: it collects the logits

    population: lava-nc ``TernaryLIF`` (``PyTernLifModelFixed``) for the ``ternary_lif`` neuron;
                ``GooseSubtractLIF`` (this file: the subtract-reset neuron of a programmable core);
                Loihi 1 on-core CUBA: lava-nc ``LIF`` (``PyLifModelBitAcc``), 2n ON/OFF compartments.
                Loihi 1 host neurons: the same neuron processes, then ``OnOffSplit`` (this file) turns
                their +-1 spikes into the binary ON/OFF axon pairs the cores take.
    readouts:   Loihi 2: lava-nc ``Sigma`` (netx SDNN, sigma_output): graded running sums of the
                counts, which the host differences; Loihi 1: lava-nc ``LIF`` readout compartments
                (v = counts << 6) whose state the host reads through a RefPort after each step.

A HostSegment stands for the host CPU: it runs one segment of the package's host program
(:mod:`goose_neuro.export.loihi.host`). Schedule: one Lava step per token, pipelined; segment c and
population c handle token t at step t + 1 + d c, with d = 1 (Loihi 2: the Dense delivers one step
later and the sigma readout forwards at once) or d = 2 (Loihi 1: the host reads readout state in
the management phase and sends the next input one step later). Spikes and the host's population
inputs are recorded by small ``Recorder`` processes that save their stream as a file at the last
step (reading Lava's own Monitors back took longer than the simulation).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import types
import warnings
from collections import deque
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SIGMA_PAYLOAD_BITS = 16  # netx's default SDNN message width (see goose_neuro.export.loihi.netx)


def register_goose() -> None:
    """Make ``goose_neuro.export.loihi.host`` importable without running goose_neuro's package
    ``__init__`` files (they would pull torch): register the three package folders by path. Works in
    the source tree (goose_neuro/ beside export/) and in an installed wheel (export/ inside it)."""
    export_dir = HERE.parent
    src = export_dir.parent / "goose_neuro"
    gn = src if (src / "errors.py").is_file() else export_dir.parent
    for name, path in (("goose_neuro", gn), ("goose_neuro.export", export_dir), ("goose_neuro.export.loihi", HERE)):
        if name not in sys.modules:
            mod = types.ModuleType(name)
            mod.__path__ = [str(path)]
            mod.__file__ = str(path / "__init__.py")
            sys.modules[name] = mod


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


register_goose()
from goose_neuro.export.loihi.host import HostProgram  # noqa: E402

# -- custom processes (module level: Lava finds a process's models in the process's module) --
from lava.magma.core.decorator import implements, requires, tag  # noqa: E402
from lava.magma.core.model.py.model import PyLoihiProcessModel  # noqa: E402
from lava.magma.core.model.py.ports import PyInPort, PyOutPort, PyRefPort  # noqa: E402
from lava.magma.core.model.py.type import LavaPyType  # noqa: E402
from lava.magma.core.process.ports.ports import InPort, OutPort, RefPort  # noqa: E402
from lava.magma.core.process.process import AbstractProcess  # noqa: E402
from lava.magma.core.process.variable import Var  # noqa: E402
from lava.magma.core.resources import CPU  # noqa: E402
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol  # noqa: E402


def _cpu_fixed_pt_model(proc):
    """Register a Python process model for ``proc``: Loihi protocol, CPU, tag ``fixed_pt`` (the tag
    ``Loihi2SimCfg(select_tag="fixed_pt")`` picks)."""
    def register(model):
        return implements(proc=proc, protocol=LoihiProtocol)(requires(CPU)(tag("fixed_pt")(model)))
    return register


class GooseSubtractLIF(AbstractProcess):
    """The subtract-reset ternary neuron of a programmable Loihi 2 core (per-neuron 12-bit decay):
    ``v = clip24(trunc(v (4096 - dv) / 4096) + (a << 6))``, ``s = [v > vth << 6] - [v < -(vth << 6)]``,
    ``v -= s (vth << 6)``; ``a`` is the input mantissa the host sends each step."""

    def __init__(self, shape, dv, vth):
        super().__init__(shape=shape)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.v = Var(shape=shape, init=0)
        self.dv = Var(shape=shape, init=np.asarray(dv, dtype=np.int32))
        self.vth = Var(shape=(1,), init=int(vth))


@_cpu_fixed_pt_model(GooseSubtractLIF)
class PyGooseSubtractLIF(PyLoihiProcessModel):
    a_in = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=2)
    v = LavaPyType(np.ndarray, np.int32, precision=24)
    dv = LavaPyType(np.ndarray, np.int32, precision=12)
    vth = LavaPyType(np.ndarray, np.int32, precision=17)

    def run_spk(self):
        a = self.a_in.recv().astype(np.int64)
        d = self.v.astype(np.int64) * (4096 - self.dv.astype(np.int64))
        lim = (1 << 23) - 1
        v = np.clip(np.sign(d) * (np.abs(d) >> 12) + (a << 6), -lim, lim)
        vt = int(self.vth[0]) << 6
        s = (v > vt).astype(np.int64) - (v < -vt).astype(np.int64)
        self.v[:] = v - s * vt
        self.s_out.send(s.astype(np.int32))


class OnOffSplit(AbstractProcess):
    """Loihi 1 host neurons: their +-1 spikes become binary ON/OFF axon events ``[s > 0, s < 0]``."""

    def __init__(self, shape):
        super().__init__(shape=shape)
        n = shape[0]
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=(2 * n,))


@_cpu_fixed_pt_model(OnOffSplit)
class PyOnOffSplit(PyLoihiProcessModel):
    a_in = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=2)
    s_out = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=1)

    def run_spk(self):
        s = self.a_in.recv()
        self.s_out.send(np.concatenate([s > 0, s < 0]).astype(np.int32))


class Recorder(AbstractProcess):
    """Records one stream (a population's spikes, a segment's population inputs) for ``steps`` steps
    and saves it to ``path`` (.npy) at the last step: the data leave the simulation once, as a
    file, instead of through one Var read per monitored port at the end."""

    def __init__(self, shape, steps, path):
        super().__init__(shape=shape, steps=steps, path=path)
        self.a_in = InPort(shape=shape)


@_cpu_fixed_pt_model(Recorder)
class PyRecorder(PyLoihiProcessModel):
    a_in = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.buf = np.zeros((proc_params["steps"],) + tuple(proc_params["shape"]), dtype=np.int32)

    def run_spk(self):
        self.buf[self.time_step - 1] = self.a_in.recv()
        if self.time_step == self.proc_params["steps"]:
            np.save(self.proc_params["path"], self.buf)


class HostSegment(AbstractProcess):
    """Host segment ``c`` of the package (``c`` = number of chains: the head), as a Lava process.

    In: ``counts_in`` (chain c-1's sigma readouts: running sums of its row counts) and ``ctx_in``
    (values segment c-1 carries). Out: ``x_out`` (population c's input mantissas) and ``ctx_out``.
    The head collects the logits and saves them to ``logits_path`` (.npy) after the last token."""

    def __init__(self, package, c, delay, tokens, counts_rows, x_width, ctx_in_width, ctx_out_width, head,
                 logits_path=""):
        super().__init__(package=package, c=c, delay=delay, head=head, logits_path=logits_path)
        n = len(tokens)
        self.counts_in = InPort(shape=(counts_rows,))
        self.ctx_in = InPort(shape=(ctx_in_width,))
        self.x_out = OutPort(shape=(x_width,))
        self.ctx_out = OutPort(shape=(ctx_out_width,))
        self.tokens = Var(shape=(n,), init=np.asarray(tokens, dtype=np.int64))


class HostSegmentProbe(HostSegment):
    """Loihi 1: the host reads chain c-1's CUBA readout state (``v = counts << 6``) through
    ``counts_ref`` after each step, instead of receiving graded spikes."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.counts_ref = RefPort(shape=self.counts_in.shape)


class _SegmentModel(PyLoihiProcessModel):
    counts_in = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    ctx_in = LavaPyType(PyInPort.VEC_DENSE, np.float64)
    x_out = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    ctx_out = LavaPyType(PyOutPort.VEC_DENSE, np.float64)
    tokens = LavaPyType(np.ndarray, np.int64)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.prog, self.fifo, self.counts, self.last_sigma, self.logits = None, deque(), None, None, None

    def _counts(self) -> np.ndarray | None:
        raise NotImplementedError

    def run_spk(self):
        prm = self.proc_params
        c, d, head = prm["c"], prm["delay"], prm["head"]
        if self.prog is None:
            self.prog = Program.load(prm["package"])
        prog = self.prog
        counts = self._counts() if c else None
        if c:  # ctx for token t left segment c-1 d steps ago
            self.fifo.append(self.ctx_in.recv())
        ctx = self.fifo.popleft() if len(self.fifo) > d else None
        t = self.time_step - 1 - d * c
        if 0 <= t < len(self.tokens):
            carry = prog.unpack(c - 1, ctx) if c else {}
            out, nxt = prog.run_segment(c, int(self.tokens[t]) if c == 0 else None, counts, carry)
            if head:
                if self.logits is None:
                    self.logits = np.zeros((len(self.tokens), len(out)))
                self.logits[t] = out
                if t == len(self.tokens) - 1:  # the last token's logits: hand them over as a file
                    np.save(prm["logits_path"], self.logits)
                return
            self.x_out.send(out.astype(np.int32))
            self.ctx_out.send(prog.pack(c, nxt))
        elif not head:
            self.x_out.send(np.zeros(self.x_out.shape, dtype=np.int32))
            self.ctx_out.send(np.zeros(self.ctx_out.shape, dtype=np.float64))


@_cpu_fixed_pt_model(HostSegment)
class PyHostSegment(_SegmentModel):
    def _counts(self) -> np.ndarray:
        sigma = self.counts_in.recv().astype(np.int64)  # running sums of the counts
        prev = np.zeros_like(sigma) if self.last_sigma is None else self.last_sigma
        self.last_sigma = sigma
        half = 1 << (SIGMA_PAYLOAD_BITS - 1)  # difference modulo the payload width: exact even if it wraps
        return (sigma - prev + half) % (2 * half) - half


@_cpu_fixed_pt_model(HostSegmentProbe)
class PyHostSegmentProbe(_SegmentModel):
    counts_ref = LavaPyType(PyRefPort.VEC_DENSE, np.int32, precision=24)

    def _counts(self) -> np.ndarray:
        counts = self.counts
        return np.zeros(self.counts_in.shape, np.int64) if counts is None else counts

    def post_guard(self):
        return self.proc_params["c"] > 0

    def run_post_mgmt(self):
        self.counts = np.asarray(self.counts_ref.read()).astype(np.int64) >> 6  # v = counts << 6


class Program:
    """The package's host program (each HostSegment process loads its own copy)."""

    @classmethod
    def load(cls, package: str) -> HostProgram:
        man = json.loads(Path(package, "manifest.json").read_text(encoding="utf-8"))
        with np.load(Path(package, man["params_file"])) as z:
            params = {k: z[k] for k in z.files}
        return HostProgram(man, params)


def _population(ch: dict, params, path: str):
    """The Lava process of chain ``ch``'s population (lava-nc's own model where one exists)."""
    n, vth = int(ch["n"]), int(ch["vth"])
    dv = params[ch["params"]["dv"]]
    if ch["neuron"] == "ternary_lif":
        from lava.proc.lif.process import TernaryLIF

        return TernaryLIF(shape=(n,), du=int(params[ch["params"]["du"]][0]), dv=int(dv[0]), vth_hi=vth, vth_lo=-vth,
                          bias_mant=0, bias_exp=0)
    if ch["neuron"] == "subtract":
        return GooseSubtractLIF(shape=(n,), dv=dv, vth=vth)
    # Loihi 1 on-core CUBA ON/OFF pair: the chain file's netx `input` layer. lava-nc 0.10 cannot
    # compile netx's Input block driven this way (no subcompiler for PyInputModel), so the same LIF
    # is built from that layer's parameters (netx's mapping: du = iDecay - 1, dv = vDecay,
    # vth = vThMant, bias_exp = 6); its input arrives on a_in (u = a << 6 with du = 4095).
    import h5py
    from lava.proc.lif.process import LIF

    with h5py.File(path, "r") as f:
        g = f["layer/0"]
        nn = g["neuron"]
        return LIF(shape=(int(g["shape"][0]),), du=int(nn["iDecay"][()]) - 1, dv=int(nn["vDecay"][()]),
                   vth=int(nn["vThMant"][()]), bias_mant=0, bias_exp=6)


def build(package: str, manifest: dict, tokens: np.ndarray, steps: int, rec_dir: str):
    """Populations, netx chains, readouts, host segments and recorders for the whole network."""
    from lava.lib.dl.netx import hdf5

    with np.load(os.path.join(package, manifest["params_file"])) as z:
        params = {k: z[k] for k in z.files}
    prog = Program.load(package)
    chains = manifest["chains"]
    delay = int(manifest["time"]["chain_latency_steps"])
    loihi2 = manifest["readout"] == "sigma"
    pops, nets, spike_mons, splits = [], [], [], []
    for ch in chains:
        path = os.path.join(package, ch["net_file"])
        pop = _population(ch, params, path)
        cuba = ch["neuron"] == "cuba_onoff"
        net = hdf5.Network(path, skip_layers=1 if cuba else 0, input_message_bits=2 if loihi2 else 0)
        if ch["transport"] == "onoff" and not cuba:
            split = OnOffSplit(shape=(int(ch["n"]),))
            pop.s_out.connect(split.a_in)
            split.s_out.connect(net.inp)
            splits.append(split)
        else:
            pop.s_out.connect(net.inp)
        rec = Recorder(shape=pop.s_out.shape, steps=steps, path=os.path.join(rec_dir, f"spikes_{len(pops)}.npy"))
        pop.s_out.connect(rec.a_in)
        pops.append(pop), nets.append(net), spike_mons.append(rec)
    segs, in_mons = [], []
    for c in range(len(chains) + 1):
        head = c == len(chains)
        cls = HostSegment if (loihi2 or c == 0) else HostSegmentProbe
        seg = cls(package=package, c=c, delay=delay, tokens=tokens,
                  counts_rows=chains[c - 1]["weight_shape"][0] if c else 1,
                  x_width=1 if head else pops[c].a_in.shape[0],
                  ctx_in_width=prog.carry_width(c - 1) if c else 1,
                  ctx_out_width=1 if head else prog.carry_width(c), head=head,
                  logits_path=os.path.join(rec_dir, "logits.npy") if head else "")
        if c:
            readout = nets[c - 1].layers[-1].neuron
            if loihi2:
                readout.s_out.connect(seg.counts_in)
            else:
                seg.counts_ref.connect_var(readout.v)
            segs[-1].ctx_out.connect(seg.ctx_in)
        if not head:
            seg.x_out.connect(pops[c].a_in)
            rec = Recorder(shape=seg.x_out.shape, steps=steps, path=os.path.join(rec_dir, f"inputs_{c}.npy"))
            seg.x_out.connect(rec.a_in)
            in_mons.append(rec)
        segs.append(seg)
    return pops, nets, spike_mons, in_mons, segs, splits


def _models(processes) -> list[str]:
    """Class names of the process models Lava ran (module.Class), sorted and unique."""
    out = set()
    for p in processes:
        mc = getattr(p, "model_class", None)
        if mc is not None:
            out.add(f"{mc.__module__}.{mc.__name__}")
    return sorted(out)


def run(package: str, tokens: np.ndarray) -> dict:
    """Simulate ``tokens`` through the package; returns spikes, population inputs, logits, timing."""
    install_netx_shim()
    # Lava's model search executes every sibling module (torch-importing ones fail): harmless
    warnings.filterwarnings("ignore", message="Cannot import module")
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg

    manifest = json.loads(Path(package, "manifest.json").read_text(encoding="utf-8"))
    d = int(manifest["time"]["chain_latency_steps"])
    M, N = len(manifest["chains"]), len(tokens)
    steps = N + d * M
    rec_dir = tempfile.mkdtemp(prefix="goose-lava-rec-")
    t0 = time.time()
    pops, nets, smons, imons, segs, splits = build(package, manifest, np.asarray(tokens, dtype=np.int64), steps,
                                                   rec_dir)
    root = segs[-1]
    root.create_runtime(run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
    t_build = time.time() - t0
    t0 = time.time()
    try:
        root.run(condition=RunSteps(steps))
        t_run = time.time() - t0
    finally:
        t0 = time.time()
        root.stop()
        t_stop = time.time() - t0
    try:
        load = lambda name: np.load(os.path.join(rec_dir, name)).astype(np.int64)  # noqa: E731
        spikes = [load(f"spikes_{c}.npy")[d * c:d * c + N] for c in range(M)]
        inputs = [load(f"inputs_{c}.npy")[d * c:d * c + N] for c in range(M)]
        logits = np.load(os.path.join(rec_dir, "logits.npy")).astype(np.float64)
    finally:
        shutil.rmtree(rec_dir, ignore_errors=True)
    readouts = [n.layers[-1].neuron for n in nets]
    synapses = [n.layers[-1].synapse for n in nets]
    models = {"populations": _models(pops), "synapses": _models(synapses), "readouts": _models(readouts),
              "host": _models(segs + splits)}
    sys.stderr.write(f"lava: build {t_build:.1f} s, run {t_run:.1f} s, stop {t_stop:.1f} s\n")
    return {"spikes": spikes, "inputs": inputs, "logits": logits, "models": models, "build_s": t_build,
            "run_s": t_run, "steps": steps}


def inspect_package(package: str) -> dict:
    """Load every chain file with ``lava.lib.dl.netx.hdf5.Network`` and check that the synapse's
    effective weights (mantissa * 2^weight_exp) equal the integers in the file."""
    install_netx_shim()
    warnings.filterwarnings("ignore", message="Cannot import module")
    import h5py
    from lava.lib.dl.netx import hdf5

    manifest = json.loads(Path(package, "manifest.json").read_text(encoding="utf-8"))
    out = {}
    for ch in manifest["chains"]:
        path = os.path.join(package, ch["net_file"])
        cuba = ch["neuron"] == "cuba_onoff"
        net = hdf5.Network(path, input_message_bits=2 if manifest["readout"] == "sigma" else 0)
        syn = net.layers[-1].synapse
        exp = int(syn.proc_params["weight_exp"])
        eff = np.asarray(syn.weights.init).astype(np.int64)
        eff = eff << exp if exp >= 0 else eff >> -exp
        with h5py.File(path, "r") as h:
            written = h[f"layer/{len(net) - 1}/weight"][()].astype(np.int64)
        out[ch["population"]] = {"layers": len(net) + (0 if not cuba else 0), "rows": int(net.out.shape[0]),
                                 "inputs": int(syn.s_in.shape[0]), "weight_exp": exp,
                                 "readout": type(net.layers[-1].neuron).__name__,
                                 "weights_exact": bool(np.array_equal(eff, written))}
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
    arrays = {"logits": res["logits"], "timing": np.array([res["build_s"], res["run_s"], res["steps"]])}
    for c, (s, x) in enumerate(zip(res["spikes"], res["inputs"])):
        arrays[f"spikes_{c}"], arrays[f"inputs_{c}"] = s, x
    arrays["models"] = np.array(json.dumps(res["models"]))
    tmp = a.out + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, a.out)
    sys.stdout.write(json.dumps({"chains": len(res["spikes"]), "tokens": len(res["logits"]),
                                 "build_s": res["build_s"], "run_s": res["run_s"], "models": res["models"]}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
