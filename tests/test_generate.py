"""Generation in PyTorch (library and goose-generate on a checkpoint): batched ragged prompts give
each sequence what it gets alone, greedy equals an argmax loop through sequence mode, bad input is
a one-line error."""

from __future__ import annotations

import pytest
import torch

from goose_neuro.checkpoint import save_checkpoint
from goose_neuro.cli import export as export_cli
from goose_neuro.cli import generate as generate_cli
from goose_neuro.config import preset
from goose_neuro.errors import ConfigError, DataError
from goose_neuro.generate import generate
from goose_neuro.model import ASNNGoose


def _model(seed: int = 0, **kw) -> ASNNGoose:
    torch.manual_seed(seed)
    return ASNNGoose(preset("tiny", **kw)).eval()


def _greedy_reference(m: ASNNGoose, prompt: list[int], n: int) -> list[int]:
    ids = []
    with torch.no_grad():
        logits, st = m(torch.tensor([prompt]))
        for _ in range(n):
            ids.append(int(logits[0, -1].argmax()))
            logits, st = m(torch.tensor([[ids[-1]]]), st)
    return ids


@pytest.mark.parametrize("mode", ["ternary", "none"])
def test_batched_ragged_prompts_equal_each_alone_and_the_reference(mode):
    m = _model(seed=3, spike_mode=mode)
    prompts = [[5, 80, 17, 200, 3, 9], [44], [7, 7, 7]]
    res = generate(m, prompts, 10)
    assert [len(t) for t in res.tokens] == [10, 10, 10]
    for p, got in zip(prompts, res.tokens):
        assert got == _greedy_reference(m, p, 10)
        assert generate(m, [p], 10).tokens[0] == got
    assert res.new_tokens == 30 and res.prompt_tokens == 10 and res.tokens_per_s > 0


def test_sampling_is_seeded_and_top_k_1_is_greedy():
    m = _model(seed=1)
    prompts = [[1, 2, 3], [4, 5]]
    a = generate(m, prompts, 12, temperature=1.0, seed=5).tokens
    assert a == generate(m, prompts, 12, temperature=1.0, seed=5).tokens
    assert a != generate(m, prompts, 12, temperature=1.0, seed=6).tokens
    assert generate(m, prompts, 12, temperature=0.7, top_k=1).tokens == generate(m, prompts, 12).tokens
    assert generate(m, prompts, 0).tokens == [[], []]


def test_bad_generation_arguments():
    m = _model()
    with pytest.raises(DataError, match="empty"):
        generate(m, [[1], []], 3)
    with pytest.raises(DataError, match="vocabulary"):
        generate(m, [[1, 256]], 3)
    with pytest.raises(ConfigError):
        generate(m, [[1]], -1)


def _checkpoint(d):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    torch.manual_seed(4)
    save_checkpoint(ASNNGoose(preset("tiny")), d, tokenizer="tiny-bytelevel")
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.save(str(d / "tokenizer.json"))
    return d


def test_goose_generate_from_checkpoint_batches_prompts_and_matches_onnx(tmp_path, capsys):
    ck = _checkpoint(tmp_path / "ck")
    args = ["--prompt", "It was", "--prompt", "The prince said", "--tokens", "6", "--temperature", "0"]
    assert generate_cli.main([str(ck), *args]) == 0
    cap = capsys.readouterr()
    lines = cap.out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("It was") and lines[1].startswith("The prince said")
    assert "12 new tokens" in cap.err and "tokens/s" in cap.err and "PyTorch cpu, batch 2" in cap.err
    assert export_cli.main(["--target", "onnx", str(ck), "-o", str(tmp_path / "onnx"), "--variant", "float"]) == 0
    capsys.readouterr()
    assert generate_cli.main([str(tmp_path / "onnx"), *args]) == 0
    assert capsys.readouterr().out.splitlines() == lines  # same greedy text from both runtimes


@pytest.mark.parametrize("how", ["missing", "neither", "cuda"])
def test_goose_generate_bad_source_is_one_line_exit_2(tmp_path, capsys, how):
    src = tmp_path / "src"
    extra = []
    if how == "neither":
        src.mkdir()
    elif how == "cuda":
        if torch.cuda.is_available():
            pytest.skip("CUDA present")
        _checkpoint(src)
        extra = ["--device", "cuda"]
    assert generate_cli.main([str(src), "--prompt", "x", "--tokens", "2", *extra]) == 2
    cap = capsys.readouterr()
    assert cap.out == "" and len(cap.err.strip().splitlines()) == 1 and "Traceback" not in cap.err
