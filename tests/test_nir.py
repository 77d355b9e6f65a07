"""NIR export: round trip with nir.read(type_check=True), dynamics mapping, nothing dropped, and the
exported graph simulated (by an independent NIR simulator below) against the PyTorch model on real text."""

from __future__ import annotations

import json

import nir
import numpy as np
import pytest
import torch

from goose_neuro.config import preset
from goose_neuro.errors import ExportError
from goose_neuro.export.ir import LIF
from goose_neuro.export.lower import lower
from goose_neuro.export.nir_export import export_nir
from goose_neuro.model import ASNNGoose


def _graph(**kw):
    torch.manual_seed(0)
    return lower(ASNNGoose(preset("tiny", n_layers=1, **kw)).eval())


def test_nir_round_trip(tmp_path):
    g = _graph()
    out = export_nir(g, tmp_path / "n", dt=1e-3)
    back = nir.read(out / "model.nir", type_check=True)
    lif = back.nodes["L0.tm.lif_in.on"]
    src = g.nodes["L0.tm.lif_in"]
    assert isinstance(lif, nir.LIF) and isinstance(back.nodes["L0.tm.lif_in.off"], nir.LIF)
    # forward Euler with dt: v <- (1 - dt/tau) v + (dt/tau) r x  ==  beta v + x
    np.testing.assert_allclose(1 - 1e-3 / lif.tau, src.beta, rtol=1e-6)
    np.testing.assert_allclose(1e-3 / lif.tau * lif.r, 1.0, rtol=1e-9)
    np.testing.assert_allclose(lif.v_threshold, src.threshold)
    w = back.nodes["L0.tm.key.on"].weight
    np.testing.assert_allclose(w, g.nodes["L0.tm.key"].float_weight())
    np.testing.assert_allclose(back.nodes["L0.tm.key.off"].weight, -w)
    assert ("L0.tm.lif_in.off", "L0.tm.key.off") in back.edges and ("L0.tm.key.on", "L0.tm.key") in back.edges
    meta = json.loads(back.metadata["goose"])
    assert meta["dt"] == 1e-3
    host = {h["op"] for h in meta["not_expressible_in_nir"]}
    assert {"Embedding", "LayerNorm", "WKV", "Sigmoid", "ReLUSquare", "Mul", "Add", "Dense", "ShiftMix"} <= host
    assert json.loads((out / "nir_metadata.json").read_text()) == meta


def test_nir_ternary_lif_maps_to_cuba_lif(tmp_path):
    """lava-nc's TernaryLIF (current and voltage decays, reset to zero) becomes ON/OFF CubaLIF pairs
    whose forward-Euler update with dt is the student's: u <- beta_u u + x, v <- beta v + u."""
    torch.manual_seed(0)
    m = ASNNGoose(preset("tiny", n_layers=1, neuron="ternary_lif", fixed_point=True)).eval()
    with torch.no_grad():
        for lif in m.populations().values():
            lif.beta_u_raw.fill_(0.3)
    g = lower(m)
    out = export_nir(g, tmp_path / "n", dt=1e-3)
    back = nir.read(out / "model.nir", type_check=True)
    node, src = back.nodes["L0.tm.lif_in.on"], g.nodes["L0.tm.lif_in"]
    assert isinstance(node, nir.CubaLIF) and isinstance(back.nodes["L0.tm.lif_in.off"], nir.CubaLIF)
    np.testing.assert_allclose(1 - 1e-3 / node.tau_syn, src.beta_u, rtol=1e-6)
    np.testing.assert_allclose(1e-3 / node.tau_syn * node.w_in, 1.0, rtol=1e-9)
    np.testing.assert_allclose(1 - 1e-3 / node.tau_mem, src.beta, rtol=1e-6)
    np.testing.assert_allclose(1e-3 / node.tau_mem * node.r, 1.0, rtol=1e-9)
    approx = " ".join(json.loads(back.metadata["goose"])["approximations"])
    assert "CubaLIF" in approx and "fixed-point neurons written as their float equivalents" in approx
    assert "subtract reset" not in approx


def test_nir_bad_inputs_write_nothing(tmp_path):
    with pytest.raises(ExportError, match="spike_mode='none'"):
        export_nir(_graph(spike_mode="none"), tmp_path / "a")
    with pytest.raises(ExportError, match="dt"):
        export_nir(_graph(), tmp_path / "b", dt=0)
    assert list(tmp_path.iterdir()) == []


