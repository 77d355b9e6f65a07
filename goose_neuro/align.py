"""Hidden-state alignment between student and teacher layers.

TinyBERT (Jiao et al. 2020, arXiv 1909.10351) matches intermediate hidden states
through a learned linear projector; MiniLM (Wang et al. 2020, arXiv 2002.10957)
distils only the last layer(s). Layer maps (student layer j = 1..M, teacher
layers 1..N)::

    uniform: phi(j) = round(j * N / M)
    last:    phi(j) = N - M + j          (the last M teacher layers; needs M <= N)

Losses per mapped pair, averaged over pairs (teacher states are layer-normed,
without affine parameters, so their scale does not set the loss scale)::

    mse:    mean || W h_s - LN(h_t) ||^2 / D_t        (linear projector W: C_s -> D_t)
    cosine: mean (1 - cos(W h_s, h_t))
    cka:    1 - CKA(h_s, h_t), projector-free; linear CKA over the N = B*T tokens
            (Kornblith et al. 2019, arXiv 1905.00414):
            CKA(X, Y) = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F), X, Y column-centred
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from goose_neuro.errors import ConfigError

ALIGN_MAPS = ("uniform", "last")
ALIGN_LOSSES = ("mse", "cosine", "cka")


def layer_map(n_student: int, n_teacher: int, kind: str = "uniform") -> list[tuple[int, int]]:
    """0-based (student layer, teacher layer) pairs."""
    if kind == "uniform":
        return [(j - 1, max(1, round(j * n_teacher / n_student)) - 1) for j in range(1, n_student + 1)]
    if kind == "last":
        if n_student > n_teacher:
            raise ConfigError(f"'last' layer map needs student layers ({n_student}) <= teacher layers ({n_teacher})")
        return [(j - 1, n_teacher - n_student + j - 1) for j in range(1, n_student + 1)]
    raise ConfigError(f"layer map must be one of {ALIGN_MAPS}, got {kind!r}")


def linear_cka(x: Tensor, y: Tensor) -> Tensor:
    """Linear CKA between x (N, Dx) and y (N, Dy); a scalar in [0, 1]."""
    x = x - x.mean(0, keepdim=True)  # (N, Dx)
    y = y - y.mean(0, keepdim=True)  # (N, Dy)
    cross = (y.T @ x).pow(2).sum()
    return cross / ((x.T @ x).norm() * (y.T @ y).norm() + 1e-12)


class HiddenAligner(nn.Module):
    """Alignment loss between student hidden states and mapped teacher hidden states.

    ``forward(student_hidden [(B, T, C_s)] * M, teacher_hidden [(B, T, D_t)] * N) -> scalar``.
    With ``loss='cka'`` there are no parameters; otherwise one linear projector per pair.
    """

    def __init__(self, n_student: int, d_student: int, n_teacher: int, d_teacher: int,
                 mapping: str = "uniform", loss: str = "mse") -> None:
        super().__init__()
        if loss not in ALIGN_LOSSES:
            raise ConfigError(f"alignment loss must be one of {ALIGN_LOSSES}, got {loss!r}")
        self.pairs = layer_map(n_student, n_teacher, mapping)
        self.loss = loss
        self.proj = nn.ModuleList() if loss == "cka" else nn.ModuleList(
            nn.Linear(d_student, d_teacher, bias=False) for _ in self.pairs)

    def _pair_loss(self, i: int, hs: Tensor, ht: Tensor) -> Tensor:
        hs, ht = hs.float().flatten(0, 1), ht.float().flatten(0, 1)  # (N, C_s), (N, D_t)
        if self.loss == "cka":
            return 1.0 - linear_cka(hs, ht)
        z = self.proj[i](hs)  # (N, D_t)
        if self.loss == "cosine":
            return (1.0 - F.cosine_similarity(z, ht, dim=-1)).mean()
        return F.mse_loss(z, F.layer_norm(ht, ht.shape[-1:]))

    def forward(self, student_hidden: list[Tensor], teacher_hidden: list[Tensor]) -> Tensor:
        losses = [self._pair_loss(i, student_hidden[s], teacher_hidden[t]) for i, (s, t) in enumerate(self.pairs)]
        return torch.stack(losses).mean()
