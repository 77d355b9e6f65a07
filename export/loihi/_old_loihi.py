"""Loihi / Loihi 2 package: fixed-point quantization of the IR, netx chains, manifest, resources.

``export_loihi(graph, out_dir, target)`` writes (atomically, nothing half-written)::

    OUT/manifest.json      versioned wiring of the whole network (format goose-neuro-loihi v1)
    OUT/params.npz         every integer parameter (host ops, populations, chain weights, exp2 table)
    OUT/chains/<name>.net  one lava-dl netx HDF5 file per spiking chain (dense synapses + readout)
    OUT/quantization.json  every rounding and clamp with its size
    OUT/resources.json/.md resource estimate checked against hardware_profiles/<target>.yaml

What runs where (the design; exact equations in :mod:`goose_neuro.export.int_ref`):

* A *chain* is one spiking population, the ternary synapses it feeds, and a readout compartment
  per synapse row. The synapses plus readout are a netx ``dense`` layer (CUBA readout with
  ``iDecay = 4096, vDecay = 4096``, so ``v = counts << 6`` each step, read by the host). Weights
  are written as integers in {-1, 0, +1}; netx's ``optimize_weight_bits`` turns them into
  mantissa +-128 with weight exponent -7, i.e. exactly +-1 (lava-dl 0.6.0 ``netx/utils.py``).
  Asymmetric TTQ scales stay exact: each projection has a row block for P (+1) and one for
  N (-1), and the host applies ``scale_pos``/``scale_neg`` to the two counts.
* Loihi 2 (``loihi2``): the population is a programmable neuron (``ternary_sub``): the student's
  LIF with subtract reset and per-neuron 12-bit decay; its spikes are signed graded payloads
  (+-1, 2 message bits).
* Loihi 1 (``loihi``): binary spikes only, and no neuron model with subtract reset and ternary
  output. By default (``population="host"``) the student's integer neuron runs on the host and
  its spikes enter the cores as ON/OFF pairs (2n binary axons, +w/-w synapses): the synapses
  stay on cores, the neuron updates move to the host. ``population="core"`` instead maps each
  population to an ON/OFF pair of CUBA LIF compartments (bias ``[x, -x]``); CUBA resets to
  zero and lava's ``LIF`` has one ``dv`` per process (the population median), so this is an
  approximation of the student's neuron, and the check reports its cost on real text.
* Everything else (embedding, LayerNorm, token shift, WKV, sigmoid, relu^2, gating, residual adds,
  head) runs on the host and is listed in the manifest with its per-token cost: in float64 on a
  host CPU (``host="float64"``, the default) or in int64 Q16 fixed point on an integer-only
  embedded CPU (``host="q16"``). Per-neuron thresholds fold into the host's input gain, so every
  population has one threshold mantissa ``2^frac_bits``.

Why float64 is the default: the float model is chaotic at the scale of fixed-point rounding.
Noise of 1e-5 to 1e-4 x threshold on the LIF inputs of a trained ``small`` student flips thousands
of spikes over 512 tokens and moves 1-9% of the next-token argmaxes
(``benchmarks/neuron_sensitivity.py``); a Q16 host gives 87-92% agreement. With a float64 host,
the package's only roundings are the neurons' own (12-bit decay, input mantissa, 24-bit state),
and the PyTorch model can run those same fixed-point neurons (``ASNNGoose.set_fixed_point``), so
the two agree spike for spike.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from goose_neuro.errors import ExportError
from goose_neuro.export import int_ref
from goose_neuro.export.int_ref import FRAC, MANIFEST_FORMAT, MANIFEST_VERSION

TARGETS = ("loihi", "loihi2")
VTH_MANT_MAX = (1 << 17) - 1  # 17-bit unsigned threshold mantissa (lava LIF models)
DECAY_MAX = 4095  # 12-bit dv (dm_offset = 0 in lava's fixed-point LIF)
X_BITS = {"loihi": 13, "loihi2": 18}  # Loihi 1: 13-bit bias mantissa; Loihi 2: graded payload, bounded by the 24-bit state (x << 6)
ROLES = ("tm.lif_in", "tm.lif_out", "cm.lif_in", "cm.lif_hid")
DEFAULT_FRAC_BITS = {"loihi": 8, "loihi2": 11}  # threshold mantissa bits (x headroom: 16 / 32 thresholds)


class _Report:
    """Collects every rounding/clamp: name -> {kind, count, max_abs_error, max_rel_error}."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}

    def rounding(self, name: str, exact: np.ndarray, stored: np.ndarray, scale: float) -> None:
        exact = np.asarray(exact, dtype=np.float64)
        err = np.abs(np.asarray(stored, dtype=np.float64) / scale - exact)
        rel = err / np.maximum(np.abs(exact), 1e-30)
        self.items[name] = {"kind": "rounding", "count": int(exact.size),
                            "max_abs_error": float(err.max(initial=0.0)),
                            "max_rel_error": float(rel.max(initial=0.0))}

    def runtime(self, name: str, count: int, max_abs_error: float, note: str) -> None:
        """A rounding that happens while the package runs (its size is known in advance)."""
        self.items[name] = {"kind": "runtime_rounding", "count": int(count),
                            "max_abs_error": float(max_abs_error), "note": note}

    def clamp(self, name: str, count: int, size: float, note: str) -> None:
        if count:
            self.items[name] = {"kind": "clamp", "count": int(count), "max_abs_error": float(size), "note": note}


