"""Energy per token: operation counts times the profile's per-class energies.

    E_token = sum over classes c of  count_c * e_c          (pJ; memory classes: bits * pJ/bit)

where ``e_c`` comes from the profile: its own figure; 0 with a stated reason when the
cost is inside another class's figure (``included_in``); or the host profile's figure
when the class runs on the host (``host``), labelled as such. No class is ever priced
silently: :func:`price_table` returns, for every class, the number used, how it was
obtained, and the source and confidence of the figure behind it.

Static (leakage) power is not included: it depends on throughput and utilisation,
not on the work per token.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from goose_neuro.hardware_profiles import (MEM_CLASSES, OP_CLASSES, HardwareProfile, load_profile)
from goose_neuro.errors import ProfileError


@dataclass(frozen=True)
class Price:
    """Energy per unit of one class on one target, with where the number came from."""

    cls: str
    pj: float  # per op, or per bit for memory classes
    how: str  # "figure", "included in <class>", "host (<profile>)", "host (<profile>): included in <class>"
    source: str
    confidence: str
    note: str = ""

    @property
    def unit(self) -> str:
        return "pJ/bit" if self.cls in MEM_CLASSES else "pJ/op"

    def to_dict(self) -> dict:
        return {**asdict(self), "unit": self.unit}


def _own_price(prof: HardwareProfile, cls: str, prefix: str = "") -> Price | None:
    """Price from ``prof``'s own entry, or None if the entry says ``host``."""
    e = prof.energy[cls]
    if e.figure is not None:
        f = e.figure
        how = f"{prefix}figure" if not prefix else prefix.rstrip(": ")
        return Price(cls, float(f.pj), how, f.source, f.confidence, f.note)
    if e.included_in is not None:
        return Price(cls, 0.0, f"{prefix}included in {e.included_in}", f"see {e.included_in}", "n/a", e.note)
    return None


def price_table(prof: HardwareProfile, host: HardwareProfile | None = None) -> dict[str, Price]:
    """Every class's energy on ``prof`` (host classes priced from ``host``)."""
    out = {}
    for cls in OP_CLASSES:
        p = _own_price(prof, cls)
        if p is None:
            if host is None:
                raise ProfileError(f"hardware profile {prof.path}: class {cls!r} runs on the host but no host profile was loaded")
            hp = _own_price(host, cls, prefix=f"host ({host.name}): ")
            if hp is None:
                raise ProfileError(f"hardware profile {host.path}: used as host for {prof.name}, but its {cls!r} is also 'host'")
            note = f"{prof.energy[cls].note} | host figure: {hp.note}".strip(" |")
            p = Price(cls, hp.pj, hp.how if hp.how.startswith("host") else f"host ({host.name})", hp.source,
                      hp.confidence, note)
        out[cls] = p
    return out


def host_for(prof: HardwareProfile) -> HardwareProfile | None:
    """Load the host fallback profile named by ``prof`` (None if it names none)."""
    if not prof.host_fallback:
        return None
    return load_profile(prof.host_fallback)


def energy_by_class(counts: dict[str, float], prices: dict[str, Price]) -> dict[str, float]:
    """pJ per class: count * price (memory: bits * pJ/bit)."""
    return {c: float(counts.get(c, 0.0)) * prices[c].pj for c in OP_CLASSES}


def total(by_class: dict[str, float]) -> float:
    return float(sum(by_class.values()))


def group_shares(by_class: dict[str, float]) -> dict[str, float]:
    """Energy grouped for summaries: synaptic ACs, MACs, neurons+spikes, elementwise, memory."""
    groups = {
        "ac": by_class["ac"],
        "mac": by_class["mac"],
        "neuron_spike": by_class["neuron"] + by_class["spike"],
        "elementwise": by_class["add"] + by_class["mul"] + by_class["nonlin"],
        "memory": sum(by_class[c] for c in MEM_CLASSES),
    }
    return groups
