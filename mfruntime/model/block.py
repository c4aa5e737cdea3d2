"""One transformer block of one stream.

Per block (all sublayers pre-norm, residual):
  1. self-attention over [sink | cache | current chunk], adaLN-modulated by (t, d), gated (adaLN-Zero, DiT);
  2. cross-modal attention to the other stream's keys/values of the same layer; its output projection is
     zero-initialised, so a uni-modal model loads into the joint model with unchanged outputs;
  3. cross-attention to the phoneme tokens of the chunk window;
  4. MLP, adaLN-modulated and gated.
The model (transformer.py) drives the sublayers layer by layer so both streams can read each other's
keys and values between steps 1 and 2. The attention itself is not here: it runs through the kernel seam
(engine/kernels.py), so a backend can replace it; the block only projects in and out.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mfruntime.config import StreamConfig
from mfruntime.model.layers import MLP, merge_heads, modulate, split_heads


class StreamBlock(nn.Module):
    def __init__(self, cfg: StreamConfig, cross_modal: bool) -> None:
        super().__init__()
        dim, self.heads = cfg.dim, cfg.heads
        self.ada = nn.Linear(dim, 6 * dim)
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.cross_modal = cross_modal
        if cross_modal:
            self.norm_x = nn.LayerNorm(dim, eps=1e-6)
            self.x_q = nn.Linear(dim, dim)
            self.x_out = nn.Linear(dim, dim)
        self.norm_p = nn.LayerNorm(dim, eps=1e-6)
        self.p_q = nn.Linear(dim, dim)
        self.p_kv = nn.Linear(dim, 2 * dim)
        self.p_out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = MLP(dim, cfg.mlp_ratio)
        self.reset_zero()

    def reset_zero(self) -> None:
        """adaLN-Zero gates and the cross-modal output start at zero."""
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)
        if self.cross_modal:
            nn.init.zeros_(self.x_out.weight)
            nn.init.zeros_(self.x_out.bias)

    def modulation(self, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """c (B, N, dim) → shift1, scale1, gate1, shift2, scale2, gate2, each (B, N, dim)."""
        return self.ada(F.silu(c)).chunk(6, dim=-1)

    def project(self, x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Self-attention q, k, v (B, H, N, Dh), before rotary."""
        q, k, v = self.qkv(modulate(self.norm1(x), shift, scale)).chunk(3, dim=-1)
        return split_heads(q, self.heads), split_heads(k, self.heads), split_heads(v, self.heads)

    def self_attention(self, x: torch.Tensor, a: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """Residual of the self-attention output a (B, H, N, Dh), gated."""
        return x + gate * self.proj(merge_heads(a))

    def cross_query(self, x: torch.Tensor) -> torch.Tensor:
        return split_heads(self.x_q(self.norm_x(x)), self.heads)  # (B, H, N, Dh)

    def cross_modal_out(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return x + self.x_out(merge_heads(a))

    def phoneme_query(self, x: torch.Tensor) -> torch.Tensor:
        return split_heads(self.p_q(self.norm_p(x)), self.heads)

    def phoneme_kv(self, ph: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.p_kv(ph).chunk(2, dim=-1)
        return split_heads(k, self.heads), split_heads(v, self.heads)

    def phoneme_out(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return x + self.p_out(merge_heads(a))

    def feed_forward(self, x, shift, scale, gate) -> torch.Tensor:
        return x + gate * self.mlp(modulate(self.norm2(x), shift, scale))
