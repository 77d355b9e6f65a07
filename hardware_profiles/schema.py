"""Hardware profiles: schema, safe loading and validation (``goose_neuro.hardware_profiles``).

A profile is a YAML data file (``hardware_profiles/<name>.yaml``, or any path a
user passes) that maps every operation class counted by the op-cost table
(:mod:`goose_neuro.export.opcost`) to an energy, with its unit, source and
confidence, and holds the target's number formats and limits. Hardware numbers
live only in these files, never in code. This module is a leaf: it imports only
the standard library, PyYAML and :mod:`goose_neuro.errors`, so every layer
(core, exporters, energy) may read it.

Schema (version 1; ``formats``, ``traffic`` and ``static`` are optional)::

    schema_version: 1
    name: loihi                      # str
    title: ...                       # str
    kind: neuromorphic | cmos | gpu
    event_driven: true | false       # true: synapses work only for nonzero spikes
    host_fallback: cmos45-fp64       # profile whose figures fill classes marked `host`
    precision:                       # figures with unit `bit`
      weight_bits_ternary, weight_bits_dense, state_bits, activation_bits
    energy:                          # one entry for EVERY class in OP_CLASSES, each either
      <class>: {value, unit, source, confidence, note?}   # a figure
      <class>: {included_in: <other class>, note}         # paid inside another figure
      <class>: {host: true, note}                         # runs on the host (fallback profile)
    formats:                         # number formats of the chip, figures with unit `bit`
      <key in FORMAT_KEYS>: {value, unit: bit, source, confidence, note?}
    traffic:                         # data movement beyond the op classes
      host_chip_bit: {value, unit: pJ/bit, ...}   # one bit crossing the chip boundary
      spike_hop_ew / spike_hop_ns: {value, unit: pJ, ...}   # one spike message, one hop between cores/tiles
    static:                          # static power and the time it is paid for
      power_per_chip: {value, unit: W | mW | uW, ...}
      time_per_token: {value, unit: s | ms | us | ns, ...}
    limits: {<name>: {value, unit, source, confidence, note?}}
    notes: [str, ...]

Operation classes take energies in ``J/nJ/pJ/fJ`` (per op); memory classes
(``mem_*_bits``) take ``<energy>/bit`` or ``<energy>/<n>bit`` (e.g. ``pJ/64bit``).
Confidence is one of ``published`` (read in the primary source or its code),
``secondary`` (consistent secondary copies), ``derived`` (computed from such
figures) or ``assumed`` (a labelled proxy). Any violation raises
:class:`ProfileError` naming the file and the field.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from goose_neuro.errors import ProfileError

SCHEMA_VERSION = 1
#: Operation classes (per token counts), in report order.
COMPUTE_CLASSES = ("ac", "mac", "add", "mul", "nonlin", "neuron", "spike")
#: Memory-traffic classes, counted in bits moved (reads + writes).
MEM_CLASSES = ("mem_syn_bits", "mem_dense_bits", "mem_neuron_bits", "mem_state_bits", "mem_act_bits")
OP_CLASSES = COMPUTE_CLASSES + MEM_CLASSES
CONFIDENCE = ("published", "secondary", "derived", "assumed")
KINDS = ("neuromorphic", "cmos", "gpu")
PRECISION_KEYS = ("weight_bits_ternary", "weight_bits_dense", "state_bits", "activation_bits")
#: Number formats a neuromorphic profile may state (all in bits), read by the exporters as
#: ``load_profile(target).formats[key].value``.
FORMAT_KEYS = ("decay_bits", "state_bits", "threshold_mantissa_bits", "synaptic_input_bits",
               "activation_shift_bits", "weight_mantissa_bits", "bias_mantissa_bits", "spike_payload_bits")
#: Data movement figures: key -> "mem" (energy per bit) or "op" (energy per message).
TRAFFIC_KEYS = {"host_chip_bit": "mem", "spike_hop_ew": "op", "spike_hop_ns": "op"}
#: Static power and the time it is paid for: key -> unit table.
_POWER_UNITS = {"W": 1.0, "mW": 1e-3, "uW": 1e-6, "µW": 1e-6}
_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
STATIC_KEYS = {"power_per_chip": _POWER_UNITS, "time_per_token": _TIME_UNITS}
_ENERGY_UNITS = {"J": 1e12, "mJ": 1e9, "uJ": 1e6, "µJ": 1e6, "nJ": 1e3, "pJ": 1.0, "fJ": 1e-3}
_UNIT_RE = re.compile(r"^(?P<e>J|mJ|uJ|µJ|nJ|pJ|fJ)(?:/(?P<n>\d*)bit)?$")


@dataclass(frozen=True)
class Figure:
    """One sourced number. ``pj`` is the value in pJ (per op, or per bit for memory)."""

    value: float
    unit: str
    source: str
    confidence: str
    note: str = ""
    pj: float | None = None
    si: float | None = None  # power in W or time in s (``static`` figures)


@dataclass(frozen=True)
class EnergyEntry:
    """How a profile prices one operation class: a figure, inside another class, or host."""

    cls: str
    figure: Figure | None = None
    included_in: str | None = None
    host: bool = False
    note: str = ""


@dataclass(frozen=True)
class HardwareProfile:
    """A validated profile. ``formats``/``traffic``/``static`` are empty when the file has none.

    ``traffic[k].pj`` is in pJ per bit (``host_chip_bit``) or pJ per message (hops);
    ``static['power_per_chip'].si`` is in W and ``static['time_per_token'].si`` in s."""

    name: str
    title: str
    kind: str
    event_driven: bool
    precision: dict[str, Figure]
    energy: dict[str, EnergyEntry]
    limits: dict[str, Figure] = field(default_factory=dict)
    host_fallback: str | None = None
    notes: tuple[str, ...] = ()
    path: str = ""
    formats: dict[str, Figure] = field(default_factory=dict)
    traffic: dict[str, Figure] = field(default_factory=dict)
    static: dict[str, Figure] = field(default_factory=dict)

    def bits(self, key: str) -> int:
        """Precision in bits (``weight_bits_dense`` ...)."""
        return int(self.precision[key].value)

    def static_pj_per_token(self, chips: int = 1, seconds_per_token: float | None = None) -> float | None:
        """Static energy per token, pJ: power per chip x chips x time per token. The time is the
        profile's ``static.time_per_token`` unless given; None when power or time is missing."""
        p = self.static.get("power_per_chip")
        t = seconds_per_token if seconds_per_token is not None else (
            self.static["time_per_token"].si if "time_per_token" in self.static else None)
        if p is None or t is None:
            return None
        return float(p.si) * chips * float(t) * 1e12


