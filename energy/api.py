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

from goose_neuro.energy.activity import ActivityProfile, profile_text
from goose_neuro.energy.baseline import PUBLISHED_THRESHOLDS, rate_model, twin_graph
from goose_neuro.energy.counts import GraphCounts, Precision, count_graph
from goose_neuro.energy.estimate import energy_by_class, group_shares, host_for, price_table, total
from goose_neuro.hardware_profiles import MEM_CLASSES, OP_CLASSES, HardwareProfile, load_profile
from goose_neuro.energy.teacher_cost import GPT2Shape, teacher_cost, teacher_shape
from goose_neuro.errors import GooseError, ProfileError
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
}
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


def _layer_rows(prof: HardwareProfile, gc: GraphCounts, prices, act: ActivityProfile) -> list[dict[str, Any]]:
    rows = []
    for layer, counts in gc.layers.items():
        by = energy_by_class(counts, prices)
        pops = [p for n, p in act.populations.items() if n.split(".")[0] == layer]
        neurons = sum(p.n for p in pops)
        ev = sum(float(p.events.sum()) for p in pops) / max(1, act.tokens)
        row = {"profile": prof.name, "layer": layer, "neurons": neurons, "events_per_token": ev,
               "firing_rate": ev / neurons if neurons else float("nan"),
               "zero_fraction": 1 - ev / neurons if neurons else float("nan"),
               "dead_channels": sum(p.dead for p in pops), "saturated_channels": sum(p.saturated for p in pops),
               **{f"count_{c}": float(counts[c]) for c in OP_CLASSES},
               **{f"pj_{c}": float(by[c]) for c in OP_CLASSES}, "pj_total": total(by)}
        rows.append(row)
    return rows


def _counts_block(counts: dict[str, float], prices) -> dict[str, Any]:
    by = energy_by_class(counts, prices)
    return {"energy_pj_per_token": total(by), "energy_pj_by_class": by,
            "counts_per_token": {c: float(counts.get(c, 0.0)) for c in OP_CLASSES}}


