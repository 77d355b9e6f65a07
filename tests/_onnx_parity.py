"""ONNX Runtime against PyTorch on one token sequence: the parity assertion the ONNX tests share."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from goose_neuro.export.onnx_export import export_onnx
from goose_neuro.export.ort_runner import OrtStep


def assert_onnx_matches(model, graph, out: Path, variant: str, tok: torch.Tensor, state_rtol: float = 1e-4) -> None:
    """Export ``graph`` (lowered from ``model``) as ``variant`` into ``out`` and run ``tok`` (B, T)
    through ONNX Runtime step by step: logits within 1e-4 of ``model``'s (fp32 against fp32 differs
    by about 1e-6; one flipped spike moves them by more than 1e-2), the same argmax everywhere, and
    every final state within ``state_rtol``."""
    export_onnx(graph, out, variant)
    with torch.no_grad():
        ref, ref_st = model(tok)
    got, st = OrtStep(out).run(tok.numpy())
    np.testing.assert_allclose(got, ref.numpy(), rtol=0, atol=1e-4)
    assert (got.argmax(-1) == ref.numpy().argmax(-1)).all()
    for k in ref_st:
        np.testing.assert_allclose(st[k], ref_st[k].numpy(), rtol=state_rtol, atol=1e-4, err_msg=k)
