"""Energy of any NIR graph (snnTorch, Norse, Sinabs, Lava-DL exchange format) on the hardware profiles.

A network that is not an ASNN-Goose student is priced from its NIR graph with the same op-cost
table (:func:`goose_neuro.export.opcost.nir_node_cost`) and the same profiles, given its activity
as a small YAML or JSON file::

    time_steps: 10            # time steps per inference (default 1)
    rates:                    # mean spikes per neuron per time step, per spiking node or spike Input
      input: 0.2              #   one number for the population, or a list with one rate per neuron
      lif1: [0.1, 0.0, 0.3]
    input_spikes:             # or spike trains for Input nodes: a (T, n) list of 0/1 rows, or a .npy path
      input: [[1, 0, 1], [0, 0, 1]]
    dt: 1.0e-3                # seconds per step when hidden rates are simulated (default 1e-3)

With ``input_spikes`` the graph is simulated for T steps (forward Euler, as the project's NIR
export writes it: ``v <- v + dt/tau ((v_leak - v) + r I)``, spike when ``v > v_threshold``, then
``v = v_reset``) and every spiking node's rate is measured; rates given under ``rates`` override
simulated ones. Spiking nodes with neither raise :class:`DataError` naming the node.

The result is energy per time step and per inference (``time_steps`` steps), by class and by node,
with each class's price, source and confidence.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from goose_neuro.energy.estimate import energy_by_class, host_for, price_table, total
from goose_neuro.errors import DataError, ExportError
from goose_neuro.export.opcost import (NIR_NEURONS, NIR_PASS, NIR_SPIKING, Precision, nir_node_cost, nir_sources,
                                       nir_width, zero)
from goose_neuro.hardware_profiles import OP_CLASSES, HardwareProfile, load_profile

SUPPORTED = tuple(NIR_PASS) + ("Affine", "Linear", "Scale", "Threshold") + tuple(NIR_NEURONS)
NIR_REPORT_FORMAT = "goose-neuro-nir-energy-report"


# -- loading -------------------------------------------------------------------------------------
def load_nir(path: str | os.PathLike):
    """Read a ``.nir`` file (``nir.read`` with type checks); errors are :class:`DataError`."""
    import nir

    p = Path(path)
    if not p.is_file():
        raise DataError(f"NIR file {p}: not found")
    try:
        g = nir.read(str(p))
    except Exception as e:  # h5py/nir raise many types on a damaged file
        raise DataError(f"NIR file {p}: not a readable NIR graph ({type(e).__name__}: {' '.join(str(e).split())[:200]})") from None
    return check_graph(g, str(p))


def check_graph(g, where: str = "NIR graph"):
    """Refuse what the op-cost table does not cost (nested graphs, unknown types, edges to nowhere)."""
    if not hasattr(g, "nodes") or not hasattr(g, "edges"):
        raise DataError(f"{where}: not a NIR graph")
    for name, node in g.nodes.items():
        t = type(node).__name__
        if t not in SUPPORTED:
            raise DataError(f"{where}: node {name!r} has type {t}, which is not priced "
                            f"(supported: {', '.join(SUPPORTED)})")
        try:
            if t not in ("Input", "Output"):
                nir_width(node)
        except ExportError as e:
            raise DataError(f"{where}: node {name!r}: {e}") from None
    for src, dst in g.edges:
        for x in (src, dst):
            if x not in g.nodes:
                raise DataError(f"{where}: edge {src!r} -> {dst!r} names a node that does not exist")
    return g


def _read_mapping(spec: str | os.PathLike | Mapping) -> dict:
    if isinstance(spec, Mapping):
        return dict(spec)
    p = Path(spec)
    if not p.is_file():
        raise DataError(f"rates file {p}: not found")
    try:
        text = p.read_text(encoding="utf-8")
        if p.suffix == ".json":
            raw = json.loads(text)
        else:
            import yaml

            raw = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"rates file {p}: unreadable ({' '.join(str(e).split())[:200]})") from None
    except Exception as e:  # yaml.YAMLError
        raise DataError(f"rates file {p}: not valid YAML ({' '.join(str(e).split())[:200]})") from None
    if not isinstance(raw, dict):
        raise DataError(f"rates file {p}: top level must be a mapping with 'rates' and/or 'input_spikes'")
    return raw


def _rate_vector(v: Any, n: int, where: str) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64) if not isinstance(v, (str, bytes, dict)) else None
    if a is None or a.ndim > 1 or (a.ndim == 1 and a.shape[0] != n):
        raise DataError(f"{where}: must be one number or a list of {n} numbers (spikes per neuron per step)")
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise DataError(f"{where}: rates must be finite and >= 0")
    return np.broadcast_to(a, (n,)).astype(np.float64)


def _spike_train(v: Any, n: int, where: str, base: Path | None) -> np.ndarray:
    if isinstance(v, str):
        p = Path(v) if base is None or Path(v).is_absolute() else base / v
        try:
            a = np.load(p, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DataError(f"{where}: cannot read {p} ({' '.join(str(e).split())[:120]})") from None
    else:
        try:
            a = np.asarray(v, dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError(f"{where}: must be a (T, {n}) list of 0/1 rows or a .npy path") from None
    if a.ndim != 2 or a.shape[1] != n or a.shape[0] < 1:
        raise DataError(f"{where}: must have shape (T, {n}), got {a.shape}")
    if not np.all(np.isin(a, (0, 1))):
        raise DataError(f"{where}: spike trains hold 0 and 1 only")
    return a.astype(np.float64)


def activity_from_spec(g, spec: str | os.PathLike | Mapping) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Per-node events per step (spiking nodes and spike inputs) and the spec's facts (time_steps, ...)."""
    base = None if isinstance(spec, Mapping) else Path(spec).parent
    where = "rates" if isinstance(spec, Mapping) else f"rates file {spec}"
    raw = _read_mapping(spec)
    unknown = sorted(set(raw) - {"time_steps", "rates", "input_spikes", "dt", "notes"})
    if unknown:
        raise DataError(f"{where}: unknown key {unknown[0]!r} (known: time_steps, rates, input_spikes, dt, notes)")
    T = raw.get("time_steps", 1)
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise DataError(f"{where}: time_steps must be an integer >= 1, got {T!r}")
    dt = raw.get("dt", 1e-3)
    if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not dt > 0:
        raise DataError(f"{where}: dt must be a number > 0, got {dt!r}")
    rates, trains = raw.get("rates") or {}, raw.get("input_spikes") or {}
    for key, val in (("rates", rates), ("input_spikes", trains)):
        if not isinstance(val, dict):
            raise DataError(f"{where}: {key} must be a mapping of node names")
        for name in val:
            if name not in g.nodes:
                raise DataError(f"{where}: {key}.{name}: no node of that name in the graph")
    for name in trains:
        if type(g.nodes[name]).__name__ != "Input":
            raise DataError(f"{where}: input_spikes.{name}: spike trains are given for Input nodes only")
    for name in rates:
        t = type(g.nodes[name]).__name__
        if t not in NIR_SPIKING and t != "Input":
            raise DataError(f"{where}: rates.{name}: node type {t} does not spike")
    events: dict[str, np.ndarray] = {}
    if trains:
        spikes = {k: _spike_train(v, nir_width(g.nodes[k]), f"{where}: input_spikes.{k}", base) for k, v in trains.items()}
        events.update(simulate(g, spikes, float(dt)))
    for name, v in rates.items():
        events[name] = _rate_vector(v, nir_width(g.nodes[name]), f"{where}: rates.{name}")
    for name, node in g.nodes.items():
        if type(node).__name__ in NIR_SPIKING and name not in events:
            raise DataError(f"{where}: spiking node {name!r} has no rate: give rates.{name} or input_spikes")
    facts = {"time_steps": T, "dt": float(dt), "simulated": bool(trains), "given_rates": sorted(rates),
             "spike_inputs": sorted(set(trains) | {k for k in rates if type(g.nodes[k]).__name__ == "Input"})}
    return events, facts