def _q(x: np.ndarray, bits: int = FRAC, name: str = "", rep: _Report | None = None,
       limit_bits: int = 47) -> np.ndarray:
    """round(x * 2^bits) as int64; refuses values that do not fit ``limit_bits``."""
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ExportError(f"{name}: contains NaN or Inf, cannot be represented in fixed point")
    scaled = np.round(x * (1 << bits))
    if np.abs(scaled).max(initial=0.0) >= float(1 << limit_bits):
        raise ExportError(f"{name}: |value| up to {np.abs(x).max():.3g} does not fit "
                          f"{limit_bits}-bit fixed point with {bits} fractional bits")
    q = scaled.astype(np.int64)
    if rep is not None:
        rep.rounding(name, x, q, float(1 << bits))
    return q


def _node(graph, name: str, typ: str):
    node = graph.nodes.get(name)
    if node is None or node.type != typ:
        raise ExportError(f"IR node {name!r} ({typ}) missing: the Loihi exporter expects the "
                          f"ASNN-Goose block layout (see docs/TEAM_CONTRACT.md, IR)")
    return node


def _consumers(graph, src: str) -> dict[str, Any]:
    return {n: node for n, node in graph.nodes.items() if src in node.inputs}


def _check_supported(graph) -> None:
    types = {n.type for n in graph.nodes.values()}
    if "Scale" in types:
        raise ExportError("per-channel spike amplitudes (amplitude_mode='channel') make graded synapse "
                          "inputs; the Loihi exporter supports amplitude_mode='shared' only")
    lifs = graph.of_type(_ir().LIF)
    if not lifs:
        raise ExportError("the model has no spiking populations (spike_mode='none'): nothing to map "
                          "onto neuromorphic cores; export ONNX instead")
    bad = sorted(n for n, node in lifs.items() if node.mode != "ternary")
    if bad:
        raise ExportError(f"LIF {bad[0]} has mode {lifs[bad[0]].mode!r}; the Loihi exporter supports "
                          f"ternary populations only")


def _ir():
    from goose_neuro.export import ir

    return ir


# -- populations and chains --------------------------------------------------------------------
RUNS_ON = {
    "ternary_sub": "Loihi 2 programmable neuron (ternary LIF, subtract reset, graded +-1 spikes)",
    "cuba_onoff": "neuromorphic core (CUBA LIF, ON/OFF pair of binary compartments)",
    "host_onoff": "host (embedded CPU): the student's ternary LIF, spikes injected as ON/OFF pairs",
}


