"""Helpers for the energy tests: a tiny student checkpoint with a tiny byte-level BPE tokenizer."""

from __future__ import annotations

from pathlib import Path

import torch

SENTENCES = [
    "The prince looked at the old count and smiled.",
    "Natasha ran into the room, laughing at the snow.",
    "Pierre felt the good and bad within himself mingled.",
    "The army moved slowly along the muddy road at dawn.",
] * 8


def tiny_tokenizer(directory: Path, vocab: int = 300):
    """Train a byte-level BPE on a few sentences and save it as tokenizer.json in ``directory``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|endoftext|>"], show_progress=False)
    tok.train_from_iterator(SENTENCES, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")
    fast.save_pretrained(str(directory))
    return fast


def tiny_checkpoint(directory: Path, seed: int = 0, **overrides) -> Path:
    """A tiny random student saved with its tokenizer (vocab 300)."""
    from goose_neuro.checkpoint import save_checkpoint
    from goose_neuro.config import preset
    from goose_neuro.model import ASNNGoose

    torch.manual_seed(seed)
    model = ASNNGoose(preset("tiny", vocab_size=300, **overrides))
    save_checkpoint(model, directory, tokenizer=None, meta={"label": "random init (test)"})
    tiny_tokenizer(directory)
    return directory


def tiny_text(path: Path, repeats: int = 20) -> Path:
    path.write_text("\n".join(SENTENCES * repeats), encoding="utf-8")
    return path