# -- simulation (input spike trains -> rates of every spiking node) ---------------------------------
def _order(g) -> list[str]:
    """Nodes in an order where every forward source comes first (back edges of cycles use last step)."""
    indeg = {k: 0 for k in g.nodes}
    for _, d in g.edges:
        indeg[d] += 1
    order, seen = [], set()
    ready = [k for k, v in indeg.items() if v == 0]
    while len(order) < len(g.nodes):
        if not ready:  # a cycle: release the earliest unseen node
            ready = [next(k for k in g.nodes if k not in seen)]
        k = ready.pop(0)
        if k in seen:
            continue
        seen.add(k)
        order.append(k)
        for s, d in g.edges:
            if s == k and d not in seen:
                indeg[d] -= 1
                if indeg[d] <= 0:
                    ready.append(d)
    return order


def simulate(g, input_spikes: Mapping[str, np.ndarray], dt: float) -> dict[str, np.ndarray]:
    """Run the graph for T steps on the given input spike trains; mean spikes per step per channel
    of every spiking node and every driven Input. Inputs without trains are held at zero."""
    T = {a.shape[0] for a in input_spikes.values()}
    if len(T) != 1:
        raise DataError(f"input_spikes: every train needs the same number of steps, got {sorted(T)}")
    steps = T.pop()
    order = _order(g)
    out = {k: np.zeros(nir_width(n)) if type(n).__name__ != "Output" else None for k, n in g.nodes.items()}
    state: dict[str, dict[str, np.ndarray]] = {}
    count = {k: np.zeros(nir_width(g.nodes[k])) for k, n in g.nodes.items()
             if type(n).__name__ in NIR_SPIKING or k in input_spikes}
    for t in range(steps):
        for k in order:
            node = g.nodes[k]
            typ = type(node).__name__
            if typ == "Input":
                out[k] = input_spikes[k][t] if k in input_spikes else np.zeros(nir_width(node))
            elif typ == "Output":
                continue
            else:
                x = sum((out[s] for s in nir_sources(g, k) if out[s] is not None), np.zeros(_in_width(g, k)))
                out[k] = _step(node, typ, x, state.setdefault(k, {}), dt)
            if k in count:
                count[k] += out[k] != 0
    return {k: v / steps for k, v in count.items()}


