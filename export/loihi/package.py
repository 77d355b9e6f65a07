"""A Loihi / Loihi 2 package: the placement of an IR graph turned into files Lava runs.

``export_loihi(graph, out_dir, target)`` writes (atomically: nothing half-written)::

    OUT/manifest.json      format goose-neuro-loihi v2: options, placement, chains, host program
    OUT/params.npz         every parameter: population integers, readout scales, host op arrays
    OUT/chains/<pop>.net   one lava-dl netx HDF5 chain per population: its synapses and readouts
    OUT/quantization.json  every rounding and clamp with its size
    OUT/resources.json/.md resource estimate against hardware_profiles/<target>.yaml

Everything is derived from :func:`goose_neuro.export.placement.place` (what runs where) and
:mod:`goose_neuro.fixed_point` (the integer neuron), generically over the IR: the exporter knows
node types, never a block's layout.

Chains. Population ``c`` (lava-nc ``TernaryLIF``, a programmable subtract-reset neuron, or on
Loihi 1 a host neuron / CUBA ON/OFF pair) feeds a netx ``dense`` layer whose weights are
{-1, 0, +1} (netx turns them into mantissa +-128 with weight exponent -7, exactly +-1) and whose
neurons are the readouts: one per row, rows ``[P; N]`` per synapse node with split TTQ scales or
``[S]`` with equal ones (Loihi 1 ON/OFF input doubles the columns: ``[P, -P]``). Loihi 2 readouts
are sigma neurons (netx ``SDNN`` with ``sigma_output``) that send the running sum of the counts as
graded spikes; Loihi 1 readouts are CUBA compartments (``iDecay = vDecay = 4096``: ``v = counts
<< 6``) whose state the host reads each step.

Host program (``manifest.host``): every other IR node, with its fields and its arrays in
``params.npz``, in segments (see :mod:`goose_neuro.export.loihi.host`), in float64 (default) or
Q16.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from goose_neuro.errors import ExportError
from goose_neuro.export import ir
from goose_neuro.export.loihi import host as hostmod
from goose_neuro.export.placement import TARGETS, Placement, place
from goose_neuro.fixed_point import NeuronFormat

MANIFEST_FORMAT = "goose-neuro-loihi"
MANIFEST_VERSION = 2
PARAMS_FILE = "params.npz"
OPTIONS = ("population", "host", "frac_bits")


def target_formats(target: str) -> dict[str, int]:
    """Integer formats of ``target`` from its hardware profile (``formats``)."""
    from goose_neuro.hardware_profiles import load_profile

    return {k: int(f.value) for k, f in load_profile(target).formats.items()}


class _Report:
    """Every rounding and clamp: name -> {kind, count, max_abs_error, ...}."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}

    def rounding(self, name: str, exact, stored, scale: float) -> None:
        exact = np.asarray(exact, dtype=np.float64)
        err = np.abs(np.asarray(stored, dtype=np.float64) / scale - exact)
        self.items[name] = {"kind": "rounding", "count": int(exact.size), "max_abs_error": float(err.max(initial=0.0)),
                            "max_rel_error": float((err / np.maximum(np.abs(exact), 1e-30)).max(initial=0.0))}

    def runtime(self, name: str, count: int, max_abs_error: float, note: str) -> None:
        self.items[name] = {"kind": "runtime_rounding", "count": int(count), "max_abs_error": float(max_abs_error),
                            "note": note}

    def clamp(self, name: str, count: int, size: float, note: str) -> None:
        if count:
            self.items[name] = {"kind": "clamp", "count": int(count), "max_abs_error": float(size), "note": note}


