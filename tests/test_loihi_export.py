"""Loihi / Loihi 2 package: fixed-point bounds, exact ternary weights, integer primitives,
resource report, bad inputs (nothing half-written). No Lava needed."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from goose_neuro.config import preset
from goose_neuro.errors import ExportError
from goose_neuro.export import int_ref, interp, loihi
from goose_neuro.export.lower import lower
from goose_neuro.model import ASNNGoose


def _graph(seed: int = 0, **kw):
    torch.manual_seed(seed)
    return lower(ASNNGoose(preset("tiny", n_layers=1, **kw)).eval())


@pytest.fixture(scope="module")
def graph():
    return _graph()


@pytest.mark.parametrize("target, population, host, x_bits", [
    ("loihi", "core", "float64", 13), ("loihi", "host", "float64", 18), ("loihi2", "core", "float64", 18),
    ("loihi2", "core", "q16", 18)])
def test_fixed_point_bounds(graph, target, population, host, x_bits):
    man, params, rep = loihi.quantize(graph, target, population=population, host=host)
    assert man["format_version"] == 1 and man["target"] == target and man["host_format"] == host
    assert len(man["chains"]) == 4
    for ch in man["chains"]:
        pop = ch["population"]
        dv = params[ch["name"] + ".dv"]
        assert dv.min() >= 0 and dv.max() <= 4095  # 12-bit decay
        assert 0 < pop["vth_mant"] <= (1 << 17) - 1  # 17-bit threshold mantissa
        assert pop["x_bits"] == x_bits
        w = params[ch["name"] + ".weight"]
        assert w.dtype == np.int8 and set(np.unique(w)) <= {-1, 0, 1}
        cols = 2 * pop["n"] if target == "loihi" else pop["n"]
        assert w.shape[1] == cols
        if population == "core" and target == "loihi":  # one decay per lava LIF process
            assert np.unique(dv).size == 1
        gain = params[ch["name"] + ".gain"]
        assert gain.dtype == (np.float64 if host == "float64" else np.int64)
    # every rounding is reported with its size (a float64 host rounds no host parameter)
    assert rep["L0.tm.lif_in.beta"]["max_abs_error"] <= 0.5 / 4096 + 1e-12
    assert ("L0.tm.lif_in.gain" in rep) == (host == "q16")
    assert ("emb" in rep) == (host == "q16")
    th = graph.nodes["L0.tm.lif_in"].threshold
    step = float(np.max(th)) / 2 ** man["chains"][0]["population"]["frac_bits"]
    assert rep["L0.tm.lif_in.input"]["max_abs_error"] == pytest.approx(step / 2 if host == "float64" else step)


def test_ternary_weights_fit_exactly(graph):
    _, params, _ = loihi.quantize(graph, "loihi2")
    key = graph.nodes["L0.tm.key"]
    w = params["L0.tm.lif_in.weight"]
    m = key.out_features
    np.testing.assert_array_equal(w[:m], key.pos)
    np.testing.assert_array_equal(-w[m:2 * m], key.neg)
    _, p1, _ = loihi.quantize(graph, "loihi")
    w1 = p1["L0.tm.lif_in.weight"]  # ON/OFF: [[P, -P], [-N, N]]
    np.testing.assert_array_equal(w1[:m], np.hstack([key.pos, -key.pos]))


def test_integer_primitives_match_float():
    table = np.round(2.0 ** (np.arange(257) / 256) * 65536).astype(np.int64)
    log2e = round(math.log2(math.e) * 65536)
    x = np.linspace(-12, 0, 500)
    got = int_ref.exp_q(np.round(x * 65536).astype(np.int64), table, log2e) / 65536
    assert np.abs(got - np.exp(x)).max() < 1e-4
    z = np.linspace(-8, 8, 301)
    sig = int_ref.sigmoid_q(np.round(z * 65536).astype(np.int64), table, log2e) / 65536
    assert np.abs(sig - 1 / (1 + np.exp(-z))).max() < 1e-4
    v = np.array([0, 1, 2, 3, 4, 15, 16, 17, 2**40 - 1, 2**40, 2**52 + 12345], dtype=np.int64)
    r = int_ref.isqrt(v)
    assert all(int(a) == math.isqrt(int(b)) for a, b in zip(r, v))
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(5, 32))
    g, b = rng.normal(size=32), rng.normal(size=32)
    ln = int_ref.layer_norm_q(np.round(xs * 65536).astype(np.int64), np.round(g * 65536).astype(np.int64),
                              np.round(b * 65536).astype(np.int64), round(1e-5 * 2**32)) / 65536
    ref = (xs - xs.mean(-1, keepdims=True)) / np.sqrt(xs.var(-1, keepdims=True) + 1e-5) * g + b
    assert np.abs(ln - ref).max() < 1e-3


def test_cuba_semantics_of_reference():
    """The ON/OFF population is lava's CUBA LIF: trunc decay, bias << 6, v > vth << 6, reset 0."""
    pop = int_ref.Population("p", 1, "cuba_onoff", np.array([2048]), 4, np.array([65536]), 13)
    s = [pop.step(np.array([x])) for x in (3, 3, 0, -9)]
    # ON: v = 192 -> 96 + 192 = 288 > 256 spikes -> 0 -> 0 -> -576 ; OFF mirrors with -x
    assert [tuple(t) for t in s] == [(0, 0), (1, 0), (0, 0), (0, 1)]


