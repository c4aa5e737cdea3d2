"""A procedural 2D talking face, drawn with numpy.

Every shape is an anti-aliased ellipse (or band) evaluated on the pixel grid
through an approximate signed distance, so the face looks the same at 64, 128
and 256 px. An :class:`Identity` (drawn from a seed) fixes who the character is;
a :class:`FaceState` (mouth, blink, head pose) fixes one frame. Rendering is a
pure function of the two, which makes every clip reproducible.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from mfruntime.config import FRAME_SIZES

_SKIN = np.array([[255, 224, 196], [241, 194, 160], [224, 172, 131], [198, 134, 92], [161, 102, 64], [112, 70, 44], [86, 52, 34]], np.float32)
_HAIR = np.array([[20, 16, 14], [60, 40, 28], [110, 72, 40], [200, 160, 90], [160, 60, 30], [150, 150, 150], [40, 70, 160], [170, 60, 120]], np.float32)
_HAIR_P = np.array([0.25, 0.25, 0.15, 0.12, 0.08, 0.07, 0.04, 0.04])
_IRIS = np.array([[60, 40, 25], [90, 60, 30], [50, 100, 160], [70, 120, 70], [110, 110, 120]], np.float32)
HAIRSTYLES = ("crop", "short", "long", "bun", "side")


@dataclass(frozen=True)
class Identity:
    """Who the character is. All lengths are in face units (the frame spans −1…1)."""

    seed: int  # the seed this identity was drawn from
    face_rx: float  # half-width of the head
    face_ry: float  # half-height of the head
    jaw: float  # 0 = round chin, larger = narrower, pointier jaw
    skin: tuple[float, float, float]  # RGB 0–255
    hair: tuple[float, float, float]  # RGB 0–255
    hairstyle: str  # one of HAIRSTYLES
    background: tuple[float, float, float]  # RGB 0–255
    shirt: tuple[float, float, float]  # RGB 0–255
    eye_spacing: float  # half the distance between the eye centres
    eye_y: float  # eye height relative to the head centre (positive = down)
    eye_rx: float  # eye half-width
    eye_ry: float  # eye half-height when open
    iris: tuple[float, float, float]  # RGB 0–255
    brow: float  # eyebrow thickness
    nose: float  # nose length
    mouth_y: float  # mouth height relative to the head centre
    mouth_w: float  # mouth half-width at rest
    lips: tuple[float, float, float]  # RGB 0–255

    @classmethod
    def from_seed(cls, seed: int) -> "Identity":
        rng = np.random.default_rng([int(seed), 0x1D])

        def jitter(c: np.ndarray, amount: float) -> tuple[float, float, float]:
            return tuple(float(x) for x in np.clip(c + rng.normal(0, amount, 3), 0, 255))

        skin = jitter(_SKIN[rng.integers(len(_SKIN))], 8)
        lips = tuple(float(x) for x in np.clip(np.array(skin) * np.array([0.78, 0.52, 0.52]) + [30, 0, 5], 0, 255))
        bg_hue = rng.uniform(60, 200, 3)
        return cls(
            seed=int(seed),
            face_rx=float(rng.uniform(0.44, 0.54)),
            face_ry=float(rng.uniform(0.56, 0.66)),
            jaw=float(rng.uniform(0.0, 0.35)),
            skin=skin,
            hair=jitter(_HAIR[rng.choice(len(_HAIR), p=_HAIR_P)], 10),
            hairstyle=HAIRSTYLES[rng.integers(len(HAIRSTYLES))],
            background=tuple(float(x) for x in bg_hue),
            shirt=tuple(float(x) for x in rng.uniform(20, 230, 3)),
            eye_spacing=float(rng.uniform(0.18, 0.26)),
            eye_y=float(rng.uniform(-0.08, 0.0)),
            eye_rx=float(rng.uniform(0.075, 0.105)),
            eye_ry=float(rng.uniform(0.045, 0.065)),
            iris=jitter(_IRIS[rng.integers(len(_IRIS))], 10),
            brow=float(rng.uniform(0.018, 0.035)),
            nose=float(rng.uniform(0.10, 0.17)),
            mouth_y=float(rng.uniform(0.30, 0.38)),
            mouth_w=float(rng.uniform(0.14, 0.20)),
            lips=lips,
        )

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FaceState:
    """The animated part of one frame."""

    open: float = 0.0  # mouth opening 0–1 (ground truth written to the sidecar)
    spread: float = 0.0  # lip spread −1 (round) … +1 (spread)
    blink: float = 0.0  # eyelid closure 0–1
    dx: float = 0.0  # head offset, face units
    dy: float = 0.0
    angle: float = 0.0  # head roll, radians


class FaceRenderer:
    """Draws frames of one identity at one size."""

    #: Largest inner-mouth height (face units) at opening 1.
    MAX_OPEN = 0.17

    def __init__(self, identity: Identity, size: int = 64) -> None:
        if size not in FRAME_SIZES:
            raise ValueError(f"frame size must be one of {FRAME_SIZES}, got {size}")
        self.identity = identity
        self.size = size
        self.px = 2.0 / size  # one pixel in face units
        coords = (np.arange(size, dtype=np.float32) + 0.5) * self.px - 1.0
        self.gx, self.gy = np.meshgrid(coords, coords)  # (H, W) each; y grows downwards

    # --- primitives -------------------------------------------------------------------
    def _cov(self, d: np.ndarray) -> np.ndarray:
        """Coverage 0–1 from a signed distance (negative inside), anti-aliased over one pixel."""
        return np.clip(0.5 - d / self.px, 0.0, 1.0)

    @staticmethod
    def _ellipse_sd(x: np.ndarray, y: np.ndarray, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
        """First-order signed distance to an axis-aligned ellipse: f/|∇f| with f = |p/r|² − 1."""
        rx, ry = max(rx, 1e-4), max(ry, 1e-4)
        qx, qy = (x - cx) / rx, (y - cy) / ry
        f = qx * qx + qy * qy - 1.0
        grad = 2.0 * np.sqrt((qx / rx) ** 2 + (qy / ry) ** 2) + 1e-6
        return f / grad

    def _ellipse(self, x, y, cx, cy, rx, ry) -> np.ndarray:
        return self._cov(self._ellipse_sd(x, y, cx, cy, rx, ry))

    @staticmethod
    def _paint(img: np.ndarray, cov: np.ndarray, color) -> None:
        """Alpha-composite ``color`` over ``img`` with coverage ``cov`` (in place)."""
        a = cov[..., None]  # (H, W, 1)
        img *= 1.0 - a
        img += a * np.asarray(color, np.float32)

    # --- the face ---------------------------------------------------------------------
    def render(self, state: FaceState) -> np.ndarray:
        """One frame, (H, W, 3) uint8."""
        idt = self.identity
        img = np.empty((self.size, self.size, 3), np.float32)
        img[:] = np.asarray(idt.background, np.float32)
        # Head coordinates: undo the head pose so features are drawn upright.
        c, s = np.cos(state.angle), np.sin(state.angle)
        px, py = self.gx - state.dx, self.gy - state.dy
        x, y = c * px + s * py, -s * px + c * py
        cy = 0.08  # head centre height

        # Shoulders and neck (move only partly with the head).
        self._paint(img, self._ellipse(self.gx - 0.4 * state.dx, self.gy, 0.0, 1.25, 0.95, 0.45), idt.shirt)
        neck = self._cov(np.maximum(np.abs(self.gx - 0.6 * state.dx) - idt.face_rx * 0.45, cy + 0.5 - self.gy))
        self._paint(img, neck, np.asarray(idt.skin) * 0.85)

        hair = idt.hair
        if idt.hairstyle == "long":
            self._paint(img, self._ellipse(x, y, 0.0, cy + 0.15, idt.face_rx * 1.3, idt.face_ry * 1.15), hair)
        if idt.hairstyle == "bun":
            self._paint(img, self._ellipse(x, y, 0.0, cy - idt.face_ry - 0.1, 0.2, 0.16), hair)
        if idt.hairstyle != "crop":
            self._paint(img, self._ellipse(x, y, 0.0, cy - 0.08, idt.face_rx * 1.1, idt.face_ry * 1.0), hair)

        # Ears, then the head with a narrowing jaw.
        for side in (-1.0, 1.0):
            self._paint(img, self._ellipse(x, y, side * idt.face_rx * 0.98, cy + 0.02, 0.07, 0.12), np.asarray(idt.skin) * 0.92)
        below = np.clip((y - cy) / idt.face_ry, 0.0, 1.0)
        xj = x / (1.0 - idt.jaw * below**2)
        self._paint(img, self._ellipse(xj, y, 0.0, cy, idt.face_rx, idt.face_ry), idt.skin)

        # Hair on top of the forehead.
        if idt.hairstyle == "crop":
            cap = self._ellipse(x, y, 0.0, cy - 0.1, idt.face_rx * 1.02, idt.face_ry * 0.95)
            cap *= self._cov(y - (cy - idt.face_ry * 0.55))
            self._paint(img, cap, hair)
        else:
            shift = 0.12 if idt.hairstyle == "side" else 0.0
            fringe = self._ellipse(x, y, shift, cy - idt.face_ry * 0.72, idt.face_rx * 1.05, idt.face_ry * 0.42)
            self._paint(img, fringe, hair)

        self._eyes(img, x, y, cy, state)
        # Nose: a soft shadow line and the tip.
        nose_top, nose_tip = cy + idt.eye_y + 0.06, cy + idt.eye_y + 0.06 + idt.nose
        shade = np.asarray(idt.skin) * 0.78
        self._paint(img, self._ellipse(x, y, 0.0, nose_tip, 0.05, 0.03) * 0.8, shade)
        self._paint(img, self._ellipse(x, y, 0.012, (nose_top + nose_tip) / 2, 0.012, idt.nose / 2) * 0.5, shade)
        self._mouth(img, x, y, cy, state)
        return np.clip(img + 0.5, 0, 255).astype(np.uint8)

    def _eyes(self, img: np.ndarray, x, y, cy: float, state: FaceState) -> None:
        idt = self.identity
        ey = cy + idt.eye_y
        open_ry = idt.eye_ry * (1.0 - float(np.clip(state.blink, 0.0, 1.0)))
        for side in (-1.0, 1.0):
            ex = side * idt.eye_spacing
            # Brow.
            self._paint(img, self._ellipse(x, y, ex, ey - idt.eye_ry - 0.06, idt.eye_rx * 1.15, idt.brow), np.asarray(idt.hair) * 0.8)
            # Lash line (always visible; it is all that remains of a closed eye).
            self._paint(img, self._ellipse(x, y, ex, ey, idt.eye_rx, max(self.px * 0.6, 0.01)), (40, 30, 30))
            if open_ry <= 1e-3:
                continue
            white = self._ellipse(x, y, ex, ey, idt.eye_rx, open_ry)
            self._paint(img, white, (245, 245, 240))
            iris = self._ellipse(x, y, ex, ey, idt.eye_ry * 0.95, idt.eye_ry * 0.95) * white
            self._paint(img, iris, idt.iris)
            pupil = self._ellipse(x, y, ex, ey, idt.eye_ry * 0.45, idt.eye_ry * 0.45) * white
            self._paint(img, pupil, (10, 10, 10))

    def _mouth(self, img: np.ndarray, x, y, cy: float, state: FaceState) -> None:
        idt = self.identity
        opening = float(np.clip(state.open, 0.0, 1.0))
        spread = float(np.clip(state.spread, -1.0, 1.0))
        inner_h = opening * self.MAX_OPEN  # full height of the opening
        w = idt.mouth_w * (1.0 + 0.22 * spread) * (1.0 + 0.1 * opening)
        my = cy + idt.mouth_y + 0.3 * inner_h  # the jaw drops as the mouth opens
        lip = 0.035 + 0.01 * max(-spread, 0.0)  # rounded lips look fuller
        self._paint(img, self._ellipse(x, y, 0.0, my, w, inner_h / 2 + lip), idt.lips)
        # The seam between the lips, then the dark inside of the mouth.
        self._paint(img, self._ellipse(x, y, 0.0, my, w * 0.9, max(self.px * 0.5, 0.008)), np.asarray(idt.lips) * 0.45)
        if inner_h > 1e-3:
            inner = self._ellipse(x, y, 0.0, my, w * 0.82, inner_h / 2)
            self._paint(img, inner, (45, 12, 18))
            teeth = inner * self._cov(y - (my - inner_h / 2 + 0.035))
            self._paint(img, teeth, (235, 232, 225))