def _population_params(lif: ir.LIF, pop, fmt: NeuronFormat, host: str, params: dict, rep: _Report) -> dict:
    """Integer parameters of one population (from goose_neuro.fixed_point); returns their keys."""
    name, th = pop.node, np.asarray(lif.threshold, dtype=np.float64)
    beta = np.asarray(lif.beta, dtype=np.float64)
    if pop.neuron == "cuba_onoff":  # lava LIF: one dv per process
        beta = np.full(1, float(np.median(beta)))
        rep.rounding(f"{name}.beta_shared", lif.beta, np.round(np.full(lif.n, beta[0]) * fmt.unit), fmt.unit)
    elif pop.neuron == "ternary_lif":
        beta = beta[:1]  # one value per population, repeated per channel in the IR
    dv = fmt.dv(beta)
    rep.rounding(f"{name}.beta", beta, fmt.unit - dv, float(fmt.unit))
    rep.clamp(f"{name}.dv", int((np.round(fmt.unit * beta) < 1).sum()), 1 / fmt.unit,
              "decay below 2^-12 raised to 2^-12 (12-bit dv)")
    keys = {"dv": f"{name}.dv", "gain": f"{name}.gain"}
    params[keys["dv"]] = dv
    if pop.neuron == "ternary_lif":
        bu = np.asarray(lif.beta_u, dtype=np.float64)[:1]
        du = fmt.du(bu)
        rep.rounding(f"{name}.beta_u", bu, fmt.unit - 1 - du, float(fmt.unit))
        keys["du"] = f"{name}.du"
        params[keys["du"]] = du
    gain = fmt.gain(th)
    if host == "float64":
        params[keys["gain"]] = gain
        rep.runtime(f"{name}.input", lif.n, float(th.max()) / 2 ** (fmt.frac_bits + 1),
                    f"each token's input rounded half to even to a step of threshold / 2^{fmt.frac_bits}; inputs "
                    f"beyond the {pop.input_bits}-bit mantissa are clamped")
    else:
        params[keys["gain"]] = hostmod._q_checked(gain, hostmod.FRAC, f"{name}.gain", 40)
        rep.runtime(f"{name}.input", lif.n, float(th.max()) / 2 ** fmt.frac_bits,
                    f"each token's Q16 input floored to a step of threshold / 2^{fmt.frac_bits}")
    return keys


def _chain_weight(graph: ir.Graph, pl: Placement, c: int, params: dict, host: str) -> tuple[np.ndarray, list[dict]]:
    """The chain's {-1, 0, +1} weight (rows x inputs) and its outputs (row blocks + scale keys)."""
    onoff = pl.populations[c].transport == "onoff"
    blocks, outs, off = [], [], 0
    for s in pl.synapses_of(c):
        node = graph.nodes[s.node]
        mats = [node.pos, node.neg] if s.encoding == "split" else [node.sign]
        for m in mats:
            m = np.asarray(m, dtype=np.int8)
            blocks.append(np.hstack([m, -m]) if onoff else m)
        keys = {"scale_pos": f"{s.node}.scale_pos", "scale_neg": f"{s.node}.scale_neg"}
        for k in ("scale_pos", "scale_neg"):
            v = getattr(node, k)
            params[keys[k]] = np.asarray(v, np.float64) if host == "float64" else \
                hostmod._q_checked(v, hostmod.FRAC, f"{s.node}.{k}", 31)
        outs.append({"node": s.node, "offset": off, "out_features": s.out_features, "rows": s.rows,
                     "encoding": s.encoding, **keys})
        off += s.rows
    w = np.vstack(blocks).astype(np.int8)
    if not w.any():
        raise ExportError(f"chain {pl.populations[c].node}: every synapse weight is 0; netx cannot derive a weight "
                          f"exponent for an all-zero matrix (lava-dl netx utils.optimize_weight_bits)")
    return w, outs


def _host_program(graph: ir.Graph, pl: Placement, params: dict) -> dict:
    """The host ops with their fields and array keys, segments, carried values and states."""
    ops = []
    for h in pl.host_ops:
        node = graph.nodes[h.node]
        fields = {f.name: getattr(node, f.name) for f in dataclasses.fields(node)
                  if f.name != "inputs" and not isinstance(getattr(node, f.name), (np.ndarray, dict))}
        arrays = {}
        for k, v in hostmod.host_arrays(node, pl.host_format).items():
            key = f"{h.node}.{k}"
            params[key] = v
            arrays[k] = key
        ops.append({"name": h.node, "type": node.type, "inputs": list(node.inputs), "segment": h.segment,
                    "fields": fields, "arrays": arrays})
    used = {st for h in pl.host_ops for st in graph.nodes[h.node].states()}
    widths = graph.widths()
    values = [h.node for h in pl.host_ops] + [s.node for s in pl.synapses]
    return {"format": pl.host_format, "ops": ops, "carry": pl.carry,
            "states": {k: {"width": graph.states[k].width, "init": graph.states[k].init} for k in sorted(used)},
            "value_widths": {v: int(widths[v]) for v in values}, "output": graph.output_name,
            "output_width": int(widths[graph.output_name])}


