"""Checks that an exported Loihi / Loihi 2 package really runs (``goose-check lava``).

1. Lava vs integer reference: the package runs in Lava's ``Loihi2SimCfg`` (fixed point, CPU) in the
   Python 3.10 environment (``export/lava_runner.py`` as a subprocess, files in and out) and must
   equal :mod:`goose_neuro.export.int_ref` bit for bit: every population's spikes and the logits.
2. Integer reference vs the PyTorch model on real text: next-token argmax agreement (target >= 99%)
   against the PyTorch model running the package's fixed-point neurons (float64 host packages
   with the student's neuron; others: against the float neurons), and perplexity within 2% of the
   float-neuron model. Agreement with the float neurons is reported too: the float model is
   chaotic at the scale of any fixed-point rounding (see :mod:`goose_neuro.export.loihi`).

This module never imports lava; it only starts the Lava environment's interpreter.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from goose_neuro.errors import CheckFailed, DataError, ExportError

RUNNER = Path(__file__).with_name("lava_runner.py")
REPO = Path(__file__).resolve().parents[1]
ENV_VAR = "GOOSE_LAVA_PYTHON"
LOGIT_ATOL_F64 = 1e-9  # float64-host logits: Lava run vs integer reference


def lava_python(venv: str | os.PathLike | None = None) -> Path | None:
    """The Lava environment's interpreter: $GOOSE_LAVA_PYTHON, ``venv``, or ./.venv-lava (repo)."""
    cands = [os.environ.get(ENV_VAR)] if os.environ.get(ENV_VAR) else []
    cands += [Path(venv) / "bin" / "python"] if venv else []
    cands += [Path.cwd() / ".venv-lava" / "bin" / "python", REPO / ".venv-lava" / "bin" / "python"]
    for c in cands:
        if c and Path(c).is_file():
            return Path(c)
    return None


def run_in_lava(package: str | os.PathLike, tokens: np.ndarray, python: Path | None = None,
                timeout: float = 600.0) -> dict[str, np.ndarray]:
    """Run ``tokens`` through ``package`` in Lava; returns the runner's arrays."""
    py = python or lava_python()
    if py is None:
        raise ExportError("no Lava environment: run `make lava-env` (python3 scripts/make_lava_env.py) "
                          "or set GOOSE_LAVA_PYTHON")
    with tempfile.TemporaryDirectory(prefix="goose-lava-") as d:
        tok, out = os.path.join(d, "tokens.npy"), os.path.join(d, "result.npz")
        np.save(tok, np.asarray(tokens, dtype=np.int64))
        cmd = [str(py), str(RUNNER), "--package", str(package), "--tokens", tok, "--out", out]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the runner and the Lava actors it started
            proc.communicate()
            raise CheckFailed(f"Lava run of {package} did not finish in {timeout:.0f} s") from None
        finally:
            _kill_group(proc.pid)
        if proc.returncode != 0 or not os.path.isfile(out):
            tail = [ln for ln in err.strip().splitlines() if "Warning" not in ln and "warn(" not in ln][-3:]
            raise CheckFailed(f"Lava runner failed (exit {proc.returncode}): {' | '.join(tail)}")
        with np.load(out) as z:
            return {k: z[k] for k in z.files}


def _kill_group(pgid: int) -> None:
    """Lava's actor processes outlive a crashed runner; end that process group (ours)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def compare_lava(package: str | os.PathLike, tokens: np.ndarray, python: Path | None = None,
                 timeout: float = 600.0) -> dict[str, Any]:
    """Lava vs the integer reference on ``tokens``: spikes and logits must be identical."""
    from goose_neuro.export.loihi import load_int_model

    tokens = np.asarray(tokens, dtype=np.int64)
    t0 = time.perf_counter()
    got = run_in_lava(package, tokens, python, timeout)
    wall = time.perf_counter() - t0
    ref = load_int_model(package).run(tokens)
    chains = ref["spikes"]
    mism = {}
    for c, s in enumerate(chains):
        lava_s = got.get(f"spikes_{c}")
        mism[c] = int(s.size) if lava_s is None or lava_s.shape != s.shape else int((lava_s != s).sum())
    build_s, run_s, steps = (float(v) for v in got["timing"])
    return {"tokens": int(len(tokens)), "chains": len(chains),
            "spike_mismatches": int(sum(mism.values())),
            "spike_mismatches_per_chain": mism,
            "spikes_total": int(sum(int(np.abs(s).sum()) for s in chains)),
            "spikes_identical": all(v == 0 for v in mism.values()),
            "logits_identical": bool(np.array_equal(got["logits"], ref["logits"])),
            "logits_max_abs_diff": float(np.abs(got["logits"].astype(np.float64) - ref["logits"]).max(initial=0.0))
            if got["logits"].shape == ref["logits"].shape else float("inf"),
            "lava_build_s": build_s, "lava_run_s": run_s, "lava_steps": int(steps),
            "lava_tokens_per_s": len(tokens) / run_s if run_s > 0 else float("inf"),  # incl. pipeline fill
            "lava_steps_per_s": steps / run_s if run_s > 0 else float("inf"),  # = steady-state tokens/s
            "wall_s": wall}


def text_tokens(text_file: str | os.PathLike, checkpoint: str | os.PathLike, vocab: int, n: int) -> np.ndarray:
    """First ``n`` token ids of ``text_file`` with the checkpoint's tokenizer."""
    from goose_neuro.tokenizer import encode_file, load_tokenizer

    ids = encode_file(text_file, load_tokenizer(checkpoint, vocab), vocab, max_tokens=n, min_tokens=2)
    return np.asarray(ids, dtype=np.int64)


