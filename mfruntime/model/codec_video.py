"""Per-frame convolutional video autoencoder: (H, W, 3) uint8 ↔ (Cv, H/8, W/8) latent.

Frames are coded independently, so decoding a chunk at a time is exactly the
same as decoding a whole clip. Latents are normalised by per-channel
statistics (``latent_mean``/``latent_std`` buffers, set after codec training)
so the diffusion model sees roughly unit-variance inputs.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mfruntime.config import VideoCodecConfig


class ResBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(8, ch), nn.Conv2d(ch, ch, 3, padding=1)
        self.norm2, self.conv2 = nn.GroupNorm(8, ch), nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


class VideoCodec(nn.Module):
    def __init__(self, cfg: VideoCodecConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ch = cfg.channels
        # Encoder: a stride-2 conv per stage followed by a residual block at the reduced resolution (no
        # full-resolution residual block: it would cost more than the rest of the encoder together).
        enc: list[nn.Module] = []
        prev = 3
        for c in ch:
            enc += [nn.Conv2d(prev, c, 4, stride=2, padding=1), ResBlock(c)]
            prev = c
        enc += [nn.GroupNorm(8, ch[-1]), nn.SiLU(), nn.Conv2d(ch[-1], cfg.latent_channels, 1)]
        self.encoder = nn.Sequential(*enc)
        # Decoder: upsample + conv + residual block per stage, except the last ×2, which is a sub-pixel conv
        # (PixelShuffle) from half resolution: full-resolution convs would dominate the cost per frame.
        dec: list[nn.Module] = [nn.Conv2d(cfg.latent_channels, ch[-1], 3, padding=1), ResBlock(ch[-1])]
        for i in reversed(range(1, len(ch))):
            dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch[i], ch[i - 1], 3, padding=1), ResBlock(ch[i - 1])]
        dec += [nn.GroupNorm(8, ch[0]), nn.SiLU(), nn.Conv2d(ch[0], 3 * 4, 3, padding=1), nn.PixelShuffle(2)]
        self.decoder = nn.Sequential(*dec)
        self._channels_last = False  # set by freeze()
        self.register_buffer("latent_mean", torch.zeros(cfg.latent_channels))
        self.register_buffer("latent_std", torch.ones(cfg.latent_channels))

    # --- pixels ↔ tensors ---------------------------------------------------------------
    def frames_to_tensor(self, frames) -> torch.Tensor:
        """uint8 frames (..., H, W, 3) (numpy or torch) → float (..., 3, H, W) in [-1, 1]."""
        x = torch.as_tensor(np.asarray(frames) if not isinstance(frames, torch.Tensor) else frames)
        size = self.cfg.size
        if x.dtype != torch.uint8 or x.dim() < 3 or tuple(x.shape[-3:]) != (size, size, 3):
            raise ValueError(f"frames must be (..., {size}, {size}, 3) uint8 RGB, got {tuple(x.shape)} {x.dtype}")
        x = x.to(self.latent_std.device).float().div(127.5).sub(1.0)
        return x.movedim(-1, -3)

    @staticmethod
    def tensor_to_frames(x: torch.Tensor) -> torch.Tensor:
        """float (..., 3, H, W) in [-1, 1] → uint8 (..., H, W, 3)."""
        return x.movedim(-3, -1).add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)

    # --- coding -------------------------------------------------------------------------
    def encode_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """(..., 3, H, W) in [-1, 1] → normalised latents (..., Cv, H/8, W/8)."""
        lead = x.shape[:-3]
        z = self.encoder(x.reshape(-1, *x.shape[-3:]))  # (N, Cv, h, w)
        z = (z - self.latent_mean[:, None, None]) / self.latent_std[:, None, None]
        return z.reshape(*lead, *z.shape[1:])

    def decode_tensor(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised latents (..., Cv, h, w) → (..., 3, H, W) (unclamped)."""
        if z.dim() < 3 or z.shape[-3] != self.cfg.latent_channels or z.shape[-1] != self.cfg.latent_size:
            side = self.cfg.latent_size
            raise ValueError(f"video latents must be (..., {self.cfg.latent_channels}, {side}, {side}), got {tuple(z.shape)}")
        lead = z.shape[:-3]
        z = z.reshape(-1, *z.shape[-3:]) * self.latent_std[:, None, None] + self.latent_mean[:, None, None]
        if self._channels_last:  # frozen: the decoder's convolutions run in NHWC (1.3–1.9× faster on a CPU)
            z = z.contiguous(memory_format=torch.channels_last)
        x = self.decoder(z)
        return x.reshape(*lead, *x.shape[1:])

    def encode(self, frames) -> torch.Tensor:
        """uint8 frames (..., H, W, 3) → latents (..., Cv, h, w)."""
        return self.encode_tensor(self.frames_to_tensor(frames))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (..., Cv, h, w) → uint8 frames (..., H, W, 3)."""
        return self.tensor_to_frames(self.decode_tensor(z))

    def freeze(self) -> "VideoCodec":
        """Frozen-weights mode for generation and latent caching; the weights are stored channels-last (NHWC),
        which the convolutions run faster in (the same numbers up to float rounding)."""
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        self.to(memory_format=torch.channels_last)
        self._channels_last = True
        return self
