"""Phoneme tokens: a fixed vocabulary of eSpeak symbols and the per-chunk phoneme window.

A phoneme token carries its symbol, stress, start/end time (seconds, absolute
stream time) and duration. For chunk k the model sees the phonemes that overlap
[chunk start − window, chunk end + window], padded to a static count.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from mfruntime.data.speech import Phoneme
from mfruntime.data.visemes import _PHONEME_TO_VISEMES

PAD, UNK = 0, 1
#: Token ids: 0 padding, 1 unknown, then every eSpeak symbol the viseme table knows (sorted).
VOCAB: tuple[str, ...] = ("<pad>", "<unk>", *sorted(_PHONEME_TO_VISEMES))
_INDEX = {s: i for i, s in enumerate(VOCAB)}


def symbol_id(symbol: str) -> int:
    """Vocabulary id of a symbol (stress marks already removed); unknown symbols map to UNK."""
    if symbol in _INDEX:
        return _INDEX[symbol]
    stripped = symbol.rstrip("0123456789#:;-")
    return _INDEX.get(stripped, UNK)


@dataclass
class PhonemeTrack:
    """All phonemes of an utterance as tensors (one batch element)."""

    ids: torch.Tensor  # (P,) long
    stressed: torch.Tensor  # (P,) long, 0/1
    start: torch.Tensor  # (P,) float64 seconds
    end: torch.Tensor  # (P,) float64 seconds

    @classmethod
    def from_phonemes(cls, phonemes: Sequence[Phoneme], offset: float = 0.0) -> "PhonemeTrack":
        """Encode phonemes; ``offset`` (seconds) is added to every time (stream time of the utterance start)."""
        if len(phonemes) == 0:
            raise ValueError(
                "phoneme list is empty: pass the phonemes of the text to speak (mfruntime.data.synthesize gives them), "
                "or None in audio-driven mode"
            )
        for p in phonemes:
            if not p.end > p.start:
                raise ValueError(f"phoneme {p.symbol!r} has end {p.end} <= start {p.start}: times must increase")
        return cls(
            ids=torch.tensor([symbol_id(p.symbol) for p in phonemes], dtype=torch.long),
            stressed=torch.tensor([int(p.stressed) for p in phonemes], dtype=torch.long),
            start=torch.tensor([p.start + offset for p in phonemes], dtype=torch.float64),
            end=torch.tensor([p.end + offset for p in phonemes], dtype=torch.float64),
        )

    def window(self, t0: float, t1: float, margin: float, max_tokens: int) -> "PhonemeWindow":
        """Phonemes overlapping [t0 − margin, t1 + margin], padded to ``max_tokens``."""
        keep = ((self.end > t0 - margin) & (self.start < t1 + margin)).nonzero().flatten()
        if len(keep) > max_tokens:
            raise ValueError(
                f"{len(keep)} phonemes fall in one chunk window, more than max_phonemes={max_tokens}: "
                "speak more slowly or raise ModelConfig.max_phonemes"
            )
        n = len(keep)
        ids = torch.full((max_tokens,), PAD, dtype=torch.long)
        stressed = torch.zeros(max_tokens, dtype=torch.long)
        start = torch.zeros(max_tokens, dtype=torch.float64)
        end = torch.zeros(max_tokens, dtype=torch.float64)
        ids[:n], stressed[:n], start[:n], end[:n] = self.ids[keep], self.stressed[keep], self.start[keep], self.end[keep]
        mask = torch.zeros(max_tokens, dtype=torch.bool)
        mask[:n] = True
        return PhonemeWindow(ids, stressed, start, end, mask)


@dataclass
class PhonemeWindow:
    """The phoneme tokens one chunk attends to; leading dims are batch (and chunk) dims."""

    ids: torch.Tensor  # (..., P) long
    stressed: torch.Tensor  # (..., P) long
    start: torch.Tensor  # (..., P) float64 seconds
    end: torch.Tensor  # (..., P) float64 seconds
    mask: torch.Tensor  # (..., P) bool, True = a real phoneme

    @staticmethod
    def stack(windows: Sequence["PhonemeWindow"], dim: int = 0) -> "PhonemeWindow":
        return PhonemeWindow(*(torch.stack([getattr(w, f) for w in windows], dim) for f in ("ids", "stressed", "start", "end", "mask")))
