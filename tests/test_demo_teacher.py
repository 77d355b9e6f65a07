"""The demo teacher: stdlib-docstring corpus, tokenizer, a micro build and its cache."""

from __future__ import annotations

import json
import sysconfig
from itertools import islice
from pathlib import Path

import pytest

from goose_neuro import demo_teacher as dt

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
    tok = dt.train_tokenizer(dt.EOT.join(docs), 400)
    assert 300 < len(tok) <= 400
    for s in (docs[0], docs[-1], "Return the size of a file, reported by os.stat().", "naïve café ✓ 日本"):
        assert tok.decode(tok(s, add_special_tokens=False)["input_ids"]) == s
    ids = dt.encode(tok, f"a b{dt.EOT}c")
    assert (ids == tok.eos_token_id).sum().item() == 2  # the separator and the final end-of-text


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
    ids = dt.encode(teacher.tokenizer, text)
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
    assert ids.tolist() == dt.encode(tok, (d / dt.VAL_FILE).read_text(encoding="utf-8")).tolist()
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