def quantize(graph: ir.Graph, target: str, population: str | None = None, host: str = "float64",
             frac_bits: int | None = None) -> tuple[dict, dict[str, np.ndarray], dict]:
    """IR graph -> (manifest, params, quantization report). Options as in :func:`place`."""
    if target not in TARGETS:
        raise ExportError(f"unknown Loihi target {target!r}; choose one of {', '.join(TARGETS)}")
    formats = target_formats(target)
    pl = place(graph, target, population, host, frac_bits, formats)
    fmt = pl.neuron_format
    if any(p.neuron == "cuba_onoff" for p in pl.populations):  # the CUBA bias input is narrower
        fmt = dataclasses.replace(fmt, x_bits=pl.populations[0].input_bits)
    rep, params, chains = _Report(), {}, []
    for c, pop in enumerate(pl.populations):
        lif = graph.nodes[pop.node]
        keys = _population_params(lif, pop, fmt, host, params, rep)
        w, outs = _chain_weight(graph, pl, c, params, host)
        wkey = f"{pop.node}.weight"
        params[wkey] = w
        chains.append({
            "population": pop.node, "input": lif.inputs[0], "n": pop.n, "neuron": pop.neuron, "runs_on": pop.runs_on,
            "transport": pop.transport, "process": pop.process, "x_bits": pop.input_bits, "vth": fmt.vth,
            "params": keys, "weight": wkey, "net_file": f"chains/{pop.node}.net", "weight_shape": list(w.shape),
            "net_layers": ["input", "dense"] if pop.neuron == "cuba_onoff" else ["dense"],
            "synapse_count": int(np.count_nonzero(w)), "outputs": outs,
            "readout": {"neuron": "SDNN sigma (graded: running sum of counts)" if pl.readout == "sigma"
                        else "CUBA (iDecay 4096, vDecay 4096: v = counts << 6, read by the host)",
                        "rows": int(w.shape[0])}})
    program = _host_program(graph, pl, params)
    if host == "q16":
        params["exp2_table"] = hostmod.exp2_table()
        params["log2e_q16"] = np.int64(round(np.log2(np.e) * hostmod.ONE))
    delay = 1 if pl.readout == "sigma" else 2
    cfg = graph.meta.get("model_config", {})
    manifest = {
        "format": MANIFEST_FORMAT, "format_version": MANIFEST_VERSION, "target": target,
        "options": {"population": pl.population_mode, "host": host, "frac_bits": pl.neuron_format.frac_bits},
        "neuron_format": pl.neuron_format.to_dict(), "trained_fixed_point": pl.trained_fixed_point,
        "formats": formats, "params_file": PARAMS_FILE,
        "model": {k: cfg.get(k) for k in ("vocab_size", "d_model", "n_layers", "neuron", "spike_mode")},
        "chains": chains, "host": program, "readout": pl.readout,
        "time": {"steps_per_token": 1, "chain_latency_steps": delay,
                 "schedule": f"pipelined: segment c (and population c) handle token t at Lava step "
                             f"t + 1 + {delay} c; the head's logits of token t at step t + 1 + {delay} M"},
        "placement": pl.to_dict(),
        "source": {k: graph.meta.get(k) for k in ("export_version", "checkpoint", "tokenizer")},
    }
    return manifest, params, rep.items


