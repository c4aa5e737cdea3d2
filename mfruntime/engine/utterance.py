"""The utterance contract: what one line will produce, decided once, before its first chunk.

An :class:`Utterance` is a plan — how many chunks, and what drives them (phonemes with times from the line's
start, speech to lip-sync, padded to whole chunks, or nothing: idle, the character listening). ``Generator.run`` turns a plan into chunks; the
Session, the server and ``mf eval`` all build their plans here, so every caller gets the same chunk count,
the same padding and the same PCM contract: chunks carry float32 in [−1, 1] (generated speech is clipped, given
speech passes through untouched).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from mfruntime.config import MediaConfig
from mfruntime.data.speech import Phoneme


@dataclass(frozen=True)
class Utterance:
    chunks: int  # chunks the utterance produces (≥ 1)
    phonemes: tuple[Phoneme, ...] | None  # what to say, times from the utterance's start; None when driven
    driving: np.ndarray | None  # (chunks · samples_per_chunk,) float32 speech to lip-sync, zero-padded; or None
    idle: bool = False  # nothing is said: silence, the mouth closed (the model lip-syncs silence; mfruntime/idle.py)

    def __post_init__(self) -> None:
        if self.chunks < 1:
            raise ValueError(f"an utterance has at least one chunk, got {self.chunks}")
        given = (self.phonemes is not None) + (self.driving is not None) + bool(self.idle)
        if given != 1:
            raise ValueError("an utterance is driven by phonemes (say), by speech (drive) or by nothing (idle): "
                             "give exactly one")

    @classmethod
    def silence(cls, chunks: int) -> "Utterance":
        """Idle for ``chunks`` chunks: the character listens (silent PCM, the mouth closed)."""
        return cls(chunks, None, None, idle=True)

    @classmethod
    def speech(cls, phonemes: Sequence[Phoneme], media: MediaConfig, duration: float | None = None,
               chunks: int | None = None) -> "Utterance":
        """Say ``phonemes``: as many chunks as cover ``duration`` seconds (eSpeak NG's length of the line; by
        default the last phoneme's end), or exactly ``chunks``."""
        phonemes = tuple(phonemes)
        if not phonemes:
            raise ValueError("nothing to say: the phoneme list is empty")
        if chunks is None:
            seconds = max(p.end for p in phonemes) if duration is None else duration
            chunks = max(1, math.ceil(seconds / media.chunk_seconds - 1e-9))
        return cls(chunks, phonemes, None)

    @classmethod
    def drive(cls, pcm: np.ndarray, media: MediaConfig, chunks: int | None = None) -> "Utterance":
        """Lip-sync ``pcm`` (mono float32 at the model's rate): as many chunks as cover it (or ``chunks``),
        zero-padded to whole chunks."""
        a = np.asarray(pcm)
        if a.ndim != 1 or a.size == 0 or a.dtype != np.float32:
            raise ValueError(f"driving audio must be mono float32 (S,) at {media.sample_rate} Hz, got shape "
                             f"{a.shape} {a.dtype}")
        spc = media.samples_per_chunk
        chunks = chunks if chunks is not None else math.ceil(a.size / spc)
        padded = np.zeros(max(chunks, 1) * spc, np.float32)
        padded[: min(a.size, padded.size)] = a[: padded.size]
        return cls(chunks, None, padded)

    def driving_chunk(self, i: int, media: MediaConfig) -> np.ndarray:
        """The given speech of chunk ``i`` (a copy)."""
        spc = media.samples_per_chunk
        return self.driving[i * spc:(i + 1) * spc].copy()  # type: ignore[index]
