"""Fixed-point neurons: a target's integer neuron format, and a population's integer parameters.

This is the one place that says how a trained population becomes integers. The student uses it
when it runs (trains or infers) with fixed-point neurons (``ModelConfig.fixed_point``), and the
Loihi exporter uses it to write the package, so the deployed numbers are the trained numbers.

Formats are hardware facts and come from ``hardware_profiles/<target>.yaml`` (``formats``):
decay bits ``D`` (12), state bits ``B`` (24), the input/threshold alignment shift ``S`` (6), the
threshold mantissa width (17 bits) and the synaptic input width (16 bits: lava-nc's fixed-point
``LIF``/``TernaryLIF`` take ``a_in`` as int16).

Per population (``th`` its per-neuron threshold, ``beta`` its voltage decay, ``beta_u`` its current
decay; ``vth = 2^frac_bits`` one threshold mantissa for the whole population)::

    gain   = 2^frac_bits / th                              (float64, per neuron; folds th into the input)
    x_mant = clamp(round_half_even(x * gain), +-(2^(x_bits - 1) - 1))
    dv     = clip(2^D - round(2^D * beta), 0, 2^D - 1)      (decay factor (2^D - dv) / 2^D)
    du     = clip(2^D - 1 - round(2^D * beta_u), 0, 2^D - 1) (lava adds 1: factor (2^D - du - 1) / 2^D)

and the neuron, in lava-nc's conventions (``AbstractPyLifModelFixed``: decays truncate toward
zero, inputs and thresholds are shifted left by ``S``)::

    subtract     v = clip(trunc(v (2^D - dv) / 2^D) + (x_mant << S), +-(2^(B-1) - 1))
                 s = [v > vth << S] - [v < -(vth << S)];   v = v - s (vth << S)
    ternary_lif  u = wrap_B(trunc(u (2^D - du - 1) / 2^D) + (x_mant << S))
                 v = clip(trunc(v (2^D - dv) / 2^D) + u, +-(2^(B-1) - 1))
                 s = [v > vth << S] - [v < -(vth << S)];   v = 0 where s != 0

``ternary_lif`` is exactly lava-nc 0.10's ``TernaryLIF`` with its ``PyTernLifModelFixed`` process
model (``vth_hi = vth``, ``vth_lo = -vth``, bias 0), so Lava's own model can check it.
``subtract`` is the student's original neuron; on Loihi 2 it needs a programmable neuron, and its
input may use the state's headroom: ``x_bits = B - S`` (18) instead of the 16-bit synaptic input.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from goose_neuro.errors import ConfigError

NEURONS = ("subtract", "ternary_lif")
DEFAULT_FRAC_BITS = 11
FORMAT_TARGET = "loihi2"  # the integer neuron's formats are read from this profile
FORMAT_KEYS = ("decay_bits", "state_bits", "threshold_mantissa_bits", "synaptic_input_bits",
               "activation_shift_bits")


@dataclass(frozen=True)
class NeuronFormat:
    """The integer arithmetic of one population kind (see the module docstring)."""

    neuron: str
    frac_bits: int
    decay_bits: int = 12
    state_bits: int = 24
    shift: int = 6
    x_bits: int = 16
    threshold_bits: int = 17

    def __post_init__(self) -> None:
        if self.neuron not in NEURONS:
            raise ConfigError(f"neuron {self.neuron!r}: choose one of {', '.join(NEURONS)}")
        limit = self.threshold_bits - 1
        if not isinstance(self.frac_bits, int) or isinstance(self.frac_bits, bool) or not 1 <= self.frac_bits <= limit:
            raise ConfigError(f"frac_bits={self.frac_bits!r}: the threshold mantissa 2^frac_bits must fit "
                              f"{self.threshold_bits} bits (1 <= frac_bits <= {limit})")

    @property
    def vth(self) -> int:
        """Threshold mantissa (the neuron compares with ``vth << shift``)."""
        return 1 << self.frac_bits

    @property
    def x_limit(self) -> int:
        """Largest input mantissa magnitude."""
        return (1 << (self.x_bits - 1)) - 1

    @property
    def v_max(self) -> int:
        return (1 << (self.state_bits - 1)) - 1

    @property
    def unit(self) -> int:
        """2^decay_bits: the decay denominator."""
        return 1 << self.decay_bits

    def dv(self, beta) -> np.ndarray:
        """Voltage decay constants (int64) for decay factors ``beta``."""
        b = np.asarray(beta, dtype=np.float64)
        return np.clip(self.unit - np.round(self.unit * b), 0, self.unit - 1).astype(np.int64)

    def du(self, beta_u) -> np.ndarray:
        """Current decay constants (int64); lava adds 1 to ``du`` (``ds_offset``)."""
        b = np.asarray(beta_u, dtype=np.float64)
        return np.clip(self.unit - 1 - np.round(self.unit * b), 0, self.unit - 1).astype(np.int64)

    def gain(self, th) -> np.ndarray:
        """Input gain 2^frac_bits / th (float64, per neuron)."""
        th = np.asarray(th, dtype=np.float64)
        if not np.all(th > 0):
            raise ConfigError("fixed-point neurons need thresholds > 0")
        return float(self.vth) / th

    def to_dict(self) -> dict:
        return asdict(self)


def _profile_formats(target: str) -> dict[str, int]:
    """Integer formats from the target's hardware profile."""
    from goose_neuro.hardware_profiles import load_profile

    prof = load_profile(target)
    missing = [k for k in FORMAT_KEYS if k not in prof.formats]
    if missing:
        raise ConfigError(f"hardware profile {prof.path}: formats lack {', '.join(missing)}")
    return {k: int(prof.formats[k].value) for k in FORMAT_KEYS}


def neuron_format(neuron: str, frac_bits: int = DEFAULT_FRAC_BITS, target: str = FORMAT_TARGET) -> NeuronFormat:
    """The integer format of a ``neuron`` population on ``target`` (formats from its profile)."""
    if neuron not in NEURONS:
        raise ConfigError(f"neuron {neuron!r}: choose one of {', '.join(NEURONS)}")
    f = _profile_formats(target)
    x_bits = f["synaptic_input_bits"] if neuron == "ternary_lif" else f["state_bits"] - f["activation_shift_bits"]
    return NeuronFormat(neuron, frac_bits, f["decay_bits"], f["state_bits"], f["activation_shift_bits"], x_bits,
                        f["threshold_mantissa_bits"])