def export_loihi(graph: ir.Graph, out_dir: str | os.PathLike, target: str, **opts: Any) -> Path:
    """Quantize ``graph`` for ``target`` ('loihi' or 'loihi2') and write the package to ``out_dir``
    (replaced atomically). Options: ``population`` (Loihi 1: 'host' (default) or 'core'), ``host``
    ('float64' or 'q16') and ``frac_bits`` (threshold mantissa bits; a model trained with
    fixed-point neurons brings its own)."""
    from goose_neuro.export.loihi.netx import write_net
    from goose_neuro.export.loihi.resources import resource_markdown, resource_report
    from goose_neuro.fileio import atomic_dir, atomic_write_json

    unknown = sorted(set(opts) - set(OPTIONS))
    if unknown:
        raise ExportError(f"unknown Loihi export option(s): {', '.join(unknown)} (known: {', '.join(OPTIONS)})")
    manifest, params, qrep = quantize(graph, target, **opts)
    res = resource_report(manifest, graph)
    manifest["resources_summary"] = res["summary"]
    with atomic_dir(out_dir) as tmp:
        (tmp / "chains").mkdir()
        for ch in manifest["chains"]:
            cuba = None
            if ch["neuron"] == "cuba_onoff":
                cuba = {"n": 2 * ch["n"], "dv": int(params[ch["params"]["dv"]][0]), "vth": ch["vth"]}
            write_net(tmp / ch["net_file"], params[ch["weight"]], target, cuba)
        np.savez(tmp / PARAMS_FILE, **params)
        atomic_write_json(tmp / "quantization.json", qrep)
        atomic_write_json(tmp / "resources.json", res)
        (tmp / "resources.md").write_text(resource_markdown(res), encoding="utf-8")
        atomic_write_json(tmp / "manifest.json", manifest)
    return Path(out_dir)


# -- reading a package back --------------------------------------------------------------------------
@dataclasses.dataclass
class Package:
    """A package read from disk and checked for consistency (:func:`load_package`)."""

    path: Path
    manifest: dict
    params: dict[str, np.ndarray]
    placement: Placement

    @property
    def target(self) -> str:
        return self.manifest["target"]

    @property
    def chains(self) -> list[dict]:
        return self.manifest["chains"]

    def host_program(self) -> hostmod.HostProgram:
        return hostmod.HostProgram(self.manifest, self.params)


def _bad(path, why: str) -> ExportError:
    return ExportError(f"{path}: malformed Loihi package: {why}")


# The manifest's schema: a type, a list of one spec (every item), or a dict of specs (required keys).
_NUM = (int, float)
_OUTPUT = {"node": str, "offset": int, "out_features": int, "rows": int, "encoding": str, "scale_pos": str,
           "scale_neg": str}
_CHAIN = {"population": str, "input": str, "n": int, "neuron": str, "runs_on": str, "transport": str, "process": str,
          "x_bits": int, "vth": int, "params": dict, "weight": str, "net_file": str, "weight_shape": [int],
          "net_layers": [str], "synapse_count": int, "outputs": [_OUTPUT], "readout": dict}
_OP = {"name": str, "type": str, "inputs": [str], "segment": int, "fields": dict, "arrays": dict}
_SCHEMA = {"format": str, "format_version": int, "target": str,
           "options": {"population": str, "host": str, "frac_bits": int}, "neuron_format": dict,
           "trained_fixed_point": bool, "formats": dict, "params_file": str, "model": dict, "chains": [_CHAIN],
           "host": {"format": str, "ops": [_OP], "carry": [[str]], "states": dict, "value_widths": dict,
                    "output": str, "output_width": int},
           "readout": str, "time": {"chain_latency_steps": int}, "placement": dict}


def _check_schema(v: Any, spec: Any, path: str) -> str | None:
    """The first place where ``v`` does not fit ``spec`` (None when it fits)."""
    if isinstance(spec, dict):
        if not isinstance(v, dict):
            return f"{path}: expected an object"
        for k, sub in spec.items():
            if k not in v:
                return f"{path}.{k}: missing"
            bad = _check_schema(v[k], sub, f"{path}.{k}")
            if bad:
                return bad
        return None
    if isinstance(spec, list):
        if not isinstance(v, list):
            return f"{path}: expected a list"
        for i, item in enumerate(v):
            bad = _check_schema(item, spec[0], f"{path}[{i}]")
            if bad:
                return bad
        return None
    ok = isinstance(v, spec) and not (isinstance(v, bool) and spec in (int, _NUM))
    return None if ok else f"{path}: expected {getattr(spec, '__name__', 'a number')}, got {type(v).__name__}"


