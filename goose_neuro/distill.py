"""Distil a spiking student from a Hugging Face teacher: the whole pipeline in one call.

    from goose_neuro.distill import distill
    from goose_neuro.training import TrainConfig

    summary = distill("path/to/teacher", "train.txt", "runs/wp", preset="small",
                      train=TrainConfig(steps=2000, pocl=True, ctkd=True))

Steps: load the teacher (its tokenizer is the student's), tokenize the data once (cached),
split off validation text, build a :class:`~goose_neuro.training.Trainer` and train. The
run directory ends up a checkpoint directory (see :mod:`goose_neuro.training.checkpoints`).
``goose-train`` parses its options and calls this function; ``goose-demo`` calls it too.
"""

from __future__ import annotations

import os
from typing import Any

from goose_neuro.training.config import TrainConfig

SUMMARY_KEYS = ("step", "student_ppl", "teacher_ppl", "spike_sparsity", "train_tokens_per_s", "skipped")


def distill(teacher: str | os.PathLike, data: str | os.PathLike, out: str | os.PathLike, *,
            train: TrainConfig = TrainConfig(), preset: str = "small", spike_mode: str | None = None,
            model: dict[str, Any] | None = None, init: str | os.PathLike | None = None,
            val_data: str | os.PathLike | None = None, val_fraction: float = 0.05, device: str = "auto",
            cache_dir: str | os.PathLike | None = None, threads: int | None = None, resume: bool = False,
            stop_after: int | None = None, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Distil a student of ``preset`` from ``teacher`` on ``data`` into the run directory ``out``.

    ``val_data``: validation text (default: the last ``val_fraction`` of ``data``).
    ``spike_mode``: override the preset's. ``model``: more :class:`~goose_neuro.config.ModelConfig`
    overrides (e.g. ``{"neuron": "ternary_lif", "fixed_point": True, "frac_bits": 11}``).
    ``init``: start from this checkpoint's weights (same architecture; it may differ in
    ``fixed_point`` and ``frac_bits``: fine-tuning a float student with fixed-point neurons).
    ``cache_dir``: token and teacher-logit cache
    (default :func:`goose_neuro.data.default_cache_dir`). ``resume``: continue from the newest
    checkpoint in ``out``. ``stop_after``: stop after this many steps of this call.
    ``meta``: extra entries stored in every checkpoint's ``meta`` (e.g. ``{"label": ...}``).

    Returns the summary of :meth:`Trainer.train` (step, skipped, train_tokens_per_s and the last
    evaluation: student_ppl, teacher_ppl, spike_sparsity, ...) plus ``rank`` (this process's
    rank under ``torchrun``; 0 otherwise). Raises :class:`~goose_neuro.errors.GooseError`
    subclasses for bad input, before anything is written.
    """
    from goose_neuro.config import preset as make_preset
    from goose_neuro.data import default_cache_dir, split_tokens, tokenize_source
    from goose_neuro.fileio import check_writable_dir
    from goose_neuro.teacher import load_teacher
    from goose_neuro.training.distributed import pick_device, set_threads, setup_distributed, teardown_distributed
    from goose_neuro.training.loop import Trainer

    set_threads(threads)
    dist, dev = setup_distributed(pick_device(device))
    try:
        run_dir = check_writable_dir(out)
        t = load_teacher(teacher, device=dev)
        overrides: dict[str, Any] = {"vocab_size": t.vocab_size}
        if spike_mode:
            overrides["spike_mode"] = spike_mode
        mcfg = make_preset(preset, **{**overrides, **(model or {})})
        cache = cache_dir or default_cache_dir()
        ids = tokenize_source(data, t.tokenizer, cache)
        if val_data:
            train_ids, val_ids = ids, tokenize_source(val_data, t.tokenizer, cache)
        else:
            train_ids, val_ids = split_tokens(ids, val_fraction)
        tr = Trainer(mcfg, train, t, train_ids, val_ids, run_dir, cache, device=dev, dist=dist, meta=meta, init=init)
        summary = tr.train(resume=resume, stop_after=stop_after)
    finally:
        teardown_distributed(dist)
    return {**summary, "rank": dist.rank}
