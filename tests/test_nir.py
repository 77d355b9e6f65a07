"""NIR export: round trip with nir.read(type_check=True), dynamics mapping, nothing dropped."""

from __future__ import annotations

import json

import nir
import numpy as np
import pytest
import torch

from goose_neuro.config import preset
from goose_neuro.errors import ExportError
from goose_neuro.export.lower import lower
from goose_neuro.export.nir_export import export_nir
from goose_neuro.model import ASNNGoose


def _graph(**kw):
    torch.manual_seed(0)
    return lower(ASNNGoose(preset("tiny", n_layers=1, **kw)).eval())


def test_nir_round_trip(tmp_path):
    g = _graph()
    out = export_nir(g, tmp_path / "n", dt=1e-3)
    back = nir.read(out / "model.nir", type_check=True)
    lif = back.nodes["L0.tm.lif_in.on"]
    src = g.nodes["L0.tm.lif_in"]
    assert isinstance(lif, nir.LIF) and isinstance(back.nodes["L0.tm.lif_in.off"], nir.LIF)
    # forward Euler with dt: v <- (1 - dt/tau) v + (dt/tau) r x  ==  beta v + x
    np.testing.assert_allclose(1 - 1e-3 / lif.tau, src.beta, rtol=1e-6)
    np.testing.assert_allclose(1e-3 / lif.tau * lif.r, 1.0, rtol=1e-9)
    np.testing.assert_allclose(lif.v_threshold, src.threshold)
    w = back.nodes["L0.tm.key.on"].weight
    np.testing.assert_allclose(w, g.nodes["L0.tm.key"].float_weight())
    np.testing.assert_allclose(back.nodes["L0.tm.key.off"].weight, -w)
    assert ("L0.tm.lif_in.off", "L0.tm.key.off") in back.edges and ("L0.tm.key.on", "L0.tm.key") in back.edges
    meta = json.loads(back.metadata["goose"])
    assert meta["dt"] == 1e-3
    host = {h["op"] for h in meta["not_expressible_in_nir"]}
    assert {"Embedding", "LayerNorm", "WKV", "Sigmoid", "ReLUSquare", "Mul", "Add", "Dense", "ShiftMix"} <= host
    assert json.loads((out / "nir_metadata.json").read_text()) == meta


def test_nir_bad_inputs_write_nothing(tmp_path):
    with pytest.raises(ExportError, match="spike_mode='none'"):
        export_nir(_graph(spike_mode="none"), tmp_path / "a")
    with pytest.raises(ExportError, match="dt"):
        export_nir(_graph(), tmp_path / "b", dt=0)
    assert list(tmp_path.iterdir()) == []


def test_nir_via_export_cli(tmp_path):
    from goose_neuro.checkpoint import save_checkpoint
    from goose_neuro.cli.export import main

    torch.manual_seed(0)
    save_checkpoint(ASNNGoose(preset("tiny", n_layers=1)), tmp_path / "ck")
    assert main(["--target", "nir", str(tmp_path / "ck"), "-o", str(tmp_path / "out")]) == 0
    assert len(nir.read(tmp_path / "out" / "model.nir").nodes) > 0
