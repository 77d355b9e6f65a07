"""Checkpoint round trip and the errors promised for bad checkpoints."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch

from goose_neuro.checkpoint import load_checkpoint, read_checkpoint_config, save_checkpoint
from goose_neuro.config import preset
from goose_neuro.errors import CheckpointError
from goose_neuro.model import ASNNGoose


@pytest.fixture
def ckpt(tmp_path):
    torch.manual_seed(0)
    m = ASNNGoose(preset("tiny"))
    d = save_checkpoint(m, tmp_path / "ck", tokenizer="some/tokenizer", meta={"step": 3})
    return m, d


@pytest.mark.parametrize("tie", [False, True])
def test_round_trip_identical_logits(tmp_path, tie):
    torch.manual_seed(0)
    m = ASNNGoose(preset("tiny", tie_embeddings=tie)).eval()
    d = save_checkpoint(m, tmp_path / "ck")
    m2, info = load_checkpoint(d)
    tok = torch.randint(0, 256, (2, 10))
    with torch.no_grad():
        assert torch.equal(m(tok)[0], m2(tok)[0])
    assert info["config"] == m.cfg
    if tie:
        assert m2.head.weight is m2.emb.weight


def test_info_fields(ckpt):
    _, d = ckpt
    _, info = load_checkpoint(d)
    assert info["tokenizer"] == "some/tokenizer" and info["meta"] == {"step": 3}
    assert sorted(os.listdir(d)) == ["config.json", "model.safetensors"]  # no temporary files left


def test_missing_dir(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")


def test_missing_weights_names_file(ckpt):
    _, d = ckpt
    (d / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors: missing"):
        load_checkpoint(d)


def test_truncated_weights_names_file(ckpt):
    _, d = ckpt
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors: unreadable or truncated"):
        load_checkpoint(d)


def test_wrong_version_names_file(ckpt):
    _, d = ckpt
    raw = json.loads((d / "config.json").read_text())
    raw["format_version"] = 99
    (d / "config.json").write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match=r"config.json: format_version 99 is not supported"):
        load_checkpoint(d)


@pytest.mark.parametrize("text", ["", "{", "[1, 2]", '{"format": "other"}', "\x00\x01binary"])
def test_corrupt_config(ckpt, text):
    _, d = ckpt
    (d / "config.json").write_text(text)
    with pytest.raises(CheckpointError, match="config.json"):
        load_checkpoint(d)


def test_bad_model_field_in_config(ckpt):
    _, d = ckpt
    raw = json.loads((d / "config.json").read_text())
    raw["model"]["d_model"] = -1
    (d / "config.json").write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match="ModelConfig.d_model"):
        read_checkpoint_config(d)


def test_weights_not_matching_config(ckpt, tmp_path):
    _, d = ckpt
    other = save_checkpoint(ASNNGoose(preset("tiny", d_model=16)), tmp_path / "other")
    (d / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="shape|do not match"):
        load_checkpoint(d)


class _Payload:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickle_payload_is_never_executed(ckpt, tmp_path):
    _, d = ckpt
    marker = tmp_path / "pwned"
    evil = pickle.dumps(_Payload(str(marker)))
    # a pickle where the weights should be, and pickles beside them under names torch would read
    (d / "pytorch_model.bin").write_bytes(evil)
    (d / "training_state.pt").write_bytes(evil)
    load_checkpoint(d)  # ignores files it does not own
    (d / "model.safetensors").write_bytes(evil)
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_checkpoint(d)
    assert not marker.exists()


def test_nan_weights_refused(ckpt):
    m, d = ckpt
    with torch.no_grad():
        m.emb.weight[0, 0] = float("nan")
    save_checkpoint(m, d)
    with pytest.raises(CheckpointError, match="NaN"):
        load_checkpoint(d)
