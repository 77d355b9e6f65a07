"""Calibration on silicon: a published Loihi energy measurement against this project's estimate.

The record (``calibration_data/<name>.yaml``) holds the paper's description of the network, its
measured figures with where in the paper they are, what the paper does not state, and the
assumptions this estimate makes instead. :func:`calibrate` builds the network as a NIR graph from
that description, prices it with :func:`goose_neuro.energy.nir_cost.nir_energy` on the profile
(the same op-cost table and figures as every other estimate) and reports::

    ops estimate        per-operation energy per inference at the stated activity (default: the upper
                        bound, every neuron spiking every step)
    ratio               ops estimate / measured dynamic energy per inference
    T for parity        time steps per inference at which the upper bound would equal the measurement
    reconciled          ops estimate + the paper's own embedded-CPU power x its measured time per
                        inference: an accounting check with the paper's figures, not a prediction

Blouw et al. 2019 (arXiv 1812.01739) is the first record: a 390-256-256-29 keyword spotter.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import numpy as np

from goose_neuro.errors import DataError

#: Node names of the calibration graphs (input, hidden populations, connections, output).
INPUT, OUTPUT = "input", "output"


def load_record(name: str = "blouw2019_kws") -> dict[str, Any]:
    """A calibration record shipped in ``goose_neuro/energy/calibration_data``."""
    import yaml

    res = resources.files("goose_neuro.energy") / "calibration_data" / f"{name}.yaml"
    if not res.is_file():
        avail = sorted(p.name[:-5] for p in (resources.files("goose_neuro.energy") / "calibration_data").iterdir()
                       if p.name.endswith(".yaml"))
        raise DataError(f"unknown calibration record {name!r}: use one of {', '.join(avail)}")
    return yaml.safe_load(res.read_text(encoding="utf-8"))


def feedforward_nir(layers: list[int], tau: float = 0.02, threshold: float = 1.0):
    """A fully connected spiking network as a NIR graph: Input(l0) -> [Linear -> LIF] x hidden ->
    Linear -> Output(l_last). Weights are all ones: only the nonzero pattern matters for counting."""
    import nir

    if len(layers) < 2 or any(int(n) < 1 for n in layers):
        raise DataError(f"network layers must be at least two positive sizes, got {layers}")
    nodes: dict[str, Any] = {INPUT: nir.Input(np.array([layers[0]]))}
    edges, prev = [], INPUT
    for i, (n_in, n_out) in enumerate(zip(layers[:-1], layers[1:]), start=1):
        syn = f"w{i}"
        nodes[syn] = nir.Linear(np.ones((n_out, n_in)))
        edges.append((prev, syn))
        prev = syn
        if i < len(layers) - 1:
            pop = f"lif{i}"
            nodes[pop] = nir.LIF(tau=np.full(n_out, tau), r=np.ones(n_out), v_leak=np.zeros(n_out),
                                 v_threshold=np.full(n_out, threshold))
            edges.append((prev, pop))
            prev = pop
    nodes[OUTPUT] = nir.Output(np.array([layers[-1]]))
    edges.append((prev, OUTPUT))
    return nir.NIRGraph(nodes=nodes, edges=edges)


def uniform_rates(graph, rate: float, time_steps: int) -> dict[str, Any]:
    """A rates spec with every spiking population and the input at ``rate`` spikes per neuron per step."""
    rates = {k: float(rate) for k, v in graph.nodes.items() if type(v).__name__ in ("LIF", "Input")}
    return {"time_steps": int(time_steps), "rates": rates}


def calibrate(name: str = "blouw2019_kws", profile: str = "loihi", rate: float | None = None,
              time_steps: int | None = None) -> dict[str, Any]:
    """Estimate the record's network on ``profile`` and compare with the published measurement.

    ``rate`` (spikes per neuron per step, every population) defaults to the record's upper bound;
    ``time_steps`` to the record's assumption. Returns a dict (see the module docstring)."""
    from goose_neuro.energy.nir_cost import nir_energy

    rec = load_record(name)
    m, a = rec["measured"], rec["assumptions"]
    T = int(time_steps if time_steps is not None else a["time_steps"]["value"])
    r = float(rate if rate is not None else a["rate_upper_bound"]["value"])
    g = feedforward_nir(rec["network"]["layers"])
    rep = nir_energy(g, uniform_rates(g, r, T), [profile], source=f"calibration record {name}")
    b = rep["profiles"][profile]
    silent = nir_energy(g, uniform_rates(g, 0.0, T), [profile])["profiles"][profile]["energy_pj_per_step"]
    measured_pj = float(m["energy_per_inference"]["value"]) * 1e12
    per_inf_s = 1.0 / float(m["inferences_per_second"]["value"])
    cpu_pj = float(m["embedded_cpu_power"]["value"]) * per_inf_s * 1e12
    est = float(b["energy_pj_per_inference"])
    return {
        "name": rec["name"], "paper": rec["paper"], "profile": profile, "network": rec["network"],
        "measured": m, "not_in_paper": rec["not_in_paper"], "assumptions": rec["assumptions"],
        "time_steps": T, "rate": r,
        "measured_pj_per_inference": measured_pj,
        "measured_from_power_pj": float(m["dynamic_power"]["value"]) * per_inf_s * 1e12,
        "estimate_pj_per_inference": est,
        "estimate_by_class_pj_per_inference": {k: v * T for k, v in b["energy_pj_by_class_per_step"].items()},
        "silent_pj_per_inference": silent * T,
        "ratio": est / measured_pj,
        "time_steps_for_parity": measured_pj / b["energy_pj_per_step"],
        "embedded_cpu_pj_per_inference": cpu_pj,
        "reconciled_pj_per_inference": est + cpu_pj,
        "reconciled_ratio": (est + cpu_pj) / measured_pj,
        "nir_report": rep,
    }


def calibration_markdown(c: dict[str, Any]) -> str:
    """The calibration as a short Markdown section."""
    from goose_neuro.energy.report import _pj

    m = c["measured"]
    lines = [f"## Calibration: {c['name']} on `{c['profile']}`", "", f"Paper: {c['paper']}.", "",
             f"Network (paper): layers {c['network']['layers']}, {c['network']['kind']}.", "",
             "| quantity | value | where it comes from |", "| --- | --- | --- |",
             f"| measured dynamic energy / inference | {_pj(c['measured_pj_per_inference'])} | "
             f"{m['energy_per_inference']['source']} |",
             f"| time steps per inference | {c['time_steps']} | {c['assumptions']['time_steps']['source']} |",
             f"| spikes per neuron per step (all layers) | {c['rate']:g} | "
             f"{c['assumptions']['rate_upper_bound']['source'] if c['rate'] == 1.0 else 'given'} |",
             f"| per-operation estimate / inference | {_pj(c['estimate_pj_per_inference'])} | this model, "
             f"`{c['profile']}` profile |",
             f"| estimate / measured | {c['ratio']:.3g} | |",
             f"| time steps for the upper bound to reach the measurement | {c['time_steps_for_parity']:.3g} | |",
             f"| embedded CPU power x measured time / inference | {_pj(c['embedded_cpu_pj_per_inference'])} | "
             f"{m['embedded_cpu_power']['source']}; {m['inferences_per_second']['source']} |",
             f"| (estimate + embedded CPU) / measured | {c['reconciled_ratio']:.3g} | accounting with the paper's "
             "own figures, not a prediction |", "",
             "Not in the paper: " + "; ".join(c["not_in_paper"]) + ".", ""]
    return "\n".join(lines)
