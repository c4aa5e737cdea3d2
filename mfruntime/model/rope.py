"""Rotary position embedding on absolute time in seconds (+ row/column for video tokens).

Each head's dims form pairs (x_{2j}, x_{2j+1}), treated as one complex number
and rotated by an angle θ_j (RoFormer, Su et al. 2021, eq. 34):
    x_{2j} + i·x_{2j+1}  ←  (x_{2j} + i·x_{2j+1}) · e^{iθ_j}.
The first ``time_pairs`` pairs use θ_j = 2π f_j · t with t in seconds and
f_j geometric in [min_hz, max_hz]; the remaining pairs are split between the
video token's row and column (integer positions in the patch grid). Audio and
phoneme tokens use row = column = 0, so a video token and an audio token 40 ms
apart are 40 ms apart for both. Angles are computed in float64 and reduced
mod 2π, so streams of hours keep full float32 precision.
"""
from __future__ import annotations

import math

import torch


class Rotary(torch.nn.Module):
    def __init__(self, head_dim: int, time_fraction: float, min_hz: float, max_hz: float) -> None:
        super().__init__()
        if head_dim % 4:
            raise ValueError(f"head_dim must be a multiple of 4 for rotary pairs, got {head_dim}")
        pairs = head_dim // 2
        time_pairs = max(1, min(pairs, int(round(pairs * time_fraction))))
        space_pairs = pairs - time_pairs
        self.row_pairs = space_pairs // 2
        self.col_pairs = space_pairs - self.row_pairs
        self.time_pairs = time_pairs
        hz = torch.logspace(math.log10(min_hz), math.log10(max_hz), time_pairs, dtype=torch.float64)
        self.register_buffer("time_freq", 2 * math.pi * hz, persistent=False)  # rad/s
        self.register_buffer("row_freq", self._grid_freq(self.row_pairs), persistent=False)
        self.register_buffer("col_freq", self._grid_freq(self.col_pairs), persistent=False)

    @staticmethod
    def _grid_freq(n: int) -> torch.Tensor:
        if n == 0:
            return torch.zeros(0, dtype=torch.float64)
        return 1.0 / (16.0 ** (torch.arange(n, dtype=torch.float64) / n))  # rad per grid step, 1 … 1/16

    def angles(self, t: torch.Tensor, row: torch.Tensor | None = None, col: torch.Tensor | None = None) -> torch.Tensor:
        """Unit complex rotations e^{iθ} (..., N, head_dim/2) complex64 for positions of shape (..., N)."""
        t = t.to(torch.float64)
        parts = [t[..., None] * self.time_freq]
        zeros = torch.zeros_like(t)
        parts.append((row if row is not None else zeros).to(torch.float64)[..., None] * self.row_freq)
        parts.append((col if col is not None else zeros).to(torch.float64)[..., None] * self.col_freq)
        theta = torch.remainder(torch.cat(parts, dim=-1), 2 * math.pi).float()
        return torch.polar(torch.ones_like(theta), theta)

    @staticmethod
    def rotate(x: torch.Tensor, cis: torch.Tensor) -> torch.Tensor:
        """Rotate x (B, H, N, D) float32 by cis (B or 1, N, D/2) complex64 (broadcast over heads)."""
        xc = torch.view_as_complex(x.reshape(*x.shape[:-1], -1, 2))  # (B, H, N, D/2)
        return torch.view_as_real(xc * cis.unsqueeze(-3)).flatten(-2)
