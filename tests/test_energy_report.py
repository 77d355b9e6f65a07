"""The goose-energy report: files exist, their numbers match report.json and independently computed
values (spike counts from hooks on the model, teacher sizes, fair-baseline references); CLI errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from _energy_fixtures import tiny_checkpoint, tiny_text
from goose_neuro.cli.energy import main
from goose_neuro.energy import energy_report
from goose_neuro.energy.activity import PopulationActivity
from goose_neuro.hardware_profiles import OP_CLASSES
from goose_neuro.tokenizer import encode_file, load_tokenizer

PROFILES = ["loihi", "loihi2", "cmos45-int8"]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    d = tmp_path_factory.mktemp("energy")
    ck = tiny_checkpoint(d / "ck")
    txt = tiny_text(d / "text.txt")
    out = d / "report"
    code = main(["--checkpoint", str(ck), "--text", str(txt), "--tokens", "96", "--profile", "loihi",
                 "--profile", "loihi2", "--profile", "cmos45-int8", "--teacher", "gpt2-124m", "-o", str(out),
                 "--no-progress"])
    assert code == 0
    return d, ck, txt, out


def test_report_files_exist(made):
    out = made[3]
    for f in ("report.md", "report.json", "layers.csv", "channels.csv", "timeline.csv", "firing_rate.png",
              "energy_breakdown.png", "ac_vs_mac.png", "energy_vs_context.png", "energy_vs_rate.png"):
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    assert (out / "firing_rate.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_json_layout_and_csv_agree(made):
    out = made[3]
    rep = json.loads((out / "report.json").read_text())
    assert set(rep["profiles"]) == set(PROFILES) | {"cmos45-fp32"}  # baseline added
    layers = pd.read_csv(out / "layers.csv")
    for name, b in rep["profiles"].items():
        s = b["student"]
        assert set(s["counts_per_token"]) == set(OP_CLASSES)
        w = s.get("by_where")
        extra = 0.0 if w is None else sum(w[k]["energy_pj"] for k in ("host_chip", "spike_hops", "static"))
        assert s["energy_pj_per_token"] == pytest.approx(sum(s["energy_pj_by_class"].values()) + extra)
        assert (w is not None) == (name in ("loihi", "loihi2"))  # Loihi targets are priced as packages
        rows = layers[layers.profile == name]
        assert rows.pj_total.sum() == pytest.approx(s["energy_pj_per_token"], rel=1e-9)
        for c in OP_CLASSES:
            assert rows[f"count_{c}"].sum() == pytest.approx(s["counts_per_token"][c], rel=1e-9, abs=1e-9)
            if w is None:
                assert s["energy_pj_by_class"][c] == pytest.approx(s["counts_per_token"][c] * b["constants"][c]["pj"])
            else:  # each place priced with its own profile
                places = [k for k in ("core", "host", "host_neuron") if k in w]
                assert s["energy_pj_by_class"][c] == pytest.approx(sum(
                    w[k]["counts_per_token"][c] * b["constants_by_where"][k][c]["pj"] for k in places))
                assert s["counts_per_token"][c] == pytest.approx(sum(w[k]["counts_per_token"][c] for k in places))
        for L in ("128", "512", "1024"):
            t = b["teacher"][L]
            assert b["student_over_teacher"][L] == pytest.approx(s["energy_pj_per_token"] / t["energy_pj_per_token"])
    a = rep["activity"]
    assert a["tokens"] == 96
    ch = pd.read_csv(out / "channels.csv")
    assert ch.events.sum() / (96 * len(ch)) == pytest.approx(a["firing_rate"])
    tl = pd.read_csv(out / "timeline.csv", index_col="token")
    assert len(tl) == 96 and tl.values.sum() == ch.events.sum()
    assert rep["neurobench"]["ActivationSparsity"] == pytest.approx(a["activation_sparsity"])


def test_markdown_shows_the_json_numbers(made):
    from goose_neuro.energy.report import _pj

    out = made[3]
    rep = json.loads((out / "report.json").read_text())
    md = (out / "report.md").read_text()
    for name, b in rep["profiles"].items():
        assert f"`{name}`" in md
        assert _pj(b["student"]["energy_pj_per_token"]) in md
        assert _pj(b["teacher"]["512"]["energy_pj_per_token"]) in md
    assert "not published" in md and "Assumptions" in md and "Davies et al. 2018" in md


def _hook_counts(ck, txt, n_tokens: int, fixed: bool = False) -> dict[str, float]:
    """Independent per-token figures from the checkpoint: a plain forward pass with hooks on the
    ternary synapses (their inputs) and the neurons (their outputs). No activity profile, no IR.
    ``fixed``: run the integer neurons a Loihi package deploys (float64, default frac_bits)."""
    import torch

    from goose_neuro.checkpoint import load_checkpoint
    from goose_neuro.neurons import SpikeLIF
    from goose_neuro.ternary import TernaryLinear

    model, _ = load_checkpoint(ck)
    if fixed:
        model = model.double()
        model.set_fixed_point(model.deployed_format())
    ids = torch.tensor(encode_file(txt, load_tokenizer(ck, model.cfg.vocab_size), model.cfg.vocab_size,
                                   max_tokens=n_tokens))[None]
    syn = [m for m in model.modules() if isinstance(m, TernaryLinear) and m is not model.head]
    lifs = [m for m in model.modules() if isinstance(m, SpikeLIF)]
    got = {"ac": 0.0, "events": 0.0, "dense_synops": 0.0}

    def pre(mod, inp):
        nnz = (mod.ternary_parts()[0] != 0).sum(0).double()  # (in,)
        got["ac"] += float(((inp[0][0] != 0).double() @ nnz).sum()) / n_tokens
        got["dense_synops"] += mod.weight.shape[0] * mod.weight.shape[1]

    def post(mod, inp, out):
        got["events"] += float((out[0] != 0).sum()) / n_tokens

    hs = [m.register_forward_pre_hook(pre) for m in syn] + [m.register_forward_hook(post) for m in lifs]
    with torch.no_grad():
        model.eval()(ids)
    for h in hs:
        h.remove()
    got["neurons"] = float(sum(m.n for m in lifs))
    # one readout compartment per row: [S] for equal TTQ scales, [P; N] otherwise
    got["readouts"] = float(sum(m.weight.shape[0] * (1 if torch.equal(m.wp.abs(), m.wn.abs()) else 2) for m in syn))
    got["head_macs"] = float(model.cfg.d_model * model.cfg.vocab_size)
    got["ln_macs"] = float((2 + 2 * model.cfg.n_layers) * model.cfg.d_model)
    return got


def test_student_energy_equals_independent_count(made):
    """The API's numbers against figures computed from the model by hooks and the profiles' published
    figures (23.6 pJ per synaptic op, 81 pJ per neuron update, 1.7 pJ per spike; int32 add 0.1 pJ).
    Loihi 2 prices its package: the fixed-point neurons' activity, and every population and readout
    compartment updated every token."""
    d, ck, txt, out = made
    rep = energy_report(ck, txt, 96, profiles=["loihi2", "cmos45-int8"], teacher="gpt2-124m", progress=False)
    h = _hook_counts(ck, txt, 96)
    hf = _hook_counts(ck, txt, 96, fixed=True)
    assert h["ac"] > 0 and h["events"] > 0 and hf["readouts"] > h["neurons"]
    assert hf["events"] != h["events"]  # the integer neurons fire differently: the test tells them apart
    l2 = rep["profiles"]["loihi2"]["student"]["by_where"]["core"]["energy_pj_by_class"]
    assert l2["ac"] == pytest.approx(hf["ac"] * 23.6, rel=1e-9)
    assert l2["neuron"] == pytest.approx((hf["neurons"] + hf["readouts"]) * 81, rel=1e-12)
    assert l2["spike"] == pytest.approx(hf["events"] * 1.7, rel=1e-9)
    assert rep["profiles"]["loihi2"]["package"]["activity"]["firing_rate"] == pytest.approx(
        hf["events"] / hf["neurons"], rel=1e-9)
    i8 = rep["profiles"]["cmos45-int8"]["student"]["energy_pj_by_class"]
    assert i8["ac"] == pytest.approx(h["dense_synops"] * 0.1, rel=1e-12)  # a dense datapath: every synapse
    a = rep["activity"]
    assert a["firing_rate"] == pytest.approx(h["events"] / h["neurons"], rel=1e-9)


# GPT-2 124M (published sizes): 12 layers, d 768, 3072 MLP, vocab 50,257, 1,024 positions, 124,439,808 params
def _gpt2_macs(ctx: int) -> int:
    d, f, L, V = 768, 3072, 12, 50257
    return L * (4 * d * d + 2 * d * f + 2 * ctx * d) + d * V + (2 * L + 1) * d  # projections, attention, head, LN


def test_teacher_and_fair_baseline_against_independent_values(made):
    d, ck, txt, out = made
    rep = json.loads((out / "report.json").read_text())
    fair = rep["fair_baseline"]
    t32 = rep["profiles"]["cmos45-fp32"]["teacher"]["512"]
    t8 = rep["profiles"]["cmos45-int8"]["teacher"]["512"]
    assert t32["energy_pj_by_class"]["mac"] == pytest.approx(_gpt2_macs(512) * 4.6, rel=1e-12)
    assert t8["energy_pj_by_class"]["mac"] == pytest.approx(_gpt2_macs(512) * 0.3, rel=1e-12)
    weights_read = 124439808 - 1024 * 768 + 2 * 768  # all but the position table, plus two embedding rows
    assert t8["counts_per_token"]["mem_dense_bits"] == 8 * weights_read  # int8 weights
    assert t32["counts_per_token"]["mem_dense_bits"] == 32 * weights_read
    assert fair["teachers"]["int8"]["profile"] == "cmos45-int8" and fair["teachers"]["int8"]["weight_bits"] == 8
    assert fair["teachers"]["int8"]["activation_bits"] == 8
    assert fair["teachers"]["int8"]["512"] == pytest.approx(t8["energy_pj_per_token"])
    assert fair["teachers"]["fp32"]["512"] == pytest.approx(t32["energy_pj_per_token"])
    # dense twin on cmos45-int8: every synapse a MAC (in * out), head and LayerNorm sums of squares; no neurons
    h = _hook_counts(ck, txt, 96)
    twin = rep["profiles"]["cmos45-int8"]["dense_twin"]["counts_per_token"]
    assert twin["mac"] == h["dense_synops"] + h["head_macs"] + h["ln_macs"]
    assert twin["neuron"] == 0 and twin["ac"] == 0 and twin["spike"] == 0
    for n, b in rep["profiles"].items():
        s = b["student"]["energy_pj_per_token"]
        r = fair["ratios"][n]
        assert r["student_over_teacher_int8"]["512"] == pytest.approx(s / t8["energy_pj_per_token"])
        assert r["student_over_dense_twin"] == pytest.approx(s / b["dense_twin"]["energy_pj_per_token"])


def test_break_even_rate_meets_the_reference(made):
    """At the break-even rate, the package recomputed with its activity scaled to that rate costs exactly
    the reference; a dense target's energy does not depend on the rate (no break-even)."""
    from goose_neuro.energy.activity import ActivityProfile, profile_text
    from goose_neuro.energy.counts import events_by_node
    from goose_neuro.energy.package import default_placement, price_placement
    from goose_neuro.export.lower import lower
    from goose_neuro.hardware_profiles import load_profile

    d, ck, txt, out = made
    rep = json.loads((out / "report.json").read_text())
    from goose_neuro.checkpoint import load_checkpoint

    model, _ = load_checkpoint(ck)
    g = lower(model)
    model = model.double()
    model.set_fixed_point(model.deployed_format())
    act = profile_text(model, txt, load_tokenizer(ck, 300), 96, progress=False)
    ev = events_by_node(g, act)
    for name in ("loihi", "loihi2"):
        prof = load_profile(name)
        assert rep["profiles"][name]["rate_model"]["measured_rate"] == pytest.approx(act.firing_rate())
        for ref, r in ((rep["profiles"][name]["dense_twin"]["energy_pj_per_token"],
                        rep["fair_baseline"]["break_even"][name]["dense_twin"]),
                       (rep["fair_baseline"]["teachers"]["int8"]["512"],
                        rep["fair_baseline"]["break_even"][name]["teacher_int8"]["512"])):
            scaled = {k: v * r / act.firing_rate() for k, v in ev.items()}
            e = price_placement(g, default_placement(g, name), scaled, prof)["energy_pj_per_token"]
            assert e == pytest.approx(ref, rel=1e-9)
    be = rep["fair_baseline"]["break_even"]["cmos45-int8"]
    assert be["dense_twin"] is None and be["teacher_int8"]["512"] is None
    assert rep["profiles"]["cmos45-int8"]["rate_model"]["slope_pj"] == 0
    assert isinstance(act, ActivityProfile)