# -- validation helpers ------------------------------------------------------------
def _err(where: str, field_: str, why: str) -> ProfileError:
    return ProfileError(f"hardware profile {where}: field '{field_}': {why}")


def _need(d: dict, key: str, where: str, prefix: str, types: tuple, what: str) -> Any:
    name = f"{prefix}{key}"
    if key not in d:
        raise _err(where, name, "missing")
    v = d[key]
    if not isinstance(v, types) or (isinstance(v, bool) and bool not in types):
        raise _err(where, name, f"must be {what}, got {type(v).__name__} {v!r}")
    return v


def _to_pj(unit: str, value: float, memory: bool, where: str, name: str) -> float:
    """Convert ``value`` in ``unit`` to pJ (per op) or pJ/bit (memory)."""
    m = _UNIT_RE.match(unit.strip())
    if not m:
        raise _err(where, f"{name}.unit", f"unknown energy unit {unit!r} (use pJ, nJ, fJ, J, or pJ/bit, pJ/64bit)")
    per_bits = m.group("n")
    is_mem = unit.strip().endswith("bit")
    if memory and not is_mem:
        raise _err(where, f"{name}.unit", f"memory class needs an energy per bit (e.g. pJ/bit), got {unit!r}")
    if not memory and is_mem:
        raise _err(where, f"{name}.unit", f"operation class needs an energy per op (e.g. pJ), got {unit!r}")
    div = int(per_bits) if per_bits else 1
    if div < 1:
        raise _err(where, f"{name}.unit", "bit count must be >= 1")
    return value * _ENERGY_UNITS[m.group("e")] / div


def _figure(d: Any, where: str, name: str, energy: str | None = None) -> Figure:
    """Validate ``{value, unit, source, confidence, note?}``. ``energy``: None (any unit),
    ``op`` or ``mem`` (energy units, converted to pJ)."""
    if not isinstance(d, dict):
        raise _err(where, name, f"must be a mapping with value, unit, source, confidence; got {d!r}")
    p = f"{name}."
    value = _need(d, "value", where, p, (int, float), "a number")
    if not math.isfinite(value if isinstance(value, float) else 0.0) or not 0 <= value <= 1e300:  # huge ints too
        raise _err(where, p + "value", f"must be a finite number >= 0, got {value!r}")
    unit = _need(d, "unit", where, p, (str,), "a unit string")
    if not unit.strip():
        raise _err(where, p + "unit", "must not be empty")
    source = _need(d, "source", where, p, (str,), "a source string")
    if not source.strip():
        raise _err(where, p + "source", "must not be empty")
    conf = _need(d, "confidence", where, p, (str,), "a string")
    if conf not in CONFIDENCE:
        raise _err(where, p + "confidence", f"must be one of {', '.join(CONFIDENCE)}, got {conf!r}")
    note = d.get("note", "")
    if not isinstance(note, str):
        raise _err(where, p + "note", "must be a string")
    unknown = sorted(set(d) - {"value", "unit", "source", "confidence", "note"}, key=str)
    if unknown:
        raise _err(where, p + str(unknown[0]), "unknown key")
    pj = None if energy is None else _to_pj(unit, float(value), energy == "mem", where, name)
    return Figure(float(value), unit, source, conf, note, pj)


