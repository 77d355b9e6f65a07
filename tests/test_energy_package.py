"""Pricing the package: one placement, one op-cost table (issue 13 part B).

A hand-countable graph is priced class by class on every Loihi placement, traffic and hops included;
exported packages are priced with the compartments their resource report counts; the traffic term
follows the profile's figure; user errors are one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from _energy_fixtures import tiny_checkpoint, tiny_text
from goose_neuro.cli.energy import main
from goose_neuro.energy import energy_report
from goose_neuro.energy.package import default_placement, price_placement, price_twin
from goose_neuro.export import ir
from goose_neuro.hardware_profiles import OP_CLASSES, load_profile

S = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [1, 1, 0, -1]], np.int8)  # column nonzeros [2, 2, 2, 1], nnz 7
E = np.array([1.0, 0.0, 0.5, 0.25])  # events per token per neuron (sum 1.75)
AC = 1 * 2 + 0 * 2 + 0.5 * 2 + 0.25 * 1  # 3.25 synaptic ops per token
BIT = 1300 / 64  # pJ per bit crossing the chip boundary (the proxy: 1.3 nJ per 64 bits)


def hand_graph() -> ir.Graph:
    """tokens -> emb (3x4) -> lif (4) -> syn (3x4, sign) -> head (5x3) -> logits."""
    f = np.float32
    nodes = {
        "tokens": ir.TokenInput(vocab_size=3),
        "emb": ir.Embedding(inputs=("tokens",), weight=np.ones((3, 4), f)),
        "lif": ir.LIF(inputs=("emb",), beta=np.full(4, 0.5, f), threshold=np.ones(4, f), state="m"),
        "syn": ir.TernaryDense(inputs=("lif",), sign=S, scale_pos=np.ones(3, f), scale_neg=np.ones(3, f)),
        "head": ir.Dense(inputs=("syn",), weight=np.ones((5, 3), f)),
        "logits": ir.Output(inputs=("head",)),
    }
    return ir.Graph(nodes=nodes, states={"m": ir.StateSpec(4)}).validate()


def nonzero(d: dict) -> dict:
    return {k: v for k, v in d.items() if v}


# host ops of the hand graph in float64 (cmos45-fp64: 64-bit words; mul 18, add 2, mac 20 pJ; SRAM
# 1.5625 pJ/bit for weights, 0.15625 pJ/bit for activations), the same on every Loihi placement:
#   emb row 4 x 64 bits, its buffer 4 x 64 x (1 + 1 reader); the LIF's input mantissa mul 4, add 12;
#   syn: scale mul 3, readout decode add 3, scale reads 3 x 64, output buffer 3 x 64 x 2;
#   head: 15 MACs, 15 x 64 weight bits, buffer 5 x 64 x 2
HOST_COUNTS = {"mul": 4 + 3, "add": 12 + 3, "mac": 15, "mem_dense_bits": 256 + 192 + 960,
               "mem_act_bits": 512 + 384 + 640}
HOST_PJ = {"mul": 7 * 18.0, "add": 15 * 2.0, "mac": 15 * 20.0, "mem_dense_bits": 1408 * 1.5625,
           "mem_act_bits": 1536 * 0.15625}


def test_hand_placement_loihi2_priced_class_by_class():
    g = hand_graph()
    pl = default_placement(g, "loihi2")
    assert pl.populations[0].input_bits == 18  # subtract neuron: 24-bit state - 6-bit shift
    p = price_placement(g, pl, {"lif": E}, load_profile("loihi2"))
    w = p["by_where"]
    assert (w["core"]["profile"], w["host"]["profile"]) == ("loihi2", "cmos45-fp64") and "host_neuron" not in w
    # cores: 3.25 ACs; 4 population + 3 readout compartments; 1.75 spikes; weight rows and membranes
    assert nonzero(w["core"]["counts_per_token"]) == {"ac": AC, "neuron": 7, "spike": 1.75,
                                                       "mem_syn_bits": 1.75 * 3 * 2, "mem_neuron_bits": 4 * 4 * 24}
    assert nonzero(w["core"]["energy_pj_by_class"]) == pytest.approx({"ac": AC * 23.6, "neuron": 7 * 81,
                                                                      "spike": 1.75 * 1.7})
    assert nonzero(w["host"]["counts_per_token"]) == HOST_COUNTS
    assert nonzero(w["host"]["energy_pj_by_class"]) == pytest.approx(HOST_PJ)
    # host -> chip: 4 input mantissas x 18 bits; chip -> host: 3 readouts x 24 bits
    assert [(c["direction"], c["bits_per_token"]) for c in p["crossings"]] == [("host_to_chip", 72), ("chip_to_host", 72)]
    assert w["host_chip"]["energy_pj"] == pytest.approx(144 * BIT)
    # population on core 0, its synapses on core 1 (its east neighbour): one E-W hop per spike at 3.0 pJ
    assert (w["spike_hops"]["messages"], w["spike_hops"]["hops_ew"], w["spike_hops"]["hops_ns"]) == (1.75, 1.75, 0)
    assert w["spike_hops"]["energy_pj"] == pytest.approx(1.75 * 3.0)
    assert not w["static"]["priced"] and w["static"]["energy_pj"] == 0 and "no static power" in w["static"]["reason"]
    want = AC * 23.6 + 7 * 81 + 1.75 * 1.7 + sum(HOST_PJ.values()) + 144 * BIT + 1.75 * 3.0
    assert p["energy_pj_per_token"] == pytest.approx(want, rel=1e-12)


def test_hand_placement_loihi1_host_neurons_on_the_host():
    """Loihi 1 default: the neuron runs on the integer host (cmos45-int32), no population compartment on
    chip, readouts on the cores, spikes cross as ON/OFF events (one bit each, as measured)."""
    g = hand_graph()
    pl = default_placement(g, "loihi")
    assert pl.compartments() == {"populations": 0, "readouts": 3, "total": 3}
    p = price_placement(g, pl, {"lif": E}, load_profile("loihi"))
    w = p["by_where"]
    assert w["host_neuron"]["profile"] == "cmos45-int32"
    # neuron 4 updates; 4 x 4 x 32 membrane bits; spike map 4 x 2 bits x (1 + 1 reader); ON/OFF split 8 compares
    assert nonzero(w["host_neuron"]["counts_per_token"]) == {"neuron": 4, "spike": 1.75, "add": 8,
                                                              "mem_neuron_bits": 512, "mem_act_bits": 16}
    assert w["host_neuron"]["energy_pj"] == pytest.approx(4 * 3.5 + 8 * 0.1 + 512 * 0.15625 + 16 * 0.15625)
    assert nonzero(w["core"]["counts_per_token"]) == {"ac": AC, "neuron": 3, "mem_syn_bits": 10.5}  # readouts only
    assert w["core"]["energy_pj"] == pytest.approx(AC * 23.6 + 3 * 81)
    assert nonzero(w["host"]["counts_per_token"]) == HOST_COUNTS
    assert [(c["events"], c["bits_per_token"]) for c in p["crossings"]] == [(True, 1.75), (False, 72)]
    assert w["host_chip"]["energy_pj"] == pytest.approx(73.75 * BIT)
    assert w["spike_hops"]["messages"] == 0  # the spikes enter from the host: traffic, not hops
    assert "104 mW" in w["static"]["reason"] and "no time per token" in w["static"]["reason"]
    assert pl.synapses[0].synapses == 2 * 7  # ON/OFF axons double the synapses, not the synaptic ops


def test_hand_placement_loihi1_core_neurons_are_2n_compartments():
    g = hand_graph()
    pl = default_placement(g, "loihi", population="core")
    assert pl.compartments() == {"populations": 8, "readouts": 3, "total": 11}
    p = price_placement(g, pl, {"lif": E}, load_profile("loihi"))
    w = p["by_where"]
    assert "host_neuron" not in w
    assert nonzero(w["core"]["counts_per_token"]) == {"ac": AC, "neuron": 11, "spike": 1.75, "mem_syn_bits": 10.5,
                                                       "mem_neuron_bits": 8 * 4 * 24}
    assert w["core"]["energy_pj"] == pytest.approx(AC * 23.6 + 11 * 81 + 1.75 * 1.7)
    # host -> chip: 2n = 8 CUBA bias inputs x 13 bits; chip -> host 3 x 24
    assert w["host_chip"]["bits_per_token"] == 8 * 13 + 72
    assert w["spike_hops"]["energy_pj"] == pytest.approx(1.75 * 3.0)
    # static power is priced once a time per token is known: 104 mW x 1 chip x 1 ms
    q = price_placement(g, pl, {"lif": E}, load_profile("loihi"), seconds_per_token=1e-3)
    assert q["by_where"]["static"]["energy_pj"] == pytest.approx(0.104 * 1e-3 * 1e12)
    assert q["energy_pj_per_token"] - p["energy_pj_per_token"] == pytest.approx(0.104e9)


def test_q16_host_is_priced_on_the_integer_profile():
    g = hand_graph()
    p = price_placement(g, default_placement(g, "loihi2", host="q16"), {"lif": E}, load_profile("loihi2"))
    h = p["by_where"]["host"]
    assert (h["profile"], h["format"]) == ("cmos45-int32", "q16")
    # the same operations as float64, 32-bit words: mul 3.1, add 0.1, mac 3.2 pJ
    assert nonzero(h["counts_per_token"]) == {**HOST_COUNTS, "mem_dense_bits": 1408 / 2, "mem_act_bits": 1536 / 2}
    assert h["energy_pj_by_class"]["mul"] == pytest.approx(7 * 3.1)
    assert h["energy_pj_by_class"]["mac"] == pytest.approx(15 * 3.2)


def _profile_copy(tmp_path: Path, name: str, edit) -> Path:
    import yaml
    from importlib import resources

    raw = yaml.safe_load((resources.files("goose_neuro.hardware_profiles") / f"{name}.yaml").read_text())
    edit(raw)
    path = tmp_path / f"{name}-edited.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_traffic_term_follows_the_profiles_figure(tmp_path):
    g = hand_graph()
    pl = default_placement(g, "loihi2")
    base = price_placement(g, pl, {"lif": E}, load_profile("loihi2"))

    def double(raw):
        raw["traffic"]["host_chip_bit"]["value"] = 2.6  # the high end of Horowitz's DRAM range

    def drop(raw):
        del raw["traffic"]["host_chip_bit"]

    hi = price_placement(g, pl, {"lif": E}, load_profile(_profile_copy(tmp_path, "loihi2", double)))
    assert hi["by_where"]["host_chip"]["energy_pj"] == pytest.approx(2 * base["by_where"]["host_chip"]["energy_pj"])
    assert hi["energy_pj_per_token"] - base["energy_pj_per_token"] == pytest.approx(144 * BIT)
    none = price_placement(g, pl, {"lif": E}, load_profile(_profile_copy(tmp_path, "loihi2", drop)))
    hc = none["by_where"]["host_chip"]
    assert hc["energy_pj"] == 0 and not hc["priced"] and "no traffic.host_chip_bit" in hc["reason"]
    assert hc["bits_per_token"] == 144  # still counted


def test_energy_is_linear_in_the_events():
    g = hand_graph()
    prof = load_profile("loihi")
    pl = default_placement(g, "loihi")
    e0, e1, e2 = (price_placement(g, pl, {"lif": a * E}, prof)["energy_pj_per_token"] for a in (0, 1, 2))
    assert e2 - e1 == pytest.approx(e1 - e0) and e1 > e0


def test_dense_twin_as_the_target_runs_it():
    """Loihi 2 takes the twin's dense activations as graded spikes into the same synapses (every input,
    every token: 7 MACs, 4 x 24 bits in); Loihi 1 (binary spikes) runs the whole twin on the host."""
    g = hand_graph()
    f = np.float32
    twin = ir.Graph(nodes={
        "tokens": ir.TokenInput(vocab_size=3), "emb": ir.Embedding(inputs=("tokens",), weight=np.ones((3, 4), f)),
        "syn": ir.TernaryDense(inputs=("emb",), sign=S, scale_pos=np.ones(3, f), scale_neg=np.ones(3, f),
                               input_kind="dense"),
        "head": ir.Dense(inputs=("syn",), weight=np.ones((5, 3), f)), "logits": ir.Output(inputs=("head",))},
        states={}).validate()
    t2 = price_twin(twin, default_placement(g, "loihi2"), load_profile("loihi2"))
    assert nonzero(t2["by_where"]["core"]["counts_per_token"]) == {"mac": 7, "neuron": 3, "mem_syn_bits": 4 * 3 * 2}
    assert t2["by_where"]["host_chip"]["bits_per_token"] == 4 * 24 + 3 * 24
    t1 = price_twin(twin, default_placement(g, "loihi"), load_profile("loihi"))
    assert "by_where" not in t1 and "binary spikes" in t1["note"]
    assert t1["counts_per_token"]["mac"] == 12 + 15  # every synapse on the host (dense) and the head


# -- exported packages of a checkpoint ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    from goose_neuro.export import export_checkpoint

    d = tmp_path_factory.mktemp("pkg")
    ck = tiny_checkpoint(d / "ck")
    txt = tiny_text(d / "text.txt")
    pk = {"loihi2": d / "l2", "loihi": d / "l1", "loihi:population=core": d / "l1core"}
    export_checkpoint(ck, "loihi2", pk["loihi2"])
    export_checkpoint(ck, "loihi", pk["loihi"])
    export_checkpoint(ck, "loihi", pk["loihi:population=core"], population="core")
    rep = energy_report(ck, txt, 48, ["loihi2", "loihi", "loihi", "cmos45-int8"], teacher="gpt2-124m",
                        progress=False, packages=list(pk.values()))
    return d, ck, txt, pk, rep


def test_package_compartments_equal_the_resource_report(packages):
    d, ck, txt, pk, rep = packages
    assert set(rep["profiles"]) == {"loihi2", "loihi", "loihi:population=core", "cmos45-int8", "cmos45-fp32"}
    for key, path in pk.items():
        b = rep["profiles"][key]
        res = json.loads((path / "resources.json").read_text())
        comp = b["package"]["compartments"]
        assert b["package"]["source"] == f"package {path}"
        assert comp["total"] == res["summary"]["neurons"] == res["summary"]["compartments"]["total"]
        # every compartment on the cores is updated every token
        assert b["student"]["by_where"]["core"]["counts_per_token"]["neuron"] == comp["total"]
    n = sum(p["n"] for p in rep["profiles"]["loihi2"]["package"]["populations"])
    assert rep["profiles"]["loihi2"]["package"]["compartments"]["populations"] == n
    assert rep["profiles"]["loihi"]["package"]["compartments"]["populations"] == 0
    assert rep["profiles"]["loihi:population=core"]["package"]["compartments"]["populations"] == 2 * n
    # Loihi 1 host neurons: n updates on the host
    assert rep["profiles"]["loihi"]["student"]["by_where"]["host_neuron"]["counts_per_token"]["neuron"] == n


def test_package_equals_its_default_placement(packages, tmp_path):
    """An exported package and goose-export's default placement are one description: the same price."""
    d, ck, txt, pk, rep = packages
    again = energy_report(ck, txt, 48, ["loihi2", "loihi:population=core"], teacher="gpt2-124m", progress=False)
    for key in ("loihi2", "loihi:population=core"):
        assert again["profiles"][key]["student"]["energy_pj_per_token"] == pytest.approx(
            rep["profiles"][key]["student"]["energy_pj_per_token"], rel=1e-12)
        assert again["profiles"][key]["package"]["source"].startswith(("default", "placement with"))


