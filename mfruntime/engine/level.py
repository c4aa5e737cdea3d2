"""Causal level normalisation of driving speech (``Session.drive``), chunk by chunk.

The face follows the audio latents it is given, and the harmonic codec's spectral envelope carries the
recording level: speech 12 dB quieter than the training corpus opened the mouth a fifth as far. So before the
driving audio is encoded, each chunk is scaled towards the level the model was trained on. The level is a
running estimate over the chunks heard so far (and the current one: a chunk is generated after its audio has
arrived), so it works streaming and never looks ahead. Scaling the input by any factor c (within the gain
limits) scales every estimate by c and every gain by 1/c: the normalised audio, and so the face, is the same.
Only what the model sees is normalised; the chunks carry the given speech untouched.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Active-speech level of the training corpus: eSpeak NG's median RMS over 160-ms chunks with speech, 0.08–0.11
#: across voices and pitches (measured on this project's synthesiser).
TARGET_RMS = 0.1
GATE_RMS = 1e-3  # a chunk quieter than this (−60 dBFS) is silence: it does not move the estimate
MAX_GAIN = 16.0  # at most ±24 dB: near-silent recordings are not blown up into noise
TIME_CONSTANT = 1.0  # seconds over which the level estimate follows a change of level


@dataclass
class LevelNormalizer:
    """Streaming gain control: ``process`` one chunk at a time, in order; the state carries over."""

    sample_rate: int
    log_level: float | None = None  # running log-RMS of the active chunks so far (None before the first)
    gain: float = 1.0  # the gain at the end of the previous chunk

    def process(self, block: np.ndarray) -> np.ndarray:
        """One chunk of mono float32 → the same chunk scaled towards TARGET_RMS (gain ramped from the previous
        chunk's, so there is no step at the border)."""
        block = np.asarray(block, np.float32)
        if block.size == 0:
            return block
        rms = float(np.sqrt(np.mean(np.square(block, dtype=np.float64))))
        first = self.log_level is None
        if rms > GATE_RMS:
            if first:
                self.log_level = math.log(rms)
            else:  # a one-pole follower in the log domain: geometric, so one loud syllable cannot dominate
                alpha = 1.0 - math.exp(-block.size / self.sample_rate / TIME_CONSTANT)
                self.log_level += alpha * (math.log(rms) - self.log_level)  # type: ignore[operator]
        if self.log_level is None:
            return block  # nothing heard yet: silence stays as it is
        target = min(max(TARGET_RMS / math.exp(self.log_level), 1.0 / MAX_GAIN), MAX_GAIN)
        start = target if first else self.gain  # the first speech is scaled at once: no ramp from a guess
        ramp = np.linspace(start, target, block.size, endpoint=False, dtype=np.float64) if start != target else target
        self.gain = target
        return (block * ramp).astype(np.float32)
