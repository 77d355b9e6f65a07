"""Distillation losses.

Knowledge distillation (Hinton, Vinyals, Dean 2015, arXiv 1503.02531) at temperature tau::

    p = softmax(z_teacher / tau),  q = softmax(z_student / tau)
    forward KL:  KL(p || q) = sum_v p_v (log p_v - log q_v)     (mean-seeking)
    reverse KL:  KL(q || p) = sum_v q_v (log q_v - log p_v)     (mode-seeking)
    mixed:       m * KL(p || q) + (1 - m) * KL(q || p)
    L_KD = tau^2 * mean over tokens of the chosen KL

The tau^2 factor keeps gradient magnitudes comparable across temperatures.
``tau`` may be a scalar (fixed or CTKD's learned global temperature) or one
value per token (AdaKD); with per-token tau each token's KL is scaled by its own
tau^2. The full objective (see :func:`combine`) is::

    L = alpha * L_KD + (1 - alpha) * CE(z_student, next token) + w_align * L_align + L_tau_reg

Top-k teacher (the teacher-logit cache): the teacher is stored as its k
largest logits per token plus its *tail*, log sum_{v not in S} exp(z_v / tau),
on a grid of temperatures (interpolated linearly in tau). Teacher and student
are then compared as distributions over k + 1 outcomes (the k tokens of S and
"any other token"); the student's tail is exact (its own logits outside S).
This coarsened KL is a lower bound of the full one (data processing
inequality) and equals it when the teacher's tail is empty. Without a stored
tail, both are renormalized over S (a cruder approximation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

KL_KINDS = ("forward", "reverse", "mixed")


def _per_token_kl(log_p: Tensor, log_q: Tensor, kind: str, mix: float) -> Tensor:
    """KL per token from log-probabilities (..., V) -> (...)."""
    fwd = rev = None
    if kind in ("forward", "mixed"):
        fwd = (log_p.exp() * (log_p - log_q)).sum(-1)
    if kind in ("reverse", "mixed"):
        rev = (log_q.exp() * (log_q - log_p)).sum(-1)
    if kind == "forward":
        return fwd
    if kind == "reverse":
        return rev
    if kind == "mixed":
        return mix * fwd + (1.0 - mix) * rev
    raise ValueError(f"KL kind must be one of {KL_KINDS}, got {kind!r}")


TAIL_TAUS = (1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0, 5.0, 7.0, 10.0)


def interp_tail(tail: Tensor, tau: Tensor) -> Tensor:
    """Teacher tail log-sum-exp at tau, linear in tau between grid points.

    tail: (B, T, G) on ``TAIL_TAUS``; tau: scalar or (B, T). Returns (B, T)."""
    grid = torch.tensor(TAIL_TAUS, dtype=tail.dtype, device=tail.device)  # (G,)
    tau = tau.to(tail.dtype).expand(tail.shape[:-1]).clamp(grid[0], grid[-1])  # (B, T)
    hi = torch.searchsorted(grid, tau.detach().contiguous()).clamp(1, len(TAIL_TAUS) - 1)  # (B, T)
    lo = hi - 1
    w = (tau - grid[lo]) / (grid[hi] - grid[lo])  # (B, T)
    t_lo, t_hi = tail.gather(-1, lo[..., None])[..., 0], tail.gather(-1, hi[..., None])[..., 0]
    return t_lo + w * (t_hi - t_lo)


def _topk_log_probs(s: Tensor, values: Tensor, index: Tensor, tail: Tensor | None,
                    tau_b: Tensor) -> tuple[Tensor, Tensor]:
    """Teacher and student log-probabilities over the k support tokens (+ 1 tail outcome)."""
    idx = index.long()
    z_t = values.float() / tau_b  # (B, T, k)
    z_s = s / tau_b  # (B, T, V)
    if tail is None:  # renormalize both over S
        return F.log_softmax(z_t, -1), F.log_softmax(z_s.gather(-1, idx), -1)
    t_tail = interp_tail(tail.float().clamp_min(-1e4), tau_b.squeeze(-1) if tau_b.dim() else tau_b)  # (B, T)
    log_p = F.log_softmax(torch.cat([z_t, t_tail[..., None]], -1), -1)  # (B, T, k+1)
    lse_all = torch.logsumexp(z_s, -1, keepdim=True)  # (B, T, 1)
    s_tail = torch.logsumexp(z_s.scatter(-1, idx, float("-inf")), -1, keepdim=True).clamp_min(-1e4)  # (B, T, 1)
    log_q = torch.cat([z_s.gather(-1, idx), s_tail], -1) - lse_all  # (B, T, k+1)
    return log_p, log_q


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, tau: Tensor | float, kind: str = "forward",
            mix: float = 0.5, teacher_index: Tensor | None = None, teacher_tail: Tensor | None = None) -> Tensor:
    """tau^2 * KL at temperature tau, averaged over tokens (a scalar).

    student_logits: (B, T, V). teacher_logits: (B, T, V), or (B, T, k) top-k values
    with ``teacher_index`` (B, T, k) their vocabulary ids and optionally
    ``teacher_tail`` (B, T, G) the tail log-sum-exp on ``TAIL_TAUS``. tau: scalar or (B, T).
    """
    s = student_logits.float()
    tau = torch.as_tensor(tau, dtype=torch.float32, device=s.device)
    tau_b = tau[..., None] if tau.dim() == s.dim() - 1 else tau  # (B, T, 1) or scalar
    if teacher_index is None:
        log_p = F.log_softmax(teacher_logits.float() / tau_b, dim=-1)  # (B, T, V)
        log_q = F.log_softmax(s / tau_b, dim=-1)  # (B, T, V)
    else:
        log_p, log_q = _topk_log_probs(s, teacher_logits, teacher_index, teacher_tail, tau_b)
    kl = _per_token_kl(log_p, log_q, kind, mix)  # (B, T)
    return (kl * tau**2).mean()  # per-token tau^2 (B, T) or a scalar


def ce_loss(student_logits: Tensor, targets: Tensor) -> Tensor:
    """Cross-entropy on the real next token. logits (B, T, V), targets (B, T)."""
    return F.cross_entropy(student_logits.float().flatten(0, 1), targets.flatten())


def token_ce(student_logits: Tensor, targets: Tensor) -> Tensor:
    """Per-token cross-entropy (B, T), no gradient (a difficulty measure)."""
    with torch.no_grad():
        return F.cross_entropy(student_logits.float().flatten(0, 1), targets.flatten(),
                               reduction="none").view(targets.shape)


def combine(alpha: float, kd: Tensor | None, ce: Tensor, align: Tensor | None = None,
            align_weight: float = 0.0, tau_reg: Tensor | None = None) -> Tensor:
    """alpha * KD + (1 - alpha) * CE + align_weight * align + tau_reg (missing terms count 0)."""
    total = (1.0 - alpha) * ce if kd is not None else ce
    if kd is not None:
        total = total + alpha * kd
    if align is not None and align_weight:
        total = total + align_weight * align
    if tau_reg is not None:
        total = total + tau_reg
    return total
