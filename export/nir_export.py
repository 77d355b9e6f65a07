"""NIR export: the spiking part of the network as a NIR graph (``nir`` package, ``.nir`` HDF5).

``export_nir(graph, out_dir)`` writes ``OUT/model.nir`` and ``OUT/nir_metadata.json``.

Mapping, per spiking population P (n neurons, student update per token ``mem = beta*mem + x``,
ternary threshold th) and the ternary synapses it feeds:

    P.input (Input, n) -> P.on  (LIF)                  -> P.<proj>.on  (Linear, W) -> P.<proj> (Output)
                       -> P.neg (Scale -1) -> P.off (LIF) -> P.<proj>.off (Linear, -W) -> P.<proj>

* NIR neurons are continuous-time: ``tau dv/dt = (v_leak - v) + r I``. With a stated time step
  ``dt`` (one token; metadata ``dt``) and forward Euler, ``v <- (1 - dt/tau) v + (dt/tau) r I``, so
  ``tau = dt / (1 - beta)`` and ``r = tau / dt`` reproduce ``mem = beta*mem + x``; ``v_threshold = th``.
* NIR LIFs are binary with reset to ``v_reset``: a ternary population becomes an ON/OFF pair (the
  Loihi 1 mapping), and the student's subtract reset becomes reset to zero. Both are stated in
  the metadata; edges into one node are summed, so ``s = on - off`` reaches each projection.
* A ``ternary_lif`` population (current ``u = beta_u u + x``, voltage ``v = beta v + u``, reset to
  zero) becomes ON/OFF ``CubaLIF`` pairs: ``tau_syn = dt / (1 - beta_u)``, ``w_in = tau_syn / dt``
  and ``tau_mem = dt / (1 - beta)``, ``r = tau_mem / dt``; its reset to zero is NIR's own.
* Fixed-point neurons (``LIF.fixed``) are written as their float equivalents (NIR has no integer
  arithmetic); the metadata says so.
* ``W`` is the IR's folded float matrix ``scale_pos * P - scale_neg * N`` (amplitude included).
* The spiking part has no synaptic recurrence (the recurrences are the LIF membranes and the host's
  WKV and token shift), so the graph has no cycles; ``nir`` would accept them.
* Everything NIR cannot express (embedding, LayerNorm, token shift, WKV, sigmoid, relu^2, gating,
  residual adds, head) is listed in the metadata with its inputs, not dropped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from goose_neuro.errors import ExportError

DT = 1e-3  # seconds per token (a convention: the student's time step is one token)


def _population_nodes(name: str, lif, dt: float) -> dict[str, Any]:
    import nir

    n = len(lif.beta)
    beta = np.asarray(lif.beta, dtype=np.float64)
    tau = dt / (1.0 - beta)
    params = dict(r=tau / dt, v_leak=np.zeros(n), v_threshold=np.asarray(lif.threshold, np.float64),
                  v_reset=np.zeros(n))
    if lif.neuron == "ternary_lif":
        tau_syn = dt / (1.0 - np.asarray(lif.beta_u, dtype=np.float64))
        make = lambda: nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau, w_in=tau_syn / dt, **params)  # noqa: E731
    else:
        make = lambda: nir.LIF(tau=tau, **params)  # noqa: E731
    return {f"{name}.input": nir.Input(input_type={"input": np.array([n])}),
            f"{name}.on": make(), f"{name}.neg": nir.Scale(scale=-np.ones(n)), f"{name}.off": make()}


def _approximations(lifs: dict) -> list[str]:
    """What the NIR graph does not reproduce exactly, for the populations it holds."""
    kinds = {lif.neuron for lif in lifs.values()}
    out = ["ternary spikes as ON/OFF pairs of binary LIF populations (s = on - off)"]
    if "subtract" in kinds:
        out.append("subtract reset of the student mapped to NIR's reset to v_reset = 0")
    if "ternary_lif" in kinds:
        out.append("ternary_lif populations as ON/OFF CubaLIF pairs: each resets to zero on its own spikes "
                   "only, where the student's one voltage resets on either")
    if any(lif.fixed for lif in lifs.values()):
        out.append("fixed-point neurons written as their float equivalents (NIR has no integer arithmetic)")
    return out


def build_nir(graph, dt: float = DT):
    """IR graph -> (nir.NIRGraph, metadata dict)."""
    import nir

    lifs = {n: node for n, node in graph.nodes.items() if node.type == "LIF"}
    if not lifs:
        raise ExportError("the model has no spiking populations (spike_mode='none'): no NIR graph to write")
    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    mapped = set(lifs)
    for name, lif in lifs.items():
        nodes.update(_population_nodes(name, lif, dt))
        edges += [(f"{name}.input", f"{name}.on"), (f"{name}.input", f"{name}.neg"), (f"{name}.neg", f"{name}.off")]
        for cname, node in graph.nodes.items():
            if name not in node.inputs:
                continue
            if node.type != "TernaryDense":
                raise ExportError(f"{cname} ({node.type}) reads spikes of {name}; NIR export maps TernaryDense only")
            w = node.float_weight().astype(np.float64)
            nodes[f"{cname}.on"], nodes[f"{cname}.off"] = nir.Linear(weight=w), nir.Linear(weight=-w)
            nodes[cname] = nir.Output(output_type={"output": np.array([w.shape[0]])})
            edges += [(f"{name}.on", f"{cname}.on"), (f"{name}.off", f"{cname}.off"),
                      (f"{cname}.on", cname), (f"{cname}.off", cname)]
            mapped.add(cname)
    host = [{"name": n, "op": node.type, "inputs": list(node.inputs)} for n, node in graph.nodes.items()
            if n not in mapped and node.type not in ("TokenInput", "Output")]
    meta = {"format": "goose-neuro-nir", "format_version": 1, "dt": dt, "time_unit": "s (one token per dt)",
            "discretisation": "forward Euler: tau = dt/(1-beta), r = tau/dt, v_leak = 0",
            "approximations": _approximations(lifs),
            "recurrence": "none between populations in the spiking part (membranes only); WKV and token "
                          "shift recurrences are host-side ops",
            "not_expressible_in_nir": host,
            "model_config": graph.meta.get("model_config", {})}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"goose": json.dumps(meta)}), meta


def export_nir(graph, out_dir: str | os.PathLike, dt: float = DT) -> Path:
    """Write ``model.nir`` (read back with ``nir.read(type_check=True)``) and ``nir_metadata.json``."""
    import nir

    from goose_neuro.fileio import atomic_dir, atomic_write_json

    if not isinstance(dt, (int, float)) or isinstance(dt, bool) or not dt > 0:
        raise ExportError(f"dt={dt!r}: must be a positive number of seconds per token")
    g, meta = build_nir(graph, float(dt))
    with atomic_dir(out_dir) as tmp:
        nir.write(tmp / "model.nir", g)
        atomic_write_json(tmp / "nir_metadata.json", meta)
    return Path(out_dir)