def test_nir_via_export_cli(tmp_path):
    from goose_neuro.checkpoint import save_checkpoint
    from goose_neuro.cli.export import main

    torch.manual_seed(0)
    save_checkpoint(ASNNGoose(preset("tiny", n_layers=1)), tmp_path / "ck")
    assert main(["--target", "nir", str(tmp_path / "ck"), "-o", str(tmp_path / "out")]) == 0
    assert len(nir.read(tmp_path / "out" / "model.nir").nodes) > 0


# -- the NIR graph simulated against the model ---------------------------------------------------
TEXT = ("It was in July, 1805, and the speaker was the well-known Anna Pavlovna Scherer, maid of honour "
        "and confidante to the Empress Marya Fedorovna.")


def simulate_nir(graph: nir.NIRGraph, inputs: dict[str, np.ndarray], dt: float) -> dict[str, np.ndarray]:
    """Run a NIR graph for T steps, independently of the exporter: node name -> (T, width) outputs.

    Semantics of NIR 1.0 with forward Euler at step ``dt``: the input of a node is the sum of what
    its incoming edges carry; ``LIF``: ``v += dt/tau * (v_leak - v + r*I)``, spike ``v > v_threshold``,
    then ``v = v_reset``; ``Scale``: ``s*I``; ``Linear``: ``W @ I``; ``Input``/``Output``: identity.
    ``inputs``: Input node name -> (T, n) values."""
    preds = {n: [s for s, d in graph.edges if d == n] for n in graph.nodes}
    order, seen = [], set()

    def visit(n):  # depth-first topological order (the spiking part has no cycles)
        if n not in seen:
            seen.add(n)
            for p in preds[n]:
                visit(p)
            order.append(n)

    for n in graph.nodes:
        visit(n)
    T = len(next(iter(inputs.values())))
    v = {n: np.zeros_like(np.asarray(node.tau, np.float64)) for n, node in graph.nodes.items()
         if isinstance(node, nir.LIF)}
    rec: dict[str, list] = {n: [] for n in graph.nodes}
    for t in range(T):
        out: dict[str, np.ndarray] = {}
        for n in order:
            node = graph.nodes[n]
            x = inputs[n][t] if isinstance(node, nir.Input) else sum(out[p] for p in preds[n])
            if isinstance(node, nir.LIF):
                v[n] = v[n] + dt / node.tau * (node.v_leak - v[n] + node.r * x)
                y = (v[n] > node.v_threshold).astype(np.float64)
                v[n] = np.where(y > 0, node.v_reset, v[n])
            elif isinstance(node, nir.Scale):
                y = node.scale * x
            elif isinstance(node, nir.Linear):
                y = node.weight @ x
            elif isinstance(node, (nir.Input, nir.Output)):
                y = np.asarray(x, np.float64)
            else:
                raise NotImplementedError(f"{n}: NIR node type {type(node).__name__}")
            out[n] = y
            rec[n].append(y)
    return {n: np.stack(r) for n, r in rec.items()}


@pytest.fixture(scope="module")
def model_run():
    """A float64 model on real text (UTF-8 bytes as tokens): each population's input current and
    unit spikes, and each synapse's output, from PyTorch."""
    from goose_neuro.model import forward_pre_hooks
    from goose_neuro.ternary import TernaryLinear

    torch.manual_seed(0)
    m = ASNNGoose(preset("tiny", n_layers=2)).double().eval()
    tokens = torch.tensor([list(TEXT.encode("utf-8"))])  # (1, T)
    pops = m.populations()
    names = {mod: name for name, mod in pops.items()}
    currents: dict[str, np.ndarray] = {}
    synapses: dict[str, np.ndarray] = {}
    ir_name = {mod: "L" + path.removeprefix("blocks.") for path, mod in m.named_modules()
               if isinstance(mod, TernaryLinear) and path.startswith("blocks.")}
    hooks = [mod.register_forward_hook(lambda mod, i, o: synapses.__setitem__(ir_name[mod], o[0].detach().numpy()))
             for mod in ir_name]
    with forward_pre_hooks(pops.values(), lambda mod, inp: currents.__setitem__(names[mod], inp[0][0].numpy())), \
            torch.no_grad():
        out = m.run(tokens, collect=True)
    for h in hooks:
        h.remove()
    spikes = {n: s[0].numpy() for n, s in out.spikes.items()}
    return lower(m), currents, spikes, synapses


