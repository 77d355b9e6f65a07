"""Deployment: lowering to the IR, and the ONNX, Loihi/Lava and NIR targets that read it.

``export_checkpoint(checkpoint, target, out, **options)`` writes one target
(see :mod:`goose_neuro.export.targets`).
"""

from goose_neuro.export.targets import TARGETS, export_checkpoint

__all__ = ["TARGETS", "export_checkpoint"]
