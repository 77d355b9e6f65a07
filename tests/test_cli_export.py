"""goose-export / goose-check onnx / goose-generate end to end, and bad inputs (exit 2, nothing left)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from goose_neuro.checkpoint import save_checkpoint
from goose_neuro.cli import check as check_cli
from goose_neuro.cli import export as export_cli
from goose_neuro.cli import generate as generate_cli
from goose_neuro.config import preset
from goose_neuro.errors import ExportError
from goose_neuro.export import export_checkpoint
from goose_neuro.model import ASNNGoose

TEXT = ("It was in July, 1805, and the speaker was the well-known Anna Pavlovna Scherer, "
        "maid of honour and confidante to the Empress. " * 4)


def byte_level_tokenizer():
    """A 256-token byte-level BPE (no merges) in the Hugging Face tokenizers format."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return tok


def make_checkpoint(d: Path, seed: int = 0, tokenizer: bool = True, **kw) -> Path:
    torch.manual_seed(seed)
    m = ASNNGoose(preset("tiny", **kw))
    save_checkpoint(m, d, tokenizer="tiny-bytelevel" if tokenizer else None)
    if tokenizer:
        byte_level_tokenizer().save(str(d / "tokenizer.json"))
    return d


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    ck = make_checkpoint(root / "ck")
    assert export_cli.main(["--target", "onnx", str(ck), "-o", str(root / "out")]) == 0
    (root / "text.txt").write_text(TEXT, encoding="utf-8")
    return root


def _one_line_error(capsys, needle: str) -> None:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err and needle in err, err


def _leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if name in p.name)


def test_export_writes_model_sidecar_tokenizer(exported):
    assert sorted(p.name for p in (exported / "out").iterdir()) == ["model.json", "model.onnx", "tokenizer.json"]
    side = json.loads((exported / "out" / "model.json").read_text())
    assert side["tokenizer"] == "tokenizer.json" and side["tokenizer_ref"] == "tiny-bytelevel"
    assert side["variant"] == "int"  # the shipped default


def test_check_onnx_passes_and_prints_json(exported, capsys):
    rc = check_cli.main(["onnx", str(exported / "out"), "--checkpoint", str(exported / "ck"),
                         "--text", str(exported / "text.txt"), "--tokens", "8", "--json"])
    rep = json.loads(capsys.readouterr().out)
    assert rc == 0 and rep["passed"]
    assert rep["greedy_identical"] and rep["argmax_agreement"] == 1.0
    assert rep["ppl_rel_diff"] < 1e-5 and rep["max_abs_logit_diff"] < 1e-4
    assert rep["eval_tokens"] == len(TEXT.encode()) - 1
    assert rep["torch_tokens_per_s"] > 0 and rep["onnx_tokens_per_s"] > 0


