"""Write a checkpoint to a deployment target: the one entry point the CLI, the demo and notebooks use.

    from goose_neuro.export import export_checkpoint

    export_checkpoint("runs/wp", "onnx", "out/onnx")                     # variant="int", prefill=False
    export_checkpoint("runs/wp", "loihi2", "out/loihi2", host="q16")
    export_checkpoint("runs/wp", "nir", "out/nir", dt=1e-3)

Every target reads the same IR (:func:`goose_neuro.export.lower.lower_checkpoint`) and writes
its directory under a temporary name, renamed at the end, so a failure leaves nothing.
Options per target (anything else is an :class:`~goose_neuro.errors.ExportError`):

- ``onnx``: ``variant`` ('int': MatMulInteger on spikes, the default, measured faster on CPU by
  benchmarks/onnx_speed.py; 'float': float MatMuls), ``prefill`` (also write prefill.onnx)
- ``loihi``, ``loihi2``: ``host``, ``population``, ``frac_bits`` (see
  :func:`goose_neuro.export.loihi.export_loihi`)
- ``nir``: ``dt`` (seconds per token; see :func:`goose_neuro.export.nir_export.export_nir`)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from goose_neuro.errors import ExportError

TARGETS = ("onnx", "loihi", "loihi2", "nir")
DEFAULT_ONNX_VARIANT = "int"
ONNX_OPTIONS = ("variant", "prefill")
NIR_OPTIONS = ("dt",)


def _check_options(target: str, options: dict[str, Any], known: tuple[str, ...]) -> None:
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ExportError(f"unknown {target} export option(s): {', '.join(unknown)} (known: {', '.join(known)})")


def export_checkpoint(checkpoint: str | os.PathLike, target: str, out: str | os.PathLike, **options: Any) -> Path:
    """Lower ``checkpoint`` and write ``target`` into ``out``; returns the output directory."""
    from goose_neuro.export.lower import lower_checkpoint
    from goose_neuro.fileio import check_writable_dir

    if target not in TARGETS:
        raise ExportError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    if target == "onnx":
        _check_options(target, options, ONNX_OPTIONS)
    elif target == "nir":
        _check_options(target, options, NIR_OPTIONS)
    check_writable_dir(out)  # fail before the (slow) load when OUT cannot be written
    graph, _ = lower_checkpoint(checkpoint)
    if target in ("loihi", "loihi2"):
        from goose_neuro.export.loihi import export_loihi

        return Path(export_loihi(graph, out, target, **options))
    if target == "nir":
        from goose_neuro.export.nir_export import export_nir

        return Path(export_nir(graph, out, **options))
    from goose_neuro.export.onnx_export import export_onnx

    return Path(export_onnx(graph, out, variant=options.get("variant", DEFAULT_ONNX_VARIANT),
                            checkpoint_dir=checkpoint, prefill=bool(options.get("prefill", False))))
