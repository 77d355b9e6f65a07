"""Hostile files: pickles, YAML object tags, corrupt or mismatched ONNX, malformed .net chains.

Every payload here is a real one: unpickling it creates a marker file (checked in
``test_payload_really_executes``). Each loader must refuse the file with the
project's typed error and the marker must never appear.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest

from _hostile_assets import Payload, assets, copy, pickle_bytes, run_cli, torch_pickle_bytes

from goose_neuro.checkpoint import load_checkpoint
from goose_neuro.errors import CheckpointError, ExportError, GooseError, ProfileError, TeacherError


@pytest.fixture(scope="module")
def A(tmp_path_factory):
    return assets(tmp_path_factory)


def _payload(kind: str, marker: Path, scratch: Path) -> bytes:
    return pickle_bytes(marker) if kind == "pickle" else torch_pickle_bytes(marker, scratch / "p.bin")


def test_payload_really_executes(tmp_path):
    """Control: both payload forms do create the marker when (unsafely) unpickled."""
    import torch

    m1, m2 = tmp_path / "m1", tmp_path / "m2"
    pickle.loads(pickle_bytes(m1))
    torch_pickle_bytes(m2, tmp_path / "t.bin")
    torch.load(tmp_path / "t.bin", weights_only=False)
    assert m1.exists() and m2.exists()


# -- checkpoint directory ------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["pickle", "torch"])
@pytest.mark.parametrize("name", ["model.safetensors", "config.json"])
def test_checkpoint_loader_refuses_pickle(A, tmp_path, name, kind):
    ck = copy(A["ck"], tmp_path / "ck")
    marker = tmp_path / "PWNED"
    (ck / name).write_bytes(_payload(kind, marker, tmp_path))
    with pytest.raises(CheckpointError, match=name.split(".")[0]):
        load_checkpoint(ck)
    assert not marker.exists()


DECOYS = ["pytorch_model.bin", "optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin",
          "model.pt", "training_state/optimizer.pt"]


def test_checkpoint_loader_never_reads_pickle_files_beside_it(A, tmp_path):
    """Pickle files where other tools keep weights/optimizer state are ignored, never unpickled."""
    ck = copy(A["ck"], tmp_path / "ck")
    marker = tmp_path / "PWNED"
    for n in DECOYS:
        (ck / n).parent.mkdir(exist_ok=True)
        (ck / n).write_bytes(_payload("torch", marker, tmp_path))
    model, info = load_checkpoint(ck)
    assert model.cfg.vocab_size == A["vocab"] and not marker.exists()


@pytest.fixture(scope="module")
def run_dir(A, tmp_path_factory):
    """A run directory with one resumable checkpoint (model + training state)."""
    from goose_neuro.data import tokenize_source
    from goose_neuro.teacher import load_teacher

    teacher = load_teacher(A["teacher"])
    root = tmp_path_factory.mktemp("hostile_run")
    ids = tokenize_source(A["text"], teacher.tokenizer, root / "cache")
    tr = _trainer(teacher, ids, root / "run", root / "cache")
    tr.train(stop_after=1)
    return {"run": root / "run", "teacher": teacher, "ids": ids, "cache": root / "cache"}


def _trainer(teacher, ids, out, cache):
    from goose_neuro.config import preset
    from goose_neuro.data import split_tokens
    from goose_neuro.training import TrainConfig, Trainer

    cfg = TrainConfig(steps=4, batch_size=2, seq_len=8, warmup=1, eval_every=100, ckpt_every=100, eval_windows=2,
                      max_windows=16, ce_only=True)
    tr_ids, va_ids = split_tokens(ids, 0.1)
    return Trainer(preset("tiny", vocab_size=teacher.vocab_size), cfg, teacher, tr_ids, va_ids, out, cache)


@pytest.mark.parametrize("kind", ["pickle", "torch"])
@pytest.mark.parametrize("name", ["training_state/state.safetensors", "training_state/state.json",
                                  "model.safetensors"])
def test_resume_refuses_pickle_in_training_state(run_dir, tmp_path, name, kind):
    from goose_neuro.training import latest_checkpoint

    run = copy(run_dir["run"], tmp_path / "run")
    ck = latest_checkpoint(run)
    marker = tmp_path / "PWNED"
    (ck / name).write_bytes(_payload(kind, marker, tmp_path))
    tr = _trainer(run_dir["teacher"], run_dir["ids"], run, run_dir["cache"])
    with pytest.raises(CheckpointError):
        tr.resume()
    assert not marker.exists()


def test_resume_ignores_pickle_decoys_and_continues(run_dir, tmp_path):
    from goose_neuro.training import latest_checkpoint

    run = copy(run_dir["run"], tmp_path / "run")
    ck = latest_checkpoint(run)
    marker = tmp_path / "PWNED"
    for n in DECOYS + ["training_state/rng_state.pth", "training_state/scheduler.pt"]:
        (ck / n).write_bytes(_payload("torch", marker, tmp_path))
    tr = _trainer(run_dir["teacher"], run_dir["ids"], run, run_dir["cache"])
    assert tr.resume() and tr.step == 1 and not marker.exists()


def test_goose_train_resume_with_pickle_is_one_line_exit_2(A, run_dir, tmp_path):
    from goose_neuro.cli.train import main
    from goose_neuro.training import latest_checkpoint

    run = copy(run_dir["run"], tmp_path / "run")
    marker = tmp_path / "PWNED"
    (latest_checkpoint(run) / "training_state" / "state.safetensors").write_bytes(pickle_bytes(marker))
    code, _, err = run_cli(main, ["--teacher", str(A["teacher"]), "--data", str(A["text"]), "--preset", "tiny",
                                  "--out", str(run), "--resume", "--steps", "4", "--batch-size", "2",
                                  "--seq-len", "8", "--ce-only", "--cache-dir", str(tmp_path / "c")])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "training state" in err
    assert not marker.exists()


def test_teacher_directory_with_pickled_weights_is_refused(A, tmp_path):
    """A teacher whose only weights are a pickle (pytorch_model.bin) never runs the payload."""
    from goose_neuro.teacher import load_teacher

    t = copy(A["teacher"], tmp_path / "t")
    (t / "model.safetensors").unlink()
    marker = tmp_path / "PWNED"
    torch_pickle_bytes(marker, t / "pytorch_model.bin")
    with pytest.raises(TeacherError):
        load_teacher(t)
    assert not marker.exists()


# -- YAML hardware profiles ----------------------------------------------------------------------
YAML_TAGS = [
    "!!python/object/apply:builtins.open [{m}, w]\n",
    "schema_version: 1\nname: !!python/object/apply:builtins.open [{m}, w]\n",
    "schema_version: !!python/object/new:builtins.open [{m}, w]\n",
    "x: !!python/name:os.system\n",
]


@pytest.mark.parametrize("i", range(len(YAML_TAGS)))
def test_profile_yaml_python_tags_are_refused(tmp_path, i):
    from goose_neuro.hardware_profiles import load_profile

    marker = tmp_path / "PWNED"
    prof = tmp_path / "evil.yaml"
    prof.write_text(YAML_TAGS[i].format(m=json.dumps(str(marker))), encoding="utf-8")
    with pytest.raises(ProfileError, match="not valid YAML"):
        load_profile(prof)
    assert not marker.exists()


def test_goose_energy_with_evil_profile_is_one_line_exit_2(A, tmp_path):
    from goose_neuro.cli.energy import main

    marker = tmp_path / "PWNED"
    prof = tmp_path / "evil.yaml"
    prof.write_text(YAML_TAGS[1].format(m=json.dumps(str(marker))), encoding="utf-8")
    code, _, err = run_cli(main, ["--checkpoint", str(A["ck"]), "--text", str(A["text"]), "--profile", str(prof),
                                  "-o", str(tmp_path / "rep"), "--no-progress", "--no-plots"])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "YAML" in err
    assert not marker.exists() and not (tmp_path / "rep").exists()


# -- ONNX exports --------------------------------------------------------------------------------
def _onnx_case(A, tmp_path, how: str) -> Path:
    d = copy(A["onnx"], tmp_path / "onnx")
    side = json.loads((d / "model.json").read_text())
    if how == "garbage":
        (d / "model.onnx").write_bytes(b"\x08\x07not an onnx model" * 50)
    elif how == "truncated":
        (d / "model.onnx").write_bytes((A["onnx"] / "model.onnx").read_bytes()[:2000])
    elif how == "pickle":
        (d / "model.onnx").write_bytes(pickle_bytes(tmp_path / "PWNED"))
    elif how == "state_width":
        side["states"][0]["shape"] = ["batch", side["states"][0]["shape"][1] + 1]
    elif how == "state_renamed":
        side["states"][0]["input"] = "not_a_state"
    elif how == "other_model":
        shutil.copy2(A["onnx_other_vocab"] / "model.onnx", d / "model.onnx")
    elif how == "outside_path":
        side["model_file"] = "/etc/passwd"
    elif how == "version":
        side["version"] = 2
    (d / "model.json").write_text(json.dumps(side))
    return d


ONNX_CASES = ["garbage", "truncated", "pickle", "state_width", "state_renamed", "other_model", "outside_path",
              "version"]


@pytest.mark.parametrize("how", ONNX_CASES)
def test_onnx_export_is_validated_before_use(A, tmp_path, how):
    from goose_neuro.export.ort_runner import OrtStep

    d = _onnx_case(A, tmp_path, how)
    with pytest.raises(ExportError):
        OrtStep(d)
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("how", ["garbage", "other_model"])
def test_goose_generate_on_bad_onnx_is_one_line_exit_2(A, tmp_path, how):
    from goose_neuro.cli.generate import main

    d = _onnx_case(A, tmp_path, how)
    code, out, err = run_cli(main, [str(d), "--prompt", "the prince", "--tokens", "2"])
    assert code == 2 and len(err.strip().splitlines()) == 1 and out == ""


# -- Loihi packages and netx chains ----------------------------------------------------------------
NET_CASES = ["garbage", "empty", "pickle", "wrong_type", "wrong_shape", "outside"]


def _net_case(A, tmp_path, how: str) -> Path:
    import h5py
    import numpy as np

    pkg = copy(A["loihi2"], tmp_path / "pkg")
    man = json.loads((pkg / "manifest.json").read_text())
    net = pkg / man["chains"][1]["net_file"]
    if how == "garbage":
        net.write_bytes(b"\x89HDF\r\n\x1a\nbroken" * 40)
    elif how == "empty":
        net.write_bytes(b"")
    elif how == "pickle":
        net.write_bytes(pickle_bytes(tmp_path / "PWNED"))
    elif how in ("wrong_type", "wrong_shape"):
        with h5py.File(net, "r+") as f:
            if how == "wrong_type":
                f["layer/0/type"][0] = np.bytes_(b"conv")
            else:
                w = f["layer/0/weight"][()]
                del f["layer/0/weight"]
                f["layer/0/weight"] = w[:-1]
    elif how == "outside":
        man["chains"][1]["net_file"] = "../../../etc/hosts"
        (pkg / "manifest.json").write_text(json.dumps(man))
    return pkg


@pytest.mark.parametrize("how", NET_CASES)
def test_net_files_are_validated_before_lava_runs(A, tmp_path, how, monkeypatch):
    """goose-check lava refuses a malformed chain file (ExportError naming it) before it loads the
    checkpoint or starts the Lava runner."""
    from goose_neuro.export.loihi import check

    def no_lava(*a, **k):
        raise AssertionError("Lava was started on an unvalidated package")

    monkeypatch.setattr(check, "run_in_lava", no_lava)
    pkg = _net_case(A, tmp_path, how)
    with pytest.raises(ExportError, match="net|outside"):
        check.check_lava(pkg, tmp_path / "no-checkpoint", tokens=[1, 2, 3])
    assert not (tmp_path / "PWNED").exists()


def test_changed_net_weights_are_named_by_the_static_check(A, tmp_path):
    """Weights that load but differ from the checkpoint's are a failed check naming the file."""
    import h5py

    from goose_neuro.checkpoint import load_checkpoint
    from goose_neuro.export.loihi import load_package
    from goose_neuro.export.loihi.check import compare_static

    pkg = copy(A["loihi2"], tmp_path / "pkg")
    man = json.loads((pkg / "manifest.json").read_text())
    with h5py.File(pkg / man["chains"][1]["net_file"], "r+") as f:
        w = f["layer/0/weight"]
        w[0, 0] = 1 - int(w[0, 0])
    model, _ = load_checkpoint(A["ck"])
    rep = compare_static(load_package(pkg), model)
    assert not rep["identical"] and any(man["chains"][1]["net_file"] in d for d in rep["differences"])


def test_params_npz_with_pickled_object_array_is_refused(A, tmp_path):
    """np.load never unpickles: an object array in params.npz is an ExportError."""
    import numpy as np

    from goose_neuro.export.loihi import load_package

    pkg = copy(A["loihi2"], tmp_path / "pkg")
    with np.load(pkg / "params.npz") as z:
        params = {k: z[k] for k in z.files}
    params["L0.ln1.weight"] = np.array([Payload(tmp_path / "PWNED")], dtype=object)
    np.savez(pkg / "params.npz", **params)
    with pytest.raises(ExportError, match="params unreadable"):
        load_package(pkg)
    assert not (tmp_path / "PWNED").exists()


def test_all_hostile_errors_are_goose_errors():
    assert all(issubclass(e, GooseError) for e in (CheckpointError, ExportError, ProfileError, TeacherError))
