"""Loihi / Loihi 2 packages without Lava: placement, integer parameters, exact ternary weights,
the host program (checked by a numpy pipeline against the PyTorch model), Q16 primitives, the
resource report, validation of damaged packages and the static check against the checkpoint."""

from __future__ import annotations

import json
import math
import shutil

import h5py
import numpy as np
import pytest
import torch

from goose_neuro.config import preset
from goose_neuro.errors import ExportError
from goose_neuro.export import interp
from goose_neuro.export.loihi import export_loihi, load_package, quantize
from goose_neuro.export.loihi import host as hostmod
from goose_neuro.export.loihi.check import compare_static
from goose_neuro.export.loihi.resources import resource_report
from goose_neuro.export.lower import lower
from goose_neuro.export.placement import place
from goose_neuro.fixed_point import neuron_format
from goose_neuro.model import ASNNGoose
from goose_neuro.neurons import TernaryLIFNeuron


def _model(seed: int = 0, asymmetric: bool = True, **kw) -> ASNNGoose:
    """A tiny student that looks trained: lively populations, and (``asymmetric``) TTQ scales
    Wp != Wn, as training makes them (an untrained model's are equal)."""
    torch.manual_seed(seed)
    m = ASNNGoose(preset("tiny", **kw)).eval()
    with torch.no_grad():
        for lif in m.populations().values():
            lif.threshold.mul_(0.3)
            if isinstance(lif, TernaryLIFNeuron):
                lif.beta_u_raw.fill_(0.2)
        if asymmetric:
            for lin in m.ternary_layers().values():
                lin.wn.mul_(1.2)
    return m


@pytest.fixture(scope="module")
def graph():
    return lower(_model(n_layers=1))


def test_placement_is_generic_over_the_ir(graph):
    """Chains follow the LIF nodes, synapses their inputs, host ops run where their inputs exist."""
    pl = place(graph, "loihi2")
    assert [p.node for p in pl.populations] == list(graph.of_type(type(graph.nodes["L0.tm.lif_in"])))
    assert {s.node for s in pl.synapses} == {k for k, n in graph.nodes.items()
                                              if n.type == "TernaryDense" and n.inputs[0] in {p.node for p in pl.populations}}
    seg = {h.node: h.segment for h in pl.host_ops}
    assert seg["emb"] == 0 and seg["L0.ln1"] == 0 and seg["L0.tm.wkv"] == 1 and seg["head"] == 4
    assert seg["L0.cm.r_sig"] == 3 and "L0.cm.r_sig" in pl.carry[3]  # the gate waits for chain 3's values
    assert all(set(c) <= set(seg) | {s.node for s in pl.synapses} for c in pl.carry)
    # compartments: Loihi 2 populations n each, Loihi 1 host neurons none, on-core ON/OFF pairs 2n
    rows = sum(s.rows for s in pl.synapses)
    n = sum(p.n for p in pl.populations)
    assert pl.compartments() == {"populations": n, "readouts": rows, "total": n + rows}
    assert place(graph, "loihi").compartments()["populations"] == 0
    assert place(graph, "loihi", population="core").compartments()["populations"] == 2 * n
    # split TTQ scales need two blocks of rows [P; N]; equal ones (an untrained model's) one [S]
    assert all(s.encoding == "split" for s in pl.synapses)
    assert rows == sum(2 * s.out_features for s in pl.synapses)
    sym = place(lower(_model(n_layers=1, asymmetric=False)), "loihi2")
    assert all(s.encoding == "sign" and s.rows == s.out_features for s in sym.synapses)


@pytest.mark.parametrize("target, population", [("loihi2", None), ("loihi", "host"), ("loihi", "core")])
def test_resource_report_counts_the_placements_compartments(graph, target, population, tmp_path):
    man, _, _ = quantize(graph, target, population=population)
    res = resource_report(man, graph)
    pl = place(graph, target, population=population)
    assert res["summary"]["neurons"] == pl.compartments()["total"]
    assert res["summary"]["synapses"] == sum(s.synapses for s in pl.synapses)
    assert res["summary"]["cores"] >= len(pl.populations) and res["summary"]["chips"] == 1
    assert 0 < res["summary"]["on_core_share_of_ops"] < 1


