"""One-call energy and sparsity estimates, for notebooks and the ``goose-energy`` CLI.

Example::

    from goose_neuro.energy import energy_report
    rep = energy_report("ckpt/", "test.txt", tokens=2048, profiles=["loihi2", "cmos45-int8"],
                        teacher="teachers/wp-gpt2-4L256", out_dir="report/")
    rep["profiles"]["loihi2"]["student"]["energy_pj_per_token"]

The returned dict is exactly what ``report.json`` holds (key layout in the README and
in :data:`REPORT_KEYS`).
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Sequence

from dataclasses import dataclass

from goose_neuro.energy.activity import ActivityProfile, profile_text
from goose_neuro.energy.baseline import PUBLISHED_THRESHOLDS, rate_model, twin_graph
from goose_neuro.energy.counts import GraphCounts, Precision, count_graph, events_by_node, layer_of
from goose_neuro.energy.estimate import energy_by_class, group_shares, host_for, price_table, total
from goose_neuro.energy.package import (TARGETS, default_placement, package_options, package_placement,
                                        parse_spec, placement_rate_model, placement_summary, price_placement,
                                        price_twin, spec_key)
from goose_neuro.hardware_profiles import MEM_CLASSES, OP_CLASSES, HardwareProfile, load_profile
from goose_neuro.energy.teacher_cost import GPT2Shape, teacher_cost, teacher_shape
from goose_neuro.errors import ExportError, GooseError, ProfileError
from goose_neuro.export.placement import Placement
from goose_neuro.tokenizer import load_tokenizer

REPORT_FORMAT = "goose-neuro-energy-report"
REPORT_VERSION = 1
DEFAULT_CONTEXTS = (128, 512, 1024)
#: Stable keys of report.json (documented in the README).
REPORT_KEYS = {
    "profiles.<name>.student.energy_pj_per_token": "student energy per token on that target (pJ)",
    "profiles.<name>.student.counts_per_token.<class>": "ops per token (memory classes: bits)",
    "profiles.<name>.student.energy_pj_by_class.<class>": "pJ per token per class",
    "profiles.<name>.teacher.<ctx>.energy_pj_per_token": "teacher per token at context ctx (pJ)",
    "profiles.<name>.teacher.<ctx>.counts_per_token.<class>": "teacher ops per token",
    "profiles.<name>.student_over_teacher.<ctx>": "student / teacher energy on the same target",
    "profiles.<name>.constants.<class>": "pJ, unit, how, source, confidence, note",
    "comparison.<ctx>.<name>": "student on <name> / teacher on the baseline",
    "profiles.<name>.dense_twin.energy_pj_per_token": "the same network with spike_mode none, same target (pJ)",
    "profiles.<name>.rate_model": "{e0_pj, slope_pj, measured_rate}: student energy E(r) = e0 + slope * r",
    "fair_baseline.teachers.<fp32|int8>.<ctx>": "teacher on cmos45-fp32 / cmos45-int8 (int8 weights and activations)",
    "fair_baseline.ratios.<name>": "student / int8 teacher, / fp32 teacher (per ctx), / dense twin",
    "fair_baseline.break_even.<name>": "firing rate where the student's energy meets each reference",
    "fair_baseline.published_thresholds": "break-even rates as published (Dampfhoffer 2023, Yan 2024)",
    "profiles.<key>.package": "Loihi targets: the placement priced (source, options, compartments, activity)",
    "profiles.<key>.student.by_where.<term>.energy_pj": "core, host, host_neuron, host_chip, spike_hops, static",
    "profiles.<key>.student.host_chip_share": "share of the student's energy spent on host-chip traffic",
}


@dataclass
class Deployment:
    """One report block: a profile, and for a Loihi target the placement priced with the activity of
    the neurons it runs (``activity`` None: the report's own activity)."""

    key: str
    profile: HardwareProfile
    placement: Placement | None = None
    source: str = ""
    options: dict | None = None
    activity: ActivityProfile | None = None
    activity_note: str = ""
    seconds_per_token: float | None = None
    note: str = ""  # why a Loihi target is priced without a placement


def _deployment(graph, prof: HardwareProfile, opts: dict) -> Deployment:
    """A profile with its options: a Loihi target gets the default placement of ``graph``."""
    if prof.name not in TARGETS:
        if opts:
            raise ProfileError(f"profile {prof.name!r}: placement options apply to Loihi targets "
                               f"({', '.join(TARGETS)}) only")
        return Deployment(prof.name, prof)
    source = ("default placement (goose-export defaults)" if not opts else
              f"placement with {', '.join(f'{k}={v}' for k, v in opts.items())} (goose-export --opt)")
    try:
        pl = default_placement(graph, prof.name, **opts)
    except ExportError as e:
        if opts:
            raise
        return Deployment(prof.name, prof, note=f"no {prof.name} package can be built from this model ({e}); it is "
                                                f"priced with the profile's class table, without a placement")
    return Deployment(spec_key(prof.name, opts), prof, pl, source, opts)


def _unique(deps: list[Deployment]) -> list[Deployment]:
    keys = [d.key for d in deps]
    if len(set(keys)) != len(keys):
        raise ProfileError(f"the same deployment is priced twice: {keys}")
    return deps


def resolve_targets(graph, profiles: Sequence[str | HardwareProfile | Deployment]) -> list[Deployment]:
    """Deployments for profile specs (``loihi``, ``loihi:population=core``, a .yaml path, a loaded
    profile): a Loihi target gets the default placement of ``graph`` (goose-export's)."""
    out = []
    for p in profiles:
        if isinstance(p, Deployment):
            out.append(p)
        elif isinstance(p, HardwareProfile):
            out.append(_deployment(graph, p, {}))
        else:
            name, opts = parse_spec(p)
            out.append(_deployment(graph, load_profile(name), opts))
    return _unique(out)


#: The two teachers of the fair baseline: fp32 and bit-matched int8 (profile names).
FAIR_TEACHERS = {"fp32": "cmos45-fp32", "int8": "cmos45-int8"}


def _shape_dict(s: GPT2Shape) -> dict[str, Any]:
    return {"name": s.name, "n_layer": s.n_layer, "d": s.d, "n_head": s.n_head, "f": s.f, "vocab": s.vocab,
            "n_positions": s.n_positions, "activation": s.activation, "params": s.params()}


def _teacher_block(shape: GPT2Shape, prof: HardwareProfile, prices, contexts: Iterable[int]) -> dict[str, Any]:
    out = {}
    for L in contexts:
        tc = teacher_cost(shape, L, prof.bits("weight_bits_dense"), prof.bits("activation_bits"))
        by = energy_by_class(tc.counts, prices)
        out[str(L)] = {"energy_pj_per_token": total(by), "energy_pj_by_class": by,
                       "counts_per_token": {c: float(tc.counts.get(c, 0.0)) for c in OP_CLASSES},
                       "extrapolated": bool(shape.n_positions and L > shape.n_positions)}
    return out


def _layer_stats(layer: str, act: ActivityProfile) -> dict[str, Any]:
    pops = [p for n, p in act.populations.items() if layer_of(n) == layer]
    neurons = sum(p.n for p in pops)
    ev = sum(float(p.events.sum()) for p in pops) / max(1, act.tokens)
    return {"neurons": neurons, "events_per_token": ev, "firing_rate": ev / neurons if neurons else float("nan"),
            "zero_fraction": 1 - ev / neurons if neurons else float("nan"),
            "dead_channels": sum(p.dead for p in pops), "saturated_channels": sum(p.saturated for p in pops)}


def _layer_rows(key: str, gc: GraphCounts, prices, act: ActivityProfile) -> list[dict[str, Any]]:
    rows = []
    for layer, counts in gc.layers.items():
        by = energy_by_class(counts, prices)
        rows.append({"profile": key, "layer": layer, **_layer_stats(layer, act),
                     **{f"count_{c}": float(counts[c]) for c in OP_CLASSES},
                     **{f"pj_{c}": float(by[c]) for c in OP_CLASSES},
                     "pj_host_chip": 0.0, "pj_spike_hops": 0.0, "pj_total": total(by)})
    return rows


def _placed_layer_rows(key: str, pp: dict[str, Any], act: ActivityProfile) -> list[dict[str, Any]]:
    """Layer rows of a priced placement: node costs where they run, host-chip traffic and hops of
    each population in its layer, static power as a row of its own."""
    acc: dict[str, dict[str, float]] = {}

    def row(layer: str) -> dict[str, float]:
        return acc.setdefault(layer, {**{f"count_{c}": 0.0 for c in OP_CLASSES}, **{f"pj_{c}": 0.0 for c in OP_CLASSES},
                                      "pj_host_chip": 0.0, "pj_spike_hops": 0.0})
    for n in pp["nodes"]:
        r = row(layer_of(n["node"]))
        for c in OP_CLASSES:
            r[f"count_{c}"] += n["counts"][c]
            r[f"pj_{c}"] += n["pj_by_class"][c]
    for c in pp["crossings"]:
        row(layer_of(c["population"]))["pj_host_chip"] += c["energy_pj"]
    for pop, h in pp["hops"]["per_population"].items():
        row(layer_of(pop))["pj_spike_hops"] += h["energy_pj"]
    st = pp["by_where"]["static"]["energy_pj"]
    if st:
        row("static")
    rows = []
    for layer, r in acc.items():
        extra = st if layer == "static" else 0.0
        rows.append({"profile": key, "layer": layer, **_layer_stats(layer, act), **r,
                     "pj_total": sum(r[f"pj_{c}"] for c in OP_CLASSES) + r["pj_host_chip"] + r["pj_spike_hops"]
                     + extra})
    return rows


def _counts_block(counts: dict[str, float], prices) -> dict[str, Any]:
    by = energy_by_class(counts, prices)
    return {"energy_pj_per_token": total(by), "energy_pj_by_class": by,
            "counts_per_token": {c: float(counts.get(c, 0.0)) for c in OP_CLASSES}}


def _groups(by_class: dict[str, float], by_where: dict[str, Any] | None = None) -> dict[str, float]:
    g = group_shares(by_class)
    g["traffic"] = 0.0 if by_where is None else by_where["host_chip"]["energy_pj"] + by_where["spike_hops"]["energy_pj"]
    g["static"] = 0.0 if by_where is None else by_where["static"]["energy_pj"]
    return g


def _profile_block(graph, act: ActivityProfile, dep: Deployment, teachers: dict[str, GPT2Shape],
                   main_teacher: str, contexts, twin=None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    prof, pl = dep.profile, dep.placement
    a = dep.activity or act
    prices = price_table(prof, host_for(prof))
    prec = Precision.from_profile(prof)
    gc = count_graph(graph, a, prec)
    if pl is None:
        by = energy_by_class(gc.totals, prices)
        tot = total(by)
        counts = gc.totals
        by_where = None
        rows = _layer_rows(dep.key, gc, prices, a)
    else:
        pp = price_placement(graph, pl, events_by_node(graph, a), prof, seconds_per_token=dep.seconds_per_token)
        by, tot = pp["energy_pj_by_class"], pp["energy_pj_per_token"]
        counts, by_where = pp["counts_per_token"], pp["by_where"]
        rows = _placed_layer_rows(dep.key, pp, a)
    student = {"energy_pj_per_token": tot, "energy_pj_by_class": by,
               "counts_per_token": {c: float(counts[c]) for c in OP_CLASSES},
               "groups_pj": _groups(by, by_where),
               "non_ac_share": 1 - by["ac"] / tot if tot else 0.0,
               "memory_share": sum(by[c] for c in MEM_CLASSES) / tot if tot else 0.0,
               "neurobench": gc.neurobench}
    teach = {name: _teacher_block(s, prof, prices, contexts) for name, s in teachers.items()}
    block = {"title": prof.title, "kind": prof.kind, "event_driven": prof.event_driven, "profile": prof.name,
             "host_fallback": prof.host_fallback, "source_file": prof.path, "notes": list(prof.notes),
             "precision_bits": {k: int(f.value) for k, f in prof.precision.items()},
             "student": student,
             "teacher": teach[main_teacher],
             "extra_teachers": {k: v for k, v in teach.items() if k != main_teacher},
             "student_over_teacher": {str(L): tot / teach[main_teacher][str(L)]["energy_pj_per_token"] for L in contexts},
             "constants": {c: p.to_dict() for c, p in prices.items()}}
    if dep.note:
        block["package_note"] = dep.note
    if pl is None:
        rm = rate_model(graph, a, prices, prec)
        block["rate_model"] = {"e0_pj": rm.e0, "slope_pj": rm.slope, "measured_rate": rm.measured_rate}
    else:
        student["by_where"] = by_where
        student["host_chip_share"] = by_where["host_chip"]["energy_pj"] / tot if tot else 0.0
        e0, slope = placement_rate_model(graph, pl, events_by_node(graph, a), a.firing_rate(), prof,
                                         dep.seconds_per_token)
        block["rate_model"] = {"e0_pj": e0, "slope_pj": slope, "measured_rate": a.firing_rate()}
        block["constants_by_where"] = pp["constants"]
        block["constants"] = pp["constants"]["core"]
        block["package"] = {"source": dep.source, "options": dict(dep.options or {}), **placement_summary(pl),
                            "crossings": pp["crossings"], "spike_hops": pp["hops"],
                            "activity": {"note": dep.activity_note or "activity as given to build_report",
                                         "tokens": a.tokens, "firing_rate": a.firing_rate(),
                                         "activation_sparsity": a.activation_sparsity(),
                                         "populations": {n: {"firing_rate": p.firing_rate}
                                                         for n, p in a.populations.items()}}}
    if twin is not None:
        block["dense_twin"] = (_counts_block(count_graph(twin, None, prec).totals, prices) if pl is None
                               else price_twin(twin, pl, prof))
    return block, rows


def _fair_block(rep: dict[str, Any], teachers: dict[str, GPT2Shape], main: str, contexts) -> dict[str, Any]:
    """Teacher at fp32 and at matched bit width (int8), ratios and break-even rates per target."""
    shape = teachers[main]
    fair: dict[str, Any] = {"teacher": main, "teachers": {}, "ratios": {}, "break_even": {},
                            "published_thresholds": PUBLISHED_THRESHOLDS}
    for key, pname in FAIR_TEACHERS.items():
        prof = load_profile(pname)
        blk = _teacher_block(shape, prof, price_table(prof, host_for(prof)), contexts)
        fair["teachers"][key] = {"profile": pname, "weight_bits": prof.bits("weight_bits_dense"),
                                 "activation_bits": prof.bits("activation_bits"),
                                 **{L: v["energy_pj_per_token"] for L, v in blk.items()}}
    for name, b in rep["profiles"].items():
        s = b["student"]["energy_pj_per_token"]
        rm = b["rate_model"]
        line = lambda ref: None if not rm["slope_pj"] > 0 else (ref - rm["e0_pj"]) / rm["slope_pj"]  # noqa: E731
        ratios: dict[str, Any] = {f"student_over_teacher_{k}": {str(L): s / fair["teachers"][k][str(L)]
                                                                 for L in contexts} for k in FAIR_TEACHERS}
        be: dict[str, Any] = {f"teacher_{k}": {str(L): line(fair["teachers"][k][str(L)]) for L in contexts}
                              for k in FAIR_TEACHERS}
        if "dense_twin" in b:
            tw = b["dense_twin"]["energy_pj_per_token"]
            ratios["student_over_dense_twin"] = s / tw
            be["dense_twin"] = line(tw)
        fair["ratios"][name] = ratios
        fair["break_even"][name] = be
    return fair


def _activity_block(act: ActivityProfile) -> dict[str, Any]:
    pops = {n: {"neurons": p.n, "firing_rate": p.firing_rate, "zero_fraction": p.zero_fraction, "dead": p.dead,
                "saturated": p.saturated, "events_per_token": float(p.events.sum()) / max(1, p.tokens),
                "positive_events": int(p.positive.sum()), "negative_events": int(p.negative.sum()),
                "unit_values": p.unit_values}
            for n, p in act.populations.items()}
    return {"tokens": act.tokens, "text": act.source, "tokenizer": act.tokenizer, "seconds": act.seconds,
            "tokens_per_s": act.tokens_per_s, "spike_mode": act.spike_mode,
            "activation_sparsity": act.activation_sparsity(), "firing_rate": act.firing_rate(),
            "populations": pops}


def build_report(graph, act: ActivityProfile, profiles: Sequence[str | HardwareProfile | Deployment],
                 baseline: str | HardwareProfile = "cmos45-fp32", teacher: str | os.PathLike | GPT2Shape | None = None,
                 contexts: Sequence[int] = DEFAULT_CONTEXTS, model_info: dict | None = None,
                 extra_teachers: Sequence[str] = ("gpt2-124m",), twin=None) -> dict[str, Any]:
    """Everything ``report.json`` holds, from a lowered graph and a measured activity profile.

    ``profiles``: names, ``.yaml`` paths or loaded profiles (a Loihi target, optionally with placement
    options ``loihi:population=core``, is priced as its default placement with ``act``), or
    :class:`Deployment` s (a placement with the activity of the neurons it deploys; ``energy_report``
    builds these). ``twin``: the IR of the student's dense twin
    (:func:`goose_neuro.energy.baseline.twin_graph`)."""
    deps = resolve_targets(graph, profiles)
    base = baseline if isinstance(baseline, HardwareProfile) else load_profile(baseline)
    if base.name not in [d.key for d in deps]:
        deps += resolve_targets(graph, [base])
    teachers: dict[str, GPT2Shape] = {}
    if teacher is not None:
        s = teacher if isinstance(teacher, GPT2Shape) else teacher_shape(teacher)
        teachers[s.name] = s
    for t in extra_teachers:
        s = teacher_shape(t)
        teachers.setdefault(s.name, s)
    main = next(iter(teachers))
    contexts = [int(c) for c in contexts]
    rep: dict[str, Any] = {"format": REPORT_FORMAT, "version": REPORT_VERSION, "model": model_info or {},
                           "activity": _activity_block(act), "baseline": base.name, "contexts": contexts,
                           "teacher": {"name": main, "given": teacher is not None,
                                       "shapes": {k: _shape_dict(v) for k, v in teachers.items()}},
                           "profiles": {}, "layers": []}
    for d in deps:
        block, rows = _profile_block(graph, act, d, teachers, main, contexts, twin)
        rep["profiles"][d.key] = block
        rep["layers"].extend(rows)
    # NeuroBench effective counts depend on the activity, not on the target
    rep["neurobench"] = {**count_graph(graph, act, Precision()).neurobench,
                         "ActivationSparsity": act.activation_sparsity(),
                         "counted_as": "event-driven effective counts (independent of the target)"}
    tb = rep["profiles"][base.name]["teacher"]
    rep["comparison"] = {str(L): {n: rep["profiles"][n]["student"]["energy_pj_per_token"] / tb[str(L)]["energy_pj_per_token"]
                                  for n in rep["profiles"]} for L in contexts}
    rep["fair_baseline"] = _fair_block(rep, teachers, main, contexts)
    rep["assumptions"] = assumptions(rep)
    return rep


def assumptions(rep: dict[str, Any]) -> list[str]:
    """The modelling choices behind the numbers, in plain words."""
    a = rep["activity"]
    out = [
        f"Activity was measured on the first {a['tokens']} tokens of {a['text'] or 'the given tokens'} "
        f"(tokenizer: {a['tokenizer'] or 'given token ids'}), batch 1, state carried across the whole text.",
        "On CMOS and GPU targets, and on SpiNNaker 2 and TrueNorth, energy is dynamic energy per token "
        "(operations and memory traffic) of the student's deployment graph, with the activity of the model as "
        "trained. On Loihi targets it is the price of the package: the placement goose-export writes (or the "
        "one in a given package's manifest), each operation where it runs (cores, host ops in the host format, "
        "Loihi 1 host neurons on an integer host), every compartment (populations, ON/OFF pairs, one readout "
        "per chain row), host-chip traffic, spike hops between cores, and static power where a time per token "
        "is known; activity comes from the fixed-point neurons the package runs.",
        "Fair baseline: next to the fp32 teacher (cmos45-fp32) the teacher is priced at matched bit width, int8 "
        "weights and activations with int32 accumulation (cmos45-int8); the dense twin is the same network and "
        "weights with spike_mode none (dense activations), counted from its own IR on each target.",
        "Break-even firing rate: every count is linear in the events, so the measured activity pattern is "
        "scaled until the student's energy equals a reference; rates are events per neuron per token.",
        "The student's cost per token does not depend on context length (recurrent state); the teacher's is "
        "the cost of one new token with a KV cache when it attends to L positions.",
        "Teacher costs come from its configuration alone (weights' values do not change cost). Contexts "
        "beyond the teacher's n_positions are extrapolations of the same formula and marked 'extrapolated'.",
        "Spike events are nonzero outputs: +1 and -1 both count as one event. On event-driven targets "
        "a synaptic op happens only for an event and a nonzero ternary weight it reaches (NeuroBench "
        "'effective'); dense targets (CMOS, GPU) compute every synapse (NeuroBench 'Dense').",
        "A synapse fed by unit spikes (shared amplitude folded into its per-output scales) is counted "
        "as accumulates (AC); per-channel amplitudes, dense inputs and the LM head are MACs.",
        "Ternary weights are stored and moved at 2 bits each; an event reads its input's whole fan-out "
        "row of the weight matrix. Dense weights, states and activations use each profile's bit widths.",
        "Every neuron is updated every token (leak, threshold test, reset), whether or not it spikes.",
        "Operations a neuromorphic chip cannot run (WKV exp/division, sigmoid, LayerNorm, elementwise "
        "gating, the LM head on binary-spike chips) are priced at the host profile's figures, labelled 'host' "
        "(float64 for the Loihi profiles, as the exported package computes them; the fp64 figures are proxies).",
        "Loihi 2 per-operation energies are not published: its profile uses Loihi 1 figures as labelled "
        "proxies (confidence 'assumed').",
        "Costs for exp/sigmoid/division/rsqrt on CMOS have no published per-op figure and are assumed "
        "(see each profile's constants).",
        "The teacher on a neuromorphic target is priced with the same class mapping (its MACs and "
        "elementwise ops mostly at host or proxy figures); the usual ANN-vs-SNN comparison is the student "
        "on each target against the teacher on the baseline ('comparison' in report.json).",
        "Sampling from the logits (softmax over the vocabulary) is counted for neither model.",
    ]
    if a["tokenizer"] and "fallback" in a["tokenizer"]:
        out.append("No tokenizer was stored with the checkpoint: UTF-8 bytes were used as tokens.")
    placed = {k: b for k, b in rep["profiles"].items() if "package" in b}
    if placed:
        out += [
            "Host-chip traffic: the bits per token that cross the chip boundary (each core population's input "
            "mantissas and each chain's readout values, every token; a Loihi 1 host population's ON/OFF spike "
            "events, one payload bit per event, as measured) times the profile's traffic.host_chip_bit. For "
            "both Loihi profiles that figure is a labelled proxy (one 45 nm off-chip DRAM access, 1.3 nJ per "
            "64 bits, Horowitz 2014): no energy per bit of Loihi's host interface is published. Address-event "
            "headers, the host's driver and the embedded CPUs' share are not priced.",
            "Spike hops between cores: the placement of groups onto cores is an estimate (groups on "
            "consecutive cores, a square mesh, every spike to every core of its synapse group, Manhattan "
            "distance); messages between chips are counted but not priced. Loihi 2 hop energies are Loihi 1 "
            "figures used as proxies.",
            "Loihi 1 host neurons (population=host) run the student's integer neuron on the host and are priced "
            "on cmos45-int32; host ops run in the package's host format: float64 on cmos45-fp64 (labelled "
            "proxies scaled from fp32), q16 on cmos45-int32 (int32 figures; 64-bit products under-priced).",
            "The readout compartments (one per chain row) are updated every token and priced as neuron updates; "
            "decoding them and applying the synapses' scales runs on the host.",
        ]
        for k, b in placed.items():
            st = b["student"]["by_where"]["static"]
            if not st["priced"]:
                out.append(f"{k}: static power not priced: {st['reason']}.")
            out.append(f"{k}: {b['package']['activity']['note']}")
    return out


def _deployed_activity(model, fmt, text, tok, tokens: int, progress: bool) -> ActivityProfile:
    """Activity of ``model`` running the integer neurons of ``fmt`` (float64, like the package's host)."""
    import copy

    m = copy.deepcopy(model).double().eval()
    m.set_fixed_point(fmt)
    return profile_text(m, text, tok, tokens, progress=progress)


def _activity_note(model, pl: Placement) -> str:
    fmt = pl.neuron_format
    if model.cfg.fixed_point:
        note = (f"activity of the checkpoint's own fixed-point neurons ({fmt.neuron}, frac_bits={fmt.frac_bits}; it "
                f"was trained with them), host ops in float64")
    else:
        note = (f"the checkpoint was trained with FLOAT neurons: activity measured with the package's post-training "
                f"fixed-point neurons ({fmt.neuron}, frac_bits={fmt.frac_bits}; ASNNGoose.set_fixed_point), host ops "
                f"in float64")
    if any(p.neuron == "cuba_onoff" for p in pl.populations):
        note += ("; population=core runs CUBA ON/OFF pairs (reset to zero, one decay per population), an "
                 "approximation of this neuron: the pairs' own activity is not simulated here")
    if pl.host_format == "q16":
        note += "; the package's Q16 host ops may change spikes (activity taken with float64 host ops)"
    return note + "."


def energy_report(checkpoint: str | os.PathLike, text: str | os.PathLike, tokens: int = 2048,
                  profiles: Sequence[str] = ("loihi2",), baseline: str = "cmos45-fp32",
                  teacher: str | os.PathLike | None = None, contexts: Sequence[int] = DEFAULT_CONTEXTS,
                  out_dir: str | os.PathLike | None = None, progress: bool = True,
                  plots: bool = True, label: str = "",
                  packages: Sequence[str | os.PathLike] = ()) -> dict[str, Any]:
    """Profile a checkpoint on a text file, estimate energy on each profile, optionally
    write the report directory (report.md, report.json, layers.csv, PNG plots).

    ``profiles``: names or ``.yaml`` paths; a Loihi target (``loihi``, ``loihi2``) is priced as the
    package goose-export writes for it, with options as ``loihi:population=core,host=q16``.
    ``packages``: exported Loihi package directories, each priced on the profile entry named as its
    target (in order; the entry must be there and not carry options of its own); the report key of a
    package is its target plus the options it was exported with.
    ``label`` says what the checkpoint is (e.g. "briefly trained, 300 steps"); default:
    the checkpoint meta's ``label``."""
    from goose_neuro.checkpoint import load_checkpoint
    from goose_neuro.export.lower import lower

    # load profiles first: a bad profile fails fast, before any profiling
    specs = [parse_spec(p) for p in profiles]
    profs = [(load_profile(n), o) for n, o in specs]
    base = load_profile(baseline)
    model, info = load_checkpoint(checkpoint)
    graph = lower(model, {"checkpoint": str(checkpoint)})
    deps: list[Deployment] = []
    pkg_of: dict[int, tuple[Placement, str]] = {}
    for pdir in packages:
        pl = package_placement(pdir, graph, bool(model.cfg.fixed_point))
        i = next((i for i, (p, o) in enumerate(profs) if p.name == pl.target and not o and i not in pkg_of), None)
        if i is None:
            raise ExportError(f"package {pdir} is for {pl.target}: add --profile {pl.target} to price it "
                              f"(one profile entry per package, without options)")
        pkg_of[i] = (pl, str(pdir))
    for i, (prof, opts) in enumerate(profs):
        if i in pkg_of:
            pl, pdir = pkg_of[i]
            o = package_options(pl)
            deps.append(Deployment(spec_key(prof.name, o), prof, pl, f"package {pdir}", o))
        else:
            deps.append(_deployment(graph, prof, opts))
    _unique(deps)
    tok = load_tokenizer(checkpoint, model.cfg.vocab_size, reference=info.get("tokenizer"))
    act = profile_text(model, text, tok, tokens, progress=progress)
    seen: dict[Any, ActivityProfile] = {}
    for d in deps:
        if d.placement is None:
            continue
        fmt = model.deployed_format(d.placement.neuron_format.frac_bits)
        if fmt != d.placement.neuron_format:
            raise ExportError(f"{d.key}: the placement's neuron format {d.placement.neuron_format} is not the "
                              f"checkpoint's deployed format {fmt}")
        if fmt not in seen:
            seen[fmt] = _deployed_activity(model, fmt, text, tok, tokens, progress)
            seen[fmt].tokenizer = act.tokenizer
        d.activity, d.activity_note = seen[fmt], _activity_note(model, d.placement)
    twin, twin_note = None, "the checkpoint has no spikes (spike_mode none): it is its own dense twin"
    if model.cfg.spike_mode != "none":
        try:
            twin, twin_note = twin_graph(model), ""
        except GooseError as e:  # a configuration that has no dense variant: say so, price the rest
            twin_note = f"dense twin not built: {e}"
    meta = info.get("meta") or {}
    model_info = {"checkpoint": str(checkpoint), "config": model.cfg.to_dict(), "params": model.num_params(),
                  "trained_fixed_point": bool(model.cfg.fixed_point),
                  "label": label or meta.get("label") or meta.get("note") or "", "meta": meta}
    rep = build_report(graph, act, deps, base, teacher, contexts, model_info, twin=twin)
    if twin_note:
        rep["fair_baseline"]["dense_twin_note"] = twin_note
        rep["assumptions"].append(twin_note[0].upper() + twin_note[1:] + ".")
    if out_dir is not None:
        from goose_neuro.energy.report import write_report

        write_report(rep, out_dir, act=act, plots=plots)
    return rep
