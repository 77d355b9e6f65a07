"""Report directory: report.md (for a person), report.json (for programs), CSV tables
(pandas) and PNG plots (matplotlib, Agg backend).

Layout::

    REPORT/report.md                 summary, breakdowns, student vs teacher, sparsity, constants, assumptions
    REPORT/report.json               the dict returned by goose_neuro.energy.build_report
    REPORT/layers.csv                one row per (profile, layer): sparsity, counts, pJ per class
    REPORT/channels.csv              one row per (population, channel): events, +/- events, firing rate
    REPORT/timeline.csv              one row per token: events of every population
    REPORT/firing_rate.png           firing rate per population, grouped by layer
    REPORT/energy_breakdown.png      stacked shares of energy per target (total labelled)
    REPORT/ac_vs_mac.png             ACs and MACs per layer (event-driven counts)
    REPORT/energy_vs_context.png     energy per token vs context, teacher and student
    REPORT/energy_vs_rate.png        student energy per token vs firing rate per target, with the
                                     fair references and the break-even rates marked

The directory is written atomically (all files or none).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from goose_neuro.energy.activity import ActivityProfile
from goose_neuro.hardware_profiles import OP_CLASSES
from goose_neuro.energy.teacher_cost import GPT2Shape, teacher_cost
from goose_neuro.fileio import atomic_dir, check_writable_dir

GROUP_LABELS = {"ac": "synaptic ACs", "mac": "MACs", "neuron_spike": "neuron updates + spikes",
                "elementwise": "elementwise (add/mul/exp/div/norm)", "memory": "memory traffic",
                "traffic": "host-chip traffic + spike hops", "static": "static power"}
#: Where a Loihi package's energy goes (student.by_where keys), in report order.
WHERE_LABELS = {"core": "cores", "host": "host ops", "host_neuron": "host neurons", "host_chip": "host-chip traffic",
                "spike_hops": "spike hops", "static": "static"}


def _fmt(x: float) -> str:
    """Engineering-style number for tables."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    ax = abs(x)
    if ax == 0:
        return "0"
    if ax >= 1e6 or ax < 1e-2:
        return f"{x:.3g}"
    return f"{x:,.4g}" if ax < 1000 else f"{x:,.0f}"