def _entry(cls: str, d: Any, where: str) -> EnergyEntry:
    name = f"energy.{cls}"
    if isinstance(d, dict) and "included_in" in d:
        tgt = d["included_in"]
        if tgt not in OP_CLASSES or tgt == cls:
            raise _err(where, name + ".included_in", f"must name another class ({', '.join(OP_CLASSES)}), got {tgt!r}")
        note = d.get("note")
        if not isinstance(note, str) or not note.strip():
            raise _err(where, name + ".note", "required: say why this cost is inside another figure")
        return EnergyEntry(cls, included_in=tgt, note=note)
    if isinstance(d, dict) and "host" in d:
        if d["host"] is not True:
            raise _err(where, name + ".host", "must be true (or give a figure instead)")
        note = d.get("note")
        if not isinstance(note, str) or not note.strip():
            raise _err(where, name + ".note", "required: say why this op runs on the host")
        return EnergyEntry(cls, host=True, note=note)
    fig = _figure(d, where, name, "mem" if cls in MEM_CLASSES else "op")
    return EnergyEntry(cls, figure=fig, note=fig.note)


def validate_profile(raw: Any, where: str = "<memory>") -> HardwareProfile:
    """Check a parsed profile against the schema; return a :class:`HardwareProfile`."""
    if not isinstance(raw, dict):
        raise ProfileError(f"hardware profile {where}: top level must be a mapping, got {type(raw).__name__}")
    ver = _need(raw, "schema_version", where, "", (int,), "an integer")
    if ver != SCHEMA_VERSION:
        raise _err(where, "schema_version", f"{ver} is not supported (this goose-neuro reads {SCHEMA_VERSION})")
    name = _need(raw, "name", where, "", (str,), "a string")
    title = _need(raw, "title", where, "", (str,), "a string")
    kind = _need(raw, "kind", where, "", (str,), "a string")
    if kind not in KINDS:
        raise _err(where, "kind", f"must be one of {', '.join(KINDS)}, got {kind!r}")
    event_driven = _need(raw, "event_driven", where, "", (bool,), "true or false")
    prec_raw = _need(raw, "precision", where, "", (dict,), "a mapping")
    precision = {}
    for k in PRECISION_KEYS:
        if k not in prec_raw:
            raise _err(where, f"precision.{k}", "missing")
        f = _figure(prec_raw[k], where, f"precision.{k}")
        if f.unit != "bit" or f.value < 1 or f.value != int(f.value):
            raise _err(where, f"precision.{k}", f"must be a whole number of bits with unit 'bit', got {f.value} {f.unit}")
        precision[k] = f
    en_raw = _need(raw, "energy", where, "", (dict,), "a mapping")
    unknown = sorted(set(en_raw) - set(OP_CLASSES), key=str)
    if unknown:
        raise _err(where, f"energy.{unknown[0]}", f"unknown operation class (known: {', '.join(OP_CLASSES)})")
    energy = {}
    for cls in OP_CLASSES:
        if cls not in en_raw:
            raise _err(where, f"energy.{cls}", "missing: every class needs a figure, included_in or host (no silent zeros)")
        energy[cls] = _entry(cls, en_raw[cls], where)
    _check_included_chains(energy, where)
    host = raw.get("host_fallback")
    if any(e.host for e in energy.values()):
        if not isinstance(host, str) or not host.strip():
            raise _err(where, "host_fallback", "required when any class is marked host: name the profile for host-side ops")
    elif host is not None and not isinstance(host, str):
        raise _err(where, "host_fallback", "must be a profile name or path")
    limits_raw = raw.get("limits") or {}
    if not isinstance(limits_raw, dict):
        raise _err(where, "limits", "must be a mapping")
    limits = {k: _figure(v, where, f"limits.{k}") for k, v in limits_raw.items()}
    notes = raw.get("notes") or []
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise _err(where, "notes", "must be a list of strings")
    formats = _section(raw, "formats", where, FORMAT_KEYS, _bits_figure)
    traffic = _section(raw, "traffic", where, tuple(TRAFFIC_KEYS),
                       lambda d, w, n, k: _figure(d, w, n, TRAFFIC_KEYS[k]))
    static = _section(raw, "static", where, tuple(STATIC_KEYS), _si_figure)
    known = {"schema_version", "name", "title", "kind", "event_driven", "host_fallback", "precision", "energy",
             "limits", "notes", "formats", "traffic", "static", "per_op_energy_published"}
    unknown_top = sorted(set(raw) - known, key=str)
    if unknown_top:
        raise _err(where, str(unknown_top[0]), f"unknown top-level key (known: {', '.join(sorted(known))})")
    return HardwareProfile(name, title, kind, event_driven, precision, energy, limits, host, tuple(notes), where,
                           formats, traffic, static)


