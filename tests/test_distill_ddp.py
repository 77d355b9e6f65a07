"""Data-parallel training: torchrun with 2 gloo processes at half the per-process batch follows
the same loss trajectory as one process at the full batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from _text import corpus  # noqa: E402

os.environ["HF_HUB_OFFLINE"] = "1"


def losses(out: Path) -> list[float]:
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in recs if r.get("kind") != "eval"]


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path):
    pytest.importorskip("torch.distributed.run")
    from goose_neuro.teacher import make_tiny_teacher

    tdir = make_tiny_teacher(tmp_path / "teacher", corpus(200), vocab_size=100, n_positions=32)
    (tmp_path / "text.txt").write_text(corpus(200))
    common = ["--teacher", str(tdir), "--data", str(tmp_path / "text.txt"), "--preset", "tiny", "--steps", "4",
              "--batch-size", "4", "--seq-len", "8", "--eval-every", "4", "--ckpt-every", "4", "--eval-windows", "2",
              "--max-windows", "64", "--cache-dir", str(tmp_path / "cache"), "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    one = subprocess.run([sys.executable, "-m", "goose_neuro.cli.train", *common, "--out", str(tmp_path / "one")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "goose_neuro.cli.train", *common, "--out", str(tmp_path / "two")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert len(a) == len(b) == 4
    assert b == pytest.approx(a, rel=1e-5, abs=1e-6)
    assert a[0] != a[-1]  # it trained
