"""Schedules: learning rate, CTKD temperature, POCL curriculum, AdaKD token temperature.

CTKD, Curriculum Temperature for KD (Li et al. 2022, arXiv 2211.16231)
---------------------------------------------------------------------
The temperature is a learnable scalar bounded by a sigmoid::

    tau = tau_min + (tau_max - tau_min) * sigmoid(theta)        (default [1, 5])

and trained adversarially: the student minimizes L_KD(tau) while theta
maximizes it. One backward pass does both through a gradient reversal layer
R_lambda: forward ``R(x) = x``, backward ``dR/dx = -lambda``. lambda follows a
cosine ramp after a warm-up (0 during warm-up, then
``lambda_max * (1 - cos(pi * progress)) / 2``), so the adversary is weak early
and strong late. An optional anchor term ``w * (tau - tau_anchor)^2``, applied
to tau *without* reversal, keeps tau from running to a bound.

POCL, Progressive Overload Curriculum Learning (arXiv 2506.05695)
----------------------------------------------------------------
Training windows are ranked easy to hard by a measured loss (the teacher's
cross-entropy on each window). Stage k trains on the easiest ``fraction[k]`` of
them, at temperature ``tau[k]`` and KD weight ``alpha[k]``; fractions and
temperatures rise by stage. Transitions happen at fixed fractions of the step
budget or when the validation loss plateaus.

AdaKD-style token temperature
-----------------------------
Per token, tokens the student gets wrong (high CE on the true token) get a lower
temperature (sharper, corrective targets) and easy tokens a higher one::

    r_t = rank of CE_t in the batch / (N - 1)       (0 = easiest, 1 = hardest)
    tau_t = tau * spread ** (1 - 2 r_t)             (tau * spread ... tau / spread)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from goose_neuro.errors import ConfigError


# -- learning rate -----------------------------------------------------------------
def cosine_lr(step: int, total: int, warmup: int, min_frac: float = 0.1) -> float:
    """LR multiplier: linear warm-up to 1 over ``warmup`` steps, then cosine to ``min_frac``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_frac + (1.0 - min_frac) * 0.5 * (1.0 + math.cos(math.pi * progress))


# -- CTKD ---------------------------------------------------------------------------
class _GradReverse(torch.autograd.Function):
    """Forward: identity. Backward: multiply the incoming gradient by -lambda."""

    @staticmethod
    def forward(ctx, x: Tensor, lam: float) -> Tensor:
        ctx.lam = float(lam)
        return x.view_as(x).clone()

    @staticmethod
    def backward(ctx, g: Tensor):
        return -ctx.lam * g, None


def grad_reverse(x: Tensor, lam: float) -> Tensor:
    return _GradReverse.apply(x, lam)


def ctkd_lambda(step: int, total: int, warmup_frac: float = 0.2, lam_max: float = 1.0) -> float:
    """Adversarial strength: 0 during warm-up, then a cosine ramp from 0 to ``lam_max``."""
    warm = int(total * warmup_frac)
    if step < warm:
        return 0.0
    progress = min(1.0, (step - warm) / max(1, total - warm))
    return lam_max * (1.0 - math.cos(math.pi * progress)) / 2.0


class CTKDTemperature(nn.Module):
    """Learnable bounded temperature: tau = tau_min + (tau_max - tau_min) * sigmoid(theta).

    ``forward(lam)`` returns ``(tau_adv, tau)``: equal values; ``tau_adv`` passes
    theta through the gradient reversal layer (use it in the KD loss), ``tau`` does
    not (use it in the anchor regulariser).
    """

    def __init__(self, tau_min: float = 1.0, tau_max: float = 5.0, init: float = 2.0) -> None:
        super().__init__()
        if not tau_min < tau_max or not tau_min <= init <= tau_max or tau_min <= 0:
            raise ConfigError(f"CTKD needs 0 < tau_min < tau_max and tau_min <= init <= tau_max "
                              f"(got {tau_min}, {tau_max}, init {init})")
        self.tau_min, self.tau_max = float(tau_min), float(tau_max)
        # start inside the bounds: at a bound the sigmoid saturates and tau could not move
        frac = min(max((init - tau_min) / (tau_max - tau_min), 0.05), 0.95)
        self.theta = nn.Parameter(torch.tensor(math.log(frac / (1 - frac))))

    def _bound(self, theta: Tensor) -> Tensor:
        return self.tau_min + (self.tau_max - self.tau_min) * torch.sigmoid(theta)

    def forward(self, lam: float) -> tuple[Tensor, Tensor]:
        return self._bound(grad_reverse(self.theta, lam)), self._bound(self.theta)

    @property
    def value(self) -> float:
        return float(self._bound(self.theta.detach()))


def anchor_reg(tau: Tensor, anchor: float, weight: float) -> Tensor:
    """weight * (tau - anchor)^2 (pulls a learned temperature toward an anchor)."""
    return weight * (tau - anchor) ** 2


