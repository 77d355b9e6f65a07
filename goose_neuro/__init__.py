"""goose-neuro: distil, export and cost spiking language models (ASNN-Goose).

The top-level names are imported lazily, so tools that need only numpy and
onnxruntime (``goose-generate``) do not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "ASNNGoose": "goose_neuro.model",
    "ModelConfig": "goose_neuro.config",
    "PRESETS": "goose_neuro.config",
    "preset": "goose_neuro.config",
    "GooseError": "goose_neuro.errors",
    "load_checkpoint": "goose_neuro.checkpoint",
    "save_checkpoint": "goose_neuro.checkpoint",
}
__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'goose_neuro' has no attribute {name!r}")