def test_integer_parameters_and_exact_weights(graph):
    man, params, rep = quantize(graph, "loihi2")
    assert man["format_version"] == 2 and man["neuron_format"] == neuron_format("subtract", 11).to_dict()
    ch = man["chains"][0]
    lif = graph.nodes[ch["population"]]
    np.testing.assert_array_equal(params[ch["params"]["dv"]], neuron_format("subtract", 11).dv(lif.beta))
    np.testing.assert_array_equal(params[ch["params"]["gain"]], 2048.0 / lif.threshold.astype(np.float64))
    key = graph.nodes["L0.tm.key"]
    w, m = params[ch["weight"]], key.out_features
    assert w.dtype == np.int8 and set(np.unique(w)) <= {-1, 0, 1}
    np.testing.assert_array_equal(w[:m], key.pos)
    np.testing.assert_array_equal(w[m:2 * m], key.neg)
    _, p1, _ = quantize(graph, "loihi")
    np.testing.assert_array_equal(p1[ch["weight"]][:m], np.hstack([key.pos, -key.pos]))  # ON/OFF inputs
    assert rep[f"{ch['population']}.beta"]["max_abs_error"] <= 0.5 / 4096 + 1e-12
    step = float(lif.threshold.max()) / 2 ** 11
    assert rep[f"{ch['population']}.input"]["max_abs_error"] == pytest.approx(step / 2)


def run_numpy(pkg, graph, tokens) -> tuple[np.ndarray, list[np.ndarray]]:
    """The package's host program with the chains simulated in numpy: populations by the IR
    interpreter's integer LIF rule, synapses as the chain weights. Returns (logits, spikes)."""
    prog, M = pkg.host_program(), len(pkg.chains)
    st = {graph.nodes[ch["population"]].state: np.zeros((1, graph.nodes[ch["population"]].states()[
        graph.nodes[ch["population"]].state])) for ch in pkg.chains}
    logits, spikes = [], [[] for _ in range(M)]
    for tok in tokens:
        carry, counts = {}, None
        for c in range(M + 1):
            out, carry = prog.run_segment(c, int(tok), counts, carry)
            if c == M:
                logits.append(out)
                break
            ch = pkg.chains[c]
            node = graph.nodes[ch["population"]]
            gain = pkg.params[ch["params"]["gain"]]
            gain = gain / 65536.0 if gain.dtype.kind == "i" else gain  # Q16 gains carry 16 more bits
            x = (out / gain).reshape(1, 1, -1)  # mantissa -> input (the LIF rule rounds it back)
            new: dict = {}
            s = interp._lif(node, x, st, new).reshape(-1).astype(np.int64)
            st.update(new)
            spikes[c].append(s)
            inp = np.concatenate([s > 0, s < 0]).astype(np.int64) if ch["transport"] == "onoff" else s
            counts = pkg.params[ch["weight"]].astype(np.int64) @ inp
    return np.array(logits), [np.array(s) for s in spikes]


@pytest.mark.parametrize("kw", [dict(), dict(neuron="ternary_lif"), dict(fixed_point=True),
                                dict(neuron="ternary_lif", fixed_point=True)],
                         ids=["subtract", "ternary_lif", "subtract-fixed", "ternary_lif-fixed"])
@pytest.mark.parametrize("target", ["loihi2", "loihi"])
def test_host_program_with_chains_equals_the_deployed_model(kw, target, tmp_path):
    m = _model(**kw)
    pkg = load_package(export_loihi(lower(m), tmp_path / "pkg", target))
    deployed = m.double()
    if not kw.get("fixed_point"):
        deployed.set_fixed_point(deployed.deployed_format())
    toks = torch.randint(0, 256, (1, 24))
    with torch.no_grad():
        ref = deployed.run(toks, collect=True)
    logits, spikes = run_numpy(pkg, lower(deployed), toks[0].numpy())
    np.testing.assert_allclose(logits, ref.logits[0].numpy(), rtol=0, atol=1e-9)
    for c, s in enumerate(ref.spikes.values()):
        np.testing.assert_array_equal(spikes[c], s[0].numpy())
    assert sum(int(np.abs(s).sum()) for s in spikes) > 1000


