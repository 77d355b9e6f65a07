"""Trainer and CLI: checkpoints, exact resume, NaN guard, teacher cache, goose-train / goose-eval."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"

from goose_neuro import losses  # noqa: E402
from goose_neuro.checkpoint import load_checkpoint  # noqa: E402
from goose_neuro.cli.evaluate import main as eval_main  # noqa: E402
from goose_neuro.cli.train import main as train_main  # noqa: E402
from goose_neuro.config import preset  # noqa: E402
from goose_neuro.data import split_tokens, tokenize_source  # noqa: E402
from goose_neuro.errors import TeacherError  # noqa: E402
from goose_neuro.teacher import load_teacher, make_tiny_teacher  # noqa: E402
from goose_neuro.training import TrainConfig, Trainer, TrainingError, latest_checkpoint  # noqa: E402

from _text import corpus  # noqa: E402


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    torch.set_num_threads(1)  # this tiny, loop-bound model runs fastest on one thread
    root = tmp_path_factory.mktemp("distill")
    tdir = make_tiny_teacher(root / "teacher", corpus(), vocab_size=120, n_positions=32)
    (root / "text.txt").write_text(corpus())
    teacher = load_teacher(tdir)
    ids = tokenize_source(root / "text.txt", teacher.tokenizer, root / "cache")
    return {"root": root, "tdir": tdir, "teacher": teacher, "ids": ids}


def make(env, out: Path, **kw) -> Trainer:
    base = dict(steps=6, batch_size=4, seq_len=12, warmup=2, eval_every=3, ckpt_every=3, eval_windows=4,
                max_windows=64)
    cfg = TrainConfig(**{**base, **kw})
    tr_ids, va_ids = split_tokens(env["ids"], 0.1)
    mcfg = preset("tiny", vocab_size=env["teacher"].vocab_size)
    return Trainer(mcfg, cfg, env["teacher"], tr_ids, va_ids, out, env["root"] / "cache")


def train_losses(out: Path) -> list[float]:
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in recs if r.get("kind") != "eval"]


def test_exact_resume_reproduces_uninterrupted_losses(env, tmp_path):
    kw = dict(ctkd=True, pocl=True, adakd=True, align_weight=0.1)
    full = make(env, tmp_path / "a", **kw)
    full.train()
    ref = train_losses(tmp_path / "a")
    part = make(env, tmp_path / "b", **kw)
    part.train(stop_after=3)
    assert latest_checkpoint(tmp_path / "b").name == "step_0000003"
    assert not (tmp_path / "b" / "config.json").exists()  # not finished: no final checkpoint yet
    resumed = make(env, tmp_path / "b", **kw)
    resumed.train(resume=True)
    assert len(ref) == 6 and train_losses(tmp_path / "b") == ref  # bit-identical on CPU
    assert resumed.temp.value == full.temp.value
    # training state holds no pickle: only safetensors and JSON
    st = sorted(p.name for p in (latest_checkpoint(tmp_path / "b") / "training_state").iterdir())
    assert st == ["state.json", "state.safetensors"]


def test_grad_accumulation_matches_full_batch(env, tmp_path):
    make(env, tmp_path / "a", steps=3, ckpt_every=10, eval_every=10).train()
    make(env, tmp_path / "b", steps=3, ckpt_every=10, eval_every=10, grad_accum=2).train()
    a, b = train_losses(tmp_path / "a"), train_losses(tmp_path / "b")
    assert b == pytest.approx(a, rel=1e-5) and a[0] != a[-1]


def test_stop_after_saves_a_resumable_checkpoint(env, tmp_path):
    make(env, tmp_path / "s", ckpt_every=10, eval_every=10, ce_only=True).train(stop_after=2)
    assert latest_checkpoint(tmp_path / "s").name == "step_0000002"
    tr = make(env, tmp_path / "s", ckpt_every=10, eval_every=10, ce_only=True)
    assert tr.resume() and tr.step == 2


def test_logged_terms_and_pocl_stage(env, tmp_path):
    make(env, tmp_path / "r", ctkd=True, pocl=True, align_weight=0.1).train()
    recs = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in recs if r.get("kind") != "eval"]
    assert {"kd", "ce", "align", "tau", "tau_reg", "lambda", "stage", "lr", "tokens_per_s"} <= set(train[0])
    assert [r["stage"] for r in train] == [0, 0, 0, 1, 1, 2]  # stage ends at 40% and 70% of 6 steps
    assert all(1.0 <= r["tau"] <= 5.0 for r in train)
    ev = [r for r in recs if r.get("kind") == "eval"]
    assert [r["step"] for r in ev] == [3, 6]
    assert ev[-1]["teacher_ppl"] == ev[0]["teacher_ppl"] and ev[-1]["student_ppl"] > 1
    assert set(ev[-1]["spike_rates"]) == {"L0", "L1"} and 0 < ev[-1]["spike_sparsity"] < 1


def test_nan_guard_skips_then_stops(env, tmp_path, monkeypatch):
    real = losses.ce_loss
    calls = {"n": 0}

    def flaky(logits, y):
        calls["n"] += 1
        v = real(logits, y)
        return v * float("nan") if calls["n"] == 2 else v

    monkeypatch.setattr(losses, "ce_loss", flaky)
    tr = make(env, tmp_path / "n", ce_only=True, eval_every=100, ckpt_every=100)
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    rec0 = tr.train_step()
    rec1 = tr.train_step()  # NaN: skipped
    assert not rec0["skipped"] and rec1["skipped"] and rec1["skipped_total"] == 1
    assert any(not torch.equal(before[k], v) for k, v in tr.model.state_dict().items())
    monkeypatch.setattr(losses, "ce_loss", lambda logits, y: real(logits, y) * float("nan"))
    tr2 = make(env, tmp_path / "m", ce_only=True, max_bad_steps=3, eval_every=100, ckpt_every=100)
    with pytest.raises(TrainingError, match="3 non-finite steps in a row"):
        tr2.train()


def test_teacher_cache_trains_without_running_teacher(env, tmp_path, monkeypatch):
    tr = make(env, tmp_path / "c", teacher_cache=True, cache_topk=8, eval_every=100, ckpt_every=100)
    assert tr.tables["values"].shape == (tr.pool.n, 12, 8) and tr.tables["index"].dtype == torch.int32
    assert tr.tables["tail"].shape == (tr.pool.n, 12, len(losses.TAIL_TAUS))

    def no_teacher(*a, **k):
        raise AssertionError("teacher ran during training")

    monkeypatch.setattr(tr.teacher, "forward", no_teacher)
    for _ in range(3):
        rec = tr.train_step()
    assert rec["kd"] > 0 and not rec["skipped"]


def test_vocab_mismatch_is_a_teacher_error(env, tmp_path):
    cfg = TrainConfig(steps=2, batch_size=2, seq_len=8)
    with pytest.raises(TeacherError, match="vocab"):
        Trainer(preset("tiny"), cfg, env["teacher"], env["ids"], env["ids"], tmp_path, tmp_path)


def test_cli_train_then_eval(env, tmp_path, capsys):
    out = tmp_path / "runs" / "t"
    args = ["--teacher", str(env["tdir"]), "--data", str(env["root"] / "text.txt"), "--preset", "tiny",
            "--steps", "4", "--batch-size", "2", "--seq-len", "8", "--out", str(out), "--eval-every", "2",
            "--ckpt-every", "2", "--eval-windows", "2", "--cache-dir", str(tmp_path / "c"), "--ctkd", "--threads", "1"]
    assert train_main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["step"] == 4 and summary["student_ppl"] > 1 and summary["teacher_ppl"] > 1
    model, info = load_checkpoint(out)
    assert info["tokenizer"] == str(env["tdir"]) and info["meta"]["step"] == 4
    assert (out / "tokenizer.json").is_file() and sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "step_0000002", "step_0000004"]
    from transformers import AutoTokenizer

    assert len(AutoTokenizer.from_pretrained(str(out))) == model.cfg.vocab_size  # no teacher needed
    assert eval_main(["--checkpoint", str(out), "--data", str(env["root"] / "text.txt"), "--teacher",
                      str(env["tdir"]), "--seq-len", "8", "--windows", "3", "--json",
                      "--cache-dir", str(tmp_path / "c")]) == 0
    res = json.loads(capsys.readouterr().out)
    assert {"student_ppl", "teacher_ppl", "tokens", "spike_sparsity", "tokens_per_s"} <= set(res)
    assert res["tokens"] == 24 and res["teacher_ppl"] == pytest.approx(summary["teacher_ppl"], rel=0.5)
    assert eval_main(["--checkpoint", str(out), "--data", str(env["root"] / "text.txt"), "--seq-len", "8",
                      "--windows", "2", "--cache-dir", str(tmp_path / "c")]) == 0
    assert "student ppl" in capsys.readouterr().out


def test_cli_errors_are_one_line_exit_2(env, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        train_main(["--teacher", "x"])
    assert e.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    base = ["--teacher", str(env["tdir"]), "--preset", "tiny", "--out", str(tmp_path / "o"), "--steps", "1",
            "--cache-dir", str(tmp_path / "c")]
    assert train_main(base + ["--data", str(tmp_path / "missing.txt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]
    assert train_main(base + ["--data", str(env["root"] / "text.txt"), "--seq-len", "64"]) == 2
    assert "context" in capsys.readouterr().err
    assert train_main(["--teacher", str(tmp_path / "nope"), "--data", "x", "--out", str(tmp_path / "o")]) == 2
    assert eval_main(["--checkpoint", str(tmp_path / "none"), "--data", "x"]) == 2
    with pytest.raises(SystemExit) as e:
        train_main(base + ["--data", "x", "--kl", "sideways"])
    assert e.value.code == 2


def test_train_config_is_frozen_with_real_lists():
    import dataclasses

    from goose_neuro.cli.train import build_parser, train_config
    from goose_neuro.errors import ConfigError

    cfg = TrainConfig(pocl_taus=[1, 2, 3])
    assert cfg.pocl_taus == (1.0, 2.0, 3.0) and cfg.pocl_fractions == (0.3333, 0.6667, 1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.steps = 5
    with pytest.raises(ConfigError, match="pocl_taus must be a list of numbers"):
        TrainConfig(pocl_taus="1,2,3")
    # stored as JSON lists; a config stored by an earlier version (comma-separated strings) reads back the same
    stored = cfg.to_dict()
    assert stored["pocl_taus"] == [1.0, 2.0, 3.0] and TrainConfig.from_dict(stored) == cfg
    legacy = {**stored, "pocl_fractions": "0.3333,0.6667,1", "pocl_taus": "1,2,3"}
    assert TrainConfig.from_dict(legacy) == cfg and cfg.differs_from(TrainConfig.from_dict(legacy)) == []
    assert TrainConfig(steps=7, eval_every=3).differs_from(TrainConfig(steps=7)) == []  # cadence only
    assert TrainConfig(lr=1e-3).differs_from(TrainConfig()) == ["lr"]
    # the command line parses the lists
    a = build_parser().parse_args(["--teacher", "t", "--data", "d", "--out", "o", "--pocl-taus", "1,1.5,3",
                                   "--pocl-ends", "0.5"])
    got = train_config(a)
    assert got.pocl_taus == (1.0, 1.5, 3.0) and got.pocl_ends == (0.5,) and got.pocl_alphas == (0.5, 0.6, 0.7)
    # goose-train's defaults are TrainConfig's, plus the energy term (which needs the energy layer's prices)
    from goose_neuro.training.config import RECIPE_ENERGY_WEIGHT

    assert train_config(build_parser().parse_args(["--teacher", "t", "--data", "d", "--out", "o"])) == \
        TrainConfig(energy_weight=RECIPE_ENERGY_WEIGHT)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--teacher", "t", "--data", "d", "--out", "o", "--pocl-taus", "1,x"])


def test_distill_labels_every_checkpoint(env, tmp_path):
    """distill() is the library pipeline: what it returns is goose-train's summary, and ``meta``
    reaches every checkpoint it writes (the demo labels its student this way)."""
    from goose_neuro.checkpoint import read_checkpoint_config
    from goose_neuro.distill import distill

    out = tmp_path / "run"
    cfg = TrainConfig(steps=2, batch_size=2, seq_len=8, eval_every=2, ckpt_every=1, eval_windows=2,
                      keep_checkpoints=2)
    s = distill(env["tdir"], env["root"] / "text.txt", out, train=cfg, preset="tiny", threads=1,
                cache_dir=tmp_path / "c", meta={"label": "a test student"})
    assert s["rank"] == 0 and s["step"] == 2 and s["student_ppl"] > 1 and s["teacher_ppl"] > 1
    for d in (out, out / "checkpoints" / "step_0000001", out / "checkpoints" / "step_0000002"):
        meta = read_checkpoint_config(d)["meta"]
        assert meta["label"] == "a test student" and meta["train"] == cfg.to_dict()
    assert read_checkpoint_config(out)["meta"]["eval"]["student_ppl"] == s["student_ppl"]


def test_fixed_point_fine_tune_from_a_float_student(env, tmp_path, capsys):
    """goose-train --fixed-point --init: a float student continues with the deployed integer
    neurons from its own weights; the checkpoint records the format; an --init of another
    architecture is a one-line error."""
    from goose_neuro.model import ASNNGoose
    from goose_neuro.training.loop import init_from_checkpoint

    common = ["--teacher", str(env["tdir"]), "--data", str(env["root"] / "text.txt"), "--preset", "tiny",
              "--batch-size", "2", "--seq-len", "8", "--eval-every", "2", "--ckpt-every", "2", "--eval-windows", "2",
              "--cache-dir", str(tmp_path / "c"), "--threads", "1", "--steps", "2"]
    assert train_main([*common, "--neuron", "ternary_lif", "--out", str(tmp_path / "float")]) == 0
    float_model, _ = load_checkpoint(tmp_path / "float")
    assert not float_model.cfg.fixed_point and float_model.cfg.neuron == "ternary_lif"
    m = ASNNGoose(preset("tiny", vocab_size=env["teacher"].vocab_size, neuron="ternary_lif", fixed_point=True,
                         frac_bits=10))
    init_from_checkpoint(m, tmp_path / "float")
    for (k, a), b in zip(m.state_dict().items(), float_model.state_dict().values()):
        assert torch.equal(a, b), k
    assert train_main([*common, "--neuron", "ternary_lif", "--fixed-point", "--frac-bits", "10", "--init",
                       str(tmp_path / "float"), "--out", str(tmp_path / "fixed")]) == 0
    fixed, info = load_checkpoint(tmp_path / "fixed")
    assert fixed.cfg.fixed_point and fixed.cfg.frac_bits == 10 and info["meta"]["init"] == str(tmp_path / "float")
    assert all(p.fixed_format is not None and p.fixed_format.frac_bits == 10 for p in fixed.populations().values())
    assert any(not torch.equal(a, b) for a, b in zip(fixed.state_dict().values(), float_model.state_dict().values()))
    capsys.readouterr()
    assert train_main([*common, "--fixed-point", "--init", str(tmp_path / "float"), "--out",
                       str(tmp_path / "other")]) == 2  # the float run used ternary_lif, this one subtract
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "differs from this run's in neuron" in err[0]
