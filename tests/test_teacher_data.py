"""Teacher loading and the data pipeline (tiny local GPT-2 teachers only; no network)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"

from goose_neuro import data as data_mod  # noqa: E402
from goose_neuro.data import WindowPool, rank_shard, read_texts, split_tokens, tokenize_source  # noqa: E402
from goose_neuro.errors import DataError, TeacherError  # noqa: E402
from goose_neuro.teacher import check_context, check_vocab, load_teacher, make_tiny_teacher  # noqa: E402
from goose_neuro.tokenizer import as_tokenizer  # noqa: E402

from _text import corpus  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory) -> Path:
    return make_tiny_teacher(tmp_path_factory.mktemp("teacher"), corpus(400), vocab_size=120, n_positions=32)


def test_teacher_loads_frozen_with_its_tokenizer(teacher_dir):
    t = load_teacher(teacher_dir)
    assert not t.model.training
    assert all(not p.requires_grad for p in t.model.parameters())
    assert t.vocab_size == len(t.tokenizer)
    assert (t.n_layers, t.d_model, t.max_positions) == (2, 32, 32)
    ids = torch.tensor([t.tokenizer("the prince said")["input_ids"]])
    logits, hidden = t.forward(ids, hidden=True)
    assert logits.shape == (1, ids.shape[1], t.vocab_size) and logits.dtype == torch.float32
    assert len(hidden) == 2 and hidden[0].shape == (1, ids.shape[1], 32)


def test_teacher_errors(tmp_path, teacher_dir):
    with pytest.raises(TeacherError, match="does not exist"):
        load_teacher(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TeacherError, match="cannot load"):
        load_teacher(tmp_path / "empty")
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(TeacherError, match="is a file"):
        load_teacher(f)
    with pytest.raises(TeacherError, match="cannot load"):  # an unknown hub name, offline
        load_teacher("goose-neuro-test/no-such-model")
    t = load_teacher(teacher_dir)
    with pytest.raises(TeacherError, match="vocab"):
        check_vocab(t, t.vocab_size + 1)
    check_vocab(t, t.vocab_size)
    with pytest.raises(TeacherError, match="context"):
        check_context(t, 33)


def test_read_texts_file_dir_and_errors(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b.txt").write_text("second")
    (tmp_path / "d" / "a.txt").write_text("first")
    (tmp_path / "d" / ".hidden").write_text("skip me")
    docs = read_texts(tmp_path / "d")
    assert [t for _, t in docs] == ["first", "second"]
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(DataError, match="no text"):
        read_texts(tmp_path / "empty.txt")
    (tmp_path / "bin.dat").write_bytes(b"\x00\x01\x02abc")
    with pytest.raises(DataError, match="binary"):
        read_texts(tmp_path / "bin.dat")
    (tmp_path / "latin.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(DataError, match="UTF-8"):
        read_texts(tmp_path / "latin.txt")
    with pytest.raises(DataError, match="does not exist"):
        read_texts(tmp_path / "nope.txt")
    (tmp_path / "none").mkdir()
    with pytest.raises(DataError, match="no files"):
        read_texts(tmp_path / "none")


def test_hf_dataset_name_without_datasets_is_clear(monkeypatch):
    import builtins

    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "datasets":
            raise ImportError("no")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(DataError, match="pip install datasets"):
        read_texts("hf:wikitext")


def test_tokenize_is_cached_by_tokenizer_and_content(tmp_path, teacher_dir, monkeypatch):
    tok = load_teacher(teacher_dir).tokenizer
    f = tmp_path / "t.txt"
    f.write_text(corpus(20))
    ids = tokenize_source(f, tok, tmp_path / "cache")
    eos = tok.eos_token_id
    assert ids.dtype == torch.int64 and ids[-1] == eos
    assert ids[:-1].tolist() == tok(corpus(20), add_special_tokens=False)["input_ids"]
    assert len(list((tmp_path / "cache" / "tokens").iterdir())) == 1

    def boom(*a, **k):
        raise AssertionError("retokenized")

    monkeypatch.setattr(data_mod, "tokenize_docs", boom)
    assert torch.equal(tokenize_source(f, tok, tmp_path / "cache"), ids)  # served from the cache
    f.write_text(corpus(21))
    with pytest.raises(AssertionError, match="retokenized"):  # new content -> new key
        tokenize_source(f, tok, tmp_path / "cache")
    assert as_tokenizer(tok).fingerprint() == hashlib.sha256(tok.backend_tokenizer.to_str().encode()).hexdigest()[:16]


def test_windows_are_deterministic_by_seed_and_step():
    ids = torch.arange(1000)
    pool = WindowPool(ids, T=9)
    assert pool.n == 111
    a = pool.sample_indices(step=5, batch=6, seed=1)
    assert torch.equal(a, pool.sample_indices(step=5, batch=6, seed=1))
    assert not torch.equal(a, pool.sample_indices(step=6, batch=6, seed=1))
    assert not torch.equal(a, pool.sample_indices(step=5, batch=6, seed=2))
    w = pool.windows(a)  # (6, 10)
    assert w.shape == (6, 10) and torch.equal(w[:, 0], a * 9) and torch.equal(w[:, 1:] - w[:, :-1], torch.ones(6, 9, dtype=torch.long))
    allowed = torch.tensor([3, 7])
    assert set(pool.sample_indices(0, 50, 0, allowed).tolist()) <= {3, 7}
    assert torch.equal(rank_shard(a, 1, 2), a[3:])
    with pytest.raises(DataError):
        rank_shard(a, 0, 4)
    with pytest.raises(DataError, match="too few"):
        WindowPool(torch.arange(5), T=9)


def test_split_tokens():
    tr, va = split_tokens(torch.arange(100), 0.1)
    assert tr.numel() == 90 and va.tolist() == list(range(90, 100))
    with pytest.raises(DataError):
        split_tokens(torch.arange(100), 1.5)


@pytest.mark.skipif(not (SHARED / "teachers" / "wp-gpt2-4L256").is_dir(), reason="../shared teacher absent")
def test_shared_teacher_and_val_text(tmp_path):
    t = load_teacher(SHARED / "teachers" / "wp-gpt2-4L256")
    assert t.vocab_size == 4096 and t.max_positions == 128
    ids = tokenize_source(SHARED / "data" / "warpeace" / "val.txt", t.tokenizer, tmp_path)
    assert ids.numel() > 30_000 and int(ids.max()) < 4096