def test_published_thresholds_are_quoted(made):
    rep = json.loads((made[3] / "report.json").read_text())
    th = rep["fair_baseline"]["published_thresholds"]
    d = next(x for x in th if x["source"].startswith("Dampfhoffer"))
    assert (d["low"], d["high"]) == (0.15, 1.38) and "spikes per synapse per inference" in d["statement"]
    assert {x["low"] for x in th if "2409.08290" in x["source"]} == {0.064, 0.057}
    md = (made[3] / "report.md").read_text()
    assert "Fair baseline" in md and "0.15 and 1.38" in md and "5.7%" in md


def test_cli_user_errors_exit_2(made, tmp_path, capsys):
    d, ck, txt, _ = made
    base = ["--checkpoint", str(ck), "--text", str(txt), "-o", str(tmp_path / "r"), "--no-progress"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema_version: 1\nname: x\n")
    for extra, msg in ((["--profile", "loihi9"], "unknown hardware profile"),
                       (["--profile", str(bad)], "field 'title'"),
                       (["--tokens", "100000"], " requested"),
                       (["--teacher", str(tmp_path)], "config.json")):
        assert main(base + extra) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1, err
    assert main(["--checkpoint", str(tmp_path), "--text", str(txt), "-o", str(tmp_path / "r")]) == 2
    assert not (tmp_path / "r").exists()  # nothing half-written


def test_tokenizer_from_checkpoint_and_byte_fallback(made, tmp_path):
    d, ck, txt, _ = made
    tok = load_tokenizer(ck, 300)
    ids = encode_file(txt, tok, 300, max_tokens=40, min_tokens=40)
    assert len(ids) == 40 and max(ids) < 300
    with pytest.warns(UserWarning, match="UTF-8 bytes"):
        fb = load_tokenizer(tmp_path, 300)
    assert encode_file(txt, fb, 300, max_tokens=5) == list(txt.read_bytes()[:5])


def test_population_statistics():
    ev = np.array([0, 3, 5, 5])
    p = PopulationActivity("x", 4, ev, ev, np.zeros(4, np.int64), np.array([1, 4, 3, 2, 3]))
    assert p.tokens == 5
    assert p.firing_rate == pytest.approx(13 / 20)
    assert p.zero_fraction == pytest.approx(7 / 20)
    assert p.dead == 1 and p.saturated == 2


def test_dense_checkpoint_reports_without_a_twin(tmp_path):
    """A spike_mode none checkpoint is its own dense twin: no twin block, no break-even, a stated note."""
    ck = tiny_checkpoint(tmp_path / "dense", spike_mode="none")
    txt = tiny_text(tmp_path / "t.txt")
    rep = energy_report(ck, txt, 32, profiles=["loihi2"], teacher="gpt2-124m", progress=False)
    assert "dense_twin" not in rep["profiles"]["loihi2"]
    assert rep["fair_baseline"]["break_even"]["loihi2"]["teacher_int8"]["512"] is None
    assert "its own dense twin" in rep["fair_baseline"]["dense_twin_note"]
    assert rep["profiles"]["loihi2"]["student"]["counts_per_token"]["neuron"] == 0
    # no spiking populations, so no Loihi package: priced with the profile's class table, and said so
    assert "package" not in rep["profiles"]["loihi2"]
    assert "no loihi2 package can be built" in rep["profiles"]["loihi2"]["package_note"]
    assert "no spiking populations" in rep["profiles"]["loihi2"]["package_note"]
