"""Distillation training, one module per job.

- :mod:`.config`: :class:`TrainConfig` (frozen; every option that shapes a run), :class:`TrainingError`
- :mod:`.distributed`: device and threads, ``torchrun`` data parallelism (:class:`Dist`)
- :mod:`.evaluation`: :func:`evaluate` (perplexity, spike rates, tokens/s)
- :mod:`.teacher_cache`: per-window teacher tables on disk (POCL ranking, top-k logits)
- :mod:`.checkpoints`: optimizer state without pickle, atomic step directories, rotation, resume
- :mod:`.loop`: :class:`Trainer`, the training loop

The whole pipeline (load teacher, tokenize, train) is :func:`goose_neuro.distill.distill`.
"""

from goose_neuro.training.checkpoints import CKPT_RE, STATE_DIR, latest_checkpoint
from goose_neuro.training.config import TrainConfig, TrainingError
from goose_neuro.training.distributed import Dist, pick_device, set_threads, setup_distributed
from goose_neuro.training.evaluation import evaluate
from goose_neuro.training.loop import Trainer

__all__ = ["CKPT_RE", "STATE_DIR", "latest_checkpoint", "TrainConfig", "TrainingError", "Dist", "pick_device",
           "set_threads", "setup_distributed", "evaluate", "Trainer"]
