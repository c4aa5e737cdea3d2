"""Per-frame face states for a clip: mouth from the phoneme timeline, blinks and head motion.

Frame i shows the face at time i / fps (its presentation timestamp).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from mfruntime.data.render import FaceState
from mfruntime.data.speech import Phoneme
from mfruntime.data.visemes import MouthTrack, mouth_track


def frame_times(n_frames: int, fps: int) -> np.ndarray:
    """Presentation time of each frame, seconds (T,)."""
    return np.arange(n_frames, dtype=np.float64) / fps


def blink_curve(times: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Eyelid closure 0–1 (T,): blinks every 2–6 s, each 120–200 ms, closing and opening smoothly."""
    closure = np.zeros_like(times)
    t = rng.uniform(0.3, 2.5)
    end = float(times[-1]) if len(times) else 0.0
    while t < end + 0.2:
        dur = rng.uniform(0.12, 0.20)
        phase = (times - t) / dur  # 0…1 inside the blink
        inside = (phase >= 0) & (phase <= 1)
        closure[inside] = np.maximum(closure[inside], np.sin(np.pi * phase[inside]) ** 0.7)
        t += rng.uniform(2.0, 6.0)
    return closure


def head_motion(times: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slow head sway: dx, dy (face units) and roll (radians), each a sum of two random sinusoids."""
    out = []
    for amp in (0.035, 0.025, np.deg2rad(3.0)):
        sig = np.zeros_like(times)
        for _ in range(2):
            freq, phase = rng.uniform(0.08, 0.45), rng.uniform(0, 2 * np.pi)
            sig += amp / 2 * np.sin(2 * np.pi * freq * times + phase)
        out.append(sig)
    return out[0], out[1], out[2]


def animate(phonemes: Sequence[Phoneme], n_frames: int, fps: int, rng: np.random.Generator) -> tuple[list[FaceState], MouthTrack]:
    """Face states for ``n_frames`` frames and the mouth track they follow."""
    times = frame_times(n_frames, fps)
    track = mouth_track(phonemes, times)
    blink = blink_curve(times, rng)
    dx, dy, roll = head_motion(times, rng)
    dy = dy + 0.01 * track.open  # a slight nod with the jaw
    states = [
        FaceState(
            open=float(track.open[i]), spread=float(track.spread[i]), blink=float(blink[i]),
            dx=float(dx[i]), dy=float(dy[i]), angle=float(roll[i]),
        )
        for i in range(n_frames)
    ]
    return states, track
