"""Learned causal audio codec: 16 kHz waveform ↔ 50 Hz latent sequence.

Encoder: a learned analysis filterbank (a strided conv over a 2-hop window,
like a learned STFT) followed by causal convs and a projection to
``latent_channels``. Decoder: causal convs over the latent sequence and a
learned synthesis filterbank (transposed conv, overlap-add over 2 hops).
Analysis and synthesis windows are aligned: latent frame k analyses samples
[k·hop, (k+2)·hop) and synthesises the same span, a 50 %-overlap pair like an
STFT and its inverse (the encoder therefore looks 20 ms ahead). The decoder is
causal: output hop k depends only on latent frames ≤ k. That is what makes
chunk-at-a-time decoding exact — :meth:`AudioCodec.decode_stream`
keeps the last ``receptive_field`` latent frames as state and produces the same
samples as decoding the whole sequence (no clicks or seams at chunk borders).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mfruntime.config import AudioCodecConfig


class CausalConv(nn.Module):
    """Conv1d with left padding only (kernel k sees frames t-k+1 … t)."""

    def __init__(self, cin: int, cout: int, kernel: int) -> None:
        super().__init__()
        self.pad = kernel - 1
        self.conv = nn.Conv1d(cin, cout, kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (self.pad, 0)))


class CausalResidual(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = CausalConv(ch, ch, 3)
        self.mix = nn.Conv1d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mix(F.gelu(self.conv(x)))


class SpectralSynthesis(nn.Module):
    """Decoder head that predicts, per latent frame, the log-magnitude and phase of a 2·hop-point spectrum,
    inverts it with an inverse real FFT, applies a sine window and overlap-adds frames hop apart
    (the Vocos idea: Siuzdak 2023). Frame k writes samples [k·hop, (k+2)·hop), like the filterbank head."""

    def __init__(self, hidden: int, hop: int) -> None:
        super().__init__()
        self.hop, self.n = hop, 2 * hop
        self.bins = self.n // 2 + 1
        self.proj = nn.Conv1d(hidden, 3 * self.bins, 1)
        window = torch.sin(torch.pi * (torch.arange(self.n, dtype=torch.float32) + 0.5) / self.n)
        self.register_buffer("window", window, persistent=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h (B, hidden, N) → waveform (B, (N + 1)·hop)."""
        log_mag, re, im = self.proj(h).chunk(3, dim=1)  # (B, bins, N) each
        mag = torch.exp(log_mag.clamp(max=6.0))
        norm = torch.rsqrt(re * re + im * im + 1e-4)  # eps keeps the phase gradient bounded near 0
        spec = torch.complex(mag * re * norm, mag * im * norm)
        frames = torch.fft.irfft(spec, n=self.n, dim=1) * self.window[None, :, None]  # (B, 2·hop, N)
        n_frames = h.shape[-1]
        out = F.fold(frames, output_size=(1, (n_frames + 1) * self.hop), kernel_size=(1, self.n), stride=(1, self.hop))
        return out.flatten(1)  # (B, (N + 1)·hop)


@dataclass
class AudioDecodeState:
    """Latent frames kept between streamed chunks (B, Ca, R); empty at the start of a stream."""

    context: torch.Tensor | None = None


class AudioCodec(nn.Module):
    def __init__(self, cfg: AudioCodecConfig) -> None:
        super().__init__()
        self.cfg = cfg
        hop, hid = cfg.hop, cfg.hidden
        self.analysis = nn.Conv1d(1, hid, 2 * hop, stride=hop)  # frame k sees samples [k·hop, (k+2)·hop)
        self.enc = nn.Sequential(*[CausalResidual(hid) for _ in range(cfg.encoder_layers)])
        self.to_latent = nn.Conv1d(hid, cfg.latent_channels, 1)
        self.from_latent = nn.Conv1d(cfg.latent_channels, hid, 1)
        self.dec = nn.Sequential(*[CausalResidual(hid) for _ in range(cfg.decoder_layers)])
        if cfg.synthesis == "spectral":
            self.synthesis: nn.Module = SpectralSynthesis(hid, hop)
        else:
            self.synthesis = nn.ConvTranspose1d(hid, 1, 2 * hop, stride=hop)  # frame k writes [k·hop, (k+2)·hop)
        self.register_buffer("latent_mean", torch.zeros(cfg.latent_channels))
        self.register_buffer("latent_std", torch.ones(cfg.latent_channels))

    @property
    def receptive_field(self) -> int:
        """Latent frames of history that decoding one new frame depends on."""
        return 2 * self.cfg.decoder_layers + 1

    def _check_pcm(self, pcm: torch.Tensor) -> torch.Tensor:
        if not isinstance(pcm, torch.Tensor) or not pcm.is_floating_point() or pcm.dim() not in (1, 2):
            raise ValueError(f"pcm must be a float tensor (S,) or (B, S) at {self.cfg.sample_rate} Hz, got "
                             f"{tuple(getattr(pcm, 'shape', ()))} {getattr(pcm, 'dtype', type(pcm).__name__)}")
        if pcm.shape[-1] % self.cfg.hop:
            raise ValueError(f"pcm length {pcm.shape[-1]} must be a multiple of the hop ({self.cfg.hop} samples = 20 ms)")
        return pcm

    def encode(self, pcm: torch.Tensor) -> torch.Tensor:
        """(B, S) or (S,) float PCM → normalised latents (B, S/hop, Ca) (or (S/hop, Ca))."""
        pcm = self._check_pcm(pcm)
        squeeze = pcm.dim() == 1
        x = pcm.reshape(-1, 1, pcm.shape[-1])
        x = F.pad(x, (0, self.cfg.hop))  # the last frame's window runs past the end: zeros
        h = self.enc(self.analysis(x))[..., : pcm.shape[-1] // self.cfg.hop]
        z = self.to_latent(h).transpose(1, 2)  # (B, N, Ca)
        z = (z - self.latent_mean) / self.latent_std
        return z[0] if squeeze else z

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised latents (B, N, Ca) or (N, Ca) → PCM (B, N·hop) or (N·hop,)."""
        if not isinstance(z, torch.Tensor) or z.dim() not in (2, 3) or z.shape[-1] != self.cfg.latent_channels:
            raise ValueError(f"audio latents must be (B, N, {self.cfg.latent_channels}), got {tuple(getattr(z, 'shape', ()))}")
        squeeze = z.dim() == 2
        z = z.reshape(-1, *z.shape[-2:])
        z = z * self.latent_std + self.latent_mean
        h = self.dec(self.from_latent(z.transpose(1, 2)))  # (B, hid, N)
        y = self.synthesis(h)
        y = (y[:, 0] if y.dim() == 3 else y)[:, : z.shape[1] * self.cfg.hop]  # (B, N·hop)
        return y[0] if squeeze else y

    def decode_stream(self, z: torch.Tensor, state: AudioDecodeState) -> torch.Tensor:
        """Decode the next latent frames (B, n, Ca) of a stream; equals the matching slice of a full decode."""
        if z.dim() != 3 or z.shape[-1] != self.cfg.latent_channels:
            raise ValueError(f"audio latents must be (B, n, {self.cfg.latent_channels}), got {tuple(z.shape)}")
        ctx = state.context
        full = z if ctx is None else torch.cat([ctx, z], dim=1)
        pcm = self.decode(full)[:, -z.shape[1] * self.cfg.hop:]
        state.context = full[:, -self.receptive_field:].detach()
        return pcm

    def freeze(self) -> "AudioCodec":
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self
