"""``goose-check lava``: does a Loihi package compute what the user trained?

The reference is built from the checkpoint alone, never from the package under check: the
student, rebuilt from its checkpoint, running the integer neurons it deploys with (its own
fixed-point format when it was trained with ``--fixed-point``; else the post-training format at
the package's declared ``frac_bits``), in float64. Three checks:

1. **Static**: the checkpoint is quantized again with the package's declared options
   (target, population, host format, frac_bits); every parameter, chain file and wiring entry of
   the package must equal it. A difference is named (``L0.tm.lif_in.dv``, ``chains/...net``).
2. **Lava** (``--lava-tokens``, default 128): the package runs in Lava's ``Loihi2SimCfg``
   (fixed point) in the Python 3.10 environment, with lava-nc's own process models wherever lava-nc
   has one (``TernaryLIF``, ``Dense``, ``Sigma``, ``LIF``). Every population's spikes must equal
   the reference's, token by token; the host's population inputs and the logits are compared too,
   and the next-token argmax must agree on at least ``min_agreement`` of the tokens.
3. **Quality** (``--eval-tokens``, default 512, PyTorch only): perplexity of the deployed
   arithmetic against the trained model's (identical for a fixed-point-trained student; for a
   float-trained one this is the cost of post-training quantization, gate ``ppl_rtol``).

A malformed package is bad input (ExportError, exit 2); a package that differs is a failed check
(exit 1, one line naming what differs). This module never imports lava; it starts the Lava
environment's interpreter on :mod:`goose_neuro.export.loihi.runner`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from goose_neuro.errors import CheckFailed, DataError, ExportError
from goose_neuro.export.loihi.package import Package, load_package, quantize

RUNNER = Path(__file__).with_name("runner.py")
REPO = Path(__file__).resolve().parents[2]
ENV_VAR = "GOOSE_LAVA_PYTHON"
LOGIT_RTOL = 1e-6  # float64 host logits, Lava (numpy in the Lava env) vs PyTorch float64


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
                timeout: float = 600.0) -> dict[str, Any]:
    """Run ``tokens`` through ``package`` in Lava; returns the runner's arrays (+ ``models``)."""
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
            res = {k: z[k] for k in z.files}
    res["models"] = json.loads(str(res["models"]))
    return res


def _kill_group(pgid: int) -> None:
    """Lava's actor processes outlive a crashed runner; end that process group (ours)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def text_tokens(text_file: str | os.PathLike, checkpoint: str | os.PathLike, vocab: int, n: int,
                reference: str | None = None) -> np.ndarray:
    """First ``n`` token ids of ``text_file`` with the checkpoint's tokenizer (``reference``: the
    checkpoint's ``tokenizer`` field, as every other stage passes it)."""
    from goose_neuro.tokenizer import encode_file, load_tokenizer

    ids = encode_file(text_file, load_tokenizer(checkpoint, vocab, reference=reference), vocab, max_tokens=n,
                      min_tokens=2)
    return np.asarray(ids, dtype=np.int64)


# -- the reference -----------------------------------------------------------------------------
def deployed_model(model, pkg: Package):
    """The checkpoint's model with the integer neurons it deploys with (float64, eval mode)."""
    model = model.double().eval().freeze_ternary()
    if not model.cfg.fixed_point:  # post-training quantization at the package's declared frac_bits
        model.set_fixed_point(model.deployed_format(frac_bits=int(pkg.manifest["options"]["frac_bits"])))
    return model


def reference_run(model, tokens: np.ndarray) -> dict[str, Any]:
    """Logits, spikes per population and population inputs (mantissas) of ``model`` on ``tokens``."""
    import torch

    pops = model.populations()
    inputs: dict[str, list] = {k: [] for k in pops}
    name_of = {id(m): k for k, m in pops.items()}

    def hook(mod, args):
        fmt = mod.fixed_format
        if fmt is not None:
            p = mod.fixed_params()
            x = args[0][0].detach().double().numpy()  # (T, n)
            inputs[name_of[id(mod)]].append(np.clip(np.round(x * p["gain"]), -fmt.x_limit, fmt.x_limit))

    from goose_neuro.model import forward_pre_hooks

    with torch.inference_mode(), forward_pre_hooks(pops.values(), hook):
        out = model.run(torch.from_numpy(np.asarray(tokens, dtype=np.int64))[None], collect=True)
    spikes = [s[0].numpy().astype(np.int64) for s in out.spikes.values()]
    return {"logits": out.logits[0].numpy(), "spikes": dict(zip(pops, spikes)),
            "inputs": {k: np.concatenate(v).astype(np.int64) for k, v in inputs.items() if v}}


