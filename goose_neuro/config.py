"""Frozen model configuration and presets.

A :class:`ModelConfig` is saved into every checkpoint and every export, so a
model can always be rebuilt from what its files store (``ASNNGoose(ModelConfig(**d))``).
Invalid values raise :class:`goose_neuro.errors.ConfigError` (a ``ValueError``)
at construction, naming the field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

from goose_neuro.errors import ConfigError
from goose_neuro.fixed_point import NEURONS

SPIKE_MODES = ("ternary", "binary", "none")
HEAD_INPUTS = ("dense", "spike")
SURROGATES = ("atan", "fast_sigmoid", "sigmoid")
AMPLITUDE_MODES = ("shared", "channel")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of an ASNN-Goose student.

    Fields
    ------
    vocab_size: tokens in the (teacher's) vocabulary.
    d_model: width of the residual stream.
    n_layers: number of blocks (time-mix + channel-mix).
    ffn_mult: channel-mix hidden width = ffn_mult * d_model (rounded).
    spike_mode: ``ternary`` ({-a, 0, +a}), ``binary`` ({0, a}) or ``none`` (dense).
    surrogate: surrogate gradient of the spike function (snnTorch's).
    surrogate_slope: its slope parameter (alpha for atan, k for fast_sigmoid...).
    threshold_init, beta_init: initial LIF threshold and membrane decay.
    amplitude_mode: ``shared`` (one learnable amplitude per population, so every
        spike-input synapse folds to accumulate-only) or ``channel`` (one per
        channel; such synapses carry graded inputs and are counted as MACs).
    ttq_threshold: TTQ's t, the per-row threshold is t * max|w|.
    ttq_deadzone_lambda: TEQUILA-style secondary gradient for weights trapped at
        zero (0 disables it).
    quantize_head: make the LM head ternary (TTQ) too.
    head_input: ``dense`` (the head reads the final LayerNorm's output: MACs) or ``spike`` (a
        LIF population ``head_lif`` between the final LayerNorm and the head, so the head reads
        spikes: with ``quantize_head`` it is a ternary synapse like every other, accumulate-only,
        and maps onto neuromorphic cores).
    head_rank: 0 for a full (V x C) head; r > 0 factorises it into C -> r (``head_down``) and
        r -> V (``head``), both dense or both ternary (``quantize_head``).
    tie_embeddings: share embedding and head weights (a full-rank float head only).
    layer_norm_eps: LayerNorm epsilon.
    neuron: ``subtract`` (per-channel decay, subtract reset; the default) or ``ternary_lif``
        (lava-nc's TernaryLIF: current and voltage compartments, one decay each per population,
        reset to zero; Lava's own process model can then check a Loihi 2 package).
    fixed_point: run every population with its integer neuron (train and infer with the
        arithmetic of the Loihi package; see :mod:`goose_neuro.fixed_point`).
    frac_bits: threshold mantissa bits of the integer neuron (``vth = 2^frac_bits``; the input
        step is threshold / 2^frac_bits). Used by ``fixed_point`` and recorded for export.
    """

    vocab_size: int = 4096
    d_model: int = 128
    n_layers: int = 4
    ffn_mult: float = 3.0
    spike_mode: str = "ternary"
    surrogate: str = "atan"
    surrogate_slope: float = 2.0
    threshold_init: float = 0.5
    beta_init: float = 0.5
    amplitude_mode: str = "shared"
    ttq_threshold: float = 0.05
    ttq_deadzone_lambda: float = 0.0
    quantize_head: bool = False
    head_input: str = "dense"
    head_rank: int = 0
    tie_embeddings: bool = False
    layer_norm_eps: float = 1e-5
    neuron: str = "subtract"
    fixed_point: bool = False
    frac_bits: int = 11

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ConfigError:
            return ConfigError(f"ModelConfig.{name}={getattr(self, name)!r}: {why}")

        for name in ("vocab_size", "d_model", "n_layers"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise bad(name, "must be a positive integer")
        if not isinstance(self.ffn_mult, (int, float)) or not (0 < self.ffn_mult <= 16):
            raise bad("ffn_mult", "must be in (0, 16]")
        if self.spike_mode not in SPIKE_MODES:
            raise bad("spike_mode", f"must be one of {SPIKE_MODES}")
        if self.surrogate not in SURROGATES:
            raise bad("surrogate", f"must be one of {SURROGATES}")
        if self.amplitude_mode not in AMPLITUDE_MODES:
            raise bad("amplitude_mode", f"must be one of {AMPLITUDE_MODES}")
        for name in ("surrogate_slope", "threshold_init", "layer_norm_eps"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0:
                raise bad(name, "must be a positive number")
        if not isinstance(self.beta_init, (int, float)) or not (0.0 < self.beta_init < 1.0):
            raise bad("beta_init", "must be in (0, 1)")
        if not isinstance(self.ttq_threshold, (int, float)) or not (0.0 <= self.ttq_threshold < 1.0):
            raise bad("ttq_threshold", "must be in [0, 1)")
        if not isinstance(self.ttq_deadzone_lambda, (int, float)) or self.ttq_deadzone_lambda < 0:
            raise bad("ttq_deadzone_lambda", "must be >= 0")
        if self.neuron not in NEURONS:
            raise bad("neuron", f"must be one of {NEURONS}")
        if self.neuron == "ternary_lif" and self.spike_mode == "binary":
            raise bad("neuron", "ternary_lif emits ternary spikes: use spike_mode ternary or none")
        if not isinstance(self.frac_bits, int) or isinstance(self.frac_bits, bool) or not 1 <= self.frac_bits <= 16:
            raise bad("frac_bits", "must be an integer in [1, 16] (a 17-bit threshold mantissa)")
        if not isinstance(self.fixed_point, bool):
            raise bad("fixed_point", "must be true or false")
        if self.fixed_point and self.spike_mode != "ternary":
            raise bad("fixed_point", "fixed-point neurons exist for spike_mode ternary only")
        for name in ("quantize_head", "tie_embeddings"):
            if not isinstance(getattr(self, name), bool):
                raise bad(name, "must be true or false")
        if self.tie_embeddings and self.quantize_head:
            raise bad("tie_embeddings", "cannot tie the embedding to a quantized head")
        if self.head_input not in HEAD_INPUTS:
            raise bad("head_input", f"must be one of {HEAD_INPUTS}")
        if not isinstance(self.head_rank, int) or isinstance(self.head_rank, bool) or self.head_rank < 0:
            raise bad("head_rank", "must be an integer >= 0 (0: a full-rank head)")
        if self.head_rank and self.tie_embeddings:
            raise bad("tie_embeddings", "cannot tie the embedding to a factorised head (head_rank > 0)")

    @property
    def d_ffn(self) -> int:
        """Channel-mix hidden width."""
        return max(1, int(round(self.ffn_mult * self.d_model)))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        """Rebuild from a stored dict; unknown or mistyped keys are a ConfigError."""
        if not isinstance(d, dict):
            raise ConfigError(f"model config must be a JSON object, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown model config field(s): {', '.join(unknown)}")
        try:
            return cls(**d)
        except TypeError as e:  # pragma: no cover - defensive
            raise ConfigError(f"bad model config: {e}") from None

    def replace(self, **changes: Any) -> "ModelConfig":
        return dataclasses.replace(self, **changes)


# Presets. `small` is sized to about 40% of the benchmark teacher
# (../shared/teachers/wp-gpt2-4L256: 4.24M parameters, vocab 4096); `mini` to about 44% of the demo
# teacher (goose_neuro.demo_teacher: 0.87M parameters, vocab 2048);
# `gpt2-50m` to about 50M parameters with GPT-2's 50,257-token vocabulary.
#: The head of the spiking presets: ternary (TTQ) weights reading the final LayerNorm (on a Loihi package
#: it runs on the host, with additions only). Chosen by benchmarks/head_options.py: at an equal budget it
#: matched the spike-fed ternary head's package energy on loihi2 with 10% lower perplexity (README).
SPIKING_HEAD: dict[str, Any] = dict(head_input="dense", quantize_head=True)
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(vocab_size=256, d_model=32, n_layers=2, ffn_mult=2.0),
    "mini": dict(vocab_size=2048, d_model=64, n_layers=3, ffn_mult=2.0, **SPIKING_HEAD),
    "small": dict(vocab_size=4096, d_model=128, n_layers=4, ffn_mult=3.0, **SPIKING_HEAD),
    "gpt2-50m": dict(vocab_size=50257, d_model=512, n_layers=8, ffn_mult=4.0, tie_embeddings=True),
}


def preset(name: str, **overrides: Any) -> ModelConfig:
    """Build a preset config, optionally overriding fields (e.g. ``vocab_size``)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return ModelConfig(**{**PRESETS[name], **overrides})