def _pj(x: float) -> str:
    """pJ with a readable unit."""
    for unit, f in (("mJ", 1e9), ("uJ", 1e6), ("nJ", 1e3)):
        if abs(x) >= f:
            return f"{x / f:.3g} {unit}"
    return f"{x:.3g} pJ"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def render_markdown(rep: dict[str, Any]) -> str:
    """report.md text."""
    P, act, ctxs = rep["profiles"], rep["activity"], rep["contexts"]
    m = rep.get("model", {})
    out = ["# Energy and sparsity report", ""]
    label = m.get("label") or ""
    params = f"{m['params']:,}" if isinstance(m.get("params"), int) else "?"
    out.append(f"Student: `{m.get('checkpoint', '?')}` ({params} parameters"
               f"{', ' + label if label else ''}). Teacher: `{rep['teacher']['name']}`"
               f"{'' if rep['teacher']['given'] else ' (none given: GPT-2 124M config used as reference)'}. "
               f"Baseline target: `{rep['baseline']}`.")
    out.append(f"Activity: {act['tokens']} tokens of `{act['text']}`, profiled at {act['tokens_per_s']:.0f} tokens/s; "
               f"overall firing rate {act['firing_rate']:.4f}, activation sparsity {act['activation_sparsity']:.4f}.")
    out += ["", "## Energy per token by target", ""]
    L0 = "512" if "512" in P[rep["baseline"]]["teacher"] else str(ctxs[0])
    rows = []
    for n, b in P.items():
        s = b["student"]
        rows.append([f"`{n}`", b["kind"], "yes" if b["event_driven"] else "no", _pj(s["energy_pj_per_token"]),
                     _pj(b["teacher"][L0]["energy_pj_per_token"]), f"{b['student_over_teacher'][L0]:.3g}",
                     f"{rep['comparison'][L0][n]:.3g}", f"{100 * s['non_ac_share']:.1f}%", f"{100 * s['memory_share']:.1f}%"])
    out.append(_table(["target", "kind", "event-driven", "student / token", f"teacher / token (ctx {L0})",
                       "student/teacher same target", f"student / teacher on {rep['baseline']}",
                       "not synaptic ACs", "memory"], rows))
    out += ["", "## Breakdown of the student's energy (pJ per token)", ""]
    groups = list(GROUP_LABELS)
    rows = [[f"`{n}`"] + [_fmt(b["student"]["groups_pj"][g]) for g in groups] for n, b in P.items()]
    out.append(_table(["target"] + [GROUP_LABELS[g] for g in groups], rows))
    out += ["", "Operation counts per token (student; memory classes in bits):", ""]
    rows = [[f"`{n}`"] + [_fmt(b["student"]["counts_per_token"][c]) for c in OP_CLASSES] for n, b in P.items()]
    out.append(_table(["target"] + list(OP_CLASSES), rows))
    nb = rep["neurobench"]
    out += ["", f"NeuroBench-definition counts per token: Effective_ACs {_fmt(nb['Effective_ACs'])}, "
                f"Effective_MACs {_fmt(nb['Effective_MACs'])}, Dense {_fmt(nb['Dense'])}, "
                f"ActivationSparsity {nb['ActivationSparsity']:.4f}."]
    out += _package_markdown(rep)
    out += _fair_markdown(rep, L0)
    out += ["", "## Student vs teacher by context", ""]
    rows = []
    for n, b in P.items():
        rows.append([f"`{n}`", _pj(b["student"]["energy_pj_per_token"])] +
                    [f"{_pj(b['teacher'][str(L)]['energy_pj_per_token'])} ({b['student_over_teacher'][str(L)]:.3g})"
                     + (" *" if b["teacher"][str(L)]["extrapolated"] else "") for L in ctxs])
    out.append(_table(["target", "student"] + [f"teacher ctx {L} (ratio)" for L in ctxs], rows))
    out.append("\n`*` context beyond the teacher's n_positions: cost formula extrapolated.")
    extra = P[rep["baseline"]]["extra_teachers"]
    for tname, blk in extra.items():
        out.append(f"\nReference teacher `{tname}` on `{rep['baseline']}`: " + ", ".join(
            f"ctx {L}: {_pj(blk[str(L)]['energy_pj_per_token'])}" for L in ctxs) + ".")
    out += ["", "## Sparsity per layer", ""]
    base_rows = [r for r in rep["layers"] if r["profile"] == rep["baseline"]]
    rows = [[r["layer"], r["neurons"], _fmt(r["events_per_token"]), _fmt(r["firing_rate"]), _fmt(r["zero_fraction"]),
             r["dead_channels"], r["saturated_channels"]] for r in base_rows]
    out.append(_table(["layer", "neurons", "events/token", "firing rate", "zero fraction", "dead", "saturated"], rows))
    out += ["", "Per population:", ""]
    rows = [[f"`{n}`", p["neurons"], _fmt(p["firing_rate"]), p["dead"], p["saturated"],
             p["positive_events"], p["negative_events"]] for n, p in act["populations"].items()]
    out.append(_table(["population", "neurons", "firing rate", "dead", "saturated", "+1 events", "-1 events"], rows))
    out += ["", "## Constants and their sources", ""]
    for n, b in P.items():
        out += [f"### `{n}`: {b['title']}", ""]
        rows = [[c, _fmt(k["pj"]), k["unit"], k["how"], k["confidence"], k["source"], k["note"]]
                for c, k in b["constants"].items()]
        out.append(_table(["class", "value", "unit", "how", "confidence", "source", "note"], rows))
        for w, consts in b.get("constants_by_where", {}).items():
            if w == "core":
                continue
            prof = b["student"]["by_where"][w]["profile"]
            out += ["", f"Package {WHERE_LABELS[w]} (`{prof}`):", ""]
            rows = [[c, _fmt(k["pj"]), k["unit"], k["confidence"], k["source"]] for c, k in consts.items()]
            out.append(_table(["class", "value", "unit", "confidence", "source"], rows))
        bits = ", ".join(f"{k} {v}" for k, v in b["precision_bits"].items())
        out += ["", f"Bit widths: {bits}. File: `{b['source_file']}`."]
        out += [f"- {x}" for x in b["notes"]] + [""]
    out += ["## Assumptions", ""] + [f"- {a}" for a in rep["assumptions"]] + [""]
    out += ["## Files", "", "`report.json` (all numbers), `layers.csv`, `channels.csv`, `timeline.csv`, "
            "`firing_rate.png`, `energy_breakdown.png`, `ac_vs_mac.png`, `energy_vs_context.png`, "
            "`energy_vs_rate.png`.", ""]
    return "\n".join(out)


