"""Small building blocks: noise-level embedding, adaptive norm modulation, MLP, attention masks and heads."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mfruntime.model.rope import Rotary


class ScalarEmbedding(nn.Module):
    """Embed a scalar in [0, 1] (noise level t or step size d): sinusoidal features → MLP (DiT, Peebles & Xie 2023)."""

    def __init__(self, dim: int, features: int = 128, max_period: float = 10_000.0) -> None:
        super().__init__()
        half = features // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs, persistent=False)
        self.mlp = nn.Sequential(nn.Linear(features, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        """s (...,) in [0, 1] → (..., dim)."""
        args = (s.float() * 1000.0)[..., None] * self.freqs  # (..., F/2)
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Adaptive norm modulation (adaLN): x · (1 + scale) + shift."""
    return x * (1 + scale) + shift


class MLP(nn.Module):
    def __init__(self, dim: int, ratio: float) -> None:
        super().__init__()
        hidden = int(dim * ratio)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Bool mask (True = attend) → additive bias, built once per pass instead of once per attention call."""
    bias = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return bias.masked_fill_(~allowed, float("-inf"))


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, d = x.shape
    return x.view(b, n, heads, d // heads).transpose(1, 2)  # (B, H, N, Dh)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    b, h, n, dh = x.shape
    return x.transpose(1, 2).reshape(b, n, h * dh)  # (B, N, H·Dh)


def rotated_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor,
                      cis: torch.Tensor | None = None) -> torch.Tensor:
    """Attention with the queries rotated by ``cis`` (complex rotary angles) first, when given: the cross-modal
    and phoneme attention. ``mask`` as for :func:`masked_attention`."""
    return masked_attention(Rotary.rotate(q, cis) if cis is not None else q, k, v, mask)


def masked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Scaled dot-product attention. ``mask``: key validity (1 or B, Nk) bool, or a full mask
    (1 or B, 1, Nq, Nk), bool (True = attend) or additive float (0 / −inf)."""
    if mask.dim() == 2:
        mask = mask[:, None, None, :]  # (1 or B, 1, 1, Nk): the same keys for every query and head
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
