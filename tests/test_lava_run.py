"""Lava checks (marker ``lava``): packages run in Lava's ``Loihi2SimCfg`` (fixed point) with
lava-nc's own process models, and ``goose-check lava`` compares them with the checkpoint's model,
passes on a good package and fails (one line naming the fault) on corrupted ones.

They need the Python 3.10 environment ``.venv-lava`` (``make test`` makes it). Where it is missing
but Python 3.10 exists, one is made in a temporary directory (tests never write into the source
tree); they skip, saying why, only where no Python 3.10 exists."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from goose_neuro.checkpoint import save_checkpoint
from goose_neuro.config import preset
from goose_neuro.export.loihi import check, export_loihi, load_package
from goose_neuro.export.lower import lower
from goose_neuro.model import ASNNGoose
from goose_neuro.neurons import TernaryLIFNeuron

pytestmark = pytest.mark.lava
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def lava_py(tmp_path_factory) -> Path:
    py = check.lava_python()
    if py is not None:
        return py
    sys.path.insert(0, str(REPO / "scripts"))
    import make_lava_env

    if make_lava_env.find_python310() is None:
        pytest.skip("no Python 3.10 on this machine: the Lava environment (.venv-lava) cannot exist")
    venv = tmp_path_factory.mktemp("lava") / "venv"
    assert make_lava_env.main(["--venv", str(venv)]) == 0, "scripts/make_lava_env.py failed though Python 3.10 exists"
    return venv / "bin" / "python"


def _model(seed: int = 0, **kw) -> ASNNGoose:
    torch.manual_seed(seed)
    m = ASNNGoose(preset("tiny", **kw)).eval()
    with torch.no_grad():  # lively populations and asymmetric TTQ scales, as after training
        for lif in m.populations().values():
            lif.threshold.mul_(0.3)
            if isinstance(lif, TernaryLIFNeuron):
                lif.beta_u_raw.fill_(0.2)
        for lin in m.ternary_layers().values():
            lin.wn.mul_(1.2)
    return m


@pytest.mark.parametrize("target, population", [("loihi", "core"), ("loihi", "host"), ("loihi2", None)])
def test_net_files_load_in_netx(target, population, tmp_path, lava_py):
    out = export_loihi(lower(_model(n_layers=1)), tmp_path / "pkg", target, population=population)
    res = subprocess.run([str(lava_py), str(check.RUNNER), "--package", str(out), "--inspect"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    info = json.loads(res.stdout.strip().splitlines()[-1])
    man = json.loads((out / "manifest.json").read_text())
    assert set(info) == {c["population"] for c in man["chains"]}
    for ch in man["chains"]:
        got = info[ch["population"]]
        assert got["weights_exact"] and [got["rows"], got["inputs"]] == ch["weight_shape"]
        assert got["readout"] == ("Sigma" if target == "loihi2" else "LIF")


LAVA_CASES = [  # (model options, target, population, lava-nc population model or None for the project's)
    (dict(neuron="ternary_lif", fixed_point=True), "loihi2", None, "PyTernLifModelFixed"),
    (dict(neuron="ternary_lif"), "loihi", "host", "PyTernLifModelFixed"),
    (dict(fixed_point=True), "loihi2", None, None),
    (dict(), "loihi", "host", None),
]


@pytest.mark.parametrize("kw, target, population, lava_model", LAVA_CASES,
                         ids=["tlif-loihi2", "tlif-loihi-host", "subtract-loihi2", "subtract-loihi-host"])
def test_lava_equals_the_checkpoints_model(kw, target, population, lava_model, tmp_path, lava_py):
    m = _model(**kw)
    pkg = load_package(export_loihi(lower(m), tmp_path / "pkg", target, population=population))
    toks = np.random.default_rng(3).integers(0, 256, size=16)
    ref = check.reference_run(check.deployed_model(m, pkg), toks)
    got = check.run_in_lava(pkg.path, toks, lava_py, timeout=300)
    rep = check.compare_lava(pkg, ref, got, toks)
    assert rep["spikes_total"] > 500  # the comparison is not vacuous
    assert rep["spike_mismatches"] == 0 and rep["input_mismatches"] == 0
    assert rep["logits_max_abs_diff"] < 1e-9 and rep["argmax_agreement"] == 1.0
    models = rep["models"]
    assert models["synapses"] == ["lava.proc.dense.models.PyDenseModelBitAcc"]
    assert models["readouts"] == (["lava.proc.sdn.models.PySigmaModelFixed"] if target == "loihi2"
                                  else ["lava.proc.lif.models.PyLifModelBitAcc"])
    if lava_model:  # the neuron runs in lava-nc's own process model, none written by this project
        assert models["populations"] == [f"lava.proc.lif.models.{lava_model}"]
    else:
        assert [x.rsplit(".", 1)[1] for x in models["populations"]] == ["PyGooseSubtractLIF"]


def test_on_core_cuba_approximation_runs_and_is_reported(tmp_path, lava_py):
    m = _model()
    ck = tmp_path / "ck"
    save_checkpoint(m, ck)
    export_loihi(lower(m), tmp_path / "pkg", "loihi", population="core")
    rep = check.check_lava(tmp_path / "pkg", ck, tokens=np.arange(1, 40) % 256, lava_tokens=12, eval_tokens=30,
                           python=lava_py)
    assert rep["lava"]["models"]["populations"] == ["lava.proc.lif.models.PyLifModelBitAcc"]
    assert rep["checks"]["package_matches_checkpoint"]
    assert not rep["checks"]["lava_spikes_match"] and not rep["passed"]
    assert "approximation" in check.failure_line(rep)


# -- goose-check lava as a gate -----------------------------------------------------------------
@pytest.fixture(scope="module")
def good(tmp_path_factory):
    d = tmp_path_factory.mktemp("gate")
    m = _model(neuron="ternary_lif", fixed_point=True)
    save_checkpoint(m, d / "ck")
    export_loihi(lower(m), d / "pkg", "loihi2")
    (d / "t.txt").write_bytes(bytes(np.random.default_rng(0).integers(97, 123, 400, dtype=np.uint8)))
    return d


def _goose_check(d: Path, pkg: Path, lava_py: Path) -> tuple[int, dict | None, list[str]]:
    res = subprocess.run([str(Path(sys.executable).with_name("goose-check")), "lava", str(pkg), "--checkpoint",
                          str(d / "ck"), "--text", str(d / "t.txt"), "--lava-tokens", "20", "--eval-tokens", "40",
                          "--lava-python", str(lava_py), "--json"], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})  # the byte-tokenizer notice
    err = [ln for ln in res.stderr.splitlines() if ln.strip()]
    rep = json.loads(res.stdout) if res.stdout.strip() else None
    return res.returncode, rep, err


def test_goose_check_lava_passes_on_the_exported_package(good, lava_py):
    rc, rep, err = _goose_check(good, good / "pkg", lava_py)
    assert rc == 0 and err == [] and rep["passed"]
    assert rep["static"]["identical"] and rep["lava"]["spike_mismatches"] == 0 and rep["lava"]["spikes_total"] > 0
    assert rep["quality"]["ppl_rel_diff"] == 0.0 and rep["trained_fixed_point"]
    assert rep["lava"]["models"]["populations"] == ["lava.proc.lif.models.PyTernLifModelFixed"]


def _params(fn):
    def go(pkg: Path) -> None:
        with np.load(pkg / "params.npz") as z:
            p = {k: z[k] for k in z.files}
        fn(p)
        np.savez(pkg / "params.npz", **p)
    return go


def _flip_row(pkg: Path) -> None:
    with h5py.File(pkg / "chains" / "L0.tm.lif_in.net", "r+") as f:
        w = f["layer/0/weight"][()]
        w[5] = -w[5]
        f["layer/0/weight"][...] = w


CORRUPTIONS = {  # name: (edit, the words the failure line must contain)
    "decay": (_params(lambda p: p.__setitem__("L0.tm.lif_in.dv", np.array([4095]))), "L0.tm.lif_in.dv"),
    "gain": (_params(lambda p: p["L1.tm.lif_out.gain"].__imul__(3.0)), "L1.tm.lif_out.gain"),
    "weight row": (_flip_row, "chains/L0.tm.lif_in.net weights (rows 5)"),
    "host-op parameter": (_params(lambda p: p["L0.ln1.weight"].__imul__(1.5)), "L0.ln1.weight"),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_goose_check_lava_fails_on_a_corrupted_package(good, tmp_path, lava_py, name):
    edit, words = CORRUPTIONS[name]
    pkg = tmp_path / "pkg"
    shutil.copytree(good / "pkg", pkg)
    edit(pkg)
    rc, rep, err = _goose_check(good, pkg, lava_py)
    assert rc == 1 and len(err) == 1 and err[0].startswith("goose-check: FAILED:")
    assert words in err[0], err[0]
    assert not rep["checks"]["package_matches_checkpoint"]
    # the Lava run catches it on its own too, against the checkpoint's model
    assert rep["lava"]["spike_mismatches"] > 0 and not rep["checks"]["lava_spikes_match"]
    assert "Lava:" in err[0] and "Traceback" not in "".join(err)


def test_goose_check_lava_malformed_package_is_exit_2(good, tmp_path, lava_py):
    pkg = tmp_path / "pkg"
    shutil.copytree(good / "pkg", pkg)
    m = json.loads((pkg / "manifest.json").read_text())
    m["chains"][1]["n"] += 1  # a chain's size changed
    (pkg / "manifest.json").write_text(json.dumps(m))
    rc, rep, err = _goose_check(good, pkg, lava_py)
    assert rc == 2 and rep is None and len(err) == 1
    assert "malformed Loihi package" in err[0] and "L0.tm.lif_out" in err[0]
    rc, _, err = _goose_check(good, tmp_path / "missing", lava_py)
    assert rc == 2 and "not a Loihi package (does not exist" in err[0]
