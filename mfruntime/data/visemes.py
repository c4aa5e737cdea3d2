"""Phoneme → viseme table and coarticulated mouth trajectories.

Each eSpeak phoneme maps to a viseme class with a target mouth *opening*
(0 = lips closed, 1 = jaw wide open), a target *spread* (−1 = rounded,
+1 = spread) and a *dominance* (how strongly the phoneme imposes its shape on
its neighbours: bilabial closures dominate, /k/ and /h/ barely do).
Diphthongs are split into their two halves.

Coarticulation follows the dominance model of Cohen & Massaro (1993): each
segment i exerts a dominance D_i(t) = α_i · exp(−θ_i |t − c_i|) around its
centre c_i, with θ_i ∝ 1/duration so long segments reach their target, and the
mouth parameter at time t is the dominance-weighted mean of the targets,
p(t) = Σ_i D_i(t) p_i / Σ_i D_i(t). The result is smooth, anticipates the
next phoneme and is exact ground truth for the renderer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from mfruntime.data.speech import Phoneme


@dataclass(frozen=True)
class Viseme:
    name: str
    open: float  # target opening, 0–1
    spread: float  # target lip spread, −1 (round) … +1 (spread)
    dominance: float  # α in the dominance model


VISEMES: dict[str, Viseme] = {
    v.name: v
    for v in (
        Viseme("sil", 0.00, 0.0, 0.8),
        Viseme("PP", 0.00, 0.0, 4.0),  # p b m: lips pressed together
        Viseme("FF", 0.07, 0.1, 2.5),  # f v: lower lip to upper teeth
        Viseme("TH", 0.18, 0.1, 1.2),  # T D
        Viseme("DD", 0.20, 0.2, 0.6),  # t d n l
        Viseme("SS", 0.12, 0.4, 1.2),  # s z
        Viseme("CH", 0.18, -0.5, 1.5),  # S Z tS dZ
        Viseme("KK", 0.28, 0.1, 0.4),  # k g N h
        Viseme("RR", 0.22, -0.5, 0.8),  # r
        Viseme("WW", 0.12, -0.9, 2.0),  # w
        Viseme("JJ", 0.22, 0.5, 0.8),  # j
        Viseme("AA", 0.90, 0.1, 1.0),  # open vowels
        Viseme("EH", 0.60, 0.5, 1.0),  # mid front vowels
        Viseme("IH", 0.35, 0.8, 1.0),  # close front vowels
        Viseme("AH", 0.50, 0.1, 0.9),  # central vowels, schwa
        Viseme("OH", 0.70, -0.6, 1.0),  # back rounded vowels
        Viseme("UU", 0.30, -0.9, 1.2),  # close back rounded vowels
    )
}

# eSpeak English phoneme mnemonics (after stress marks are removed) → viseme classes.
_PHONEME_TO_VISEMES: dict[str, tuple[str, ...]] = {
    "_": ("sil",),
    **{p: ("PP",) for p in ("p", "b", "m", "m-")},
    **{p: ("FF",) for p in ("f", "v")},
    **{p: ("TH",) for p in ("T", "D")},
    **{p: ("DD",) for p in ("t", "d", "n", "l", "t#", "d#", "n-", "l/", "L", "t2", "d2", "*", "l-")},
    **{p: ("SS",) for p in ("s", "z")},
    **{p: ("CH",) for p in ("S", "Z", "tS", "dZ")},
    **{p: ("KK",) for p in ("k", "g", "N", "h", "x", "?", "n^")},
    **{p: ("RR",) for p in ("r", "r-", "R", "@r", "3r")},
    "w": ("WW",),
    "j": ("JJ",),
    **{p: ("AA",) for p in ("a", "a#", "A:", "A", "aa", "A@", "a2")},
    **{p: ("EH",) for p in ("e", "E", "e@", "E2", "E3", "e#")},
    **{p: ("IH",) for p in ("i", "i:", "I", "I2", "I#", "i@", "i@3", "y")},
    **{p: ("AH",) for p in ("@", "@2", "@5", "@L", "3", "3:", "V", "VR", "a#", "@-")},
    **{p: ("OH",) for p in ("0", "O:", "O", "O@", "o@", "o", "O2")},
    **{p: ("UU",) for p in ("u:", "U", "u", "U@", "u@")},
    # Diphthongs: two halves.
    "aI": ("AA", "IH"),
    "aU": ("AA", "UU"),
    "oU": ("OH", "UU"),
    "eI": ("EH", "IH"),
    "OI": ("OH", "IH"),
    "aI@": ("AA", "AH"),
    "aU@": ("AA", "AH"),
    "aI3": ("AA", "AH"),
    "aU3": ("AA", "AH"),
}

# First-character fallback for symbols the table does not list (other accents' variants).
_FIRST_CHAR = {
    "a": "AA", "A": "AA", "e": "EH", "E": "EH", "i": "IH", "I": "IH", "@": "AH", "3": "AH", "V": "AH",
    "0": "OH", "O": "OH", "o": "OH", "u": "UU", "U": "UU", "p": "PP", "b": "PP", "m": "PP", "f": "FF",
    "v": "FF", "T": "TH", "D": "TH", "t": "DD", "d": "DD", "n": "DD", "l": "DD", "s": "SS", "z": "SS",
    "S": "CH", "Z": "CH", "k": "KK", "g": "KK", "h": "KK", "N": "KK", "r": "RR", "w": "WW", "j": "JJ",
}


def visemes_for(symbol: str) -> tuple[str, ...]:
    """Viseme classes for one eSpeak phoneme symbol (unknown symbols fall back to a neutral class)."""
    if symbol in _PHONEME_TO_VISEMES:
        return _PHONEME_TO_VISEMES[symbol]
    stripped = symbol.rstrip("0123456789#:;-")
    if stripped in _PHONEME_TO_VISEMES:
        return _PHONEME_TO_VISEMES[stripped]
    return (_FIRST_CHAR.get(symbol[:1], "DD"),)


@dataclass
class MouthTrack:
    """Per-frame mouth parameters; ``open`` is the ground-truth opening written to sidecars."""

    open: np.ndarray  # (T,) float32 in [0, 1]
    spread: np.ndarray  # (T,) float32 in [-1, 1]


def _segments(phonemes: Sequence[Phoneme]) -> tuple[np.ndarray, np.ndarray, list[Viseme]]:
    """Split phonemes into viseme segments → centres (N,), durations (N,), visemes."""
    centres, durations, visemes = [], [], []
    for ph in phonemes:
        classes = visemes_for(ph.symbol)
        dur = (ph.end - ph.start) / len(classes)
        for k, name in enumerate(classes):
            start = ph.start + k * dur
            centres.append(start + dur / 2)
            durations.append(dur)
            visemes.append(VISEMES[name])
    return np.asarray(centres), np.asarray(durations), visemes


def _dominance(phonemes: Sequence[Phoneme], times: np.ndarray) -> tuple[np.ndarray, list[Viseme]]:
    """Dominance D_i(t) of every viseme segment at ``times``: (T, N), and the segments' visemes."""
    centres, durations, visemes = _segments(phonemes)
    alpha = np.array([v.dominance for v in visemes])  # (N,)
    theta = 4.0 / np.maximum(durations, 0.03)  # (N,) 1/s: the dominance falls to e^-2 at a segment's edge
    dist = np.abs(times[:, None] - centres[None, :])  # (T, N)
    return alpha[None, :] * np.exp(-theta[None, :] * dist), visemes  # (T, N)