def load_package(out_dir: str | os.PathLike) -> Package:
    """Read and validate a package: the manifest's schema, every parameter's presence, dtype and
    shape, every chain file's layers and weights, and the host program's dataflow (every value
    an op or a population reads exists where it is read). Damage raises ExportError with one line
    naming it; a package that loads can be run."""
    root = Path(out_dir)
    if not (root / "manifest.json").is_file():
        why = "does not exist" if not root.exists() else "has no manifest.json"
        raise ExportError(f"{root}: not a Loihi package ({why}; goose-export --target loihi|loihi2 writes one)")
    try:
        manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _bad(root, f"manifest.json unreadable ({type(e).__name__}: {' '.join(str(e).split())[:100]})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise _bad(root, f"manifest.json is not a {MANIFEST_FORMAT} manifest")
    if manifest.get("format_version") != MANIFEST_VERSION:
        raise _bad(root, f"format_version {manifest.get('format_version')!r}; this goose-neuro reads "
                         f"v{MANIFEST_VERSION} (re-export the checkpoint)")
    bad = _check_schema(manifest, _SCHEMA, "manifest")
    if bad:
        raise _bad(root, bad)
    pfile = (root / manifest["params_file"]).resolve()
    if root.resolve() not in pfile.parents:
        raise _bad(root, f"params_file {manifest['params_file']!r} is outside the package")
    try:
        with np.load(pfile) as z:  # allow_pickle=False: an object array is refused, never unpickled
            params = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise _bad(root, f"params unreadable ({type(e).__name__}: {' '.join(str(e).split())[:100]})") from None
    try:
        pl = Placement.from_dict(manifest["placement"])
    except ExportError as e:
        raise _bad(root, str(e)) from None
    _validate(root, manifest, params)
    try:
        hostmod.HostProgram(manifest, params)
    except ExportError as e:
        raise _bad(root, str(e)) from None
    return Package(root, manifest, params, pl)


def _param(root: Path, p: dict, key: str, shape: tuple, kind: str, what: str) -> np.ndarray:
    a = p.get(key)
    if a is None:
        raise _bad(root, f"{what}: parameter {key} missing from params")
    if a.shape != shape or a.dtype.kind not in kind:
        raise _bad(root, f"{what}: {key} is {a.dtype} {a.shape}, expected {shape} of kind {kind!r}")
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        raise _bad(root, f"{what}: {key} contains NaN or Inf")
    return a


NEURON_KINDS = {"ternary_lif": ("dv", "du", "gain"), "subtract": ("dv", "gain"), "cuba_onoff": ("dv", "gain")}


def _validate(root: Path, m: dict, p: dict[str, np.ndarray]) -> None:
    import h5py

    if m["target"] not in TARGETS:
        raise _bad(root, f"target {m['target']!r}")
    host = m["host"]
    if host["format"] not in ("float64", "q16") or host["format"] != m["options"]["host"]:
        raise _bad(root, f"host format {host['format']!r}")
    real = "f" if host["format"] == "float64" else "i"
    delay = m["time"]["chain_latency_steps"]
    if delay not in (1, 2) or m["readout"] not in ("sigma", "cuba_state"):
        raise _bad(root, f"readout {m['readout']!r} with chain latency {delay}")
    M = len(m["chains"])
    if not M:
        raise _bad(root, "no chains")
    for c, ch in enumerate(m["chains"]):
        name, n = ch["population"], ch["n"]
        what = f"chain {name}"
        if n < 1 or ch["neuron"] not in NEURON_KINDS or ch["transport"] not in ("graded", "onoff"):
            raise _bad(root, f"{what}: n={n}, neuron {ch['neuron']!r}, transport {ch['transport']!r}")
        if set(ch["params"]) != set(NEURON_KINDS[ch["neuron"]]):
            raise _bad(root, f"{what}: parameters {sorted(ch['params'])}, expected {list(NEURON_KINDS[ch['neuron']])}")
        shared = ch["neuron"] in ("ternary_lif", "cuba_onoff")  # one decay per process
        for k in ("dv", "du"):
            if k in ch["params"]:
                d = _param(root, p, ch["params"][k], (1 if shared else n,), "i", what)
                if d.min() < 0 or d.max() > 4095:
                    raise _bad(root, f"{what}: {k} outside the 12-bit range 0..4095")
        _param(root, p, ch["params"]["gain"], (n,), real, what)
        if not 1 <= ch["x_bits"] <= 24 or not 1 <= ch["vth"] < (1 << 17):
            raise _bad(root, f"{what}: x_bits {ch['x_bits']} or vth {ch['vth']} out of range")
        cols = 2 * n if ch["transport"] == "onoff" else n
        rows = sum(o["rows"] for o in ch["outputs"])
        w = _param(root, p, ch["weight"], (rows, cols), "i", what)
        if list(w.shape) != ch["weight_shape"] or not np.isin(w, (-1, 0, 1)).all():
            raise _bad(root, f"{what}: weight {w.shape} with values outside {{-1, 0, 1}} or not {ch['weight_shape']}")
        off = 0
        for o in ch["outputs"]:
            if o["offset"] != off or o["encoding"] not in ("split", "sign") or \
                    o["rows"] != (2 if o["encoding"] == "split" else 1) * o["out_features"]:
                raise _bad(root, f"{what}: output {o['node']} rows {o['offset']}+{o['rows']} do not tile the weight")
            off += o["rows"]
            for k in ("scale_pos", "scale_neg"):
                _param(root, p, o[k], (o["out_features"],), real, what)
        path = (root / ch["net_file"]).resolve()
        if root.resolve() not in path.parents:
            raise _bad(root, f"{what}: net_file {ch['net_file']!r} is outside the package")
        try:
            with h5py.File(path, "r") as f:
                kinds = [bytes(f[f"layer/{i}/type"][0]).rstrip(b"\0").decode() for i in range(len(f["layer"]))]
                net_w = np.asarray(f[f"layer/{len(kinds) - 1}/weight"][()])
        except (OSError, KeyError, ValueError, TypeError, IndexError, UnicodeDecodeError) as e:
            raise _bad(root, f"{ch['net_file']}: not a readable netx chain file ({type(e).__name__})") from None
        if kinds != ch["net_layers"] or net_w.shape != w.shape:
            raise _bad(root, f"{ch['net_file']}: layers {kinds} weight {net_w.shape}; the manifest says "
                             f"{ch['net_layers']} {tuple(w.shape)}")
    _validate_dataflow(root, m, p)


# per op type: (array field -> shape as a function of (input widths, output width)), the state fields
_OP_ARRAYS = {
    "LayerNorm": {"weight": lambda i, o: (o,), "bias": lambda i, o: (o,)},
    "ShiftMix": {"mu": lambda i, o: (o,)},
    "Scale": {"scale": lambda i, o: (o,)},
    "WKV": {"time_decay": lambda i, o: (o,), "time_first": lambda i, o: (o,), "w": lambda i, o: (o,),
            "u": lambda i, o: (o,)},
    "Dense": {"weight": lambda i, o: (o, i[0])},
    "TernaryDense": {"sign": lambda i, o: (o, i[0]), "scale_pos": lambda i, o: (o,), "scale_neg": lambda i, o: (o,)},
}
_OP_INPUTS = {"TokenInput": 0, "Embedding": 1, "LayerNorm": 1, "ShiftMix": 1, "Scale": 1, "Sigmoid": 1,
              "ReLUSquare": 1, "Mul": 2, "Add": 2, "WKV": 2, "Dense": 1, "TernaryDense": 1, "Output": 1}


def _validate_op(root: Path, op: dict, p: dict[str, np.ndarray], widths: dict, states: dict) -> None:
    """One host op: known type, input count, widths known and consistent, arrays of the right shape,
    states declared with the op's width."""
    name, t = op["name"], op["type"]
    if t not in _OP_INPUTS or len(op["inputs"]) != _OP_INPUTS[t]:
        raise _bad(root, f"host op {name}: type {t!r} with {len(op['inputs'])} input(s) is not a host op")
    unknown = [i for i in [*op["inputs"], name] if not isinstance(widths.get(i), int)]
    if unknown:
        raise _bad(root, f"host op {name}: width of {unknown[0]} unknown")
    ins, out = [widths[i] for i in op["inputs"]], widths[name]
    if t in ("LayerNorm", "ShiftMix", "Scale", "Sigmoid", "ReLUSquare", "Mul", "Add", "WKV", "Output") and \
            any(w != out for w in ins):
        raise _bad(root, f"host op {name}: input widths {ins} do not match its width {out}")
    for field_, shape in _OP_ARRAYS.get(t, {}).items():
        if field_ in op["arrays"]:
            a = p[op["arrays"][field_]]
            if a.shape != shape(ins, out) or a.dtype.kind not in "iuf":
                raise _bad(root, f"host op {name}: {field_} is {a.dtype} {a.shape}, expected {shape(ins, out)}")
    if t == "Embedding":
        a = p.get(op["arrays"].get("weight", ""))
        if a is None or a.ndim != 2 or a.shape[1] != out:
            raise _bad(root, f"host op {name}: embedding weight missing or not (V, {out})")
    for f in ("state", "state_a", "state_b", "state_p"):
        st = op["fields"].get(f) if t in ("ShiftMix", "WKV") else None
        if st is None and t in ("ShiftMix", "WKV") and (f == "state") == (t == "ShiftMix"):
            raise _bad(root, f"host op {name}: no {f}")
        if st is not None and (st not in states or states[st].get("width") != out):
            raise _bad(root, f"host op {name}: state {st!r} not declared with width {out}")


def _validate_dataflow(root: Path, m: dict, p: dict[str, np.ndarray]) -> None:
    """Walk the segments as the host would: every input an op, a population or the carry names
    must exist at that point."""
    host, chains = m["host"], m["chains"]
    M = len(chains)
    if len(host["carry"]) != M:
        raise _bad(root, f"host carry lists {len(host['carry'])} boundaries, expected {M}")
    seg_ops: list[list[dict]] = [[] for _ in range(M + 1)]
    for op in host["ops"]:
        if not 0 <= op["segment"] <= M:
            raise _bad(root, f"host op {op['name']}: segment {op['segment']} outside 0..{M}")
        for k, key in op["arrays"].items():
            if not isinstance(key, str) or key not in p:
                raise _bad(root, f"host op {op['name']}: array {key!r} missing from params")
        seg_ops[op["segment"]].append(op)
    for k, v in host["value_widths"].items():
        if not isinstance(v, int) or v < 1:
            raise _bad(root, f"host value width of {k}: {v!r}")
    for k, v in host["states"].items():
        if not isinstance(v, dict) or not isinstance(v.get("width"), int) or not isinstance(v.get("init"), _NUM):
            raise _bad(root, f"host state {k}: expected {{width, init}}")
    widths = host["value_widths"]
    for op in host["ops"]:
        _validate_op(root, op, p, widths, host["states"])
    avail: set[str] = set()
    for c in range(M + 1):
        have = set(avail) | ({o["node"] for o in chains[c - 1]["outputs"]} if c else set())
        for op in seg_ops[c]:
            missing = [i for i in op["inputs"] if i not in have]
            if missing:
                raise _bad(root, f"host op {op['name']} (segment {c}) reads {missing[0]}, which is not available there")
            have.add(op["name"])
        if c < M:
            if chains[c]["input"] not in have:
                raise _bad(root, f"chain {chains[c]['population']}: its input {chains[c]['input']} is not computed "
                                 f"before it")
            missing = [v for v in host["carry"][c] if v not in have or v not in host["value_widths"]]
            if missing:
                raise _bad(root, f"host carry after segment {c} names {missing[0]}, which is not available there")
            avail = set(host["carry"][c])
        elif host["output"] not in have:
            raise _bad(root, f"host output {host['output']} is not computed")
