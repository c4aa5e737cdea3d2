"""Phoneme tokens: a fixed vocabulary of eSpeak symbols and the per-chunk phoneme window.

A phoneme token carries its symbol, stress, start/end time (seconds, absolute
stream time) and duration. For chunk k the model sees the phonemes that overlap
[chunk start − window, chunk end + window], padded to a static count.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from functools import lru_cache

from mfruntime.config import PHONEME_VOCAB
from mfruntime.data.speech import Phoneme

PAD, UNK = 0, 1


@lru_cache(maxsize=8)
def _index(vocab: tuple[str, ...]) -> dict[str, int]:
    return {s: i for i, s in enumerate(vocab)}


def symbol_id(symbol: str, vocab: tuple[str, ...] = PHONEME_VOCAB) -> int:
    """Id of a symbol (stress marks already removed) in ``vocab`` (a model's ``cfg.phonemes``); unknown → UNK."""
    index = _index(vocab)
    if symbol in index:
        return index[symbol]
    stripped = symbol.rstrip("0123456789#:;-")
    return index.get(stripped, UNK)


@dataclass
class PhonemeTrack:
    """All phonemes of an utterance as tensors (one batch element)."""

    ids: torch.Tensor  # (P,) long
    stressed: torch.Tensor  # (P,) long, 0/1
    start: torch.Tensor  # (P,) float64 seconds
    end: torch.Tensor  # (P,) float64 seconds

    @classmethod
    def from_phonemes(cls, phonemes: Sequence[Phoneme], offset: float = 0.0,
                      vocab: tuple[str, ...] = PHONEME_VOCAB) -> "PhonemeTrack":
        """Encode phonemes with ``vocab`` (pass the model's ``cfg.phonemes``); ``offset`` (seconds) is added to
        every time (stream time of the utterance start)."""
        if len(phonemes) == 0:
            raise ValueError(
                "phoneme list is empty: pass the phonemes of the text to speak (mfruntime.data.synthesize gives them), "
                "or None in audio-driven mode"
            )
        for p in phonemes:
            if not p.end > p.start:
                raise ValueError(f"phoneme {p.symbol!r} has end {p.end} <= start {p.start}: times must increase")
        return cls(
            ids=torch.tensor([symbol_id(p.symbol, vocab) for p in phonemes], dtype=torch.long),
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
        return PhonemeWindow(*(torch.stack([getattr(w, f) for w in windows], dim) for f in _FIELDS))

    @staticmethod
    def cat(windows: Sequence["PhonemeWindow"]) -> "PhonemeWindow":
        """Windows (B_i, P) of several streams → one (ΣB_i, P) batch (the same P: ``max_phonemes``)."""
        return PhonemeWindow(*(torch.cat([getattr(w, f) for w in windows], 0) for f in _FIELDS))

    def row(self, i: int) -> "PhonemeWindow":
        """Batch row ``i`` as a (1, P) window."""
        return PhonemeWindow(*(getattr(self, f)[i:i + 1] for f in _FIELDS))


_FIELDS = ("ids", "stressed", "start", "end", "mask")


@dataclass
class AlignedPhonemes:
    """The phoneme sounding at each of N instants (frame-aligned conditioning), leading dims (B, C)."""

    current: torch.Tensor  # (B, C, N) long id, PAD where no phoneme sounds
    previous: torch.Tensor  # (B, C, N) long id of the phoneme before it (PAD at the start)
    following: torch.Tensor  # (B, C, N) long id of the phoneme after it (PAD at the end)
    stressed: torch.Tensor  # (B, C, N) long 0/1
    position: torch.Tensor  # (B, C, N, 4) float: fraction elapsed, seconds since start, seconds to end, log duration


def align(window: PhonemeWindow, times: torch.Tensor) -> AlignedPhonemes:
    """For windows (B, C, P) (or (B, P), one window for all chunks) and instants ``times`` (C, N) float64 seconds (chunk c's
    instants lie inside chunk c), find the phoneme with start <= t < end in that chunk's window, its
    neighbours in the window and the position of t inside it. Windows hold their phonemes in time order."""
    ids, start, end, mask, stressed = window.ids, window.start, window.end, window.mask, window.stressed
    if ids.dim() == 2:  # one window for every chunk
        c = times.shape[0]
        ids, start, end, mask, stressed = (x[:, None].expand(-1, c, -1) for x in (ids, start, end, mask, stressed))
    t = times.to(start.device)[None, :, :, None]  # (1, C, N, 1)
    inside = (start[:, :, None, :] <= t) & (t < end[:, :, None, :]) & mask[:, :, None, :]  # (B, C, N, P)
    has = inside.any(-1)
    idx = inside.float().argmax(-1)  # (B, C, N)
    p = ids.shape[-1]

    def pick(x: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return torch.gather(x, -1, i.clamp(0, p - 1))

    cur = torch.where(has, pick(ids, idx), torch.full_like(idx, PAD))
    prev_ok = has & (idx > 0)
    nxt_ok = has & (idx + 1 < p) & pick(mask, idx + 1)
    prev = torch.where(prev_ok, pick(ids, idx - 1), torch.full_like(idx, PAD))
    nxt = torch.where(nxt_ok, pick(ids, idx + 1), torch.full_like(idx, PAD))
    s0, s1 = pick(start, idx), pick(end, idx)
    tt = t[..., 0]
    dur = (s1 - s0).clamp_min(1e-3)
    pos = torch.stack([((tt - s0) / dur).clamp(0, 1), (tt - s0).clamp(0, 1), (s1 - tt).clamp(0, 1), torch.log(dur)], dim=-1)
    pos = torch.where(has[..., None], pos, torch.zeros_like(pos)).float()
    st = torch.where(has, pick(stressed, idx), torch.zeros_like(idx))
    return AlignedPhonemes(cur, prev, nxt, st, pos)
