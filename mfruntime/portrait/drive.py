"""The portrait renderer driven by the model: rig frames (mfruntime/rig.py) → portrait frames.

The model generates its own face (the 64-px latents the rig head reads) and the voice; the rig stream's face
controls then move the user's portrait (warp.py) at its own resolution. What a portrait can show of the
controls (:func:`face_controls_of`): the jaw, the lips spread or rounded, each eyelid, the head's roll and
offset. Visemes act through the controls they shape (jaw, rounding, spread), not on their own.
"""
from __future__ import annotations

import numpy as np

from mfruntime.config import DEFAULT_PORTRAIT_SIZE
from mfruntime.portrait.warp import FaceControls, PortraitRig
from mfruntime.rig import CONTROLS

_I = {name: i for i, name in enumerate(CONTROLS)}


def face_controls_of(rig_frame: np.ndarray) -> FaceControls:
    """One rig frame (len(CONTROLS),) → the :class:`FaceControls` a portrait shows."""
    r = np.asarray(rig_frame, np.float32)
    if r.shape != (len(CONTROLS),):
        raise ValueError(f"a rig frame has {len(CONTROLS)} values (rig version 1), got shape {r.shape}")
    spread = 0.5 * (r[_I["mouthStretchLeft"]] + r[_I["mouthStretchRight"]])
    rounded = max(r[_I["mouthFunnel"]], r[_I["mouthPucker"]])
    return FaceControls(jaw_open=float(r[_I["jawOpen"]]), mouth_spread=float(np.clip(spread - rounded, -1, 1)),
                        blink_left=float(r[_I["eyeBlinkLeft"]]), blink_right=float(r[_I["eyeBlinkRight"]]),
                        head_roll=float(r[_I["headRoll"]]), head_dx=float(r[_I["headOffsetX"]]),
                        head_dy=float(r[_I["headOffsetY"]]))


class PortraitRenderer:
    """A portrait moved by rig frames: ``frames(rig)`` (F, len(CONTROLS)) → (F, H, W, 3) uint8."""

    def __init__(self, image: np.ndarray, size: int = DEFAULT_PORTRAIT_SIZE) -> None:
        self.rig = PortraitRig(np.asarray(image), size)  # finds the face: FaceNotFound (a ValueError) if none

    @property
    def frame_size(self) -> tuple[int, int]:
        """(height, width) of the frames."""
        return self.rig.height, self.rig.width

    def frames(self, rig: np.ndarray) -> np.ndarray:
        return np.stack([self.rig.render(face_controls_of(row)) for row in np.asarray(rig)])