def _population(graph, name: str, target: str, frac_bits: int, params: dict, rep: _Report,
                population: str = "core", host: str = "float64") -> dict:
    lif = _node(graph, name, "LIF")
    beta = np.asarray(lif.beta, dtype=np.float64)
    th = np.asarray(lif.threshold, dtype=np.float64)
    n = beta.shape[0]
    vth = 1 << frac_bits
    if vth > VTH_MANT_MAX:
        raise ExportError(f"frac_bits={frac_bits}: threshold mantissa 2^{frac_bits} exceeds the 17-bit "
                          f"limit {VTH_MANT_MAX}; use frac_bits <= 16")
    kind = "ternary_sub" if target == "loihi2" else ("host_onoff" if population == "host" else "cuba_onoff")
    x_bits = X_BITS["loihi2"] if kind == "host_onoff" else X_BITS[target]  # host neurons: Loihi 2 widths
    if host == "float64":
        gain = 2.0 ** frac_bits / th  # float64: the host rounds each input to the nearest step
        rep.runtime(f"{name}.input", n, float(th.max()) / 2 ** (frac_bits + 1),
                    f"each token's input rounded half to even to a step of threshold / 2^{frac_bits}; "
                    f"inputs beyond the {x_bits}-bit "
                    f"mantissa are clamped (counted by the integer reference)")
    else:
        gain = _q(2.0 ** frac_bits / th, FRAC, f"{name}.gain", rep, limit_bits=40)
        rep.runtime(f"{name}.input", n, float(th.max()) / 2 ** frac_bits,
                    f"each token's Q16 input floored to a step of threshold / 2^{frac_bits}")
    if kind == "cuba_onoff":
        exact = np.full(n, float(np.median(beta)))
        rep.rounding(f"{name}.beta_shared", beta, np.round(exact * 4096), 4096.0)
    else:
        exact = beta
    keep = np.round(exact * 4096).astype(np.int64)
    dv = 4096 - keep
    over = dv > DECAY_MAX
    rep.clamp(f"{name}.dv", int(over.sum()), 1 / 4096, "beta < 1/8192 raised to 1/4096 (12-bit decay)")
    dv = np.minimum(dv, DECAY_MAX)
    rep.rounding(f"{name}.beta", beta, 4096 - dv, 4096.0)
    params[f"{name}.dv"] = dv.astype(np.int64)
    params[f"{name}.gain"] = gain
    return {"node": name, "n": n, "kind": kind, "vth_mant": vth,
            "x_bits": x_bits,
            "frac_bits": frac_bits, "bias_exp": 6, "du": 4095,
            "compartments": {"cuba_onoff": 2 * n, "ternary_sub": n, "host_onoff": 0}[kind],
            "spike_message_bits": 2 if kind == "ternary_sub" else 0,  # graded signed +-1, or binary ON/OFF
            "runs_on": RUNS_ON[kind],
            "distinct_decays": int(np.unique(dv).size)}


def _chain(graph, name: str, target: str, params: dict, rep: _Report, host: str = "float64") -> tuple[dict, np.ndarray]:
    """Chain weight (rows [P; -N] per projection, ON/OFF-expanded on Loihi 1) and scales."""
    blocks, outputs, off = [], {}, 0
    for cname, node in _consumers(graph, name).items():
        if node.type != "TernaryDense":
            raise ExportError(f"{cname} ({node.type}) reads spikes of {name}; only TernaryDense can")
        proj = cname.rsplit(".", 1)[-1]
        P, N = node.pos.astype(np.int8), node.neg.astype(np.int8)
        m = P.shape[0]
        if target == "loihi":
            blocks += [np.hstack([P, -P]), np.hstack([-N, N])]
        else:
            blocks += [P, -N]
        outputs[proj] = [off, m]
        off += 2 * m
        key = f"{name}.{proj}"
        if host == "float64":
            params[key + ".sp"] = np.asarray(node.scale_pos, dtype=np.float64)
            params[key + ".sn"] = np.asarray(node.scale_neg, dtype=np.float64)
        else:
            params[key + ".sp"] = _q(node.scale_pos, FRAC, key + ".scale_pos", rep, limit_bits=31)
            params[key + ".sn"] = _q(node.scale_neg, FRAC, key + ".scale_neg", rep, limit_bits=31)
    if not blocks:
        raise ExportError(f"population {name} feeds no synapse")
    w = np.vstack(blocks).astype(np.int8)
    if not w.any():
        raise ExportError(f"{name}: every synapse weight is 0; netx cannot derive a weight exponent "
                          f"for an all-zero matrix (lava-dl netx utils.optimize_weight_bits)")
    params[f"{name}.weight"] = w
    return outputs, w


