"""Idle motion: what a character does between lines (listening) — blinks, a slow head sway, the mouth closed.

The model's rig head reports what the model draws, and the model, told nothing to say, draws an almost still
face (measured on the bundled model: eyelids at most 0.07 closed over 6 s of silence, head sway under 0.01 face
widths). A listening character needs more, so idle rig frames come from this procedural layer, seeded and
tied to the stream clock (frame n of a stream is the same whatever chunking produced it):

- blinks every 2–6 s, each 120–200 ms (the corpus' own timing, data/animation.py);
- head sway: per axis a sum of two slow sinusoids (0.08–0.45 Hz), amplitudes as in the corpus;
- the mouth closed and the ``sil`` viseme.

Leaving speech it starts from the last rig frame the character showed and eases into the idle pose
(:data:`EASE_SECONDS`), so there is no jump in the head or the jaw.
"""
from __future__ import annotations

import numpy as np

from mfruntime.rig import CONTROLS, FACE_CONTROLS, OVR_VISEMES

EASE_SECONDS = 0.4  # time constant of the ease from the last spoken rig frame into the idle pose
BLINK_EVERY = (2.0, 6.0)  # seconds between blinks
BLINK_LENGTH = (0.12, 0.20)  # seconds a blink lasts
SWAY_HZ = (0.08, 0.45)  # frequencies of the head sway's sinusoids
# Sway amplitude per axis: head roll (radians), offsets x / y (face widths): the corpus' 3°, 0.035 and 0.025
# face units (a face is 1.24 units wide).
SWAY = {"headRoll": np.deg2rad(3.0), "headOffsetX": 0.035 / 1.24, "headOffsetY": 0.025 / 1.24}

_I = {name: i for i, name in enumerate(CONTROLS)}


class IdleMotion:
    """Idle rig frames for one character's stream: ``frames(first, n, last)`` → (n, len(CONTROLS)) float32."""

    def __init__(self, fps: int, seed: int = 0) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.fps = int(fps)
        rng = np.random.default_rng(seed)
        self._sway = {k: [(rng.uniform(*SWAY_HZ), rng.uniform(0, 2 * np.pi)) for _ in range(2)] for k in SWAY}
        self._blink_seed = int(rng.integers(2**31))
        self._blinks: list[tuple[float, float]] = []  # (start s, length s), extended on demand
        self._blink_rng = np.random.default_rng(self._blink_seed)
        self._next_blink = float(self._blink_rng.uniform(0.3, 2.5))

    def _blinks_until(self, t_end: float) -> None:
        while self._next_blink < t_end + BLINK_LENGTH[1]:
            self._blinks.append((self._next_blink, float(self._blink_rng.uniform(*BLINK_LENGTH))))
            self._next_blink += float(self._blink_rng.uniform(*BLINK_EVERY))

    def pose(self, times: np.ndarray) -> np.ndarray:
        """(T, len(CONTROLS)) idle pose at stream ``times`` (seconds): blinks, sway, mouth closed, ``sil``."""
        times = np.asarray(times, np.float64)
        out = np.zeros((len(times), len(CONTROLS)), np.float32)
        if len(times) == 0:
            return out
        self._blinks_until(float(times.max()))
        # the stream clock only moves on: blinks that ended before these times are dropped (a stream may run for hours)
        self._blinks = [b for b in self._blinks if b[0] + b[1] >= float(times.min()) - 1.0]
        closure = np.zeros(len(times))
        for start, length in self._blinks:
            phase = (times - start) / length  # 0…1 inside the blink
            inside = (phase >= 0) & (phase <= 1)
            closure[inside] = np.maximum(closure[inside], np.sin(np.pi * phase[inside]) ** 0.7)
        out[:, _I["eyeBlinkLeft"]] = out[:, _I["eyeBlinkRight"]] = closure
        for name, amp in SWAY.items():
            out[:, _I[name]] = sum(amp / 2 * np.sin(2 * np.pi * f * times + ph) for f, ph in self._sway[name])
        out[:, len(FACE_CONTROLS) + OVR_VISEMES.index("sil")] = 1.0
        return out

    def frames(self, first: int, n: int, last: np.ndarray | None = None, since: int | None = None) -> np.ndarray:
        """Rig frames ``first … first + n − 1`` of the stream (frame numbers on the stream clock), eased from
        ``last`` (the rig frame shown at frame ``since − 1``, where idling began) into the idle pose."""
        if n < 0 or first < 0:
            raise ValueError(f"frames needs first ≥ 0 and n ≥ 0, got {first}, {n}")
        idx = np.arange(first, first + n)
        out = self.pose(idx / self.fps)
        if last is not None:
            last = np.asarray(last, np.float32)
            if last.shape != (len(CONTROLS),):
                raise ValueError(f"last must be one rig frame of {len(CONTROLS)} values, got shape {last.shape}")
            start = first if since is None else since
            # weight of the last spoken frame: 1 at the start of idling, decaying with EASE_SECONDS
            w = np.exp(-np.maximum(idx - start + 1, 0) / (EASE_SECONDS * self.fps)).astype(np.float32)[:, None]
            keep = w * last[None] + (1 - w) * out
            blink = slice(_I["eyeBlinkLeft"], _I["eyeBlinkRight"] + 1)
            keep[:, blink] = np.maximum(keep[:, blink], out[:, blink])  # idle blinks are never dimmed by the ease
            out = keep.astype(np.float32)
        return out