def test_q16_host_tracks_the_float64_host(graph, tmp_path):
    f64 = load_package(export_loihi(graph, tmp_path / "f", "loihi2"))
    q16 = load_package(export_loihi(graph, tmp_path / "q", "loihi2", host="q16"))
    assert q16.params["L0.ln1.weight"].dtype == np.int64 and "exp2_table" in q16.params
    toks = np.random.default_rng(1).integers(0, 256, 40)
    lf, sf = run_numpy(f64, graph, toks)
    lq, sq = run_numpy(q16, graph, toks)
    lq = lq / 65536.0
    assert np.abs(lq - lf).max() < 0.1 * np.abs(lf).max()
    assert np.mean(lq.argmax(-1) == lf.argmax(-1)) > 0.8
    assert np.mean(sq[0] == sf[0]) > 0.95  # the first population sees only the host's roundings


def test_q16_primitives_match_float():
    table, log2e = hostmod.exp2_table(), round(math.log2(math.e) * 65536)
    x = np.linspace(-12, 0, 500)
    assert np.abs(hostmod.exp_q(np.round(x * 65536).astype(np.int64), table, log2e) / 65536 - np.exp(x)).max() < 1e-4
    z = np.linspace(-8, 8, 301)
    sig = hostmod.sigmoid_q(np.round(z * 65536).astype(np.int64), table, log2e) / 65536
    assert np.abs(sig - 1 / (1 + np.exp(-z))).max() < 1e-4
    v = np.array([0, 1, 2, 3, 4, 15, 16, 17, 2**40 - 1, 2**40, 2**52 + 12345], dtype=np.int64)
    assert all(int(a) == math.isqrt(int(b)) for a, b in zip(hostmod.isqrt(v), v))
    rng = np.random.default_rng(0)
    xs, g, b = rng.normal(size=(5, 32)), rng.normal(size=32), rng.normal(size=32)
    q = lambda a: np.round(a * 65536).astype(np.int64)  # noqa: E731
    ln = hostmod.layer_norm_q(q(xs), q(g), q(b), round(1e-5 * 2**32)) / 65536
    ref = (xs - xs.mean(-1, keepdims=True)) / np.sqrt(xs.var(-1, keepdims=True) + 1e-5) * g + b
    assert np.abs(ln - ref).max() < 1e-3


def test_refusals_name_the_problem_and_write_nothing(tmp_path):
    trained = lower(_model(fixed_point=True, frac_bits=9))
    cases = [
        (trained, dict(target="loihi2", frac_bits=11), "trained with fixed-point neurons at frac_bits=9"),
        (trained, dict(target="loihi", population="core"), "approximates"),
        (lower(_model(spike_mode="none")), dict(target="loihi2"), "no spiking populations"),
        (lower(_model(amplitude_mode="channel")), dict(target="loihi2"), "amplitude_mode='shared'"),
        (lower(_model(spike_mode="binary")), dict(target="loihi2"), "ternary populations only"),
        (trained, dict(target="loihi3"), "unknown Loihi target"),
        (trained, dict(target="loihi2", population="host"), "population='host'"),
        (trained, dict(target="loihi2", host="q32"), "host='q32'"),
        (trained, dict(target="loihi2", colour="red"), "unknown Loihi export option"),
        (lower(_model()), dict(target="loihi2", frac_bits=17), "frac_bits"),
    ]
    for i, (g, kw, msg) in enumerate(cases):
        out = tmp_path / f"o{i}"
        with pytest.raises(ExportError, match=msg):
            export_loihi(g, out, **kw)
        assert not out.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    d = tmp_path_factory.mktemp("pkg")
    m = _model(neuron="ternary_lif", fixed_point=True)
    return export_loihi(lower(m), d / "pkg", "loihi2"), m


def _damaged(package, tmp_path, edit) -> str:
    pkg = tmp_path / "bad"
    shutil.copytree(package[0], pkg)
    edit(pkg)
    with pytest.raises(ExportError) as e:
        load_package(pkg)
    msg = str(e.value)
    assert "\n" not in msg and "malformed Loihi package" in msg
    return msg