def test_check_fails_with_numbers_for_other_weights(exported, tmp_path, capsys):
    other = make_checkpoint(tmp_path / "other", seed=7)
    rc = check_cli.main(["onnx", str(exported / "out"), "--checkpoint", str(other),
                         "--text", str(exported / "text.txt"), "--tokens", "8"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "FAILED" in err and "perplexity differs by" in err


def test_generate_prints_continuation(exported, capsys):
    assert generate_cli.main([str(exported / "out"), "--prompt", "It was", "--tokens", "5", "--temperature", "0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("It was") and len(out.encode()) > len("It was")


def test_missing_checkpoint(tmp_path, capsys):
    rc = export_cli.main(["--target", "onnx", str(tmp_path / "nope"), "-o", str(tmp_path / "out")])
    assert rc == 2
    _one_line_error(capsys, "does not exist")
    assert _leftovers(tmp_path, "out") == []


def test_corrupt_checkpoint_leaves_nothing(tmp_path, capsys):
    ck = make_checkpoint(tmp_path / "ck")
    w = ck / "model.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    rc = export_cli.main(["--target", "onnx", str(ck), "-o", str(tmp_path / "out")])
    assert rc == 2
    _one_line_error(capsys, "model.safetensors")
    assert _leftovers(tmp_path, "out") == []


def test_unwritable_output(tmp_path, capsys):
    ck = make_checkpoint(tmp_path / "ck")
    (tmp_path / "afile").write_text("x")
    rc = export_cli.main(["--target", "onnx", str(ck), "-o", str(tmp_path / "afile" / "out")])
    assert rc == 2
    _one_line_error(capsys, "not a directory")


def test_failed_export_keeps_old_output_and_no_temp(tmp_path, capsys, monkeypatch):
    ck = make_checkpoint(tmp_path / "ck")
    out = tmp_path / "out"
    assert export_cli.main(["--target", "onnx", str(ck), "-o", str(out)]) == 0
    before = (out / "model.onnx").read_bytes()

    def boom(*a, **k):
        raise ExportError("simulated failure while writing")

    monkeypatch.setattr("goose_neuro.fileio.atomic_write_json", boom)  # fails inside atomic_dir
    assert export_cli.main(["--target", "onnx", str(ck), "-o", str(out)]) == 2
    _one_line_error(capsys, "simulated failure")
    assert (out / "model.onnx").read_bytes() == before
    assert _leftovers(tmp_path, "out") == ["out"]


def test_unknown_target(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        export_cli.main(["--target", "tpu", str(tmp_path), "-o", str(tmp_path / "o")])
    assert e.value.code == 2
    _one_line_error(capsys, "invalid choice")
    with pytest.raises(ExportError, match="unknown target"):
        export_checkpoint(str(tmp_path), "tpu", str(tmp_path / "o"))


def test_options_a_target_does_not_know_are_refused(exported, tmp_path, capsys):
    ck = str(exported / "ck")
    for target, extra, needle in (("onnx", ["--opt", "host=q16"], "unknown onnx export option(s): host"),
                                  ("nir", ["--opt", "variant=int"], "unknown nir export option(s): variant"),
                                  ("loihi2", ["--variant", "float"], "unknown Loihi export option(s): variant"),
                                  ("loihi2", ["--opt", "dt=0.001"], "unknown Loihi export option(s): dt")):
        assert export_cli.main(["--target", target, ck, "-o", str(tmp_path / "o"), *extra]) == 2
        _one_line_error(capsys, needle)
    assert not (tmp_path / "o").exists()
    out = export_checkpoint(ck, "nir", tmp_path / "n", dt=0.002)  # the library call the CLI makes
    assert json.loads((out / "nir_metadata.json").read_text())["dt"] == 0.002


def test_check_rejects_mismatched_sidecar(exported, tmp_path, capsys):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(exported / "out", bad)
    side = json.loads((bad / "model.json").read_text())
    side["states"][2]["name"] = side["states"][2]["input"] = "L0.bogus"
    (bad / "model.json").write_text(json.dumps(side))
    rc = check_cli.main(["onnx", str(bad), "--checkpoint", str(exported / "ck"), "--text", str(exported / "text.txt")])
    assert rc == 2
    _one_line_error(capsys, "does not match model.json")


def test_check_bad_text_and_dir(exported, tmp_path, capsys):
    args = ["--checkpoint", str(exported / "ck"), "--text"]
    assert check_cli.main(["onnx", str(exported / "out"), *args, str(tmp_path / "none.txt")]) == 2
    _one_line_error(capsys, "does not exist")
    (tmp_path / "empty.txt").write_text("  \n")
    assert check_cli.main(["onnx", str(exported / "out"), *args, str(tmp_path / "empty.txt")]) == 2
    _one_line_error(capsys, "empty")
    assert check_cli.main(["onnx", str(tmp_path), *args, str(exported / "text.txt")]) == 2
    _one_line_error(capsys, "model.json")


def test_export_with_prefill_checks_and_generates(exported, tmp_path, capsys):
    out = tmp_path / "pre"
    assert export_cli.main(["--target", "onnx", str(exported / "ck"), "-o", str(out), "--prefill",
                            "--variant", "float"]) == 0
    capsys.readouterr()
    rc = check_cli.main(["onnx", str(out), "--checkpoint", str(exported / "ck"),
                         "--text", str(exported / "text.txt"), "--tokens", "6", "--json"])
    rep = json.loads(capsys.readouterr().out)
    assert rc == 0 and rep["variant"] == "float" and rep["checks"]["prefill"]
    assert rep["prefill_max_abs_logit_diff"] < 1e-4
    assert generate_cli.main([str(out), "--prompt", "It was", "--tokens", "6", "--temperature", "0"]) == 0
    greedy_prefill = capsys.readouterr().out
    assert generate_cli.main([str(exported / "out"), "--prompt", "It was", "--tokens", "6", "--temperature", "0"]) == 0
    assert capsys.readouterr().out == greedy_prefill  # same continuation with or without prefill