def _package_markdown(rep: dict[str, Any]) -> list[str]:
    """Where a Loihi package's energy goes: cores, host, host-chip traffic, hops, static."""
    P = {n: b for n, b in rep["profiles"].items() if "package" in b}
    notes = {n: b["package_note"] for n, b in rep["profiles"].items() if "package_note" in b}
    if not P and not notes:
        return []
    out = ["", "## Loihi packages: where the energy goes (pJ per token)", "",
           "Each Loihi target is priced as the package it deploys (`export.placement`: the placement goose-export "
           "writes, or a given package's manifest), with `export.opcost` for every node where it runs. Host-chip "
           "traffic is bits per token crossing the chip boundary times the profile's `traffic.host_chip_bit` "
           "(a labelled proxy on both Loihis).", ""]
    rows = []
    for n, b in P.items():
        s, pk = b["student"], b["package"]
        w = s["by_where"]
        c = pk["compartments"]
        rows.append([f"`{n}`", f"{pk['population']} / {pk['host_format']}", f"{c['populations']:,} + {c['readouts']:,}"]
                    + [_pj(w[k]["energy_pj"]) if k in w else "-" for k in WHERE_LABELS]
                    + [_pj(s["energy_pj_per_token"]), f"{100 * s['host_chip_share']:.1f}%"])
    out.append(_table(["target", "neurons / host format", "compartments (populations + readouts)"]
                      + list(WHERE_LABELS.values()) + ["total", "host-chip share"], rows))
    out += [""]
    for n, b in P.items():
        s, pk = b["student"], b["package"]
        w = s["by_where"]
        hc, hp, st = w["host_chip"], w["spike_hops"], w["static"]
        fig = hc["figure"]
        out.append(f"- `{n}` ({pk['source']}): host ops on `{w['host']['profile']}` ({pk['host_format']})"
                   + (f", host neurons on `{w['host_neuron']['profile']}`" if "host_neuron" in w else "")
                   + f"; {_fmt(hc['host_to_chip_bits'])} bits/token host->chip, {_fmt(hc['chip_to_host_bits'])} "
                   f"chip->host"
                   + (f" at {fig['pj']:.3g} pJ/bit ({fig['source']}; {fig['confidence']})" if fig else
                      f" (not priced: {hc['reason']})")
                   + f"; {_fmt(hp['messages'])} spike messages, {_fmt(hp['hops_ew'])} E-W + {_fmt(hp['hops_ns'])} "
                   f"N-S hops per token (estimate)"
                   + ("" if hp["priced"] else f", not priced: {hp['reason']}")
                   + f"; static: " + (f"{_pj(st['energy_pj'])}" if st["priced"] else st["reason"]) + ".")
        out.append(f"  Activity: {pk['activity']['note']} Firing rate {pk['activity']['firing_rate']:.4f} "
                   f"(the model as trained: {rep['activity']['firing_rate']:.4f}).")
    for n, note in notes.items():
        out.append(f"- `{n}`: {note}.")
    if P:
        out += ["", f"Spike hops are an estimate of the layout: {next(iter(P.values()))['package']['spike_hops']['how']}."]
    return out


def fmt_rate(r: float | None) -> str:
    """A break-even rate for people: n/a, below zero, above one, or the number."""
    if r is None:
        return "n/a (energy does not grow with the rate)"
    if r < 0:
        return f"{r:.3g} (loses even with no spikes)"
    if r > 1:
        return f"{r:.3g} (wins at any rate)"
    return f"{r:.3g}"


def _fair_markdown(rep: dict[str, Any], L0: str) -> list[str]:
    fair = rep.get("fair_baseline")
    if not fair:
        return []
    P, t = rep["profiles"], fair["teachers"]
    out = ["", f"## Fair baseline (teacher `{fair['teacher']}` at context {L0})", "",
           f"Teacher per token: fp32 on `{t['fp32']['profile']}` {_pj(t['fp32'][L0])}; int8 weights and "
           f"activations on `{t['int8']['profile']}` {_pj(t['int8'][L0])}. The dense twin is the same network "
           "and weights with `spike_mode none` (dense activations), counted from its own IR. Break-even: the "
           "firing rate (events per neuron per token) at which the student's energy on that target equals the "
           "reference; the measured rate is the student's own.", ""]
    rows = []
    for n, b in P.items():
        r, be = fair["ratios"][n], fair["break_even"][n]
        twin = b.get("dense_twin", {}).get("energy_pj_per_token")
        rows.append([f"`{n}`", _pj(b["student"]["energy_pj_per_token"]), _pj(twin) if twin is not None else "n/a",
                     f"{r.get('student_over_dense_twin', float('nan')):.3g}",
                     f"{r['student_over_teacher_int8'][L0]:.3g}", f"{r['student_over_teacher_fp32'][L0]:.3g}",
                     f"{b['rate_model']['measured_rate']:.3g}", fmt_rate(be.get("dense_twin")),
                     fmt_rate(be["teacher_int8"][L0]), fmt_rate(be["teacher_fp32"][L0])])
    out.append(_table(["target", "student / token", "dense twin / token", "student / dense twin",
                       "student / int8 teacher", "student / fp32 teacher", "measured rate",
                       "break-even vs dense twin", "break-even vs int8 teacher", "break-even vs fp32 teacher"], rows))
    out += ["", "Published break-even thresholds (as stated; the per-token column is the comparable figure):", ""]
    rows = [[x["source"], x["statement"], "-".join(f"{v:.3g}" for v in sorted(set(x["per_token_rate"]))),
             x["conversion"]] for x in fair["published_thresholds"]]
    out.append(_table(["source", "what it states", "per token", "how compared"], rows))
    return out