def _host_params_f64(graph, params: dict) -> None:
    """Host parameters as float64 (host_format 'float64'): nothing is rounded."""
    ir = _ir()
    f64 = lambda a: np.asarray(a, dtype=np.float64)  # noqa: E731
    params["emb"] = f64(_node(graph, "emb", "Embedding").weight)
    lns = graph.of_type(ir.LayerNorm)
    eps = {float(n.eps) for n in lns.values()}
    if len(eps) != 1:
        raise ExportError(f"LayerNorm eps differ across layers ({sorted(eps)}); one eps is supported")
    params["ln_eps"] = np.float64(eps.pop())
    for lname, node in lns.items():
        params[lname + ".gamma"], params[lname + ".beta"] = f64(node.weight), f64(node.bias)
    for sname, node in graph.of_type(ir.ShiftMix).items():
        params[sname.rsplit(".", 1)[0] + ".mu"] = f64(node.mu)
    for wname, node in graph.of_type(ir.WKV).items():
        pre = wname.rsplit(".", 1)[0]
        params[pre + ".w"], params[pre + ".u"] = -np.exp(f64(node.time_decay)), f64(node.time_first)
    head = graph.nodes.get("head")
    if head is None or head.type not in ("Dense", "TernaryDense"):
        raise ExportError("IR node 'head' (Dense or TernaryDense) missing")
    params["head.w"] = f64(head.weight if head.type == "Dense" else head.float_weight())
    for k, v in params.items():
        if v.dtype.kind == "f" and not np.all(np.isfinite(v)):
            raise ExportError(f"{k}: contains NaN or Inf")


def _host_params(graph, params: dict, rep: _Report) -> None:
    ir = _ir()
    emb = _node(graph, "emb", "Embedding")
    params["emb"] = _q(emb.weight, FRAC, "emb", rep, limit_bits=31)
    lns = graph.of_type(ir.LayerNorm)
    eps = {float(n.eps) for n in lns.values()}
    if len(eps) != 1:
        raise ExportError(f"LayerNorm eps differ across layers ({sorted(eps)}); one eps is supported")
    params["ln_eps_q32"] = np.int64(max(1, round(eps.pop() * 2.0**32)))
    for lname, node in lns.items():
        params[lname + ".gamma"] = _q(node.weight, FRAC, lname + ".weight", rep, limit_bits=31)
        params[lname + ".beta"] = _q(node.bias, FRAC, lname + ".bias", rep, limit_bits=31)
    for sname, node in graph.of_type(ir.ShiftMix).items():
        params[sname.rsplit(".", 1)[0] + ".mu"] = _q(node.mu, FRAC, sname + ".mu", rep, limit_bits=31)
    for wname, node in graph.of_type(ir.WKV).items():
        pre = wname.rsplit(".", 1)[0]
        params[pre + ".w"] = _q(-np.exp(np.asarray(node.time_decay, np.float64)), FRAC, wname + ".w", rep, 39)
        params[pre + ".u"] = _q(node.time_first, FRAC, wname + ".time_first", rep, limit_bits=39)
    head = graph.nodes.get("head")
    if head is None or head.type not in ("Dense", "TernaryDense"):
        raise ExportError("IR node 'head' (Dense or TernaryDense) missing")
    w = head.weight if head.type == "Dense" else head.float_weight()
    w = np.asarray(w, dtype=np.float64)
    peak = float(np.abs(w).max(initial=0.0)) or 1.0
    shift = int(min(30, max(0, 15 - math.ceil(math.log2(peak)))))
    params["head.w"] = _q(w, shift, "head.weight", rep, limit_bits=16)
    params["head.shift"] = np.int64(shift)
    params["exp2_table"] = np.round(2.0 ** (np.arange(257) / 256.0) * (1 << FRAC)).astype(np.int64)
    params["log2e_q16"] = np.int64(round(math.log2(math.e) * (1 << FRAC)))


# -- host op list with costs -------------------------------------------------------------------
HOST_RUNS_ON = {"float64": "host CPU, IEEE float64", "q16": "host (embedded CPU), int64 Q16"}