def test_report_shows_where_the_energy_goes(packages):
    d, ck, txt, pk, rep = packages
    for key in pk:
        s = rep["profiles"][key]["student"]
        w = s["by_where"]
        parts = sum(w[k]["energy_pj"] for k in ("core", "host", "host_neuron", "host_chip", "spike_hops", "static")
                    if k in w)
        assert s["energy_pj_per_token"] == pytest.approx(parts)
        assert s["host_chip_share"] == pytest.approx(w["host_chip"]["energy_pj"] / s["energy_pj_per_token"])
        assert 0 < s["host_chip_share"] < 1
        note = rep["profiles"][key]["package"]["activity"]["note"]
        assert "trained with FLOAT neurons" in note and "post-training fixed-point" in note
    assert "CUBA ON/OFF" in rep["profiles"]["loihi:population=core"]["package"]["activity"]["note"]
    assert "frac_bits=8" in rep["profiles"]["loihi:population=core"]["package"]["activity"]["note"]
    assert "by_where" not in rep["profiles"]["cmos45-int8"]["student"]
    assert any("static power not priced" in a for a in rep["assumptions"])


def test_cli_package_report_and_errors(packages, tmp_path, capsys):
    from goose_neuro.energy.report import _pj

    d, ck, txt, pk, rep = packages
    out = tmp_path / "rep"
    code = main(["--checkpoint", str(ck), "--text", str(txt), "--tokens", "48", "--profile", "loihi2",
                 "--package", str(pk["loihi2"]), "--teacher", "gpt2-124m", "-o", str(out), "--no-progress",
                 "--no-plots"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "host-chip share" in printed
    got = json.loads((out / "report.json").read_text())
    b = got["profiles"]["loihi2"]
    md = (out / "report.md").read_text()
    assert "## Loihi packages: where the energy goes" in md and _pj(b["student"]["by_where"]["host_chip"]["energy_pj"]) in md
    assert f"{100 * b['student']['host_chip_share']:.1f}%" in md
    other = tmp_path / "other"
    tiny_checkpoint(other, seed=1, d_model=48)
    cases = [
        (["--profile", "loihi2", "--package", str(pk["loihi"])], "is for loihi: add --profile loihi"),
        (["--profile", "loihi:frac=3"], "expected KEY=VALUE"),
        (["--profile", "cmos45-int8:host=q16"], "apply to Loihi targets"),
        (["--profile", "loihi2:population=host"], "population='host'"),
        (["--profile", "loihi2", "--package", str(tmp_path / "missing")], "not a Loihi package"),
        (["--profile", "loihi2", "--profile", "loihi2"], "priced twice"),
    ]
    for extra, msg in cases:
        code = main(["--checkpoint", str(ck), "--text", str(txt), "--tokens", "8", *extra, "-o", str(tmp_path / "x"),
                     "--no-progress"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and msg in err and len(err.splitlines()) == 1, (extra, err)
        assert not (tmp_path / "x").exists()
    code = main(["--checkpoint", str(other), "--text", str(txt), "--tokens", "8", "--profile", "loihi2",
                 "--package", str(pk["loihi2"]), "-o", str(tmp_path / "x"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "different model" in err and len(err.splitlines()) == 1


def test_fixed_point_checkpoint_reports_its_own_neurons(tmp_path):
    ck = tiny_checkpoint(tmp_path / "ck", fixed_point=True)
    txt = tiny_text(tmp_path / "t.txt")
    rep = energy_report(ck, txt, 24, ["loihi2"], teacher="gpt2-124m", progress=False)
    b = rep["profiles"]["loihi2"]
    assert "own fixed-point neurons" in b["package"]["activity"]["note"]
    assert b["package"]["trained_fixed_point"] is True
    # the model runs its integer neurons already: the deployed activity is the profiled one
    assert b["package"]["activity"]["firing_rate"] == pytest.approx(rep["activity"]["firing_rate"])
    assert set(b["student"]["counts_per_token"]) == set(OP_CLASSES)
    # its dense twin has no neurons, fixed-point or not: it exists and is priced on the same target
    assert b["dense_twin"]["energy_pj_per_token"] > 0 and "dense_twin_note" not in rep["fair_baseline"]


def test_resource_report_counts_ops_with_the_one_table():
    """The resource report's per-token ops come from the op-cost table (every neuron firing once):
    cores 7 synaptic ops + 7 compartment updates + 4 spikes; host 4 + 12 (input mantissas),
    3 + 3 (scales, readout decode), 15 (head MACs)."""
    from goose_neuro.export.loihi.resources import placement_resources

    g = hand_graph()
    s = placement_resources(default_placement(g, "loihi2"), g)["summary"]
    assert (s["ops_per_token_on_cores_max"], s["ops_per_token_host"]) == (7 + 7 + 4, 16 + 6 + 15)
    s1 = placement_resources(default_placement(g, "loihi"), g)["summary"]
    # Loihi 1 host neurons: 4 updates, 4 spikes (buffered) and 8 ON/OFF compares join the host
    assert (s1["ops_per_token_on_cores_max"], s1["ops_per_token_host"]) == (7 + 3, 37 + 4 + 4 + 8)
    assert (s["neurons"], s1["neurons"]) == (7, 3)
