"""goose-demo: stage bookkeeping (fast) and one quick end-to-end run on a micro teacher (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from goose_neuro import demo_teacher as dt
from goose_neuro.cli import demo
from goose_neuro.errors import CheckFailed


def _plan(tmp_path: Path) -> demo.Plan:
    return demo.Plan(tmp_path, "t", "train.txt", None, False, steps=1, preset="tiny", batch_size=8, seq_len=8,
                     eval_every=1, check_tokens=8, gen_tokens=2, energy_tokens=8, lava_tokens=2, threads=1)


def test_run_stage_turns_every_outcome_into_a_status(tmp_path):
    plan, done = _plan(tmp_path), {"a": demo.Stage("a", status=demo.OK), "b": demo.Stage("b", status=demo.FAILED)}

    def skip(p, st):
        raise demo.Skip("no Lava here")

    def fail(p, st):
        raise CheckFailed("argmax 90% < 99%")

    def crash(p, st):
        raise RuntimeError("boom")

    got = {n: demo.run_stage(n, f, plan, ("a",), done) for n, f in
           (("skip", skip), ("fail", fail), ("crash", crash))}
    assert (got["skip"].status, got["skip"].result) == (demo.SKIPPED, "no Lava here")
    assert (got["fail"].status, got["fail"].result) == (demo.FAILED, "argmax 90% < 99%")
    assert got["crash"].status == demo.FAILED and "RuntimeError: boom" in got["crash"].result
    blocked = demo.run_stage("later", skip, plan, ("a", "b"), done)
    assert (blocked.status, blocked.result) == (demo.SKIPPED, "needs b")


def test_summary_table_lists_every_stage(tmp_path):
    stages = [demo.Stage("train", demo.OK, 12.34, "300 steps"), demo.Stage("check lava", demo.SKIPPED, 0, "no env")]
    table = demo.summary_table(stages, 20.0)
    lines = table.splitlines()
    assert len(lines) == 4 and "12.3s" in lines[1] and "300 steps" in lines[1]
    assert lines[2].split()[:3] == ["check", "lava", "skipped"] and lines[3].split() == ["total", "20.0s"]


def test_teacher_without_data_is_a_one_line_error(tmp_path, capsys):
    assert demo.main(["--teacher", "gpt2", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--data" in err[0]


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path, capsys):
    spec = dt.DemoTeacherSpec(vocab_size=300, n_layer=1, n_embd=32, n_head=2, n_positions=64, batch=8,
                              warmup=5, budget_s=1e6, min_steps=40, max_steps=40, eval_windows=4,
                              max_chars=60_000)
    t = dt.build_demo_teacher(tmp_path / "teacher", spec)
    out = tmp_path / "run"
    rc = demo.main(["--quick", "--steps", "4", "--teacher", str(t), "--data", str(t / dt.TRAIN_FILE),
                    "--val-data", str(t / dt.VAL_FILE), "--out", str(out), "--threads", "1"])
    s = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    status = {st["name"]: st["status"] for st in s["stages"]}
    assert [st["name"] for st in s["stages"]] == ["teacher", "train", "export onnx", "check onnx",
                                                  "export loihi2", "check lava", "energy"]
    for name in ("teacher", "train", "export onnx", "check onnx", "export loihi2", "energy"):
        assert status[name] == demo.OK, (name, s["stages"])
    # Lava must equal the integer reference exactly (else FAILED), and the integer reference the
    # PyTorch model with the package's fixed-point neurons; without a Lava environment: skipped
    from goose_neuro.export.loihi.check import lava_python

    assert status["check lava"] == (demo.OK if lava_python() else demo.SKIPPED), s["stages"]
    assert rc == 0
    assert (out / "energy" / "report.md").is_file() and list((out / "energy").glob("*.png"))
    printed = capsys.readouterr().out
    assert f"report: {out / 'energy' / 'report.md'}" in printed and "goose-demo summary" in printed
    assert "goose-export --target onnx" in (out / "SUMMARY.md").read_text(encoding="utf-8")