@pytest.mark.parametrize("target, population, host", [
    ("loihi", "core", "float64"), ("loihi", "host", "q16"), ("loihi2", "core", "q16")])
def test_reference_tracks_float_model(graph, target, population, host, tmp_path):
    loihi.export_loihi(graph, tmp_path / "pkg", target, population=population, host=host)
    im = loihi.load_int_model(tmp_path / "pkg")
    toks = np.random.default_rng(1).integers(0, 256, size=48)
    r = im.run(toks)
    _, _, spikes = interp.run(graph, toks[None], dtype=np.float64, collect=True)
    first = spikes["L0.tm.lif_in"][0]
    got = r["spikes"][0]
    if target == "loihi":
        got = got[:, :first.shape[1]] - got[:, first.shape[1]:]
    # the first population sees only quantized inputs: on Loihi 2 (same neuron) almost every spike
    # agrees, also for Loihi 1 with host-side neurons; Loihi 1's on-core ON/OFF pair resets to zero
    # instead of subtracting (measured ~86% here)
    exact_neuron = target == "loihi2" or population == "host"
    assert (got == first).mean() > (0.99 if exact_neuron else 0.8)
    assert r["logits"].shape == (48, 256)
    assert r["logits"].dtype == (np.int64 if host == "q16" else np.float64)


@pytest.mark.parametrize("target", ["loihi", "loihi2"])
def test_pytorch_fixed_point_model_equals_reference(tmp_path, target):
    """With a float64 host, the PyTorch model running the package's fixed-point neurons computes
    the same spikes as the integer reference, in every population, and the same logits."""
    from goose_neuro.export.lava_check import _ternary_spikes, fixed_point_specs

    torch.manual_seed(3)
    model = ASNNGoose(preset("tiny", n_layers=2)).eval().double().freeze_ternary()
    loihi.export_loihi(lower(model), tmp_path / "pkg", target)
    im = loihi.load_int_model(tmp_path / "pkg")
    assert im.host_format == "float64" and {p.kind for p in im.pops} == {
        "host_onoff" if target == "loihi" else "ternary_sub"}
    toks = np.random.default_rng(2).integers(0, 256, size=64)
    r = im.run(toks)
    model.set_fixed_point(fixed_point_specs(im))
    with torch.no_grad():
        out = model.run(torch.from_numpy(toks)[None], collect=True)
    total = 0
    for c, pop in enumerate(im.pops):
        mine = out.spikes[pop.name][0].numpy().astype(np.int64)
        np.testing.assert_array_equal(mine, _ternary_spikes(pop, r["spikes"][c]), err_msg=pop.name)
        total += int(np.abs(mine).sum())
    assert total > 500  # the populations do spike
    np.testing.assert_allclose(out.logits[0].numpy(), r["logits"], rtol=0, atol=1e-6)
    # the float neurons are a different (unquantized) model: same shape, not the same spikes
    model.set_fixed_point(None)
    assert not any(m.fixed_point for m in model.populations().values())


def test_package_files_and_resources(graph, tmp_path):
    out = loihi.export_loihi(graph, tmp_path / "pkg", "loihi2")
    names = sorted(p.name for p in out.iterdir())
    assert names == ["chains", "manifest.json", "params.npz", "quantization.json", "resources.json", "resources.md"]
    assert len(list((out / "chains").glob("*.net"))) == 4
    res = json.loads((out / "resources.json").read_text())
    s = res["summary"]
    assert s["estimate"] is True and "closed compiler" in res["note"]
    assert s["cores"] >= 1 and s["chips"] == 1 and 0 < s["on_core_share_of_ops"] < 1
    man = json.loads((out / "manifest.json").read_text())
    ops = {o["op"] for o in man["host_ops"]}
    assert {"Embedding", "LayerNorm", "WKV", "Sigmoid", "ReLUSquare", "Mul", "Add", "Dense"} <= ops
    assert all(o["cost_per_token"] for o in man["host_ops"])
    # nothing dropped: every IR node is a chain part or a host op
    covered = {o["name"] for o in man["host_ops"]}
    for ch in man["chains"]:
        covered.add(ch["name"])
        covered.update(f"{ch['name'].rsplit('.', 1)[0]}.{p}" for p in ch["outputs"])
    assert set(graph.nodes) - covered == {"tokens", "logits"}


