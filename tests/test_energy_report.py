"""The goose-energy report: files exist, their numbers match report.json; CLI errors; activity stats."""

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
              "energy_breakdown.png", "ac_vs_mac.png", "energy_vs_context.png"):
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
        assert s["energy_pj_per_token"] == pytest.approx(sum(s["energy_pj_by_class"].values()))
        rows = layers[layers.profile == name]
        assert rows.pj_total.sum() == pytest.approx(s["energy_pj_per_token"], rel=1e-9)
        for c in OP_CLASSES:
            assert rows[f"count_{c}"].sum() == pytest.approx(s["counts_per_token"][c], rel=1e-9, abs=1e-9)
            assert s["energy_pj_by_class"][c] == pytest.approx(s["counts_per_token"][c] * b["constants"][c]["pj"])
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


def test_api_matches_cli(made):
    d, ck, txt, out = made
    rep = energy_report(ck, txt, 96, profiles=["loihi2"], teacher="gpt2-124m", progress=False)
    cli = json.loads((out / "report.json").read_text())
    assert rep["profiles"]["loihi2"]["student"]["energy_pj_per_token"] == pytest.approx(
        cli["profiles"]["loihi2"]["student"]["energy_pj_per_token"])


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