def _host_ops(graph, chains: list[dict], host: str = "float64") -> list[dict]:
    """Every IR node that does not run on cores, with where it runs and ops per token."""
    on_core = set()
    for ch in chains:
        on_core.add(ch["population"]["node"])
        on_core.update(f"{ch['name'].rsplit('.', 1)[0]}.{p}" for p in ch["outputs"])
    widths = graph.widths()
    cost = {"Embedding": lambda n, w: {"lookups": w}, "LayerNorm": lambda n, w: {"int_ops": 8 * w},
            "ShiftMix": lambda n, w: {"int_mul": 2 * w, "int_add": w},
            "WKV": lambda n, w: {"int_ops": 30 * w, "exp_lut": 4 * w, "int_div": w},
            "Sigmoid": lambda n, w: {"exp_lut": w, "int_div": w},
            "ReLUSquare": lambda n, w: {"int_mul": w}, "Mul": lambda n, w: {"int_mul": w},
            "Add": lambda n, w: {"int_add": w},
            "Dense": lambda n, w: {"int_mac": int(np.prod(n.weight.shape))},
            "TernaryDense": lambda n, w: {"int_mac": int(np.prod(n.sign.shape))}}
    ops = []
    for name, node in graph.nodes.items():
        if name in on_core or node.type in ("TokenInput", "Output"):
            continue
        f = cost.get(node.type)
        if f is None:
            raise ExportError(f"IR node {name} ({node.type}) has no Loihi mapping")
        c = f(node, widths[name])
        if host == "float64":  # the same op counts, as float64 operations
            c = {k.replace("int_", "fp64_").replace("exp_lut", "fp64_exp"): v for k, v in c.items()}
        ops.append({"name": name, "op": node.type, "runs_on": HOST_RUNS_ON[host],
                    "inputs": list(node.inputs), "cost_per_token": c})
    return ops


# -- public API --------------------------------------------------------------------------------------
def quantize(graph, target: str, frac_bits: int | None = None, population: str | None = None,
             host: str = "float64") -> tuple[dict, dict, dict]:
    """IR graph -> (manifest, params {name: array}, quantization report).

    ``population`` (Loihi 1; default ``host``): ``host`` runs the student's integer neuron on
    the host and injects its spikes as ON/OFF pairs into the cores' synapses; ``core`` maps each
    ternary population to CUBA ON/OFF compartments (an approximation: reset to zero, one decay
    per population, measured about 6% worse perplexity). Loihi 2 runs the student's neuron on
    its programmable cores (``core``, the only choice).
    ``host``: number format of the host-side ops, ``float64`` (a host CPU) or ``q16`` (int64
    fixed point for an integer-only embedded CPU; see :mod:`goose_neuro.export.int_ref`)."""
    if target not in TARGETS:
        raise ExportError(f"unknown Loihi target {target!r}; choose one of {', '.join(TARGETS)}")
    if host not in int_ref.HOST_FORMATS:
        raise ExportError(f"host={host!r}: choose one of {', '.join(int_ref.HOST_FORMATS)}")
    if population is None:
        population = "host" if target == "loihi" else "core"
    if population not in ("core", "host") or (population == "host" and target != "loihi"):
        raise ExportError(f"population={population!r}: use 'core', or 'host' with target loihi "
                          f"(Loihi 2 runs the exact neuron on its programmable cores)")
    if frac_bits is None:  # host neurons are not limited by Loihi 1's 13-bit bias
        frac_bits = DEFAULT_FRAC_BITS["loihi2" if population == "host" else target]
    if not isinstance(frac_bits, int) or isinstance(frac_bits, bool) or not 1 <= frac_bits <= 16:
        raise ExportError(f"frac_bits={frac_bits!r}: threshold mantissa 2^frac_bits must fit 17 bits "
                          f"(1 <= frac_bits <= 16)")
    _check_supported(graph)
    cfg = dict(graph.meta.get("model_config", {}))
    L = int(cfg.get("n_layers", 0))
    rep, params, chains = _Report(), {}, []
    for i in range(L):
        for role in ROLES:
            name = f"L{i}.{role}"
            pop = _population(graph, name, target, frac_bits, params, rep, population, host)
            outputs, w = _chain(graph, name, target, params, rep, host)
            chains.append({"name": name, "net_file": f"chains/{name}.net", "population": pop,
                           "outputs": outputs, "weight_shape": list(w.shape),
                           "net_layers": ["input", "dense"] if pop["kind"] == "cuba_onoff" else ["dense"],
                           "synapses": int(np.count_nonzero(w)),
                           "readout": {"neuron": "CUBA", "iDecay": 4096, "vDecay": 4096,
                                       "vThMant": VTH_MANT_MAX, "value": "v >> 6 = counts of the "
                                       "previous step"}})
    if host == "float64":
        _host_params_f64(graph, params)
    else:
        _host_params(graph, params, rep)
    manifest = {
        "format": MANIFEST_FORMAT, "format_version": MANIFEST_VERSION, "target": target,
        "host_format": host,
        "model": {"vocab_size": int(cfg.get("vocab_size", 0)), "d_model": int(cfg.get("d_model", 0)),
                  "n_layers": L, "d_ffn": chains[3]["population"]["n"] if chains else 0,
                  "spike_mode": cfg.get("spike_mode")},
        "params_file": "params.npz",
        "number_formats": {"host": "int64, Q16 (16 fractional bits), floor shifts and divisions"
                           if host == "q16" else "IEEE float64; population inputs rounded half to even "
                           "to integer mantissas",
                           "neuron_state": "24-bit, units of 2^-6 of a mantissa step",
                           "population_input": f"{X_BITS[target]}-bit signed mantissa, threshold "
                                               f"mantissa 2^{frac_bits}", "weights": "{-1,0,+1}, exponent 0"},
        "time": {"lava_steps_per_token": 1, "chain_latency_steps": 1,
                 "schedule": "pipelined: chain c handles token t at step t + 1 + c; its synapse output "
                             "reaches the host ops before chain c + 1 at step t + 2 + c (dense synapses "
                             "deliver one step later); logits of token t at step t + 1 + chains"},
        "chains": chains,
        "host_ops": _host_ops(graph, chains, host),
        "source": {k: graph.meta.get(k) for k in ("export_version", "checkpoint", "tokenizer")},
    }
    return manifest, params, rep.items


