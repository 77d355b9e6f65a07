"""Long-run safety: a NaN injected mid-run through goose-train, and resume after a simulated kill.

tests/test_trainer.py already checks exact resume after a clean ``stop_after`` and the NaN guard
step by step; these two tests add (1) a whole ``goose-train`` run with one NaN step in the middle
(skipped, counted, logged, training continues to the end) and (2) a resume from a run directory
left the way SIGKILL leaves it (a half-written temporary checkpoint, metrics lines past the
checkpoint and a line cut in half): losses, weights and optimizer moments equal an uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import pytest
import torch

from _hostile_assets import assets, run_cli


@pytest.fixture(scope="module")
def A(tmp_path_factory):
    return assets(tmp_path_factory)


def _records(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_nan_mid_run_is_skipped_counted_logged_and_training_continues(A, tmp_path, monkeypatch, caplog):
    from goose_neuro import losses
    from goose_neuro.checkpoint import load_checkpoint
    from goose_neuro.cli.train import main

    real, calls = losses.ce_loss, {"n": 0}

    def nan_on_fourth(logits, y):
        calls["n"] += 1
        v = real(logits, y)
        return v * float("nan") if calls["n"] == 4 else v

    monkeypatch.setattr(losses, "ce_loss", nan_on_fourth)
    out = tmp_path / "run"
    argv = ["--teacher", str(A["teacher"]), "--data", str(A["text"]), "--preset", "tiny", "--out", str(out),
            "--steps", "8", "--batch-size", "2", "--seq-len", "8", "--ce-only", "--eval-every", "100",
            "--ckpt-every", "4", "--eval-windows", "2", "--threads", "1", "--cache-dir", str(tmp_path / "c")]
    with caplog.at_level(logging.WARNING, logger="goose_neuro.training"):
        code, stdout, err = run_cli(main, argv)
    assert code == 0, err
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["step"] == 8 and summary["skipped"] == 1  # counted, and the run reached its end
    train = [r for r in _records(out) if r.get("kind") != "eval"]
    assert [r["step"] for r in train] == list(range(8))
    assert [r["step"] for r in train if r["skipped"]] == [3]  # logged in metrics.jsonl
    assert math.isnan(train[3]["loss"]) and train[3]["skipped_total"] == 1
    assert all(math.isfinite(r["loss"]) and not r["skipped"] for r in train if r["step"] != 3)
    assert train[-1]["skipped_total"] == 1
    assert any("non-finite loss or gradient at step 3: step skipped" in m for m in caplog.messages)
    model, info = load_checkpoint(out)
    assert info["meta"]["step"] == 8
    assert all(torch.isfinite(p).all() for p in model.parameters())


def _trainer(A, out: Path, cache: Path):
    from goose_neuro.config import preset
    from goose_neuro.data import split_tokens, tokenize_source
    from goose_neuro.teacher import load_teacher
    from goose_neuro.training import TrainConfig, Trainer

    teacher = _trainer.teacher = getattr(_trainer, "teacher", None) or load_teacher(A["teacher"])
    ids = tokenize_source(A["text"], teacher.tokenizer, cache)
    cfg = TrainConfig(steps=6, batch_size=4, seq_len=8, warmup=2, eval_every=100, ckpt_every=2, eval_windows=2,
                      max_windows=32)
    tr_ids, va_ids = split_tokens(ids, 0.1)
    return Trainer(preset("tiny", vocab_size=teacher.vocab_size), cfg, teacher, tr_ids, va_ids, out, cache)


def test_resume_from_killed_run_directory_matches_uninterrupted(A, tmp_path):
    from safetensors.torch import load_file

    from goose_neuro.training import latest_checkpoint

    torch.set_num_threads(1)
    cache = tmp_path / "c"
    ref = _trainer(A, tmp_path / "ref", cache)
    ref.train()
    run = tmp_path / "run"
    _trainer(A, run, cache).train(stop_after=4)
    ck4 = run / "checkpoints" / "step_0000004"
    # what SIGKILL during the write of step 6 leaves: a partial temporary checkpoint directory,
    # metrics lines for steps the lost checkpoint covered (with wrong values), a line cut in half
    partial = run / "checkpoints" / ".step_0000006.x1y2z3.tmp"
    shutil.copytree(ck4, partial)
    (partial / "training_state" / "state.safetensors").write_bytes(b"\x00" * 10)
    with open(run / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 4, "loss": 123.0}) + "\n" + json.dumps({"step": 5, "loss": 9.0}) + "\n")
        f.write('{"step": 6, "lo')
    assert latest_checkpoint(run) == ck4
    resumed = _trainer(A, run, cache)
    resumed.train(resume=True)
    want = [r["loss"] for r in _records(tmp_path / "ref") if r.get("kind") != "eval"]
    got = [r["loss"] for r in _records(run) if r.get("kind") != "eval"]
    assert len(want) == 6 and got == want  # same data order and optimizer state: bit-identical on CPU
    for k, v in ref.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    a = load_file(str(latest_checkpoint(tmp_path / "ref") / "training_state" / "state.safetensors"))
    b = load_file(str(latest_checkpoint(run) / "training_state" / "state.safetensors"))
    moments = [k for k in a if k.startswith("opt.")]
    assert moments and all(torch.equal(a[k], b[k]) for k in moments)