def _profile_block(graph, act: ActivityProfile, prof: HardwareProfile, teachers: dict[str, GPT2Shape],
                   main_teacher: str, contexts, twin=None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    prices = price_table(prof, host_for(prof))
    prec = Precision.from_profile(prof)
    gc = count_graph(graph, act, prec)
    by = energy_by_class(gc.totals, prices)
    tot = total(by)
    student = {"energy_pj_per_token": tot, "energy_pj_by_class": by,
               "counts_per_token": {c: float(gc.totals[c]) for c in OP_CLASSES},
               "groups_pj": group_shares(by),
               "non_ac_share": 1 - by["ac"] / tot if tot else 0.0,
               "memory_share": sum(by[c] for c in MEM_CLASSES) / tot if tot else 0.0,
               "neurobench": gc.neurobench}
    teach = {name: _teacher_block(s, prof, prices, contexts) for name, s in teachers.items()}
    block = {"title": prof.title, "kind": prof.kind, "event_driven": prof.event_driven,
             "host_fallback": prof.host_fallback, "source_file": prof.path, "notes": list(prof.notes),
             "precision_bits": {k: int(f.value) for k, f in prof.precision.items()},
             "student": student,
             "teacher": teach[main_teacher],
             "extra_teachers": {k: v for k, v in teach.items() if k != main_teacher},
             "student_over_teacher": {str(L): tot / teach[main_teacher][str(L)]["energy_pj_per_token"] for L in contexts},
             "constants": {c: p.to_dict() for c, p in prices.items()}}
    rm = rate_model(graph, act, prices, prec)
    block["rate_model"] = {"e0_pj": rm.e0, "slope_pj": rm.slope, "measured_rate": rm.measured_rate}
    if twin is not None:
        block["dense_twin"] = _counts_block(count_graph(twin, None, prec).totals, prices)
    return block, _layer_rows(prof, gc, prices, act)


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


def build_report(graph, act: ActivityProfile, profiles: Sequence[str | HardwareProfile],
                 baseline: str | HardwareProfile = "cmos45-fp32", teacher: str | os.PathLike | GPT2Shape | None = None,
                 contexts: Sequence[int] = DEFAULT_CONTEXTS, model_info: dict | None = None,
                 extra_teachers: Sequence[str] = ("gpt2-124m",), twin=None) -> dict[str, Any]:
    """Everything ``report.json`` holds, from a lowered graph and a measured activity profile.
    ``twin``: the IR of the student's dense twin (:func:`goose_neuro.energy.baseline.twin_graph`)."""
    profs = [p if isinstance(p, HardwareProfile) else load_profile(p) for p in profiles]
    base = baseline if isinstance(baseline, HardwareProfile) else load_profile(baseline)
    names = [p.name for p in profs]
    if len(set(names)) != len(names):
        raise ProfileError(f"hardware profiles given twice: {names}")
    if base.name not in names:
        profs.append(base)
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
    for p in profs:
        block, rows = _profile_block(graph, act, p, teachers, main, contexts, twin)
        rep["profiles"][p.name] = block
        rep["layers"].extend(rows)
    first = rep["profiles"][profs[0].name]["student"]
    rep["neurobench"] = {**first["neurobench"], "ActivationSparsity": act.activation_sparsity(),
                         "counted_as": "event-driven effective counts (independent of the target)"}
    # NeuroBench effective counts do not depend on the profile: take them from any block.
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
        "Energy is dynamic energy per token (operations and memory traffic) of the student's deployment graph, "
        "not yet of an exported package: static power, host-chip messages and spike hops between cores have "
        "figures in the Loihi profiles but are not priced here (they need the package's placement).",
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
    return out


def energy_report(checkpoint: str | os.PathLike, text: str | os.PathLike, tokens: int = 2048,
                  profiles: Sequence[str] = ("loihi2",), baseline: str = "cmos45-fp32",
                  teacher: str | os.PathLike | None = None, contexts: Sequence[int] = DEFAULT_CONTEXTS,
                  out_dir: str | os.PathLike | None = None, progress: bool = True,
                  plots: bool = True, label: str = "") -> dict[str, Any]:
    """Profile a checkpoint on a text file, estimate energy on each profile, optionally
    write the report directory (report.md, report.json, layers.csv, PNG plots).
    ``label`` says what the checkpoint is (e.g. "briefly trained, 300 steps"); default:
    the checkpoint meta's ``label``."""
    from goose_neuro.checkpoint import load_checkpoint
    from goose_neuro.export.lower import lower

    # load profiles first: a bad profile fails fast, before any profiling
    profs = [load_profile(p) for p in profiles]
    base = load_profile(baseline)
    model, info = load_checkpoint(checkpoint)
    tok = load_tokenizer(checkpoint, model.cfg.vocab_size, reference=info.get("tokenizer"))
    act = profile_text(model, text, tok, tokens, progress=progress)
    graph = lower(model, {"checkpoint": str(checkpoint)})
    twin, twin_note = None, "the checkpoint has no spikes (spike_mode none): it is its own dense twin"
    if model.cfg.spike_mode != "none":
        try:
            twin, twin_note = twin_graph(model), ""
        except GooseError as e:  # a configuration that has no dense variant: say so, price the rest
            twin_note = f"dense twin not built: {e}"
    meta = info.get("meta") or {}
    model_info = {"checkpoint": str(checkpoint), "config": model.cfg.to_dict(), "params": model.num_params(),
                  "label": label or meta.get("label") or meta.get("note") or "", "meta": meta}
    rep = build_report(graph, act, profs, base, teacher, contexts, model_info, twin=twin)
    if twin_note:
        rep["fair_baseline"]["dense_twin_note"] = twin_note
        rep["assumptions"].append(twin_note[0].upper() + twin_note[1:] + ".")
    if out_dir is not None:
        from goose_neuro.energy.report import write_report

        write_report(rep, out_dir, act=act, plots=plots)
    return rep