def fixed_point_specs(im) -> dict[str, dict] | None:
    """Per-population fixed-point neuron specs for ``ASNNGoose.set_fixed_point``, or None when
    the package's neurons are not the student's (Loihi 1 on-core CUBA ON/OFF) or its host is Q16
    (then no PyTorch run shares its arithmetic)."""
    if im.host_format != "float64" or any(p.kind == "cuba_onoff" for p in im.pops):
        return None
    return {p.name: {"gain": p.gain, "dv": p.dv, "vth": p.vth, "x_bits": p.x_bits} for p in im.pops}


def _ternary_spikes(pop, s: np.ndarray) -> np.ndarray:
    """Integer reference spikes as {-1, 0, 1} (ON/OFF pairs folded back)."""
    return s[:, :pop.n] - s[:, pop.n:] if pop.kind == "host_onoff" else s


def compare_float(package: str | os.PathLike, checkpoint: str | os.PathLike, ids: np.ndarray) -> dict[str, Any]:
    """Integer reference vs the PyTorch model (float64) on ``ids``: next-token argmax agreement,
    perplexities and spikes.

    Two PyTorch runs: with float neurons (the trained model; its perplexity is the quality
    baseline) and, where the package allows (float64 host, the student's neuron), with the
    package's fixed-point neurons (``ASNNGoose.set_fixed_point``), which is the model the
    hardware runs. ``argmax_agreement`` is against the latter when it exists, else against the
    float neurons; ``argmax_agreement_float_neurons`` is always reported. ``ppl_rel_diff`` is
    the integer model's perplexity against the float-neuron model's."""
    import torch

    from goose_neuro.checkpoint import load_checkpoint
    from goose_neuro.export.loihi import load_int_model
    from goose_neuro.export.onnx_check import perplexity

    model, info = load_checkpoint(checkpoint)
    model.double().freeze_ternary()
    im = load_int_model(package)
    if im.m["model"]["vocab_size"] != info["config"].vocab_size or im.m["model"]["d_model"] != info["config"].d_model:
        raise ExportError(f"{package} was exported from a different model than {checkpoint}")
    x, y = ids[:-1], ids[1:]
    tokens = torch.from_numpy(x)[None]
    with torch.inference_mode():
        ref_float = model(tokens)[0][0].numpy()
    t0 = time.perf_counter()
    run = im.run(x, record=True)
    dt = time.perf_counter() - t0
    got = run["logits"].astype(np.float64)
    if im.host_format == "q16":
        got = got / 65536.0
    specs = fixed_point_specs(im)
    out: dict[str, Any] = {"eval_tokens": int(len(y))}
    if specs is not None:
        model.set_fixed_point(specs)
        with torch.inference_mode():
            fx = model.run(tokens, collect=True)
        ref = fx.logits[0].numpy()
        flips, total = 0, 0
        for c, pop in enumerate(im.pops):
            ts = fx.spikes[pop.name][0].numpy().astype(np.int64)
            ms = _ternary_spikes(pop, run["spikes"][c])
            flips += int((ts != ms).sum())
            total += int(np.abs(ms).sum())
        out.update(reference="PyTorch model with the package's fixed-point neurons (float64)",
                   ppl_fixed=perplexity(ref, y), spike_mismatches_vs_pytorch=flips, spikes_total=total)
    else:
        ref = ref_float
        out["reference"] = "PyTorch model with float neurons (float64)"
    ppl_f, ppl_i = perplexity(ref_float, y), perplexity(got, y)
    out.update({"argmax_agreement": float((got.argmax(-1) == ref.argmax(-1)).mean()),
                "argmax_agreement_float_neurons": float((got.argmax(-1) == ref_float.argmax(-1)).mean()),
                "ppl_float": ppl_f, "ppl_int": ppl_i, "ppl_rel_diff": abs(ppl_i - ppl_f) / ppl_f,
                "max_abs_logit_diff": float(np.abs(got - ref).max()),
                "int_ref_tokens_per_s": len(x) / dt, "input_clamps": im.clamp_counts()})
    return out