def export_loihi(graph, out_dir: str | os.PathLike, target: str, **opts: Any) -> Path:
    """Quantize ``graph`` for ``target`` ('loihi' or 'loihi2') and write the package to ``out_dir``
    (replaced atomically). Options: ``population`` ('core' or, for Loihi 1, 'host'; see
    :func:`quantize`), ``host`` ('float64' or 'q16': the host ops' number format) and ``frac_bits`` (threshold mantissa bits; default 8 for Loihi,
    whose 13-bit bias then holds 16 thresholds, and 11 for Loihi 2's 16-bit input)."""
    from goose_neuro.export.netx_writer import write_net
    from goose_neuro.fileio import atomic_dir, atomic_write_json

    unknown = sorted(set(opts) - {"frac_bits", "population", "host"})
    if unknown:
        raise ExportError(f"unknown Loihi export option(s): {', '.join(unknown)} (known: frac_bits, "
                          f"population, host)")
    manifest, params, qrep = quantize(graph, target, **opts)
    res = resource_report(manifest, target)
    manifest["resources_summary"] = res["summary"]
    with atomic_dir(out_dir) as tmp:
        (tmp / "chains").mkdir()
        for ch in manifest["chains"]:
            pop = ch["population"]
            cuba = None if pop["kind"] != "cuba_onoff" else {
                "n": pop["compartments"], "dv": int(params[ch["name"] + ".dv"][0]), "vth": pop["vth_mant"]}
            write_net(tmp / ch["net_file"], params[ch["name"] + ".weight"], target == "loihi2", cuba)
        np.savez(tmp / "params.npz", **params)
        atomic_write_json(tmp / "quantization.json", qrep)
        atomic_write_json(tmp / "resources.json", res)
        (tmp / "resources.md").write_text(resource_markdown(res), encoding="utf-8")
        atomic_write_json(tmp / "manifest.json", manifest)
    return Path(out_dir)


def load_int_model(out_dir: str | os.PathLike) -> int_ref.IntModel:
    """The integer reference of an exported package (raises ExportError if unreadable)."""
    import zipfile

    try:
        return int_ref.IntModel.load(out_dir)
    except (OSError, KeyError, ValueError, TypeError, AttributeError, IndexError, EOFError,
            zipfile.BadZipFile) as e:  # any damage to manifest.json / params.npz is bad input
        raise ExportError(f"{out_dir}: not a readable Loihi package ({type(e).__name__}: {e})") from None


# -- resource estimate -------------------------------------------------------------------------
def _limits(target: str) -> tuple[dict[str, float], str]:
    """Limits from hardware_profiles/<target>.yaml through goose_neuro.hardware_profiles."""
    from goose_neuro.hardware_profiles import load_profile

    prof = load_profile(target)
    return {k: float(f.value) for k, f in prof.limits.items()}, prof.path or target


def _cores(neurons: int, syn_bytes: float, fan_in: int, lim: dict[str, float]) -> int:
    """Cores for one group: enough for its neurons, its synaptic memory and its input axons."""
    need = [math.ceil(neurons / lim["neurons_per_core"])] if "neurons_per_core" in lim else [1]
    if "synaptic_memory_per_core" in lim:
        need.append(math.ceil(syn_bytes / lim["synaptic_memory_per_core"]))
    if "fan_in_axons_per_core" in lim:
        need.append(math.ceil(fan_in / lim["fan_in_axons_per_core"]))
    return max(1, *need)