# -- tables ---------------------------------------------------------------------------------
def _write_tables(rep: dict[str, Any], act: ActivityProfile | None, d: Path) -> None:
    import pandas as pd

    pd.DataFrame(rep["layers"]).to_csv(d / "layers.csv", index=False)
    if act is None:
        return
    rows = []
    for n, p in act.populations.items():
        for c in range(p.n):
            rows.append({"population": n, "channel": c, "events": int(p.events[c]), "positive": int(p.positive[c]),
                         "negative": int(p.negative[c]), "firing_rate": p.events[c] / max(1, p.tokens)})
    pd.DataFrame(rows).to_csv(d / "channels.csv", index=False)
    tl = pd.DataFrame({n: p.timeline for n, p in act.populations.items()})
    tl.index.name = "token"
    tl.to_csv(d / "timeline.csv")


# -- plots ------------------------------------------------------------------------------------
def _plots(rep: dict[str, Any], d: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    P, act = rep["profiles"], rep["activity"]
    # firing rate per population
    names = list(act["populations"])
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(names)), 3.6))
    ax.bar(range(len(names)), [act["populations"][n]["firing_rate"] for n in names], color="tab:blue")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("events per neuron per token")
    ax.set_title("Firing rate per population")
    fig.tight_layout()
    fig.savefig(d / "firing_rate.png", dpi=120)
    plt.close(fig)
    # energy breakdown per target (shares, total labelled)
    groups = list(GROUP_LABELS)
    profs = list(P)
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(profs)) + 2.5, 4))
    bottom = np.zeros(len(profs))
    for g in groups:
        vals = np.array([P[p]["student"]["groups_pj"][g] / max(1e-30, P[p]["student"]["energy_pj_per_token"]) for p in profs])
        ax.bar(profs, vals, bottom=bottom, label=GROUP_LABELS[g])
        bottom += vals
    for i, p in enumerate(profs):
        ax.text(i, 1.01, _pj(P[p]["student"]["energy_pj_per_token"]), ha="center", fontsize=8)
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("share of student energy per token")
    ax.set_title("Student energy breakdown per target (total per token on top)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right", fontsize=8)
    fig.tight_layout()
    fig.savefig(d / "energy_breakdown.png", dpi=120)
    plt.close(fig)
    # AC vs MAC per layer (event-driven counts from the first event-driven profile, else the baseline)
    ref = next((p for p in profs if P[p]["event_driven"]), rep["baseline"])
    rows = [r for r in rep["layers"] if r["profile"] == ref]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(rows)), 3.6))
    ax.bar(x - 0.2, [r["count_ac"] for r in rows], 0.4, label="ACs")
    ax.bar(x + 0.2, [r["count_mac"] for r in rows], 0.4, label="MACs")
    ax.set_xticks(x, [r["layer"] for r in rows])
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_ylim(0, 3 * max([1.0] + [max(r["count_ac"], r["count_mac"]) for r in rows]))
    ax.set_ylabel("operations per token")
    ax.set_title(f"ACs vs MACs per layer ({ref} counting)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(d / "ac_vs_mac.png", dpi=120)
    plt.close(fig)
    _plot_context(rep, d, plt)
    if rep.get("fair_baseline"):
        plot_energy_vs_rate(rep, d / "energy_vs_rate.png")


def _plot_context(rep: dict[str, Any], d: Path, plt) -> None:
    """Teacher energy per token vs context (from its shape) and the flat student line."""
    P = rep["profiles"]
    from goose_neuro.energy.estimate import energy_by_class, total
    from goose_neuro.energy.estimate import Price

    shape = GPT2Shape(**{k: v for k, v in rep["teacher"]["shapes"][rep["teacher"]["name"]].items() if k != "params"})
    Ls = np.unique(np.geomspace(1, max(rep["contexts"] + [1024]), 40).astype(int))
    fig, ax = plt.subplots(figsize=(9, 4.4))
    for i, (n, b) in enumerate(P.items()):
        prices = {c: Price(c, k["pj"], k["how"], k["source"], k["confidence"]) for c, k in b["constants"].items()}
        wb, ab = b["precision_bits"]["weight_bits_dense"], b["precision_bits"]["activation_bits"]
        ys = [total(energy_by_class(teacher_cost(shape, int(L), wb, ab).counts, prices)) for L in Ls]
        color = f"C{i % 10}"
        ax.plot(Ls, ys, color=color, label=f"teacher on {n}")
        ax.axhline(b["student"]["energy_pj_per_token"], color=color, ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("context length (tokens attended)")
    ax.set_ylabel("energy per token (pJ)")
    ax.set_title("Energy per token vs context: teacher (solid), student (dashed)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(d / "energy_vs_context.png", dpi=120)
    plt.close(fig)


def plot_energy_vs_rate(rep: dict[str, Any], path: Path) -> None:
    """Student energy per token against firing rate on every target (E = e0 + slope * r), the dense twin
    on the same target (dashed), the fp32 and int8 teachers (black), break-even points and the measured rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    P, fair = rep["profiles"], rep["fair_baseline"]
    L0 = "512" if "512" in fair["teachers"]["fp32"] else str(rep["contexts"][0])
    rates = np.linspace(0.0, 1.0, 101)
    fig, ax = plt.subplots(figsize=(10, 5))
    for i, (n, b) in enumerate(P.items()):
        rm, color = b["rate_model"], f"C{i % 10}"
        ax.plot(rates, rm["e0_pj"] + rm["slope_pj"] * rates, color=color, label=f"student on {n}")
        if "dense_twin" in b:
            tw = b["dense_twin"]["energy_pj_per_token"]
            ax.axhline(tw, color=color, ls="--", lw=0.9)
            r = fair["break_even"][n].get("dense_twin")
            if r is not None and 0 <= r <= 1:
                ax.plot([r], [tw], "o", color=color, ms=6)
        for key, ls in (("int8", "-."), ("fp32", ":")):
            r = fair["break_even"][n][f"teacher_{key}"][L0]
            if r is not None and 0 <= r <= 1:
                ax.plot([r], [fair["teachers"][key][L0]], "D", color=color, ms=6)
        ax.plot([rm["measured_rate"]], [b["student"]["energy_pj_per_token"]], "x", color=color, ms=7)
    for key, ls in (("int8", "-."), ("fp32", ":")):
        t = fair["teachers"][key]
        ax.axhline(t[L0], color="black", ls=ls, lw=1.2, label=f"teacher {key} on {t['profile']} (ctx {L0})")
    meas = rep["activity"]["firing_rate"]
    ax.axvline(meas, color="grey", lw=1.0, label=f"measured rate, model as trained {meas:.3g}")
    yan = [x for x in fair["published_thresholds"] if x["source"].startswith("Yan")]
    if yan:
        lo = min(min(x["per_token_rate"]) for x in yan)
        hi = max(max(x["per_token_rate"]) for x in yan)
        ax.axvspan(lo, hi, color="tab:orange", alpha=0.12, label="Yan et al. 2024 (T x s_r, converted)")
    damp = [x for x in fair["published_thresholds"] if x["source"].startswith("Dampfhoffer")]
    if damp:
        ax.axvline(damp[0]["low"], color="tab:red", ls=":", lw=1.0, label="Dampfhoffer et al. 2023 (lowest)")
    ax.set_yscale("log")
    ax.set_xlim(0, 1)
    ax.set_xlabel("firing rate (events per neuron per token; measured pattern scaled)")
    ax.set_ylabel("energy per token (pJ)")
    ax.set_title("Student energy vs firing rate: dashed = dense twin, black = teachers; o/D = break-even, "
                 "x = measured", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _json_safe(o: Any) -> Any:
    if isinstance(o, dict):
        return {str(k): _json_safe(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_json_safe(v) for v in o]
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating, float)):
        f = float(o)
        return f if math.isfinite(f) else None
    return o


def write_report(rep: dict[str, Any], out_dir: str | os.PathLike, act: ActivityProfile | None = None,
                 plots: bool = True) -> Path:
    """Write the report directory atomically; returns its path."""
    check_writable_dir(out_dir)
    with atomic_dir(out_dir) as d:
        (d / "report.json").write_text(json.dumps(_json_safe(rep), indent=2, sort_keys=False) + "\n", encoding="utf-8")
        (d / "report.md").write_text(render_markdown(rep), encoding="utf-8")
        _write_tables(rep, act, d)
        if plots:
            _plots(rep, d)
    return Path(out_dir)