def perplexity(logits: np.ndarray, targets: np.ndarray) -> float:
    from goose_neuro.export.onnx_check import perplexity as ppl

    return ppl(logits, targets)


# -- 1. static --------------------------------------------------------------------------------------
def _diff_json(a: Any, b: Any, path: str = "") -> str | None:
    """First path where two JSON-like values differ (None when equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                return f"{path}.{k}".lstrip(".")
            d = _diff_json(a[k], b[k], f"{path}.{k}")
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path} (length {len(a)} vs {len(b)})".lstrip(".")
        for i, (x, y) in enumerate(zip(a, b)):
            d = _diff_json(x, y, f"{path}[{i}]")
            if d:
                return d
        return None
    return None if a == b else path.lstrip(".")


WIRING_KEYS = ("target", "options", "neuron_format", "trained_fixed_point", "chains", "host", "readout", "time",
               "placement")


def compare_static(pkg: Package, model) -> dict[str, Any]:
    """Re-quantize the checkpoint with the package's declared options; name every difference."""
    import h5py

    from goose_neuro.export.lower import lower

    opts = pkg.manifest["options"]
    cfg = model.cfg
    model_info = pkg.manifest.get("model", {})
    if model_info.get("vocab_size") != cfg.vocab_size or model_info.get("d_model") != cfg.d_model:
        return {"identical": False, "differences": [f"exported from a different model (vocab "
                f"{model_info.get('vocab_size')}, width {model_info.get('d_model')} vs the checkpoint's "
                f"{cfg.vocab_size}, {cfg.d_model})"]}
    try:
        man, params, _ = quantize(lower(model), pkg.target, population=opts["population"],
                                  host=opts["host"], frac_bits=opts["frac_bits"])
    except ExportError as e:
        return {"identical": False, "differences": [f"the checkpoint cannot be exported with the package's "
                                                     f"options ({e})"]}
    diffs: list[str] = []
    for k in WIRING_KEYS:
        d = _diff_json(json.loads(json.dumps(man.get(k), default=str)),
                       json.loads(json.dumps(pkg.manifest.get(k), default=str)), k)
        if d:
            diffs.append(f"manifest {d}")
    for k in sorted(set(params) | set(pkg.params)):
        a, b = params.get(k), pkg.params.get(k)
        if a is None or b is None:
            diffs.append(f"{k} {'missing from the package' if b is None else 'not in the checkpoint'}")
        elif a.shape != b.shape:
            diffs.append(f"{k} shape {b.shape} vs {a.shape}")
        elif not np.array_equal(a, b):
            diffs.append(f"{k} ({int((a != b).sum())} of {a.size} values)")
    for ch, ref in zip(pkg.chains, man["chains"]):
        with h5py.File(pkg.path / ch["net_file"], "r") as f:
            w = np.asarray(f[f"layer/{len(f['layer']) - 1}/weight"][()])
        want = params[ref["weight"]]
        if w.shape != want.shape:
            diffs.append(f"{ch['net_file']} weight shape {w.shape} vs {want.shape}")
        elif not np.array_equal(w, want):
            rows = np.nonzero((w != want).any(1))[0]
            diffs.append(f"{ch['net_file']} weights (rows {', '.join(map(str, rows[:3]))}{'...' if len(rows) > 3 else ''})")
    return {"identical": not diffs, "differences": diffs}


