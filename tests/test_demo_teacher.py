"""The demo teacher: stdlib-docstring corpus, tokenizer, a micro build and its cache."""

from __future__ import annotations

import json
import sysconfig
from itertools import islice
from pathlib import Path

import pytest

from goose_neuro import demo_teacher as dt
from goose_neuro.data import tokenize_docs
from goose_neuro.teacher import train_bpe

MICRO = dt.DemoTeacherSpec(vocab_size=300, n_layer=1, n_embd=32, n_head=2, n_positions=32, batch=8, lr=3e-3,
                           warmup=5, budget_s=1e6, max_steps=60, eval_windows=8, max_chars=80_000)


@pytest.fixture(scope="module")
def micro_teacher(tmp_path_factory) -> tuple[Path, list[str]]:
    d = tmp_path_factory.mktemp("cache") / dt.DIR_NAME
    lines: list[str] = []
    dt.build_demo_teacher(d, MICRO, log=lines.append)
    return d, lines


def test_corpus_is_stdlib_only_and_deterministic():
    files = dt.stdlib_source_files()
    root = Path(sysconfig.get_paths()["stdlib"]).resolve()
    assert len(files) > 100
    assert files == dt.stdlib_source_files()
    for f in files:
        rel = f.resolve().relative_to(root)  # raises if outside the standard library
        assert "site-packages" not in rel.parts and "test" not in rel.parts
    a = dt.split_corpus(islice(dt.iter_docstrings(files[:40]), 300))
    b = dt.split_corpus(islice(dt.iter_docstrings(files[:40]), 300))
    assert a == b
    train, val, n = a
    assert n == 300 and len(train) > 10_000 and len(val) > 0
    tr, va = set(train.split(dt.EOT)), set(val.split(dt.EOT))
    assert len(tr) + len(va) == 300 and not tr & va  # every docstring in exactly one split


def test_split_refuses_empty_corpus():
    with pytest.raises(dt.TeacherError):
        dt.split_corpus([])


def test_tokenizer_round_trips():
    docs = list(islice(dt.iter_docstrings(dt.stdlib_source_files()[:30]), 200))
    tok = train_bpe(docs, 400)
    assert 300 < len(tok) <= 400
    for s in (docs[0], docs[-1], "Return the size of a file, reported by os.stat().", "naïve café ✓ 日本"):
        assert tok.decode(tok(s, add_special_tokens=False)["input_ids"]) == s
    ids = tokenize_docs([("t", f"a b{dt.EOT}c")], tok)
    assert (ids == tok.eos_token_id).sum().item() == 2  # the separator and the final end-of-text
    assert ids.tolist() == [*tok("a b")["input_ids"], tok.eos_token_id, *tok("c")["input_ids"], tok.eos_token_id]


def test_micro_build_learns(micro_teacher):
    d, lines = micro_teacher
    card = dt.read_card(d)
    assert card is not None and card["label"] == "demo teacher"
    t, p = card["training"], card["ppl_token_level"]
    assert t["steps"] == MICRO.max_steps
    assert t["loss_last50"] < t["loss_first10"] - 0.5
    assert p["val_trained"] < 0.5 * p["val_random_init"]
    assert (d / dt.TRAIN_FILE).stat().st_size > 50_000 and (d / dt.VAL_FILE).stat().st_size > 0
    assert lines and all(line.startswith("[demo teacher]") for line in lines)


def test_micro_teacher_loads_as_a_teacher(micro_teacher):
    from goose_neuro.teacher import load_teacher

    d, _ = micro_teacher
    teacher = load_teacher(d)
    text = (d / dt.VAL_FILE).read_text(encoding="utf-8")[:2000]
    ids = tokenize_docs([("val", text)], teacher.tokenizer).long()
    assert teacher.vocab_size == len(teacher.tokenizer) == json.loads((d / dt.CARD_FILE).read_text())["vocab"]
    assert teacher.max_positions == MICRO.n_positions
    assert ids.max().item() < teacher.vocab_size
    logits, _ = teacher.forward(ids[None, : MICRO.n_positions])
    assert logits.shape == (1, MICRO.n_positions, teacher.vocab_size)


def test_corpus_files_tokenize_like_the_data_module(micro_teacher, tmp_path):
    from transformers import AutoTokenizer

    from goose_neuro.data import tokenize_source

    d, _ = micro_teacher
    tok = AutoTokenizer.from_pretrained(d)
    ids = tokenize_source(d / dt.VAL_FILE, tok, cache_dir=tmp_path)
    n_docs = (d / dt.VAL_FILE).read_text(encoding="utf-8").count(dt.EOT) + 1
    docs = (d / dt.VAL_FILE).read_text(encoding="utf-8").split(dt.EOT)
    separately = [i for doc in docs for i in [*tok(doc, add_special_tokens=False)["input_ids"], tok.eos_token_id]]
    assert ids.tolist() == separately  # each docstring followed by one end-of-text, as the build tokenized it
    assert (ids == tok.eos_token_id).sum().item() == n_docs


def test_cache_is_reused_and_damage_detected(micro_teacher, tmp_path, monkeypatch):
    import shutil

    d, _ = micro_teacher
    copy = tmp_path / dt.DIR_NAME
    shutil.copytree(d, copy)
    monkeypatch.setenv("GOOSE_NEURO_CACHE", str(tmp_path))
    assert dt.default_dir() == copy
    lines: list[str] = []
    assert dt.ensure_demo_teacher(log=lines.append) == copy
    assert "using cached" in lines[0]
    (copy / dt.VAL_FILE).write_text("tampered", encoding="utf-8")
    assert dt.read_card(copy) is None
    (copy / dt.CARD_FILE).unlink()
    assert dt.read_card(copy) is None


def test_cache_root_expands_home_for_both_variables(monkeypatch, tmp_path):
    from goose_neuro.data import default_cache_dir

    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("GOOSE_NEURO_CACHE", "GOOSE_CACHE"):
        monkeypatch.delenv("GOOSE_NEURO_CACHE", raising=False)
        monkeypatch.delenv("GOOSE_CACHE", raising=False)
        monkeypatch.setenv(var, "~/gn-cache")
        assert default_cache_dir() == tmp_path / "gn-cache"
        assert dt.default_dir() == tmp_path / "gn-cache" / dt.DIR_NAME


def test_demo_teacher_command_shows_the_cached_teacher(micro_teacher, capsys):
    from goose_neuro.cli.demo_teacher import main

    d, _ = micro_teacher
    assert main(["--dir", str(d), "--threads", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "using cached" in out[0] and out[-1] == str(d)