# -- AdaKD -------------------------------------------------------------------------
def adakd_token_tau(tau: Tensor | float, difficulty: Tensor, spread: float = 1.5) -> Tensor:
    """Per-token temperature (B, T) from a per-token difficulty (B, T); hard tokens get low tau."""
    flat = difficulty.detach().flatten()  # (N,)
    n = flat.numel()
    ranks = torch.empty_like(flat)
    ranks[flat.argsort()] = torch.arange(n, dtype=flat.dtype, device=flat.device)
    r = (ranks / max(1, n - 1)).view_as(difficulty)  # (B, T) in [0, 1]
    return torch.as_tensor(tau, dtype=torch.float32) * spread ** (1.0 - 2.0 * r)


# -- POCL --------------------------------------------------------------------------
@dataclass
class POCLStage:
    fraction: float  # share of the (easy-to-hard ranked) training windows used
    tau: float  # temperature (fixed KD) or the CTKD anchor in this stage
    alpha: float  # KD weight
    until: float  # end of the stage as a fraction of the step budget (step mode)


def default_pocl_stages() -> list[POCLStage]:
    """Three cumulative stages (easiest third, two thirds, all); temperature 1 -> 1.5 -> 2."""
    return [POCLStage(1 / 3, 1.0, 0.5, 0.4), POCLStage(2 / 3, 1.5, 0.6, 0.7), POCLStage(1.0, 2.0, 0.7, 1.0)]


@dataclass
class POCLSchedule:
    """Stage bookkeeping. ``transition``: ``steps`` (at ``until`` fractions) or ``plateau``
    (advance when the validation loss has not improved by ``min_delta`` (relative) for
    ``patience`` evaluations; a stage also ends at its ``until`` fraction at the latest)."""

    stages: list[POCLStage] = field(default_factory=default_pocl_stages)
    transition: str = "steps"
    patience: int = 2
    min_delta: float = 0.01
    stage: int = 0
    best: float = math.inf
    bad_evals: int = 0

    def __post_init__(self) -> None:
        if self.transition not in ("steps", "plateau"):
            raise ConfigError(f"POCL transition must be 'steps' or 'plateau', got {self.transition!r}")
        fr = [s.fraction for s in self.stages]
        if not self.stages or any(not 0 < f <= 1 for f in fr) or fr != sorted(fr) or fr[-1] != 1.0:
            raise ConfigError(f"POCL fractions must rise within (0, 1] and end at 1 (got {fr})")

    @property
    def current(self) -> POCLStage:
        return self.stages[self.stage]

    def _advance(self) -> bool:
        if self.stage + 1 >= len(self.stages):
            return False
        self.stage += 1
        self.best, self.bad_evals = math.inf, 0
        return True

    def on_step(self, step: int, total: int) -> bool:
        """Call before each step; True if the stage changed."""
        changed = False
        while self.stage + 1 < len(self.stages) and step >= self.current.until * total:
            changed |= self._advance()
        return changed

    def on_eval(self, val_loss: float) -> bool:
        """Call after each evaluation; in plateau mode may advance. True if the stage changed."""
        if self.transition != "plateau":
            return False
        if val_loss < self.best * (1.0 - self.min_delta):
            self.best, self.bad_evals = val_loss, 0
            return False
        self.bad_evals += 1
        return self._advance() if self.bad_evals >= self.patience else False

    def allowed(self, ranked: Tensor) -> Tensor:
        """The window indices of the current stage from ``ranked`` (easy first)."""
        k = max(1, int(round(self.current.fraction * ranked.numel())))
        return ranked[:k]

    def state_dict(self) -> dict[str, Any]:
        best = None if math.isinf(self.best) else self.best
        return {"stage": self.stage, "best": best, "bad_evals": self.bad_evals}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.stage = int(d["stage"])
        self.best = math.inf if d.get("best") is None else float(d["best"])
        self.bad_evals = int(d["bad_evals"])


def parse_floats(text: str, n: int | None = None, name: str = "value") -> list[float]:
    """'0.3,0.6,1' -> [0.3, 0.6, 1.0] (ConfigError on bad input or wrong count)."""
    try:
        vals = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{name}: expected comma-separated numbers, got {text!r}") from None
    if n is not None and len(vals) != n:
        raise ConfigError(f"{name}: expected {n} numbers, got {len(vals)} ({text!r})")
    return vals


def make_pocl(fractions: Sequence[float], taus: Sequence[float], alphas: Sequence[float],
              untils: Sequence[float], transition: str = "steps", patience: int = 2) -> POCLSchedule:
    n = len(fractions)
    if not (len(taus) == len(alphas) == n and len(untils) in (n, n - 1)):
        raise ConfigError("POCL: give as many temperatures and alphas as fractions, and n or n-1 stage ends")
    ends = list(untils) + ([1.0] if len(untils) == n - 1 else [])
    return POCLSchedule([POCLStage(*v) for v in zip(fractions, taus, alphas, ends)], transition, patience)