def resource_report(manifest: dict, target: str) -> dict:
    """Neurons, synapses, memory, fan-in/out, cores and chips (an ESTIMATE: real placement is done
    by Intel's closed compiler) plus the share of per-token operations on cores vs host."""
    lim, src = _limits(target)
    wbits = lim.get("weight_bits", 8)
    groups, core_ops, host_pop_ops = [], 0, 0
    for ch in manifest["chains"]:
        pop, rows = ch["population"], ch["weight_shape"][0]
        syn_bytes = ch["synapses"] * wbits / 8
        if pop["compartments"]:
            groups.append({"name": ch["name"] + " (population)", "neurons": pop["compartments"],
                           "synapses": 0, "fan_in": 1, "fan_out": rows,
                           "cores": _cores(pop["compartments"], 0, 1, lim)})
        groups.append({"name": ch["name"] + " (synapses + readout)", "neurons": rows,
                       "synapses": ch["synapses"], "synaptic_memory_bytes": syn_bytes,
                       "fan_in": ch["weight_shape"][1], "fan_out": 0,
                       "cores": _cores(rows, syn_bytes, ch["weight_shape"][1], lim)})
        core_ops += ch["synapses"] + pop["compartments"] + rows
        host_pop_ops += 4 * pop["n"] if pop["kind"] == "host_onoff" else 0
    host_ops = host_pop_ops + sum(sum(op["cost_per_token"].values()) for op in manifest["host_ops"])
    neurons = sum(g["neurons"] for g in groups)
    synapses = sum(g["synapses"] for g in groups)
    cores = sum(g["cores"] for g in groups)
    chips = math.ceil(cores / lim.get("cores_per_chip", 128))
    checks = {"neurons_per_chip": neurons / chips <= lim.get("neurons_per_chip", float("inf")),
              "synapses_per_chip": synapses / chips <= lim.get("synapses_per_chip", float("inf")),
              "fan_in_per_core": max(g["fan_in"] for g in groups) <= lim.get("fan_in_axons_per_core", float("inf"))}
    summary = {"estimate": True, "target": target, "neurons": neurons, "synapses": synapses,
               "synaptic_memory_bytes": sum(g.get("synaptic_memory_bytes", 0) for g in groups),
               "cores": cores, "chips": chips, "fits": all(checks.values()),
               "ops_per_token_on_cores_max": core_ops, "ops_per_token_host": host_ops,
               "on_core_share_of_ops": core_ops / max(1, core_ops + host_ops),
               "on_core_share_of_ir_nodes": _node_share(manifest)}
    return {"summary": summary, "groups": groups, "checks": checks, "limits": lim, "limits_source": src,
            "note": "ESTIMATE from hardware profile limits; the real placement is done by Intel's closed "
                    "compiler. Core ops count every synapse once per token (all inputs spiking: an upper "
                    "bound) plus one update per compartment; host ops are integer ops of the host list."}


def _node_share(manifest: dict) -> float:
    n_core = sum(1 + len(ch["outputs"]) for ch in manifest["chains"])
    return n_core / max(1, n_core + len(manifest["host_ops"]))


def resource_markdown(res: dict) -> str:
    s = res["summary"]
    lines = [f"# Resource estimate: {s['target']} (ESTIMATE, not a placement)", "", res["note"], "",
             f"- neurons (compartments): {s['neurons']}", f"- synapses: {s['synapses']}",
             f"- synaptic memory: {s['synaptic_memory_bytes']:.0f} bytes",
             f"- cores: {s['cores']}, chips: {s['chips']}, fits the profile limits: {s['fits']}",
             f"- on-core share of per-token ops: {100 * s['on_core_share_of_ops']:.1f}% "
             f"(nodes: {100 * s['on_core_share_of_ir_nodes']:.1f}%)", "",
             "| group | neurons | synapses | fan-in | fan-out | cores |", "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {g['name']} | {g['neurons']} | {g['synapses']} | {g['fan_in']} | {g['fan_out']} | {g['cores']} |"
              for g in res["groups"]]
    lines += ["", f"Limits from {res['limits_source']}: " + ", ".join(f"{k}={v:g}" for k, v in res["limits"].items()
                                                               if k != "static_power_per_chip")]
    return "\n".join(lines) + "\n"
