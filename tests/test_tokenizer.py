"""One tokenizer loader and one text reader: every stage feeds the model the same tokens."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _hostile_assets import corpus, run_cli  # noqa: E402
from goose_neuro.checkpoint import save_checkpoint  # noqa: E402
from goose_neuro.config import preset  # noqa: E402
from goose_neuro.errors import DataError  # noqa: E402
from goose_neuro.model import ASNNGoose  # noqa: E402
from goose_neuro.teacher import make_tiny_teacher  # noqa: E402
from goose_neuro.text import read_text  # noqa: E402
from goose_neuro.tokenizer import ByteTokenizer, HFTokenizer, encode_file, load_tokenizer  # noqa: E402

N = 64  # tokens compared


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A teacher, and a student checkpoint saved the way goose-train saves it (tokenizer files copied
    beside it, the teacher's directory as its tokenizer reference), plus a text file."""
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("tok")
    teacher = make_tiny_teacher(root / "teacher", corpus(), vocab_size=120, n_positions=32)
    tok = AutoTokenizer.from_pretrained(str(teacher))
    torch.manual_seed(0)
    ck = save_checkpoint(ASNNGoose(preset("tiny", vocab_size=len(tok))), root / "ck", tokenizer=str(teacher))
    tok.save_pretrained(str(ck))
    text = root / "text.txt"
    text.write_text(corpus(40, seed=3), encoding="utf-8")
    return {"root": root, "teacher": teacher, "ck": ck, "text": text, "vocab": len(tok), "hf": tok}


def _record_model_inputs(monkeypatch) -> list[torch.Tensor]:
    calls: list[torch.Tensor] = []
    run = ASNNGoose.run

    def spy(self, tokens, state=None, collect=False):
        calls.append(tokens.detach().clone())
        return run(self, tokens, state, collect)

    monkeypatch.setattr(ASNNGoose, "run", spy)
    return calls


def test_goose_check_eval_energy_and_lava_feed_the_model_the_same_tokens(ckpt, tmp_path, monkeypatch):
    from goose_neuro.cli import check, energy, evaluate
    from goose_neuro.data import tokenize_source
    from goose_neuro.export import export_checkpoint
    from goose_neuro.export.loihi.check import text_tokens

    ck, text = str(ckpt["ck"]), str(ckpt["text"])
    onnx_dir = export_checkpoint(ck, "onnx", tmp_path / "onnx")
    calls = _record_model_inputs(monkeypatch)
    seen = {}
    code, _, err = run_cli(check.main, ["onnx", str(onnx_dir), "--checkpoint", ck, "--text", text,
                                        "--max-eval-tokens", str(N), "--tokens", "1"])
    assert code == 0, err
    seen["goose-check"] = calls[0][0]  # the first call: the whole evaluated text, (1, N)
    calls.clear()
    code, _, err = run_cli(evaluate.main, ["--checkpoint", ck, "--data", text, "--seq-len", "16", "--windows", "4",
                                           "--cache-dir", str(tmp_path / "cache")])
    assert code == 0, err
    seen["goose-eval"] = torch.cat([c.reshape(-1) for c in calls])  # windows of 16, back to back
    calls.clear()
    code, _, err = run_cli(energy.main, ["--checkpoint", ck, "--text", text, "--tokens", str(N), "--profile", "loihi2",
                                         "--teacher", "gpt2-124m", "-o", str(tmp_path / "e"), "--no-plots",
                                         "--no-progress"])
    assert code == 0, err
    seen["goose-energy"] = calls[0][0]
    seen["lava check"] = torch.from_numpy(text_tokens(text, ck, ckpt["vocab"], N))
    # independent references: the tokenizers library on the checkpoint's file, and the teacher's
    # transformers tokenizer through the training data path
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(ckpt["ck"] / "tokenizer.json")).encode(read_text(text), add_special_tokens=False)
    want = raw.ids[:N]
    assert len(want) == N and want == ckpt["hf"](read_text(text), add_special_tokens=False)["input_ids"][:N]
    assert tokenize_source(text, ckpt["hf"], tmp_path / "cache2")[:N].tolist() == want
    for stage, ids in seen.items():
        assert ids[:N].tolist() == want, stage


def test_loader_order_and_fallbacks(ckpt, tmp_path):
    vocab = ckpt["vocab"]
    tok = load_tokenizer(ckpt["ck"], vocab)
    assert isinstance(tok, HFTokenizer) and tok.name == str(ckpt["ck"])
    assert tok.eos_token_id == ckpt["hf"].eos_token_id
    # no files in the directory: the checkpoint's reference directory (the teacher) is used
    bare = tmp_path / "bare"
    bare.mkdir()
    ref = load_tokenizer(bare, vocab, reference=str(ckpt["teacher"]))
    assert ref.name == str(ckpt["teacher"]) and ref.encode("the prince") == tok.encode("the prince")
    # a reference that is a hub name is not looked up; no files at all: bytes (warned), only for >= 256 ids
    with pytest.warns(UserWarning, match="UTF-8 bytes"):
        b = load_tokenizer(bare, 300, reference="gpt2")
    assert isinstance(b, ByteTokenizer) and b.encode("é!") == [195, 169, 33] and b.decode([195, 169, 33]) == "é!"
    with pytest.raises(DataError, match=r"vocabulary \(120\) is too small"):
        load_tokenizer(bare, 120)
    (bare / "tokenizer.json").write_text("{not json")
    with pytest.raises(DataError, match=r"tokenizer\.json: not a readable tokenizer"):
        load_tokenizer(bare, vocab)


def test_encode_file_refuses_short_text_and_foreign_ids(ckpt, tmp_path):
    tok = load_tokenizer(ckpt["ck"], ckpt["vocab"])
    ids = encode_file(ckpt["text"], tok, ckpt["vocab"], max_tokens=10)
    assert ids == tok.encode(read_text(ckpt["text"]))[:10]
    with pytest.raises(DataError, match=r"only \d+ token\(s\), 100000 requested"):
        encode_file(ckpt["text"], tok, ckpt["vocab"], min_tokens=100_000)
    with pytest.raises(DataError, match=r"token id \d+ >= model vocabulary 5"):
        encode_file(ckpt["text"], tok, 5)


@pytest.mark.parametrize("content, needle", [(None, "does not exist"), (b"", "is empty"), (b"  \n", "is empty"),
                                             (b"ab\x00cd", "looks binary"), (b"\xff\xfe", "not UTF-8")])
def test_read_text_names_the_fault(tmp_path, content, needle):
    p = tmp_path / "t.txt"
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(DataError, match=needle) as e:
        read_text(p)
    assert str(p) in str(e.value)
    with pytest.raises(DataError, match="is a directory"):
        read_text(tmp_path)


def test_tokenizer_and_text_modules_import_without_torch():
    code = ("import sys, goose_neuro.tokenizer, goose_neuro.text; "
            "print(json.dumps(sorted(m for m in ('torch', 'transformers') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
