"""Audio-visual offset from a mouth-opening track and the speech envelope.

The estimator never reads the generator's internals: it takes a per-frame mouth-opening track
(measured from the frames by :class:`mfruntime.eval.mouth.MouthRegressor`) and the audio waveform.

1. Speech envelope: RMS of 20 ms windows every ``resolution_ms`` (default 5 ms), log-compressed
   (e = log(rms + 1e-3)), so quiet syllables count as well as loud ones.
2. The mouth track (25 fps) is linearly interpolated to the same grid.
3. For every lag τ in [−max_ms, +max_ms] the Pearson correlation of m(t) and e(t + τ) over the
   overlapping span is computed; the peak is refined by fitting a parabola through it and its two
   neighbours (sub-grid resolution).

Sign convention: **positive offset = the audio lags the video** (sound comes after the mouth moves).
Confidence = peak correlation minus the median correlation over all lags (SyncNet's LSE-C idea: a
clear, isolated peak scores high; a flat curve scores near 0).

Mouth motion naturally leads the sound a little (lips open before voicing), so a perfectly synced
clip does not measure 0 ms. :func:`calibrate` measures that natural lag on ground-truth clips, and
reports subtract it (``bias_ms``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OffsetResult:
    offset_ms: float  # positive: audio lags video
    confidence: float  # peak correlation − median correlation over lags
    peak_correlation: float
    lags_ms: np.ndarray  # (L,) the lag grid
    correlation: np.ndarray  # (L,) Pearson correlation per lag


def speech_envelope(pcm: np.ndarray, sample_rate: int, resolution_ms: float = 5.0, window_ms: float = 20.0) -> np.ndarray:
    """Log RMS envelope of ``pcm`` (S,) on a grid of ``resolution_ms``; value i is centred at i·resolution."""
    pcm = np.asarray(pcm, np.float64).reshape(-1)
    hop = sample_rate * resolution_ms / 1000.0
    half = int(round(sample_rate * window_ms / 2000.0))
    n = int(len(pcm) / hop)
    power = np.concatenate([[0.0], np.cumsum(pcm * pcm)])
    centres = np.round(np.arange(n) * hop).astype(np.int64)
    lo, hi = np.clip(centres - half, 0, len(pcm)), np.clip(centres + half, 0, len(pcm))
    rms = np.sqrt((power[hi] - power[lo]) / np.maximum(hi - lo, 1))
    return np.log(rms + 1e-3)


def _resample_track(track: np.ndarray, fps: float, resolution_ms: float, n: int) -> np.ndarray:
    """Linear interpolation of a per-frame track (frame i centred at i/fps) onto n points i·resolution."""
    t = np.arange(n) * resolution_ms / 1000.0
    return np.interp(t, np.arange(len(track)) / fps, np.asarray(track, np.float64))


def estimate_offset(mouth: np.ndarray, fps: float, pcm: np.ndarray, sample_rate: int, max_ms: float = 300.0,
                    resolution_ms: float = 5.0, min_overlap_s: float = 1.0) -> OffsetResult:
    """Offset between a mouth-opening track (T,) at ``fps`` and audio ``pcm`` (S,) — see the module doc."""
    mouth = np.asarray(mouth, np.float64).reshape(-1)
    if len(mouth) < 2 or not np.all(np.isfinite(mouth)):
        raise ValueError(f"mouth track must be finite with at least 2 frames, got {mouth.shape}")
    env = speech_envelope(pcm, sample_rate, resolution_ms)
    n = min(len(env), int(len(mouth) / fps * 1000.0 / resolution_ms))
    max_lag = int(round(max_ms / resolution_ms))
    if n - max_lag < min_overlap_s * 1000.0 / resolution_ms:
        raise ValueError(f"clip too short for a ±{max_ms:.0f} ms offset search: need at least "
                         f"{min_overlap_s + max_ms / 1000:.2f} s of audio and video, got {n * resolution_ms / 1000:.2f} s")
    m = _resample_track(mouth, fps, resolution_ms, n)
    e = env[:n]
    lags = np.arange(-max_lag, max_lag + 1)
    corr = np.empty(len(lags))
    for i, lag in enumerate(lags):
        a, b = (m[: n - lag], e[lag:]) if lag >= 0 else (m[-lag:], e[: n + lag])  # m(t) vs e(t + lag)
        a, b = a - a.mean(), b - b.mean()
        den = np.sqrt((a * a).sum() * (b * b).sum())
        corr[i] = (a * b).sum() / den if den > 0 else 0.0
    k = int(np.argmax(corr))
    shift = 0.0
    if 0 < k < len(corr) - 1:
        y0, y1, y2 = corr[k - 1], corr[k], corr[k + 1]
        den = y0 - 2 * y1 + y2
        shift = 0.5 * (y0 - y2) / den if den < 0 else 0.0
    return OffsetResult(offset_ms=float((lags[k] + shift) * resolution_ms), confidence=float(corr[k] - np.median(corr)),
                        peak_correlation=float(corr[k]), lags_ms=lags * resolution_ms, correlation=corr)


def shift_audio(pcm: np.ndarray, sample_rate: int, shift_ms: float) -> np.ndarray:
    """Delay (shift_ms > 0) or advance (< 0) the audio by whole samples, keeping the length (zero fill)."""
    pcm = np.asarray(pcm)
    s = int(round(shift_ms * sample_rate / 1000.0))
    out = np.zeros_like(pcm)
    if s >= 0:
        out[s:] = pcm[: len(pcm) - s]
    else:
        out[: len(pcm) + s] = pcm[-s:]
    return out