def _in_width(g, name: str) -> int:
    node = g.nodes[name]
    if type(node).__name__ in ("Affine", "Linear"):
        return int(np.asarray(node.weight).shape[1])
    return nir_width(node)


def _step(node, typ: str, x: np.ndarray, st: dict, dt: float) -> np.ndarray:
    """One forward-Euler step of a NIR node on input x."""
    if typ == "Linear":
        return np.asarray(node.weight, dtype=np.float64) @ x
    if typ == "Affine":
        return np.asarray(node.weight, dtype=np.float64) @ x + np.asarray(node.bias, dtype=np.float64)
    if typ == "Scale":
        return np.asarray(node.scale, dtype=np.float64) * x
    if typ == "Flatten":
        return x
    if typ == "Threshold":
        return (x > np.asarray(node.threshold, dtype=np.float64)).astype(np.float64)
    f = lambda a: np.asarray(getattr(node, a), dtype=np.float64)  # noqa: E731
    if typ in ("CubaLIF", "CubaLI"):
        i = st.get("i", np.zeros_like(x))
        i = i + dt / f("tau_syn") * (-i + f("w_in") * x)
        st["i"] = i
        x, tau = i, f("tau_mem")
    else:
        tau = f("tau") if typ in ("LIF", "LI") else None
    v = st.get("v", np.zeros_like(x))
    if typ in ("IF", "I"):
        v = v + dt * f("r") * x
    else:
        v = v + dt / tau * ((f("v_leak") - v) + f("r") * x)
    if typ in ("LI", "CubaLI", "I"):
        st["v"] = v
        return v
    s = (v > f("v_threshold")).astype(np.float64)
    st["v"] = np.where(s > 0, f("v_reset"), v)
    return s


# -- pricing -------------------------------------------------------------------------------------
def nir_counts(g, events: Mapping[str, np.ndarray], precision: Precision) -> dict[str, dict[str, float]]:
    """node -> class -> count per time step."""
    return {name: nir_node_cost(g, name, events, precision) for name in g.nodes}


def price_nir(g, events: Mapping[str, np.ndarray], prof: HardwareProfile, time_steps: int = 1) -> dict[str, Any]:
    """One target: counts and energy per step and per inference, by class and node, with the prices used."""
    prices = price_table(prof, host_for(prof))
    per_node = nir_counts(g, events, Precision.from_profile(prof))
    totals = zero()
    for c in per_node.values():
        for k, v in c.items():
            totals[k] += v
    by = energy_by_class(totals, prices)
    step = total(by)
    return {"title": prof.title, "kind": prof.kind, "event_driven": prof.event_driven,
            "energy_pj_per_step": step, "energy_pj_per_inference": step * time_steps,
            "energy_pj_by_class_per_step": by, "counts_per_step": {k: float(totals[k]) for k in OP_CLASSES},
            "nodes": {n: {"type": type(g.nodes[n]).__name__,
                          "pj_per_step": total(energy_by_class(c, prices)),
                          "counts_per_step": {k: v for k, v in c.items() if v}} for n, c in per_node.items()},
            "constants": {c: p.to_dict() for c, p in prices.items()}}