# -- 2. Lava ------------------------------------------------------------------------------------------
def compare_lava(pkg: Package, ref: dict[str, Any], got: dict[str, Any], tokens: np.ndarray) -> dict[str, Any]:
    """Lava's spikes, population inputs and logits against the reference, population by population."""
    n = len(tokens)
    per, first, total_diff, total = {}, None, 0, 0
    inputs_diff = {}
    for c, ch in enumerate(pkg.chains):
        name = ch["population"]
        want = ref["spikes"][name][:n]
        s = got.get(f"spikes_{c}")
        if s is not None and ch["transport"] == "onoff" and s.shape[-1] == 2 * want.shape[-1]:
            s = s[:, :want.shape[-1]] - s[:, want.shape[-1]:]  # ON/OFF pairs -> ternary
        if s is None or s.shape != want.shape:
            d = int(want.size)
        else:
            bad = s != want
            d = int(bad.sum())
            if d and first is None:
                t, j = np.argwhere(bad)[0]
                first = f"{name} at token {int(t)}, neuron {int(j)}"
        per[name] = d
        total_diff += d
        total += int(np.abs(want).sum())
        x = got.get(f"inputs_{c}")
        if name in ref["inputs"] and x is not None and ch["neuron"] != "cuba_onoff":
            xr = ref["inputs"][name][:n]
            inputs_diff[name] = int((x != xr).sum()) if x.shape == xr.shape else int(xr.size)
    lg, lr = got["logits"].astype(np.float64), ref["logits"][:n]
    same_shape = lg.shape == lr.shape
    diff = float(np.abs(lg - lr).max()) if same_shape else float("inf")
    scale = max(1.0, float(np.abs(lr).max()))
    build_s, run_s, steps = (float(v) for v in got["timing"])
    return {"tokens": n, "chains": len(pkg.chains), "spike_mismatches": total_diff, "spikes_total": total,
            "spike_mismatches_per_population": per, "first_mismatch": first,
            "input_mismatches_per_population": inputs_diff, "input_mismatches": int(sum(inputs_diff.values())),
            "logits_max_abs_diff": diff, "logits_tolerance": LOGIT_RTOL * scale,
            "argmax_agreement": float((lg.argmax(-1) == lr.argmax(-1)).mean()) if same_shape else 0.0,
            "ppl_lava": perplexity(lg[:-1], tokens[1:n]) if same_shape and n > 1 else float("nan"),
            "ppl_reference": perplexity(lr[:-1], tokens[1:n]) if n > 1 else float("nan"),
            "models": got.get("models", {}), "lava_build_s": build_s, "lava_run_s": run_s, "lava_steps": int(steps),
            "lava_tokens_per_s": n / run_s if run_s > 0 else float("inf"),
            "lava_steps_per_s": steps / run_s if run_s > 0 else float("inf")}


# -- 3. quality ----------------------------------------------------------------------------------------
def compare_quality(trained, deployed, ids: np.ndarray) -> dict[str, Any]:
    """Deployed arithmetic vs the trained model on ``ids`` (PyTorch, float64)."""
    import torch

    x, y = torch.from_numpy(ids[:-1])[None], ids[1:]
    with torch.inference_mode():
        lt = trained(x)[0][0].numpy()
        ld = deployed(x)[0][0].numpy()
    pt, pd = perplexity(lt, y), perplexity(ld, y)
    return {"eval_tokens": int(len(y)), "ppl_trained": pt, "ppl_deployed": pd, "ppl_rel_diff": abs(pd - pt) / pt,
            "argmax_agreement_trained": float((lt.argmax(-1) == ld.argmax(-1)).mean())}