def check_lava(package: str | os.PathLike, checkpoint: str | os.PathLike | None, text_file: str | os.PathLike | None,
               lava_tokens: int = 16, eval_tokens: int = 256, min_agreement: float = 0.99,
               ppl_rtol: float = 0.02, python: Path | None = None, timeout: float = 600.0,
               tokens: np.ndarray | None = None) -> dict[str, Any]:
    """Both checks. ``tokens`` (for tests) replaces the text for the Lava part; without a
    checkpoint and text only the Lava check runs."""
    from goose_neuro.export.loihi import load_int_model

    im = load_int_model(package)
    check_net_files(package, im)
    rep: dict[str, Any] = {"package": str(package), "target": im.m["target"], "checks": {}}
    if text_file is not None and checkpoint is not None:
        ids = text_tokens(text_file, checkpoint, im.m["model"]["vocab_size"], eval_tokens + 1)
        rep["float"] = compare_float(package, checkpoint, ids)
        rep["checks"]["argmax_agreement"] = rep["float"]["argmax_agreement"] >= min_agreement
        rep["checks"]["perplexity"] = rep["float"]["ppl_rel_diff"] <= ppl_rtol
        tokens = ids[:lava_tokens] if tokens is None else tokens
    if tokens is None:
        raise DataError("give --text (and --checkpoint), or tokens, to run the Lava check on")
    rep["lava"] = compare_lava(package, np.asarray(tokens)[:lava_tokens], python, timeout)
    rep["checks"]["lava_spikes_identical"] = rep["lava"]["spikes_identical"]
    lv = rep["lava"]
    # q16 host: the logits are integers and must be identical. float64 host: the same numpy code
    # runs in both environments, but their numpy/BLAS builds may round a dot product differently
    lv["logits_tolerance"] = 0.0 if im.host_format == "q16" else LOGIT_ATOL_F64
    rep["checks"]["lava_logits_match"] = lv["logits_identical"] or lv["logits_max_abs_diff"] <= lv["logits_tolerance"]
    rep["limits"] = {"min_argmax_agreement": min_agreement, "ppl_rtol": ppl_rtol}
    rep["passed"] = all(rep["checks"].values())
    return rep


def check_net_files(package: str | os.PathLike, im) -> None:
    """Validate every chain's netx file before Lava reads it: inside the package, readable HDF5,
    a ``dense`` layer whose weights equal the package's ``params.npz`` (ExportError naming the file)."""
    import h5py

    root = Path(package).resolve()
    for ch in im.m["chains"]:
        path = (root / str(ch.get("net_file", ""))).resolve()
        if root not in path.parents:
            raise ExportError(f"{package}: net_file {ch.get('net_file')!r} of chain {ch.get('name')!r} "
                              f"is outside the package")
        want = [t.encode() for t in ch.get("net_layers", ["dense"])]  # optional b"input", then b"dense"
        try:
            with h5py.File(path, "r") as f:
                kinds = [bytes(f[f"layer/{i}/type"][0]).rstrip(b"\0") for i in range(len(f["layer"]))]
                kind = kinds[-1]
                w = np.asarray(f[f"layer/{len(kinds) - 1}/weight"][()])
        except (OSError, KeyError, ValueError, TypeError, IndexError) as e:
            raise ExportError(f"{path}: not a readable netx chain file ({type(e).__name__}: "
                              f"{' '.join(str(e).split())[:120]})") from None
        if kinds != want or not np.array_equal(w, im.p[ch["name"] + ".weight"]):
            raise ExportError(f"{path}: does not match the package (layer type {kind!r}, weights "
                              f"{tuple(w.shape)} vs params {tuple(im.p[ch['name'] + '.weight'].shape)})")


def failure_line(rep: dict[str, Any]) -> str:
    bad = [k for k, ok in rep["checks"].items() if not ok]
    parts = []
    for k in bad:
        if k.startswith("lava"):
            parts.append(f"{k} ({rep['lava']['spike_mismatches']} spike mismatches)")
        elif k == "argmax_agreement":
            parts.append(f"argmax agreement {rep['float']['argmax_agreement']:.2%} < "
                         f"{rep['limits']['min_argmax_agreement']:.0%} ({rep['float']['reference']})")
        else:
            parts.append(f"perplexity differs by {rep['float']['ppl_rel_diff']:.2%} > {rep['limits']['ppl_rtol']:.0%}")
    return "; ".join(parts)
