"""Property-based fuzzing of the loaders that read other people's files.

Targets: the hardware-profile loader (``hardware_profiles.load_profile``), the checkpoint
config loader (``checkpoint.read_checkpoint_config``), the Loihi package reader
(``export.loihi.load_package``, which validates explicitly and converts no built-in exception
into its own) and the ONNX sidecar reader (``ort_runner.load_sidecar``).
Inputs are arbitrary bytes/text and structured mutations of real files (a key deleted or
its value replaced by any JSON/YAML value, at any depth). Property: the loader either
returns or raises the project's own typed error for that file kind; any other exception
fails the test. ``test_zz_examples_tried`` prints how many examples each target ran (running the
targets itself when they have not run in this session).
"""

from __future__ import annotations

import copy
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from goose_neuro.errors import CheckpointError, ExportError, ProfileError

TRIED: Counter = Counter()
RAN: set[str] = set()  # fuzz targets that ran in this session
SETTINGS = settings(max_examples=75, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(autouse=True)
def _record_target(request):
    yield
    RAN.add(request.node.originalname)


# any JSON-like value (YAML's safe subset too)
SCALARS = st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | \
    st.integers(min_value=-(10**400), max_value=10**400) | st.floats(allow_nan=True, allow_infinity=True) | \
    st.text(max_size=12)
VALUES = st.recursive(SCALARS, lambda c: st.lists(c, max_size=4) | st.dictionaries(
    st.text(max_size=8) | st.integers(-3, 3), c, max_size=4), max_leaves=8)


def mutate(data: st.DataObject, doc):
    """Replace or delete one entry at a random depth of ``doc`` (a deep copy), or add a stray key."""
    doc = copy.deepcopy(doc)
    node = doc
    for _ in range(data.draw(st.integers(0, 4), label="depth")):
        if isinstance(node, dict) and node:
            k = data.draw(st.sampled_from(sorted(node, key=str)), label="key")
            if not isinstance(node[k], (dict, list)) or not node[k]:
                break
            node = node[k]
        elif isinstance(node, list) and node:
            node = node[data.draw(st.integers(0, len(node) - 1), label="index")]
        else:
            break
    action = data.draw(st.sampled_from(["replace", "delete", "add"]), label="action")
    if isinstance(node, dict) and node:
        k = data.draw(st.sampled_from(sorted(node, key=str)), label="key")
        if action == "delete":
            del node[k]
        elif action == "replace":
            node[k] = data.draw(VALUES, label="value")
        else:
            node[data.draw(st.text(max_size=6) | st.integers(-2, 2), label="new key")] = data.draw(VALUES)
    elif isinstance(node, list) and node:
        i = data.draw(st.integers(0, len(node) - 1), label="index")
        if action == "delete":
            node.pop(i)
        else:
            node[i] = data.draw(VALUES, label="value")
    return doc


def _dump_json(doc) -> str:
    """JSON text; values json cannot write (huge ints are fine, non-str keys become str)."""
    return json.dumps(doc, default=str)


# -- hardware profiles ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def good_profile() -> dict:
    from goose_neuro.hardware_profiles import _read_text

    return yaml.safe_load(_read_text("loihi2")[0])


def _load_profile_text(path: Path, text: str) -> None:
    from goose_neuro.hardware_profiles import load_profile

    path.write_bytes(text.encode("utf-8", errors="replace"))
    try:
        load_profile(path)
    except ProfileError:
        pass


@SETTINGS
@given(data=st.data())
def test_fuzz_profile_structured(tmp_path, good_profile, data):
    """Mutated real profiles (YAML dump), through the file loader."""
    TRIED["profile (mutated YAML)"] += 1
    doc = mutate(data, good_profile)
    _load_profile_text(tmp_path / "p.yaml", yaml.safe_dump(doc, allow_unicode=True))


@SETTINGS
@given(text=st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
def test_fuzz_profile_raw_text(tmp_path, text):
    TRIED["profile (raw text)"] += 1
    _load_profile_text(tmp_path / "p.yaml", text)


@SETTINGS
@given(raw=VALUES)
def test_fuzz_profile_validate_any_value(raw):
    """validate_profile on any parsed value (the YAML parser's possible outputs)."""
    from goose_neuro.hardware_profiles import validate_profile

    TRIED["profile (any value)"] += 1
    try:
        validate_profile(raw)
    except ProfileError:
        pass


# -- checkpoint config ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def good_config(tmp_path_factory) -> dict:
    from goose_neuro.checkpoint import save_checkpoint
    from goose_neuro.config import preset
    from goose_neuro.model import ASNNGoose

    d = save_checkpoint(ASNNGoose(preset("tiny")), tmp_path_factory.mktemp("fz_ck") / "ck", tokenizer="x",
                        meta={"step": 1})
    return json.loads((d / "config.json").read_text())


def _read_config(d: Path, payload: bytes) -> None:
    from goose_neuro.checkpoint import read_checkpoint_config

    d.mkdir(exist_ok=True)
    (d / "config.json").write_bytes(payload)
    try:
        read_checkpoint_config(d)
    except CheckpointError:
        pass


@SETTINGS
@given(data=st.data())
def test_fuzz_checkpoint_config_structured(tmp_path, good_config, data):
    TRIED["checkpoint config (mutated)"] += 1
    _read_config(tmp_path / "ck", _dump_json(mutate(data, good_config)).encode())


@SETTINGS
@given(payload=st.binary(max_size=400) | VALUES.map(lambda v: _dump_json(v).encode()))
def test_fuzz_checkpoint_config_raw(tmp_path, payload):
    TRIED["checkpoint config (raw)"] += 1
    _read_config(tmp_path / "ck", payload)


# -- Loihi manifest ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def good_package(tmp_path_factory) -> Path:
    import torch

    from goose_neuro.config import preset
    from goose_neuro.export.loihi import export_loihi
    from goose_neuro.export.lower import lower
    from goose_neuro.model import ASNNGoose

    torch.manual_seed(0)
    m = ASNNGoose(preset("tiny", n_layers=1, d_model=16)).eval()
    return export_loihi(lower(m), tmp_path_factory.mktemp("fz_pkg") / "pkg", "loihi2")


def _load_manifest(pkg: Path, work: Path, manifest_text: str | bytes) -> None:
    """A package whose manifest is ``manifest_text``: it loads (and its host program then runs a
    token through every segment) or it is refused with ExportError."""
    import numpy as np

    from goose_neuro.export.loihi import load_package

    if not work.exists():
        shutil.copytree(pkg, work)
    data = manifest_text.encode() if isinstance(manifest_text, str) else manifest_text
    (work / "manifest.json").write_bytes(data)
    try:
        loaded = load_package(work)
    except ExportError:
        return
    prog, carry, counts = loaded.host_program(), {}, None
    for c, ch in enumerate(loaded.chains + [None]):
        out, carry = prog.run_segment(c, 1, counts, carry)
        counts = None if ch is None else loaded.params[ch["weight"]].astype(np.int64) @ np.ones(
            loaded.params[ch["weight"]].shape[1], np.int64)


@SETTINGS
@given(data=st.data())
def test_fuzz_loihi_manifest_structured(tmp_path, good_package, data):
    TRIED["loihi manifest (mutated)"] += 1
    doc = json.loads((good_package / "manifest.json").read_text())
    _load_manifest(good_package, tmp_path / "w", _dump_json(mutate(data, doc)))


@SETTINGS
@given(payload=st.binary(max_size=300) | VALUES.map(_dump_json))
def test_fuzz_loihi_manifest_raw(tmp_path, good_package, payload):
    TRIED["loihi manifest (raw)"] += 1
    _load_manifest(good_package, tmp_path / "w", payload)


# -- ONNX sidecar --------------------------------------------------------------------------------
@SETTINGS
@given(payload=st.binary(max_size=200) | VALUES.map(_dump_json))
def test_fuzz_onnx_sidecar_raw(tmp_path, payload):
    from goose_neuro.export.ort_runner import load_sidecar

    TRIED["onnx sidecar (raw)"] += 1
    (tmp_path / "model.json").write_bytes(payload if isinstance(payload, bytes) else payload.encode())
    try:
        load_sidecar(tmp_path)
    except ExportError:
        pass


def _fuzz_targets() -> dict:
    return {n: f for n, f in sorted(globals().items()) if n.startswith("test_fuzz_") and callable(f)}


def test_zz_examples_tried(request):
    """The figure: examples tried per target. Targets that have not run in this session (this test
    run alone, or with -k) run here first, so the figure always covers every target."""
    import inspect

    for name, fn in _fuzz_targets().items():
        if name not in RAN:
            fn(**{p: request.getfixturevalue(p) for p in inspect.signature(fn).parameters})
    print("\nfuzz examples tried: " + ", ".join(f"{k} {v}" for k, v in sorted(TRIED.items()))
          + f"; total {sum(TRIED.values())}")
    assert len(TRIED) == len(_fuzz_targets()) and min(TRIED.values()) >= 50, dict(TRIED)