def check_lava(package: str | os.PathLike, checkpoint: str | os.PathLike, text_file: str | os.PathLike | None = None,
               lava_tokens: int = 128, eval_tokens: int = 512, min_agreement: float = 0.99, ppl_rtol: float = 0.02,
               python: Path | None = None, timeout: float = 600.0, tokens: np.ndarray | None = None,
               static: bool = True) -> dict[str, Any]:
    """All three checks (see the module docstring). ``tokens`` (for tests) replaces the text."""
    import copy

    from goose_neuro.checkpoint import load_checkpoint

    pkg = load_package(package)
    model, info = load_checkpoint(checkpoint)
    cfg = model.cfg
    mi = pkg.manifest["model"]
    if (mi.get("vocab_size"), mi.get("d_model")) != (cfg.vocab_size, cfg.d_model):
        raise ExportError(f"{package} was exported from a different model than {checkpoint} (vocabulary "
                          f"{mi.get('vocab_size')}, width {mi.get('d_model')} vs {cfg.vocab_size}, {cfg.d_model})")
    if tokens is None:
        if text_file is None:
            raise DataError("give --text (or tokens) to run the checks on")
        ids = text_tokens(text_file, checkpoint, cfg.vocab_size, max(eval_tokens, lava_tokens) + 1,
                          reference=info.get("tokenizer"))
    else:
        ids = np.asarray(tokens, dtype=np.int64)
    rep: dict[str, Any] = {"package": str(package), "checkpoint": str(checkpoint), "target": pkg.target,
                           "options": pkg.manifest["options"], "neuron": pkg.manifest["neuron_format"]["neuron"],
                           "trained_fixed_point": bool(cfg.fixed_point), "checks": {},
                           "limits": {"min_argmax_agreement": min_agreement, "ppl_rtol": ppl_rtol}}
    if static:
        rep["static"] = compare_static(pkg, copy.deepcopy(model))  # as loaded, like goose-export
        rep["checks"]["package_matches_checkpoint"] = rep["static"]["identical"]
    trained = copy.deepcopy(model).double().eval().freeze_ternary()
    deployed = deployed_model(model, pkg)
    lt = ids[:lava_tokens]
    ref = reference_run(deployed, lt)
    got = run_in_lava(pkg.path, lt, python, timeout)
    lv = rep["lava"] = compare_lava(pkg, ref, got, lt)
    rep["checks"]["lava_spikes_match"] = lv["spike_mismatches"] == 0
    rep["checks"]["lava_logits_match"] = lv["logits_max_abs_diff"] <= lv["logits_tolerance"]
    rep["checks"]["lava_argmax_agreement"] = lv["argmax_agreement"] >= min_agreement
    rep["quality"] = compare_quality(trained, deployed, ids[:eval_tokens + 1])
    rep["checks"]["perplexity"] = rep["quality"]["ppl_rel_diff"] <= ppl_rtol
    rep["reference"] = ("the checkpoint's model with its trained fixed-point neurons (float64)" if cfg.fixed_point else
                        f"the checkpoint's model with post-training fixed-point neurons at frac_bits="
                        f"{pkg.manifest['options']['frac_bits']} (float64); it was trained with float neurons")
    if any(ch["neuron"] == "cuba_onoff" for ch in pkg.chains):
        rep["note"] = "population=core maps the student's neuron to CUBA ON/OFF pairs, an approximation"
    rep["passed"] = all(rep["checks"].values())
    return rep


def failure_line(rep: dict[str, Any]) -> str:
    """One line naming what differs."""
    parts = []
    ck = rep["checks"]
    if not ck.get("package_matches_checkpoint", True):
        d = rep["static"]["differences"]
        parts.append(f"package differs from the checkpoint's quantization: {'; '.join(d[:3])}"
                     f"{f' (+{len(d) - 3} more)' if len(d) > 3 else ''}")
    lv = rep.get("lava", {})
    if not ck.get("lava_spikes_match", True):
        worst = sorted(((v, k) for k, v in lv["spike_mismatches_per_population"].items() if v), reverse=True)
        parts.append(f"Lava: {lv['spike_mismatches']} of {lv['spikes_total']} spikes differ from the checkpoint's model "
                     f"over {lv['tokens']} tokens (first: {lv['first_mismatch']}; most: {worst[0][1]})")
    if not ck.get("lava_logits_match", True) and ck.get("lava_spikes_match", True):
        parts.append(f"Lava logits differ by up to {lv['logits_max_abs_diff']:.3g}")
    if not ck.get("lava_argmax_agreement", True):
        parts.append(f"Lava argmax agreement {lv['argmax_agreement']:.2%} < {rep['limits']['min_argmax_agreement']:.0%}")
    if not ck.get("perplexity", True):
        q = rep["quality"]
        parts.append(f"deployed perplexity {q['ppl_deployed']:.3f} differs from the trained model's {q['ppl_trained']:.3f} "
                     f"by {q['ppl_rel_diff']:.2%} > {rep['limits']['ppl_rtol']:.0%}")
    if rep.get("note"):
        parts.append(rep["note"])
    return "; ".join(parts)