def compare_nir(graph: nir.NIRGraph, currents, spikes, synapses) -> dict:
    """Simulate ``graph`` on the model's input currents and compare it with the model. NIR's LIF resets
    to zero and a ternary population is an ON/OFF pair of membranes, so the two agree exactly until a
    channel's first spike, and each synapse agrees wherever the spikes feeding it agree."""
    dt = json.loads(graph.metadata["goose"])["dt"]
    sim = simulate_nir(graph, {f"{p}.input": x for p, x in currents.items()}, dt)
    fails, agree, total = [], 0, 0
    for p, want in spikes.items():  # want: (T, n) in {-1, 0, 1}
        got = sim[f"{p}.on"] - sim[f"{p}.off"]
        agree, total = agree + int((got == want).sum()), total + want.size
        if not np.array_equal(got[0], want[0]):
            fails.append(f"{p}: spikes differ at the first token")
        first_w = [(int(np.argmax(c != 0)), c[np.argmax(c != 0)]) if c.any() else None for c in want.T]
        first_g = [(int(np.argmax(c != 0)), c[np.argmax(c != 0)]) if c.any() else None for c in got.T]
        if first_w != first_g:
            fails.append(f"{p}: first spike (token, sign) of some channel differs")
        for syn in (d for s, d in graph.edges if s == f"{p}.on"):
            proj = syn.removesuffix(".on")
            rows = (got == want).all(1)  # tokens where the population's spikes agree
            if not np.allclose(sim[proj][rows], synapses[proj][rows], rtol=0, atol=1e-9):
                fails.append(f"{proj}: synapse output differs from the model's")
    return {"failures": fails, "spike_agreement": agree / total, "spikes": int(sum(np.abs(s).sum()
                                                                               for s in spikes.values()))}


def test_nir_graph_simulated_on_real_text_matches_the_model(tmp_path, model_run):
    g, currents, spikes, synapses = model_run
    back = nir.read(export_nir(g, tmp_path / "n") / "model.nir", type_check=True)
    assert set(currents) == set(spikes) == set(g.of_type(LIF)) and len(synapses) == 14
    rep = compare_nir(back, currents, spikes, synapses)
    assert rep["failures"] == []
    assert rep["spikes"] > 1000  # the populations do spike on this text
    # the rest of the difference is the stated approximation (reset to zero, ON/OFF pairs): most agree
    assert 0.9 < rep["spike_agreement"] < 1.0


@pytest.mark.parametrize("damage, expect", [
    ("off_weight", "synapse output differs"),  # OFF path added instead of subtracted
    ("tau", "first spike"),  # one population leaks at another rate
    ("threshold", "first spike"),
    ("edge", "synapse output differs"),  # one synapse fed from the wrong population
])
def test_nir_comparison_fails_on_a_damaged_graph(tmp_path, model_run, damage, expect):
    g, currents, spikes, synapses = model_run
    back = nir.read(export_nir(g, tmp_path / "n") / "model.nir", type_check=True)
    nodes, edges = dict(back.nodes), list(back.edges)
    if damage == "off_weight":
        nodes["L0.tm.key.off"] = nir.Linear(weight=-nodes["L0.tm.key.off"].weight)
    elif damage == "tau":
        lif = nodes["L0.tm.lif_out.on"]
        nodes["L0.tm.lif_out.on"] = nir.LIF(tau=lif.tau * 1.5, r=lif.r * 1.5, v_leak=lif.v_leak,
                                            v_threshold=lif.v_threshold, v_reset=lif.v_reset)
    elif damage == "threshold":
        lif = nodes["L0.tm.lif_in.off"]
        nodes["L0.tm.lif_in.off"] = nir.LIF(tau=lif.tau, r=lif.r, v_leak=lif.v_leak,
                                             v_threshold=lif.v_threshold * 0.5, v_reset=lif.v_reset)
    else:
        edges[edges.index(("L0.tm.lif_in.on", "L0.tm.value.on"))] = ("L0.cm.lif_in.on", "L0.tm.value.on")
    bad = nir.NIRGraph(nodes=nodes, edges=edges, metadata=back.metadata, type_check=False)
    fails = compare_nir(bad, currents, spikes, synapses)["failures"]
    assert any(expect in f for f in fails), fails
