"""Lava checks (marker ``lava``): netx loads the chain files, and Lava (Loihi2SimCfg, fixed point)
equals the integer reference bit for bit for both targets. They need the Python 3.10 environment
(.venv-lava); it is created here if Python 3.10 exists, and the tests skip only when it does not."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from goose_neuro.config import preset
from goose_neuro.export import lava_check, loihi
from goose_neuro.export.lower import lower
from goose_neuro.model import ASNNGoose

pytestmark = pytest.mark.lava
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def lava_py() -> Path:
    py = lava_check.lava_python()
    if py is not None:
        return py
    sys.path.insert(0, str(REPO / "scripts"))
    import make_lava_env

    if make_lava_env.find_python310() is None:
        pytest.skip("no Python 3.10 on this machine: the Lava environment (.venv-lava) cannot exist")
    rc = make_lava_env.main(["--venv", str(REPO / ".venv-lava")])
    assert rc == 0, "scripts/make_lava_env.py failed although Python 3.10 exists"
    return REPO / ".venv-lava" / "bin" / "python"


@pytest.fixture(scope="module")
def graph():
    torch.manual_seed(0)
    return lower(ASNNGoose(preset("tiny", n_layers=1, d_model=16, ffn_mult=2.0)).eval())


@pytest.mark.parametrize("target, population", [("loihi", "core"), ("loihi", "host"), ("loihi2", "core")])
def test_net_files_load_in_netx(graph, target, population, tmp_path, lava_py):
    out = loihi.export_loihi(graph, tmp_path / "pkg", target, population=population)
    res = subprocess.run([str(lava_py), str(lava_check.RUNNER), "--package", str(out), "--inspect"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    info = json.loads(res.stdout.strip().splitlines()[-1])
    man = json.loads((out / "manifest.json").read_text())
    assert set(info) == {c["name"] for c in man["chains"]}
    for ch in man["chains"]:
        got = info[ch["name"]]
        assert got["layers"] == len(ch["net_layers"]) == (2 if population == "core" and target == "loihi" else 1)
        assert got["weights_exact"]
        assert [got["rows"], got["inputs"]] == ch["weight_shape"]


@pytest.mark.parametrize("target, population, host", [
    ("loihi", "core", "float64"), ("loihi", "host", "float64"), ("loihi2", "core", "float64"),
    ("loihi2", "core", "q16")])
def test_lava_equals_integer_reference(graph, target, population, host, tmp_path, lava_py):
    out = loihi.export_loihi(graph, tmp_path / "pkg", target, population=population, host=host)
    toks = np.random.default_rng(3).integers(0, 256, size=12)
    rep = lava_check.compare_lava(out, toks, python=lava_py, timeout=300)
    assert rep["spikes_total"] > 0  # the comparison is not vacuous
    assert rep["spike_mismatches"] == 0 and rep["spikes_identical"]
    assert rep["logits_identical"]
    assert rep["tokens"] == 12 and rep["lava_tokens_per_s"] > 0


def test_check_lava_json_report(tmp_path, lava_py, capsys):
    from goose_neuro.checkpoint import save_checkpoint
    from goose_neuro.cli.check import main as check_main

    torch.manual_seed(0)
    save_checkpoint(ASNNGoose(preset("tiny", n_layers=1, d_model=16, ffn_mult=2.0)), tmp_path / "ck")
    text = tmp_path / "t.txt"
    text.write_text("to be or not to be, that is the question. " * 3, encoding="utf-8")
    from goose_neuro.cli.export import main as export_main

    assert export_main(["--target", "loihi", str(tmp_path / "ck"), "-o", str(tmp_path / "pkg")]) == 0
    rc = check_main(["lava", str(tmp_path / "pkg"), "--checkpoint", str(tmp_path / "ck"), "--text", str(text),
                     "--lava-tokens", "6", "--eval-tokens", "32", "--lava-python", str(lava_py), "--json"])
    rep = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rep["checks"]["lava_spikes_identical"] and rep["checks"]["lava_logits_match"]
    fl = rep["float"]
    assert fl["eval_tokens"] == 32 and fl["reference"].startswith("PyTorch model with the package's fixed-point")
    assert fl["spike_mismatches_vs_pytorch"] == 0 and fl["spikes_total"] > 0
    assert fl["argmax_agreement"] >= 0.99 and 0 <= fl["argmax_agreement_float_neurons"] <= 1
    assert rep["passed"] and rc == 0
    assert check_main(["lava", str(tmp_path / "missing"), "--checkpoint", str(tmp_path / "ck"),
                       "--text", str(text)]) == 2
    assert "not a readable Loihi package" in capsys.readouterr().err
