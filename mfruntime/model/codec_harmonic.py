"""Source-filter audio codec: 16 kHz PCM ↔ 50 Hz frames of (log f0, periodicity, spectral envelope).

The generator cannot produce phase (a codec whose latents carry it round-trips well but generated
speech from it was unintelligible, docs/TRAINING.md), so this codec's latent has none: every 20-ms frame
is a smooth, phase-free description of the voice, and the waveform is *synthesised* from it, the way a
formant synthesiser such as eSpeak NG makes speech in the first place.

Latent frame k (time c_k = (k + 1)·hop, the end of output hop k) holds ``2 + bands`` numbers:

- **log f0** (Hz). Estimated with YIN (de Cheveigné & Kawahara 2002): the cumulative-mean-normalised
  difference function d′(τ) of a ``pitch_window`` frame (50 ms) centred on c_k, the first dip below 0.15 (or the global minimum), refined
  by a parabola. Across unvoiced frames the contour is interpolated, so the channel is always smooth.
- **periodicity** p = 1 − d′(τ*) ∈ [0, 1]: how harmonic the frame is.
- **log envelope** in ``bands`` mel-spaced triangular bands: the power spectrum of a Hann window of
  ``envelope_window`` samples (24 ms) centred on c_k is first averaged over a moving window one f0 wide (which removes the harmonic ripple, as in
  CheapTrick-style envelope estimation), then each band takes its filter-weighted mean density.

Synthesis of output hop k (samples [k·hop, (k + 1)·hop)) interpolates every parameter linearly from frame
k − 1 to frame k, so it needs no look-ahead and streams exactly (:meth:`HarmonicCodec.decode_stream`
equals :meth:`HarmonicCodec.decode` at any chunking; tested):

- harmonic part: Σ_h A_h(n)·sin(h·φ(n)), φ integrated from f0 sample by sample (the oscillator phase is
  the only state carried between chunks); A_h² = 32·f0·v·E(h·f0) / (3·N·sr) turns the smoothed Hann
  periodogram density E back into the amplitude of a sinusoid (N = envelope_window); harmonics fade out towards
  Nyquist;
- noise part: white noise shaped frame by frame (sine window of 2·hop, hop apart, overlap-added) to the
  density (1 − v)·E, from a seeded generator carried in the stream state;
- v = the voiced fraction, a smooth step of the periodicity between ``voicing_low`` and ``voicing_high``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from mfruntime.config import AudioCodecConfig

F0_MIN, F0_MAX = 60.0, 500.0  # Hz, the pitch search range
YIN_THRESHOLD = 0.15  # first dip of d′ below this is the period (YIN's absolute threshold)
DEFAULT_F0 = 120.0  # Hz, contour of a clip with no voiced frame at all
NOISE_SEED = 0x5EED  # noise of a decoded stream starts from this seed (decoding is deterministic)


def mel_centres(bands: int, sample_rate: int) -> torch.Tensor:
    """Band centre frequencies (Hz), ``bands`` points equally spaced on the mel scale over (0, Nyquist)."""
    top = 2595.0 * math.log10(1 + (sample_rate / 2) / 700.0)
    mel = torch.linspace(0, top, bands + 2, dtype=torch.float64)
    return (700.0 * (10 ** (mel / 2595.0) - 1))  # (bands + 2,) including the two edges


def triangular_filters(bands: int, sample_rate: int, bins: int) -> torch.Tensor:
    """(bands, bins) triangular filters on the rfft bins, each normalised to sum 1 (a weighted mean)."""
    edges = mel_centres(bands, sample_rate)
    freqs = torch.linspace(0, sample_rate / 2, bins, dtype=torch.float64)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs - lo) / (mid - lo)
    down = (hi - freqs) / (hi - mid)
    w = torch.clamp(torch.minimum(up, down), min=0.0)
    # Narrow low bands can fall between bins: give each band at least its nearest bin.
    nearest = torch.argmin((freqs[None] - mid).abs(), dim=1)
    w[torch.arange(bands), nearest] = torch.clamp(w[torch.arange(bands), nearest], min=1.0)
    return (w / w.sum(dim=1, keepdim=True)).float()


@dataclass
class HarmonicDecodeState:
    """What synthesis carries from one chunk to the next (batch B)."""

    previous: torch.Tensor | None = None  # (B, 2 + bands) de-normalised parameters of the last frame
    phase: torch.Tensor | None = None  # (B,) float64 oscillator phase φ at the end of the last hop
    noise_tail: torch.Tensor | None = None  # (B, hop) second half of the last shaped-noise frame
    generator: torch.Generator = field(default_factory=lambda: torch.Generator().manual_seed(NOISE_SEED))

    def copy(self) -> "HarmonicDecodeState":
        g = torch.Generator()
        g.set_state(self.generator.get_state())
        clone = (lambda t: None if t is None else t.clone())
        return HarmonicDecodeState(clone(self.previous), clone(self.phase), clone(self.noise_tail), g)


class HarmonicCodec(nn.Module):
    """Phase-free analysis and harmonic-plus-noise synthesis; nothing is learned but the latent statistics."""

    def __init__(self, cfg: AudioCodecConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.hop, self.sr = cfg.hop, cfg.sample_rate
        self.bands = cfg.latent_channels - 2
        if self.bands < 8:
            raise ValueError(f"a harmonic codec needs latent_channels >= 10 (log f0, periodicity, >= 8 bands), got {cfg.latent_channels}")
        self.pitch_n, self.env_n = cfg.pitch_window, cfg.envelope_window
        self.register_buffer("filters", triangular_filters(self.bands, self.sr, self.env_n // 2 + 1), persistent=False)  # (K, bins)
        self.register_buffer("centres", mel_centres(self.bands, self.sr)[1:-1].float(), persistent=False)  # (K,)
        self.register_buffer("hann", torch.hann_window(self.env_n, periodic=True), persistent=False)
        self.register_buffer("sine", torch.sin(torch.pi * (torch.arange(2 * self.hop) + 0.5) / (2 * self.hop)), persistent=False)
        self.register_buffer("latent_mean", torch.zeros(cfg.latent_channels))
        self.register_buffer("latent_std", torch.ones(cfg.latent_channels))

    @property
    def receptive_field(self) -> int:
        return 1

    # --- analysis ------------------------------------------------------------------------------
    def _check_pcm(self, pcm: torch.Tensor) -> torch.Tensor:
        if not isinstance(pcm, torch.Tensor) or not pcm.is_floating_point() or pcm.dim() not in (1, 2):
            raise ValueError(f"pcm must be a float tensor (S,) or (B, S) at {self.sr} Hz, got "
                             f"{tuple(getattr(pcm, 'shape', ()))} {getattr(pcm, 'dtype', type(pcm).__name__)}")
        if pcm.shape[-1] % self.hop:
            raise ValueError(f"pcm length {pcm.shape[-1]} must be a multiple of the hop ({self.hop} samples = 20 ms)")
        return pcm

    def _frames(self, pcm: torch.Tensor) -> torch.Tensor:
        """(B, S) → (B, S/hop, pitch_window) frames, frame k centred on sample (k + 1)·hop."""
        left = self.pitch_n // 2 - self.hop
        x = F.pad(pcm, (max(left, 0), self.pitch_n))[..., max(-left, 0):]
        n = pcm.shape[-1] // self.hop
        return x.unfold(-1, self.pitch_n, self.hop)[:, :n]

    def _pitch(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """YIN on (B, N, L) frames → f0 (B, N) Hz (NaN where no period is found) and periodicity (B, N)."""
        tau_max = int(self.sr / F0_MIN)
        tau_min = int(self.sr / F0_MAX)
        w = frames.shape[-1] - tau_max
        x = frames.double()
        # d(τ) = Σ_{j<w} (x_j − x_{j+τ})² = e_0 + e_τ − 2 r(τ), with r from one FFT and e_τ from cumulative sums.
        spec = torch.fft.rfft(x, n=2 * frames.shape[-1])
        head = torch.fft.rfft(x[..., :w], n=2 * frames.shape[-1])
        r = torch.fft.irfft(spec * head.conj(), n=2 * frames.shape[-1])[..., : tau_max + 1]  # (B, N, τmax+1)
        sq = F.pad(torch.cumsum(x * x, dim=-1), (1, 0))
        e = sq[..., w:w + tau_max + 1] - sq[..., : tau_max + 1]  # energy of x[τ : τ + w]
        d = (e[..., :1] + e - 2 * r).clamp_min(0.0)
        d[..., 0] = 0.0
        tau = torch.arange(tau_max + 1, dtype=torch.float64, device=x.device)
        cum = torch.cumsum(d, dim=-1)
        dn = torch.where(cum > 0, d * tau / cum.clamp_min(1e-12), torch.ones_like(d))
        dn[..., :tau_min] = 2.0  # outside the search range
        below = dn < YIN_THRESHOLD
        first = torch.where(below.any(-1), below.double().argmax(-1), dn.argmin(-1))
        # Walk to the bottom of that dip: the minimum within the next few lags.
        span = 12
        idx = (first[..., None] + torch.arange(span, device=x.device)).clamp(max=tau_max - 1)
        local = torch.gather(dn, -1, idx)
        best = torch.gather(idx, -1, local.argmin(-1, keepdim=True))[..., 0]  # (B, N)
        # Parabolic refinement around the minimum.
        a = torch.gather(dn, -1, (best - 1).clamp(min=0)[..., None])[..., 0]
        b = torch.gather(dn, -1, best[..., None])[..., 0]
        c = torch.gather(dn, -1, (best + 1).clamp(max=tau_max)[..., None])[..., 0]
        den = a - 2 * b + c
        shift = torch.where(den.abs() > 1e-12, 0.5 * (a - c) / den, torch.zeros_like(den)).clamp(-1, 1)
        periodicity = (1.0 - b).clamp(0.0, 1.0)
        f0 = self.sr / (best.double() + shift)
        energy = e[..., 0]
        silent = energy < 1e-7 * frames.shape[-1]
        f0 = torch.where(silent | (periodicity < 0.5), torch.full_like(f0, float("nan")), f0)
        periodicity = torch.where(silent, torch.zeros_like(periodicity), periodicity)
        return f0.float(), periodicity.float()

    @staticmethod
    def _fill_contour(f0: torch.Tensor) -> torch.Tensor:
        """Interpolate log f0 linearly across unvoiced (NaN) frames; hold the ends; DEFAULT_F0 if none voiced."""
        out = torch.empty_like(f0)
        for i in range(f0.shape[0]):
            row = f0[i]
            ok = ~torch.isnan(row)
            if not ok.any():
                out[i] = DEFAULT_F0
                continue
            xs = torch.nonzero(ok).flatten().double()
            ys = torch.log(row[ok].double())
            grid = torch.arange(len(row), dtype=torch.float64)
            pos = torch.searchsorted(xs, grid).clamp(1, max(len(xs) - 1, 1))
            if len(xs) == 1:
                out[i] = row[ok][0]
                continue
            x0, x1 = xs[pos - 1], xs[pos]
            y0, y1 = ys[pos - 1], ys[pos]
            wgt = ((grid - x0) / (x1 - x0)).clamp(0, 1)
            out[i] = torch.exp(y0 + wgt * (y1 - y0)).float()
        return out

    def _envelope(self, frames: torch.Tensor, f0: torch.Tensor) -> torch.Tensor:
        """(B, N, L) frames and f0 (B, N) → log band densities (B, N, K) of the f0-smoothed periodogram."""
        cut = (self.pitch_n - self.env_n) // 2
        power = torch.fft.rfft(frames[..., cut:cut + self.env_n] * self.hann, dim=-1).abs().pow(2)  # (B, N, bins)
        bins = power.shape[-1]
        half = torch.clamp(torch.round(f0 * self.env_n / self.sr / 2), 1, 64).long()  # (B, N) half-width in bins
        cs = F.pad(torch.cumsum(power.double(), dim=-1), (1, 0))  # (B, N, bins + 1)
        k = torch.arange(bins, device=frames.device)
        lo = (k - half[..., None]).clamp(min=0)
        hi = (k + half[..., None] + 1).clamp(max=bins)
        smooth = (torch.gather(cs, -1, hi) - torch.gather(cs, -1, lo)) / (hi - lo)  # (B, N, bins)
        dens = smooth.float() @ self.filters.T  # (B, N, K)
        return torch.log(dens + 1e-10)

    def analyse(self, pcm: torch.Tensor) -> torch.Tensor:
        """(B, S) PCM → de-normalised parameters (B, S/hop, 2 + K): log f0, periodicity, log envelope."""
        frames = self._frames(pcm.float())
        f0, per = self._pitch(frames)
        f0 = self._fill_contour(f0)
        env = self._envelope(frames, f0)
        return torch.cat([torch.log(f0)[..., None], per[..., None], env], dim=-1)

    def encode(self, pcm: torch.Tensor) -> torch.Tensor:
        """(B, S) or (S,) float PCM → normalised latents (B, S/hop, 2 + K) (or (S/hop, 2 + K))."""
        pcm = self._check_pcm(pcm)
        squeeze = pcm.dim() == 1
        z = (self.analyse(pcm.reshape(-1, pcm.shape[-1])) - self.latent_mean) / self.latent_std
        return z[0] if squeeze else z

    # --- synthesis -----------------------------------------------------------------------------
    def _voiced_fraction(self, periodicity: torch.Tensor) -> torch.Tensor:
        lo, hi = self.cfg.voicing_low, self.cfg.voicing_high
        u = ((periodicity - lo) / (hi - lo)).clamp(0, 1)
        return u * u * (3 - 2 * u)  # smooth step

    def _density(self, env: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
        """Log band densities (B, K) sampled at frequencies (B, M) Hz by linear interpolation → density (B, M)."""
        c = self.centres
        pos = torch.searchsorted(c, freqs.clamp(c[0], c[-1]).contiguous()).clamp(1, len(c) - 1)
        x0, x1 = c[pos - 1], c[pos]
        w = ((freqs - x0) / (x1 - x0)).clamp(0, 1)
        y0, y1 = torch.gather(env, -1, pos - 1), torch.gather(env, -1, pos)
        return torch.exp(y0 + w * (y1 - y0))

    def _synthesise(self, params: torch.Tensor, state: HarmonicDecodeState,
                    noise_generators: list[torch.Generator] | None = None) -> torch.Tensor:
        """De-normalised parameters (B, n, 2 + K) → PCM (B, n·hop), continuing ``state``. ``noise_generators``: one
        per row (rows of separate streams, each with its own noise), instead of the state's one for the batch."""
        b, n, _ = params.shape
        hop, sr = self.hop, self.sr
        params = params.float()
        params[..., 1] = params[..., 1].clamp(0, 1)
        prev = state.previous
        if prev is None:  # fade in from silence at the first frame's pitch
            prev = params[:, 0].clone()
            prev[:, 2:] = -30.0
        frames = torch.cat([prev[:, None], params], dim=1)  # (B, n + 1, P)
        f0 = torch.exp(frames[..., 0]).clamp(F0_MIN / 2, F0_MAX * 2)  # (B, n + 1)
        v = self._voiced_fraction(frames[..., 1])
        env = frames[..., 2:]
        ramp = (torch.arange(hop, dtype=torch.float32) + 1) / hop  # (hop,) weight of the newer frame
        # Sample-wise f0 and phase: φ(n) = φ_0 + 2π Σ f0 / sr.
        f0_s = (f0[:, :-1, None] * (1 - ramp) + f0[:, 1:, None] * ramp).reshape(b, n * hop)  # (B, n·hop)
        phase0 = state.phase if state.phase is not None else torch.zeros(b, dtype=torch.float64)
        phase = phase0[:, None] + torch.cumsum(2 * math.pi * f0_s.double() / sr, dim=-1)  # (B, n·hop)
        # Harmonic amplitudes per frame: A_h² = 32·f0·v·E(h·f0) / (3·N·sr), zero above 0.95·Nyquist.
        h_max = int((0.5 * sr) / float(f0.min().clamp_min(F0_MIN / 2))) + 1
        h = torch.arange(1, h_max + 1, dtype=torch.float32)
        fh = f0[..., None] * h  # (B, n + 1, H)
        dens = self._density(env.reshape(b * (n + 1), -1), fh.reshape(b * (n + 1), -1)).reshape(b, n + 1, -1)
        nyq = 0.5 * sr
        taper = ((0.95 * nyq - fh) / (0.05 * nyq)).clamp(0, 1)
        amp = torch.sqrt(32 * f0[..., None] * v[..., None] * dens / (3 * self.env_n * sr)) * taper  # (B, n + 1, H)
        amp_s = amp[:, :-1, None] * (1 - ramp)[:, None] + amp[:, 1:, None] * ramp[:, None]  # (B, n, hop, H)
        amp_s = amp_s.reshape(b, n * hop, -1)
        harmonic = torch.zeros(b, n * hop, dtype=torch.float32)
        ph = phase.remainder(2 * math.pi).float()
        for i in range(0, amp_s.shape[-1], 32):  # blocks of harmonics keep memory small
            hh = h[i:i + 32]
            harmonic += (amp_s[..., i:i + 32] * torch.sin(ph[..., None] * hh)).sum(-1)
        # Shaped noise, frame k spans [k·hop, (k + 2)·hop) of this call's output (+ the carried tail).
        bins = hop + 1
        fk = torch.linspace(0, nyq, bins)
        noise_dens = (1 - v[:, 1:, None]) * self._density(env[:, 1:].reshape(b * n, -1), fk.expand(b * n, -1)).reshape(b, n, bins)
        gain = torch.sqrt(noise_dens * 8 / (3 * self.env_n))  # periodogram density → white-noise variance
        white = torch.randn(b, n, 2 * hop, generator=state.generator) if noise_generators is None else \
            torch.cat([torch.randn(1, n, 2 * hop, generator=g) for g in noise_generators])
        spec = torch.fft.rfft(white * self.sine, dim=-1) * gain
        shaped = torch.fft.irfft(spec, n=2 * hop, dim=-1) * self.sine  # (B, n, 2·hop)
        noise = torch.zeros(b, (n + 1) * hop)
        noise = noise + F.fold(shaped.transpose(1, 2), output_size=(1, (n + 1) * hop), kernel_size=(1, 2 * hop),
                               stride=(1, hop)).flatten(1)
        if state.noise_tail is not None:
            noise[:, :hop] += state.noise_tail
        state.previous = params[:, -1].clone()
        state.phase = phase[:, -1].remainder(2 * math.pi)
        state.noise_tail = noise[:, n * hop:].clone()
        return harmonic + noise[:, : n * hop]

    def _check_latents(self, z: torch.Tensor, dims: tuple[int, ...]) -> None:
        if not isinstance(z, torch.Tensor) or z.dim() not in dims or z.shape[-1] != self.cfg.latent_channels:
            raise ValueError(f"audio latents must be (B, N, {self.cfg.latent_channels}), got {tuple(getattr(z, 'shape', ()))}")

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised latents (B, N, C) or (N, C) → PCM (B, N·hop) or (N·hop,), from a fresh stream state."""
        self._check_latents(z, (2, 3))
        squeeze = z.dim() == 2
        zz = z.reshape(-1, *z.shape[-2:])
        y = self._synthesise(zz * self.latent_std + self.latent_mean, HarmonicDecodeState())
        return y[0] if squeeze else y

    def decode_stream(self, z: torch.Tensor, state: HarmonicDecodeState) -> torch.Tensor:
        """Decode the next latent frames (B, n, C) of a stream; equals the matching slice of a full decode."""
        self._check_latents(z, (3,))
        return self._synthesise(z * self.latent_std + self.latent_mean, state)

    def decode_stream_rows(self, zs: list[torch.Tensor], states: list[HarmonicDecodeState]) -> list[torch.Tensor]:
        """Several streams' next latent frames, each (1, n, C) with its own state, decoded in one synthesis: the
        same PCM (n·hop,) per row as ``decode_stream`` of each alone (the harmonics a row does not use are zero,
        and each row draws its noise from its own generator)."""
        if len(zs) != len(states) or not zs:
            raise ValueError("decode_stream_rows takes one state per row, and at least one row")
        for z in zs:
            self._check_latents(z, (3,))
            if z.shape[:2] != zs[0].shape[:2] or z.shape[0] != 1:
                raise ValueError("decode_stream_rows: every row is (1, n, C) with the same n")
        params = torch.cat(zs) * self.latent_std + self.latent_mean  # (B, n, P)
        hop = self.hop
        prev, phase, tail = [], [], []
        for i, st in enumerate(states):
            if st.previous is None:  # as _synthesise: fade in from silence at the first frame's pitch
                p0 = params[i:i + 1, 0].float().clone()
                p0[:, 1] = p0[:, 1].clamp(0, 1)
                p0[:, 2:] = -30.0
                prev.append(p0)
            else:
                prev.append(st.previous)
            phase.append(st.phase if st.phase is not None else torch.zeros(1, dtype=torch.float64))
            tail.append(st.noise_tail if st.noise_tail is not None else torch.zeros(1, hop))
        joint = HarmonicDecodeState(torch.cat(prev), torch.cat(phase), torch.cat(tail))
        pcm = self._synthesise(params, joint, noise_generators=[st.generator for st in states])
        for i, st in enumerate(states):  # each row's state goes on from where the joint one ended
            st.previous, st.phase = joint.previous[i:i + 1], joint.phase[i:i + 1]  # type: ignore[index]
            st.noise_tail = joint.noise_tail[i:i + 1]  # type: ignore[index]
        return [pcm[i] for i in range(len(zs))]

    @torch.no_grad()
    def set_statistics(self, z: torch.Tensor) -> None:
        """Per-channel mean/std from un-normalised latents (N, 2 + K) of training clips. The log-f0 and periodicity
        channels are then scaled up by ``pitch_emphasis`` (std divided by it): in the generator's flow-matching
        loss each of them weighs as much as pitch_emphasis² envelope bands, where unit variance would make pitch
        1/66 of the loss although it decides how natural the speech sounds."""
        self.latent_mean.copy_(z.mean(dim=0))
        std = z.std(dim=0).clamp_min(1e-3)
        std[:2] /= self.cfg.pitch_emphasis
        self.latent_std.copy_(std)

    def new_decode_state(self) -> HarmonicDecodeState:
        return HarmonicDecodeState()

    def freeze(self) -> "HarmonicCodec":
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self