def _manifest_edit(fn):
    def go(pkg):
        m = json.loads((pkg / "manifest.json").read_text())
        fn(m)
        (pkg / "manifest.json").write_text(json.dumps(m))
    return go


def _params_edit(fn):
    def go(pkg):
        with np.load(pkg / "params.npz") as z:
            p = {k: z[k] for k in z.files}
        fn(p)
        np.savez(pkg / "params.npz", **p)
    return go


DAMAGE = {
    "chain size": (_manifest_edit(lambda m: m["chains"][1].update(n=m["chains"][1]["n"] + 1)), "L0.tm.lif_out.gain"),
    "decay out of range": (_params_edit(lambda p: p.__setitem__("L0.tm.lif_in.dv", np.array([5000]))), "12-bit"),
    "missing parameter": (_params_edit(lambda p: p.pop("L0.ln1.weight")), "L0.ln1.weight"),
    "weight not ternary": (_params_edit(lambda p: p["L0.tm.lif_in.weight"].__setitem__((0, 0), 2)), "weight"),
    "manifest type": (_manifest_edit(lambda m: m["chains"][0].update(vth="2048")), "chains[0].vth: expected int"),
    "missing key": (_manifest_edit(lambda m: m["host"].pop("carry")), "manifest.host.carry: missing"),
    "carry names a value": (_manifest_edit(lambda m: m["host"]["carry"][0].append("nowhere")), "nowhere"),
    "op reads too early": (_manifest_edit(lambda m: [op.update(segment=0) for op in m["host"]["ops"]
                                                     if op["name"] == "L0.tm.wkv"]), "L0.tm.wkv"),
    "net file outside": (_manifest_edit(lambda m: m["chains"][0].update(net_file="../../etc/hosts")), "outside"),
    "net file garbage": (lambda pkg: (pkg / "chains" / "L0.tm.lif_in.net").write_bytes(b"not hdf5"), "netx chain file"),
    "old format": (_manifest_edit(lambda m: m.update(format_version=1)), "re-export"),
    "params pickle": (lambda pkg: np.savez(pkg / "params.npz", a=np.array([object()], dtype=object)), "params unreadable"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_packages_are_one_line_export_errors(package, tmp_path, case):
    edit, needle = DAMAGE[case]
    assert needle in _damaged(package, tmp_path, edit)


def test_static_check_finds_each_difference_by_name(package, tmp_path):
    """A fresh quantization of the checkpoint equals the package; every corruption is named."""
    out, m = package
    assert compare_static(load_package(out), m) == {"identical": True, "differences": []}

    def diffs(edit):
        pkg = tmp_path / f"c{len(list(tmp_path.iterdir()))}"
        shutil.copytree(out, pkg)
        edit(pkg)
        rep = compare_static(load_package(pkg), m)
        assert not rep["identical"]
        return " | ".join(rep["differences"])

    assert "L0.tm.lif_in.dv" in diffs(_params_edit(lambda p: p.__setitem__("L0.tm.lif_in.dv", p["L0.tm.lif_in.dv"] + 9)))
    assert "L0.cm.lif_hid.gain" in diffs(_params_edit(lambda p: p["L0.cm.lif_hid.gain"].__imul__(1.5)))
    assert "L1.ln2.bias" in diffs(_params_edit(lambda p: p["L1.ln2.bias"].__iadd__(0.01)))
    assert "chains[2].vth" in diffs(_manifest_edit(lambda m: m["chains"][2].update(vth=1024)))

    def flip_row(pkg):
        with h5py.File(pkg / "chains" / "L0.tm.lif_in.net", "r+") as f:
            w = f["layer/0/weight"][()]
            w[5] = -w[5]
            f["layer/0/weight"][...] = w
    assert "chains/L0.tm.lif_in.net weights (rows 5)" in diffs(flip_row)
    other = _model(seed=3, neuron="ternary_lif", fixed_point=True)
    rep = compare_static(load_package(out), other)
    assert not rep["identical"] and any(d.startswith("emb.weight") for d in rep["differences"])
