"""The teacher: any Hugging Face causal LM, frozen, with its own tokenizer.

The student always uses the teacher's tokenizer and vocabulary, so a student
whose ``vocab_size`` differs from the teacher's output width is refused with a
:class:`TeacherError`. ``transformers`` is imported lazily (it is slow to import).

``train_bpe`` and ``gpt2_model`` build a byte-level BPE and a fresh GPT-2 (the demo
teacher is made of them); ``make_tiny_teacher`` saves a small random one, trained
tokenizer included, as an ordinary model directory, so tests need no network.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from goose_neuro.errors import TeacherError

log = logging.getLogger(__name__)


@dataclass
class Teacher:
    """A frozen causal LM and its tokenizer.

    ``name``: the hub name or directory it was loaded from (saved as the student
    checkpoint's tokenizer reference). ``vocab_size``: width of its logits.
    ``max_positions``: longest context it accepts (None if unbounded).
    """

    model: Any
    tokenizer: Any
    name: str
    vocab_size: int
    n_layers: int
    d_model: int
    max_positions: int | None

    @property
    def ref(self) -> str:
        """What a checkpoint stores as its tokenizer reference: an absolute path for a local
        directory, else the hub name."""
        p = Path(self.name).expanduser()
        return str(p.resolve()) if p.is_dir() else self.name

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def forward(self, tokens: Tensor, hidden: bool = False) -> tuple[Tensor, list[Tensor]]:
        """tokens (B, T) -> (logits (B, T, V) float32, hidden states after each layer [(B, T, D)])."""
        check_context(self, tokens.shape[1])
        out = self.model(input_ids=tokens.to(self.device), output_hidden_states=hidden, use_cache=False)
        hs = [h.float() for h in out.hidden_states[1:]] if hidden else []  # drop the embedding output
        return out.logits.float(), hs


def check_context(teacher: Teacher, T: int) -> None:
    if teacher.max_positions is not None and T > teacher.max_positions:
        raise TeacherError(f"sequence length {T} exceeds the teacher's context of {teacher.max_positions} "
                           f"positions; use --seq-len {teacher.max_positions} or less")


def _config_int(cfg: Any, *names: str) -> int | None:
    for n in names:
        v = getattr(cfg, n, None)
        if isinstance(v, int):
            return v
    return None


@contextlib.contextmanager
def quiet_transformers():
    """Hide transformers' weight-loading progress bar (our CLIs keep stderr for errors)."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def load_teacher(name_or_dir: str | os.PathLike, device: str | torch.device = "cpu") -> Teacher:
    """Load a causal LM and its tokenizer from a hub name or a local directory, frozen, in eval mode.

    Raises :class:`TeacherError` if either cannot be loaded.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name = str(name_or_dir)
    p = Path(name)
    if p.exists() and not p.is_dir():
        raise TeacherError(f"teacher {name} is a file; pass a model directory (config.json + weights) or a hub name")
    if not p.exists() and (name.startswith((".", "/", "~")) or name.count("/") > 1):
        raise TeacherError(f"teacher directory {name} does not exist")
    try:
        tok = AutoTokenizer.from_pretrained(name)
    except Exception as e:  # transformers raises many types (OSError, ValueError, HF hub errors)
        raise TeacherError(f"cannot load the tokenizer of teacher {name!r} ({type(e).__name__}: "
                           f"{str(e).splitlines()[0] if str(e) else ''}); pass a local model directory "
                           f"or a hub name that is cached or reachable") from None
    try:
        with quiet_transformers():
            model = AutoModelForCausalLM.from_pretrained(name)
    except Exception as e:
        raise TeacherError(f"cannot load teacher model {name!r} as a causal LM ({type(e).__name__}: "
                           f"{str(e).splitlines()[0] if str(e) else ''})") from None
    model.requires_grad_(False)
    model.eval().to(device)
    cfg = model.config
    vocab = model.get_output_embeddings().weight.shape[0]
    return Teacher(
        model=model, tokenizer=tok, name=name, vocab_size=int(vocab),
        n_layers=_config_int(cfg, "n_layer", "num_hidden_layers") or 0,
        d_model=_config_int(cfg, "n_embd", "hidden_size", "d_model") or 0,
        max_positions=_config_int(cfg, "n_positions", "max_position_embeddings"),
    )


def teacher_context(name_or_dir: str | os.PathLike) -> int | None:
    """The context (positions) a local teacher directory's configuration declares; None for a hub
    name (not looked up here) or a configuration without one."""
    p = Path(name_or_dir).expanduser()
    if not p.is_dir():
        return None
    from transformers import AutoConfig

    try:
        cfg = AutoConfig.from_pretrained(str(p))
    except Exception as e:  # transformers raises many types (OSError, ValueError, ...)
        raise TeacherError(f"cannot read the configuration of teacher {p} ({type(e).__name__})") from None
    n = _config_int(cfg, "n_positions", "max_position_embeddings")
    return n if n is not None and n > 0 else None


def teacher_config_dir(name_or_dir: str | os.PathLike, directory: str | os.PathLike) -> Path:
    """A directory holding the teacher's ``config.json``: its own directory when it is local, else
    its hub configuration saved into ``directory`` (for tools that need only the shape)."""
    p = Path(name_or_dir).expanduser()
    if p.is_dir():
        return p
    from transformers import AutoConfig

    try:
        cfg = AutoConfig.from_pretrained(str(name_or_dir))
    except Exception as e:
        raise TeacherError(f"cannot load the configuration of teacher {name_or_dir!r} ({type(e).__name__})") from None
    cfg.save_pretrained(str(directory))
    return Path(directory)


def check_vocab(teacher: Teacher, student_vocab: int) -> None:
    """The student must predict exactly the teacher's vocabulary."""
    if student_vocab != teacher.vocab_size:
        raise TeacherError(
            f"student vocab_size {student_vocab} != teacher {teacher.name!r} vocab {teacher.vocab_size}; "
            f"the student must use the teacher's tokenizer (build it with vocab_size={teacher.vocab_size})")
    n_tok = len(teacher.tokenizer)
    if n_tok > teacher.vocab_size:
        raise TeacherError(f"teacher {teacher.name!r}: tokenizer has {n_tok} tokens but the model predicts "
                           f"only {teacher.vocab_size}")


EOT = "<|endoftext|>"  # GPT-2's end-of-text token: the separator and end marker of our corpora


def train_bpe(texts, vocab_size: int):
    """A byte-level BPE (GPT-2 style, special token ``<|endoftext|>``) trained on the strings
    ``texts``, as a ``PreTrainedTokenizerFast``. Its vocabulary can come out smaller than
    ``vocab_size`` on a short text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=EOT, eos_token=EOT, unk_token=EOT,
                                   model_max_length=10**9)


def gpt2_model(vocab_size: int, eos_id: int, n_layer: int, n_embd: int, n_head: int, n_positions: int,
               seed: int = 0, **config: Any):
    """A freshly initialised ``GPT2LMHeadModel`` (weights drawn after ``torch.manual_seed(seed)``);
    ``config``: further ``GPT2Config`` fields (e.g. dropout)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=vocab_size, n_positions=n_positions, n_embd=n_embd, n_layer=n_layer,
                     n_head=n_head, bos_token_id=eos_id, eos_token_id=eos_id, **config)
    return GPT2LMHeadModel(cfg)


def make_tiny_teacher(directory: str | os.PathLike, text: str, vocab_size: int = 320, n_layer: int = 2,
                      n_embd: int = 32, n_head: int = 2, n_positions: int = 128, seed: int = 0) -> Path:
    """Write a random tiny GPT-2 plus a byte-level BPE trained on ``text`` into ``directory``.

    The tokenizer's vocabulary can come out smaller than ``vocab_size`` on a short
    text; the model's vocabulary is set to the tokenizer's actual size.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tok = train_bpe([text], vocab_size)
    tok.save_pretrained(d)
    gpt2_model(len(tok), tok.eos_token_id, n_layer, n_embd, n_head, n_positions, seed).save_pretrained(d)
    return d