def _section(raw: dict, sec: str, where: str, keys: tuple[str, ...], make) -> dict[str, Figure]:
    """An optional mapping ``sec`` whose keys must be in ``keys``; ``make(d, where, name, key)``."""
    d = raw.get(sec)
    if d is None:
        return {}
    if not isinstance(d, dict):
        raise _err(where, sec, "must be a mapping")
    unknown = sorted(set(d) - set(keys), key=str)
    if unknown:
        raise _err(where, f"{sec}.{unknown[0]}", f"unknown key (known: {', '.join(keys)})")
    return {k: make(v, where, f"{sec}.{k}", k) for k, v in d.items()}


def _bits_figure(d: Any, where: str, name: str, key: str) -> Figure:
    f = _figure(d, where, name)
    if f.unit != "bit" or f.value < 1 or f.value != int(f.value):
        raise _err(where, name, f"must be a whole number of bits (>= 1) with unit 'bit', got {f.value} {f.unit}")
    return f


def _si_figure(d: Any, where: str, name: str, key: str) -> Figure:
    f = _figure(d, where, name)
    table = STATIC_KEYS[key]
    if f.unit.strip() not in table:
        raise _err(where, f"{name}.unit", f"must be one of {', '.join(table)}, got {f.unit!r}")
    return Figure(f.value, f.unit, f.source, f.confidence, f.note, None, f.value * table[f.unit.strip()])


def _check_included_chains(energy: dict[str, EnergyEntry], where: str) -> None:
    """``included_in`` must end at a class that has a figure or runs on the host (no cycles)."""
    for cls in energy:
        seen, cur = {cls}, energy[cls]
        while cur.included_in is not None:
            if cur.included_in in seen:
                raise _err(where, f"energy.{cls}.included_in", "forms a cycle")
            seen.add(cur.included_in)
            cur = energy[cur.included_in]


# -- loading -------------------------------------------------------------------------
def builtin_profiles() -> list[str]:
    """Names of the profiles shipped in ``goose_neuro.hardware_profiles``."""
    root = resources.files("goose_neuro.hardware_profiles")
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def _read_text(name_or_path: str | os.PathLike) -> tuple[str, str]:
    s = str(name_or_path)
    p = Path(s)
    if p.suffix in (".yaml", ".yml") or os.sep in s or p.is_file():
        if not p.is_file():
            raise ProfileError(f"hardware profile {s}: file not found")
        try:
            return p.read_text(encoding="utf-8"), str(p)
        except (OSError, UnicodeDecodeError) as e:
            raise ProfileError(f"hardware profile {s}: unreadable ({e})") from None
    res = resources.files("goose_neuro.hardware_profiles") / f"{s}.yaml"
    if not res.is_file():
        raise ProfileError(f"unknown hardware profile {s!r}: use one of {', '.join(builtin_profiles())} or a path to a .yaml file")
    return res.read_text(encoding="utf-8"), f"{s} (built-in)"


def load_profile(name_or_path: str | os.PathLike) -> HardwareProfile:
    """Load a built-in profile by name (``loihi2``) or a user's YAML file by path.

    YAML is parsed with ``yaml.safe_load`` (no object construction); the result is
    validated against the schema above.
    """
    text, where = _read_text(name_or_path)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ProfileError(f"hardware profile {where}: not valid YAML ({' '.join(str(e).split())})") from None
    prof = validate_profile(raw, where)
    return prof


def load_profiles(names: list[str]) -> dict[str, HardwareProfile]:
    """Load several profiles plus the host fallbacks they name (keyed by profile name)."""
    out: dict[str, HardwareProfile] = {}
    for n in names:
        p = load_profile(n)
        if p.name in out:
            raise ProfileError(f"hardware profile {p.path}: name {p.name!r} given twice")
        out[p.name] = p
    return out
