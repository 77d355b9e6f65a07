"""The run configuration: every option that shapes a distillation run (stored in each checkpoint)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any

from goose_neuro import losses
from goose_neuro.errors import ConfigError, GooseError
from goose_neuro.schedules import POCLSchedule, make_pocl, parse_floats


class TrainingError(GooseError):
    """Training cannot continue (e.g. the loss keeps diverging)."""


#: goose-train's (and goose-demo's) default energy weight, with the priced term on ``loihi2``: measured by
#: benchmarks/pareto.py (README, "Quality per joule"). ``TrainConfig`` itself defaults to 0 because the priced
#: term needs activity prices from the energy layer (``goose_neuro.energy.training.activity_pricer``),
#: which the core package does not import: a library caller passes ``energy_weight`` and ``pricer`` together.
RECIPE_ENERGY_WEIGHT = 0.5

# options that change only how often things happen, not what is trained (resume may change them)
CADENCE = ("eval_every", "ckpt_every", "keep_checkpoints", "log_every", "max_bad_steps", "eval_windows")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that shapes a run (stored in each checkpoint's meta as ``train``).

    The POCL stage lists are tuples of numbers (the command line parses ``0.3,0.6,1``);
    a list given here is stored as a tuple.
    """

    steps: int = 1000
    batch_size: int = 8  # global: all processes and micro-batches together
    seq_len: int = 64
    grad_accum: int = 1
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup: int = 50
    min_lr_frac: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    ce_only: bool = False  # plain next-token training (the baseline)
    alpha: float = 0.5  # KD weight
    kl: str = "forward"
    kl_mix: float = 0.5
    temperature: float = 2.0  # fixed temperature, or CTKD's initial value and anchor
    ctkd: bool = True  # on by default: see the README (default recipe) for the figures
    tau_min: float = 1.0
    tau_max: float = 5.0
    temp_lr: float = 0.01
    ctkd_warmup: float = 0.2
    lambda_max: float = 1.0
    temp_reg: float = 0.1
    adakd: bool = False
    adakd_spread: float = 1.5
    pocl: bool = True  # on by default
    pocl_fractions: tuple[float, ...] = (0.3333, 0.6667, 1.0)  # data share per stage (easy first)
    pocl_taus: tuple[float, ...] = (1.0, 1.5, 2.0)  # temperature per stage
    pocl_alphas: tuple[float, ...] = (0.5, 0.6, 0.7)  # KD weight per stage
    pocl_ends: tuple[float, ...] = (0.4, 0.7)  # stage ends as step fractions (n or n - 1 of them)
    pocl_transition: str = "steps"
    pocl_patience: int = 2
    energy_weight: float = 0.0  # energy-aware term (see goose_neuro.training.energy_term)
    energy_profile: str = "loihi2"  # the hardware profile that prices the events
    rate_target: float | None = None  # use a per-population firing-rate target instead of the prices
    align_weight: float = 0.0
    align_map: str = "uniform"
    align_loss: str = "mse"
    teacher_cache: bool = False
    cache_topk: int = 32
    max_windows: int | None = None  # cap on the training window pool
    eval_every: int = 100
    eval_windows: int = 32
    ckpt_every: int = 100
    keep_checkpoints: int = 2
    log_every: int = 10
    max_bad_steps: int = 5

    def __post_init__(self) -> None:
        for name in LIST_FIELDS:
            v = getattr(self, name)
            if isinstance(v, (str, bytes)) or not isinstance(v, (list, tuple)):
                raise ConfigError(f"{name} must be a list of numbers (got {v!r})")
            if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v):
                raise ConfigError(f"{name} must hold finite numbers (got {v!r})")
            object.__setattr__(self, name, tuple(float(x) for x in v))
        pos = ("steps", "batch_size", "seq_len", "grad_accum", "eval_every", "eval_windows", "ckpt_every",
               "keep_checkpoints", "log_every", "max_bad_steps", "cache_topk")
        for n in pos:
            if int(getattr(self, n)) < 1:
                raise ConfigError(f"{n} must be >= 1 (got {getattr(self, n)})")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"alpha must be in [0, 1] (got {self.alpha})")
        if self.kl not in losses.KL_KINDS:
            raise ConfigError(f"kl must be one of {losses.KL_KINDS} (got {self.kl!r})")
        if self.temperature <= 0 or self.lr <= 0:
            raise ConfigError("temperature and lr must be positive")
        if self.max_windows is not None and self.max_windows < 1:
            raise ConfigError(f"max_windows must be >= 1 (got {self.max_windows})")
        if not (isinstance(self.energy_weight, (int, float)) and math.isfinite(self.energy_weight)
                and self.energy_weight >= 0):
            raise ConfigError(f"energy_weight must be a number >= 0 (got {self.energy_weight!r})")
        if not isinstance(self.energy_profile, str) or not self.energy_profile:
            raise ConfigError(f"energy_profile must name a hardware profile (got {self.energy_profile!r})")
        if self.rate_target is not None and not (isinstance(self.rate_target, (int, float))
                                                 and 0.0 <= self.rate_target < 1.0):
            raise ConfigError(f"rate_target must be in [0, 1) (got {self.rate_target!r})")
        if self.batch_size % self.grad_accum:
            raise ConfigError(f"batch_size {self.batch_size} must be divisible by grad_accum {self.grad_accum}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (tuples as lists), as stored in checkpoints."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Rebuild from a stored dict. Stage lists stored as comma-separated strings (written by
        earlier versions) are parsed; unknown keys are a ConfigError."""
        if not isinstance(d, dict):
            raise ConfigError(f"train config must be an object, got {type(d).__name__}")
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"unknown train config field(s): {', '.join(unknown)}")
        kw = {k: parse_floats(v, name=k) if k in LIST_FIELDS and isinstance(v, str) else v for k, v in d.items()}
        return cls(**kw)

    def differs_from(self, other: "TrainConfig") -> list[str]:
        """Names of the fields that change what is trained (cadence options left out)."""
        return sorted(f.name for f in fields(self)
                      if f.name not in CADENCE and getattr(self, f.name) != getattr(other, f.name))

    @property
    def priced_energy(self) -> bool:
        """The energy term prices events on ``energy_profile`` (needs activity prices)."""
        return self.energy_weight > 0 and self.rate_target is None

    def pocl_schedule(self) -> POCLSchedule | None:
        if not self.pocl or self.ce_only:
            return None
        return make_pocl(self.pocl_fractions, self.pocl_taus, self.pocl_alphas, self.pocl_ends,
                         self.pocl_transition, self.pocl_patience)


LIST_FIELDS = ("pocl_fractions", "pocl_taus", "pocl_alphas", "pocl_ends")