def test_loihi1_limits_are_checked(graph):
    man, _, _ = loihi.quantize(graph, "loihi")
    res = loihi.resource_report(man, "loihi")
    assert res["limits"]["neurons_per_core"] == 1024
    big = max(res["groups"], key=lambda g: g["neurons"])
    assert big["cores"] == math.ceil(big["neurons"] / 1024) or big["cores"] >= 1
    assert set(res["checks"]) == {"neurons_per_chip", "synapses_per_chip", "fan_in_per_core"}


@pytest.mark.parametrize("kwargs, msg", [
    ({"target": "truenorth"}, "unknown Loihi target"),
    ({"target": "loihi2", "frac_bits": 17}, "17 bits"),
    ({"target": "loihi2", "colour": 1}, "unknown Loihi export option"),
    ({"target": "loihi2", "population": "host"}, "population='host'"),
    ({"target": "loihi2", "host": "q32"}, "host='q32'"),
])
def test_bad_inputs_fail_cleanly(graph, tmp_path, kwargs, msg):
    out = tmp_path / "pkg"
    with pytest.raises(ExportError, match=msg):
        loihi.export_loihi(graph, out, **kwargs)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_unrepresentable_values_refused(tmp_path):
    g = _graph()
    g.nodes["L0.tm.wkv"].time_first[0] = np.inf
    with pytest.raises(ExportError, match="NaN or Inf"):
        loihi.export_loihi(g, tmp_path / "a", "loihi")
    g = _graph()
    g.nodes["emb"].weight[0, 0] = 1e30
    with pytest.raises(ExportError, match="does not fit"):
        loihi.export_loihi(g, tmp_path / "b", "loihi2", host="q16")
    with pytest.raises(ExportError, match="spike_mode='none'"):
        loihi.export_loihi(_graph(spike_mode="none"), tmp_path / "c", "loihi2")
    with pytest.raises(ExportError, match="amplitude_mode='shared'"):
        loihi.export_loihi(_graph(amplitude_mode="channel"), tmp_path / "d", "loihi2")
    assert list(tmp_path.iterdir()) == []


def test_export_cli(tmp_path):
    from goose_neuro.checkpoint import save_checkpoint
    from goose_neuro.cli.export import main

    torch.manual_seed(0)
    save_checkpoint(ASNNGoose(preset("tiny", n_layers=1)), tmp_path / "ck")
    assert main(["--target", "loihi", str(tmp_path / "ck"), "-o", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "manifest.json").is_file()
    assert main(["--target", "loihi2", str(tmp_path / "ck"), "-o", str(tmp_path / "o2"), "--opt", "frac_bits=40"]) == 2
    assert not (tmp_path / "o2").exists()
    assert main(["--target", "loihi2", str(tmp_path / "ck"), "-o", str(tmp_path / "o3"), "--opt", "host=q32"]) == 2
    assert not (tmp_path / "o3").exists()
    assert main(["--target", "loihi2", str(tmp_path / "ck"), "-o", str(tmp_path / "o4"), "--opt", "host=q16"]) == 0
    assert json.loads((tmp_path / "o4" / "manifest.json").read_text())["host_format"] == "q16"


def test_manifest_without_host_format_is_q16(graph, tmp_path):
    """Packages written before the float64 host carry no host_format: they load as Q16."""
    out = loihi.export_loihi(graph, tmp_path / "pkg", "loihi2", host="q16")
    toks = np.arange(10) * 7
    want = loihi.load_int_model(out).run(toks)["logits"]
    man = json.loads((out / "manifest.json").read_text())
    del man["host_format"]
    (out / "manifest.json").write_text(json.dumps(man))
    im = loihi.load_int_model(out)
    assert im.host_format == "q16"
    np.testing.assert_array_equal(im.run(toks)["logits"], want)
    man["host_format"] = "q8"
    (out / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ExportError, match="not a readable Loihi package"):
        loihi.load_int_model(out)


def test_tampered_package_is_refused(graph, tmp_path):
    from goose_neuro.export.lava_check import check_net_files

    out = loihi.export_loihi(graph, tmp_path / "pkg", "loihi")
    im = loihi.load_int_model(out)
    check_net_files(out, im)  # the package as written passes
    im.m["chains"][0]["net_file"] = "../../elsewhere.net"
    with pytest.raises(ExportError, match="outside the package"):
        check_net_files(out, im)
    im = loihi.load_int_model(out)
    im.p["L0.tm.lif_in.weight"] = -im.p["L0.tm.lif_in.weight"]
    with pytest.raises(ExportError, match="does not match the package"):
        check_net_files(out, im)
