"""Drive an exported step graph with ONNX Runtime; needs only onnxruntime, numpy and tokenizers.

Example::

    from goose_neuro.tokenizer import load_tokenizer

    step = OrtStep("OUT/")                   # checks model.onnx against model.json
    tok = load_tokenizer("OUT/", step.vocab)
    ids = generate(step, tok.encode("Once upon"), 20, temperature=0.0)   # greedy
    print(tok.decode(ids))

State handling follows the sidecar: every state starts at its ``init`` value (0, or
WKV_P_INIT for ``*.wkv_p``) with shape (B, width) and is replaced each step by the
matching ``*.next`` output.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from goose_neuro.errors import DataError, ExportError

SIDECAR = "model.json"
SIDECAR_FORMAT = "goose-neuro-onnx-step"
_ORT_DTYPES = {"tensor(float)": "float32", "tensor(int64)": "int64"}


def load_sidecar(directory: str | os.PathLike) -> dict:
    """Read and check OUT/model.json."""
    d = Path(directory)
    if not d.is_dir():
        raise ExportError(f"ONNX export directory {d} does not exist or is not a directory")
    p = d / SIDECAR
    try:
        side = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExportError(f"{p}: missing (not a goose-export ONNX directory?)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ExportError(f"{p}: not valid JSON ({e})") from None
    if not isinstance(side, dict) or side.get("format") != SIDECAR_FORMAT or side.get("version") != 1:
        raise ExportError(f"{p}: not a {SIDECAR_FORMAT} v1 sidecar")
    for key in ("model_file", "inputs", "outputs", "states"):
        if key not in side:
            raise ExportError(f"{p}: missing field {key!r}")
    return side


class OrtStep:
    """One ONNX Runtime session of the step graph plus its sidecar."""

    def __init__(self, directory: str | os.PathLike, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.dir = Path(directory)
        self.side = load_sidecar(self.dir)
        path = self.dir / self.side["model_file"]
        if not path.is_file():
            raise ExportError(f"{path}: missing")
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            so.intra_op_num_threads = threads
        so.log_severity_level = 3
        self._ort, self._so = ort, so
        try:
            self.sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own untyped errors for bad files
            raise ExportError(f"{path}: ONNX Runtime cannot load it ({' '.join(str(e).split())[:200]})") from None
        self._check_matches_sidecar(path)
        self.states = self.side["states"]
        self.vocab = int(self.side["inputs"]["tokens"]["range"][1])
        self.out_names = [o.name for o in self.sess.get_outputs()]

    def _check_matches_sidecar(self, path: Path) -> None:
        """Every input/output the sidecar names must exist with its dtype and width."""
        got_in = {i.name: i for i in self.sess.get_inputs()}
        got_out = {o.name: o for o in self.sess.get_outputs()}
        want_in = {"tokens": self.side["inputs"]["tokens"]}
        want_out = {"logits": self.side["outputs"]["logits"]}
        for s in self.side["states"]:
            want_in[s["input"]] = s
            want_out[s["output"]] = s
        for kind, want, got in (("input", want_in, got_in), ("output", want_out, got_out)):
            if set(want) != set(got):
                diff = sorted(set(want) ^ set(got))
                raise ExportError(f"{path} does not match {SIDECAR}: {kind} names differ ({diff[:3]})")
            for name, spec in want.items():
                t = got[name]
                if _ORT_DTYPES.get(t.type) != spec["dtype"]:
                    raise ExportError(f"{path} does not match {SIDECAR}: {kind} {name!r} is {t.type}, sidecar says {spec['dtype']}")
                if list(t.shape[1:]) != list(spec["shape"][1:]):
                    raise ExportError(f"{path} does not match {SIDECAR}: {kind} {name!r} has shape {t.shape}, sidecar says {spec['shape']}")

    def prefill(self, tokens: np.ndarray, state=None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """tokens (B, T) -> (logits (B, T, V), state) in one call of prefill.onnx (export with
        --prefill); equal to :meth:`run`. Raises ExportError when the export has no prefill model."""
        if getattr(self, "_prefill", None) is None:
            pre = self.side.get("prefill")
            if not pre:
                raise ExportError(f"{self.dir} has no prefill model (export with --prefill)")
            path = self.dir / pre["model_file"]
            try:
                self._prefill = self._ort.InferenceSession(str(path), self._so, providers=["CPUExecutionProvider"])
            except Exception as e:
                raise ExportError(f"{path}: ONNX Runtime cannot load it ({' '.join(str(e).split())[:200]})") from None
            names = {i.name for i in self._prefill.get_inputs()}
            if names != {"tokens", *(s["input"] for s in self.states)}:
                raise ExportError(f"{path} does not match {SIDECAR}: input names differ")
        tokens = np.asarray(tokens, np.int64)
        state = self.init_state(tokens.shape[0]) if state is None else state
        outs = self._prefill.run(None, {"tokens": tokens, **state})
        by = dict(zip([o.name for o in self._prefill.get_outputs()], outs))
        return by["logits"], {s["input"]: by[s["output"]] for s in self.states}

    def init_state(self, batch: int) -> dict[str, np.ndarray]:
        return {s["input"]: np.full((batch, s["shape"][1]), s["init"], np.float32) for s in self.states}

    def step(self, tokens: np.ndarray, state: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """tokens (B,) int64 -> (logits (B, V), new state)."""
        outs = self.sess.run(None, {"tokens": np.asarray(tokens, np.int64), **state})
        by = dict(zip(self.out_names, outs))
        return by["logits"], {s["input"]: by[s["output"]] for s in self.states}

    def run(self, tokens: np.ndarray, state=None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """tokens (B, T) -> (logits (B, T, V), state), one step per token."""
        tokens = np.asarray(tokens, np.int64)
        state = self.init_state(tokens.shape[0]) if state is None else state
        out = []
        for t in range(tokens.shape[1]):
            lg, state = self.step(tokens[:, t], state)
            out.append(lg)
        return np.stack(out, 1), state


def sample_next(logits: np.ndarray, temperature: float, top_k: int, rng: np.random.Generator) -> np.ndarray:
    """logits (B, V) -> ids (B,). temperature 0 = greedy (argmax)."""
    if temperature <= 0:
        return logits.argmax(-1)
    z = logits.astype(np.float64) / temperature
    if 0 < top_k < z.shape[-1]:
        kth = np.partition(z, -top_k, axis=-1)[:, -top_k][:, None]
        z = np.where(z < kth, -np.inf, z)
    z -= z.max(-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(-1, keepdims=True)
    return np.array([rng.choice(p.shape[-1], p=row) for row in p])


def generate(step: OrtStep, prompt: Sequence[int], n: int, temperature: float = 0.0, top_k: int = 0,
             seed: int = 0) -> list[int]:
    """Feed ``prompt`` (one sequence), then produce ``n`` new ids; returns the new ids."""
    if not prompt:
        raise DataError("prompt is empty (need at least one token)")
    bad = [t for t in prompt if not 0 <= t < step.vocab]
    if bad:
        raise DataError(f"prompt token id {bad[0]} outside the model's vocabulary [0, {step.vocab})")
    rng = np.random.default_rng(seed)
    if step.side.get("prefill"):  # whole prompt in one Scan call
        logits, state = step.prefill(np.array([prompt]))
        logits = logits[:, -1]
    else:
        state = step.init_state(1)
        for t in prompt:
            logits, state = step.step(np.array([t]), state)
    out: list[int] = []
    for _ in range(n):
        nxt = int(sample_next(logits, temperature, top_k, rng)[0])
        out.append(nxt)
        logits, state = step.step(np.array([nxt]), state)
    return out