def nir_energy(nir_graph, spec: str | os.PathLike | Mapping, profiles: Sequence[str | HardwareProfile] = ("loihi",),
               source: str = "") -> dict[str, Any]:
    """Price a NIR graph (a ``nir.NIRGraph`` or a ``.nir`` path) with its activity ``spec`` on profiles.

    Returns the dict ``report.json`` holds for ``goose-energy --nir``."""
    g = load_nir(nir_graph) if isinstance(nir_graph, (str, os.PathLike)) else check_graph(nir_graph)
    profs = [p if isinstance(p, HardwareProfile) else load_profile(p) for p in profiles]
    events, facts = activity_from_spec(g, spec)
    pops = {}
    for name, e in events.items():
        pops[name] = {"type": type(g.nodes[name]).__name__, "neurons": int(e.shape[0]),
                      "rate_per_step": float(e.mean()), "events_per_step": float(e.sum())}
    rep = {"format": NIR_REPORT_FORMAT, "version": 1,
           "graph": {"source": str(source or (nir_graph if isinstance(nir_graph, (str, os.PathLike)) else "")),
                     "nodes": {n: type(v).__name__ for n, v in g.nodes.items()}, "edges": [list(e) for e in g.edges]},
           "activity": {**facts, "populations": pops},
           "profiles": {p.name: price_nir(g, events, p, facts["time_steps"]) for p in profs}}
    return rep


def render_nir_markdown(rep: dict[str, Any]) -> str:
    from goose_neuro.energy.report import _fmt, _pj, _table

    a = rep["activity"]
    out = ["# Energy of a NIR graph", "",
           f"Graph: `{rep['graph']['source'] or 'in memory'}`, {len(rep['graph']['nodes'])} nodes. "
           f"{a['time_steps']} time step(s) per inference; rates "
           f"{'simulated from input spike trains (dt ' + str(a['dt']) + ' s)' if a['simulated'] else 'as given'}"
           f"{' (given: ' + ', '.join(a['given_rates']) + ')' if a['given_rates'] else ''}.", "",
           "## Energy per target", ""]
    rows = [[f"`{n}`", b["kind"], _pj(b["energy_pj_per_step"]), _pj(b["energy_pj_per_inference"])]
            for n, b in rep["profiles"].items()]
    out.append(_table(["target", "kind", "per time step", "per inference"], rows))
    out += ["", "## Activity", ""]
    rows = [[f"`{n}`", p["type"], p["neurons"], _fmt(p["rate_per_step"]), _fmt(p["events_per_step"])]
            for n, p in a["populations"].items()]
    out.append(_table(["node", "type", "neurons", "spikes per neuron per step", "events per step"], rows))
    for n, b in rep["profiles"].items():
        out += ["", f"## `{n}`: counts per step and prices", ""]
        rows = [[c, _fmt(b["counts_per_step"][c]), _fmt(b["constants"][c]["pj"]), b["constants"][c]["unit"],
                 _fmt(b["energy_pj_by_class_per_step"][c]), b["constants"][c]["how"], b["constants"][c]["confidence"],
                 b["constants"][c]["source"]] for c in OP_CLASSES]
        out.append(_table(["class", "count / step", "price", "unit", "pJ / step", "how", "confidence", "source"], rows))
        rows = [[f"`{k}`", v["type"], _fmt(v["pj_per_step"])] for k, v in b["nodes"].items() if v["pj_per_step"]]
        out += ["", "By node:", "", _table(["node", "type", "pJ / step"], rows)]
    out += ["", "Energy is per-operation dynamic energy (counts times the profile's figures); static power, "
                "host-chip traffic and hops between cores are not included.", ""]
    return "\n".join(out)


def write_nir_report(rep: dict[str, Any], out_dir: str | os.PathLike, plots: bool = True) -> Path:
    """report.json, report.md and (plots) nir_energy_by_node.png, written atomically."""
    from goose_neuro.energy.report import _json_safe
    from goose_neuro.fileio import atomic_dir, check_writable_dir

    check_writable_dir(out_dir)
    with atomic_dir(out_dir) as d:
        (d / "report.json").write_text(json.dumps(_json_safe(rep), indent=2) + "\n", encoding="utf-8")
        (d / "report.md").write_text(render_nir_markdown(rep), encoding="utf-8")
        if plots:
            _plot_nodes(rep, d / "nir_energy_by_node.png")
    return Path(out_dir)


def _plot_nodes(rep: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    P = rep["profiles"]
    nodes = [n for n in rep["graph"]["nodes"] if any(b["nodes"][n]["pj_per_step"] for b in P.values())]
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(nodes) * max(1, len(P)) / 2), 4))
    w = 0.8 / max(1, len(P))
    for i, (pn, b) in enumerate(P.items()):
        ax.bar(np.arange(len(nodes)) + i * w, [b["nodes"][n]["pj_per_step"] for n in nodes], w, label=pn)
    ax.set_xticks(np.arange(len(nodes)) + 0.4 - w / 2, nodes, rotation=30, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("pJ per time step")
    ax.set_title("Energy per node and target (NIR graph)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