def viseme_weights(phonemes: Sequence[Phoneme], times: np.ndarray) -> dict[str, np.ndarray]:
    """Each viseme class's share of the mouth at ``times``: its segments' dominance over all (T,) per class,
    summing to 1 at every instant (all "sil" without phonemes)."""
    times = np.asarray(times, dtype=np.float64)
    if len(phonemes) == 0:
        return {"sil": np.ones(times.shape, np.float32)}
    dom, visemes = _dominance(phonemes, times)
    share = dom / (dom.sum(axis=1, keepdims=True) + 1e-12)
    out: dict[str, np.ndarray] = {}
    for i, v in enumerate(visemes):
        out[v.name] = out.get(v.name, 0.0) + share[:, i]
    return {k: np.asarray(w, np.float32) for k, w in out.items()}


def mouth_track(phonemes: Sequence[Phoneme], times: np.ndarray) -> MouthTrack:
    """Coarticulated mouth opening and spread at ``times`` (seconds), per the dominance model above."""
    times = np.asarray(times, dtype=np.float64)
    if len(phonemes) == 0:
        zeros = np.zeros(times.shape, np.float32)
        return MouthTrack(open=zeros, spread=zeros.copy())
    dom, visemes = _dominance(phonemes, times)
    dom_sum = dom.sum(axis=1) + 1e-12  # (T,)
    open_t = dom @ np.array([v.open for v in visemes]) / dom_sum
    spread_t = dom @ np.array([v.spread for v in visemes]) / dom_sum
    return MouthTrack(
        open=np.clip(open_t, 0.0, 1.0).astype(np.float32),
        spread=np.clip(spread_t, -1.0, 1.0).astype(np.float32),
    )
