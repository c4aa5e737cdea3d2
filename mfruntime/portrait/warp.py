"""The portrait renderer's warp: a face image moved by face controls, at the image's own resolution.

Once per image (:class:`PortraitRig`): find the face mesh (landmarks.py), scale the image so its long side is
the chosen size, triangulate the mesh points plus fixed points on the image border, and store for every pixel
of the face region its triangle and barycentric weights. Per frame (:meth:`PortraitRig.render`): move the mesh
vertices by the controls (jaw drop, lip spread or rounding, eyelids, head roll and offset), interpolate the
vertex motion to every pixel with the stored weights, sample the image backwards along it (for motions this
small the inverse of a smooth warp is its negation), and draw the mouth interior where the lips part (cavity,
teeth in the image's own colour when it shows them, tongue). Pixels outside the face region are the input
image's, untouched.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from scipy.spatial import Delaunay

from mfruntime.config import DEFAULT_PORTRAIT_SIZE, PORTRAIT_SIZES as SIZES
from mfruntime.portrait.landmarks import Face, find_face

# MediaPipe face-mesh indices (the canonical 468-point topology).
UPPER_INNER_LIP = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LOWER_INNER_LIP = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
LOWER_OUTER_LIP = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
MOUTH_CORNERS = (61, 291, 78, 308)
CHIN = 152
EYES = {  # upper lid (corner to corner), lower lid mid point, eye corners
    "right": ((246, 161, 160, 159, 158, 157, 173), 145, (33, 133)),
    "left": ((466, 388, 387, 386, 385, 384, 398), 374, (263, 362)),
}
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148,
             176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
MOUTH_INTERIOR = (52, 18, 24)  # RGB of the open mouth's inside
TEETH = (226, 220, 204)  # ivory, when the image shows no teeth of its own
TONGUE = (150, 62, 70)


@dataclass(frozen=True)
class FaceControls:
    """What moves the face of one frame (the rig stream's controls that a portrait can show)."""

    jaw_open: float = 0.0  # 0 closed … 1 wide open
    mouth_spread: float = 0.0  # −1 rounded (pucker/funnel) … +1 spread (stretch/smile)
    blink_left: float = 0.0  # 0 open … 1 closed (the subject's left eye)
    blink_right: float = 0.0
    head_roll: float = 0.0  # radians, positive = the head tilts to the image's right
    head_dx: float = 0.0  # head offset, fraction of the face's width (+ = image right)
    head_dy: float = 0.0  # (+ = down)


class PortraitRig:
    """One face image, ready to be moved: ``render(FaceControls(...))`` → (H, W, 3) uint8."""

    def __init__(self, image: np.ndarray, size: int = DEFAULT_PORTRAIT_SIZE, face: Face | None = None) -> None:
        if not SIZES[0] <= size <= SIZES[1]:
            raise ValueError(f"portrait size must be {SIZES[0]}–{SIZES[1]} px (the long side), got {size}")
        face = face if face is not None else find_face(image)
        h, w = image.shape[:2]
        k = size / max(h, w)
        # Both sides even (H.264 and VP8 in 4:2:0 need it), the long side ``size`` rounded to even.
        out_w, out_h = (max(2, 2 * round(v * k / 2)) for v in (w, h))
        self.image = np.asarray(Image.fromarray(image).resize((out_w, out_h), Image.Resampling.LANCZOS))
        self.height, self.width = self.image.shape[:2]
        self.rest = face.mesh[:, :2] * np.array([out_w / w, out_h / h])  # (468, 2) px at the output size
        self.face = face
        oval = self.rest[list(FACE_OVAL)]
        self.centre = oval.mean(0)
        self.face_width = float(np.ptp(oval[:, 0]))
        # Fixed anchors: the image border, and a ring well outside the face, so motion fades out before the border.
        ring = self.centre + (oval - self.centre) * 1.6
        border = [(x, y) for x in np.linspace(0, self.width - 1, 9) for y in (0, self.height - 1)]
        border += [(x, y) for y in np.linspace(0, self.height - 1, 9)[1:-1] for x in (0, self.width - 1)]
        self.anchors = np.concatenate([ring, np.array(border)])
        points = np.concatenate([self.rest, self.anchors])  # (468 + A, 2)
        tri = Delaunay(points)
        # The region that can move: the ring's bounding box (clipped to the image).
        x0, y0 = np.floor(np.maximum(ring.min(0), 0)).astype(int)
        x1, y1 = np.ceil(np.minimum(ring.max(0), [self.width - 1, self.height - 1])).astype(int)
        self.region = (x0, y0, x1 + 1, y1 + 1)
        yy, xx = np.mgrid[y0:y1 + 1, x0:x1 + 1]
        pix = np.stack([xx.ravel(), yy.ravel()], 1).astype(np.float64)  # (P, 2)
        simplex = tri.find_simplex(pix)
        inside = simplex >= 0
        t = tri.transform[simplex[inside]]  # (P, 3, 2): barycentric affine per pixel's triangle
        b = np.einsum("pij,pj->pi", t[:, :2], pix[inside] - t[:, 2])
        self.pix = pix[inside]
        self._pix_xy = self.pix.astype(np.intp)  # (P, 2) the same, as indices
        self.vertex = tri.simplices[simplex[inside]]  # (P, 3) vertex ids
        self.weight = np.concatenate([b, 1 - b.sum(1, keepdims=True)], 1)  # (P, 3)
        self._image_f = self.image.astype(np.float32)  # sampled every frame
        self.teeth = self._teeth_colour()

    def displacement(self, c: FaceControls) -> np.ndarray:
        """(468, 2) px motion of each mesh vertex for the controls ``c``."""
        p = self.rest
        d = np.zeros_like(p)
        mouth = (p[13] + p[14]) / 2
        corners = p[[61, 291]]
        mouth_half = max(float(np.linalg.norm(corners[1] - corners[0])) / 2, 1.0)
        chin_drop = max(float(p[CHIN, 1] - mouth[1]), 1.0)
        # Jaw: everything below the mouth line drops, fully from the lower lip down, fading to the sides.
        below = np.clip((p[:, 1] - mouth[1]) / (0.25 * chin_drop) + 0.5, 0.0, 1.0)
        side = np.clip(1.0 - np.abs(p[:, 0] - mouth[0]) / (0.55 * self.face_width), 0.0, 1.0)
        d[:, 1] += np.clip(c.jaw_open, 0, 1) * 0.45 * chin_drop * below * np.sqrt(side)
        d[list(UPPER_INNER_LIP), 1] -= np.clip(c.jaw_open, 0, 1) * 0.04 * chin_drop  # the upper lip lifts a little
        # Lips: spread pulls the corners out, rounding pulls them in, weighted by the distance from the centre.
        lips = np.nonzero(np.abs(p[:, 1] - mouth[1]) < 0.6 * mouth_half)[0]
        rel = (p[lips, 0] - mouth[0]) / mouth_half
        d[lips, 0] += np.clip(c.mouth_spread, -1, 1) * 0.22 * mouth_half * np.clip(rel, -1.2, 1.2) * \
            np.exp(-np.maximum(np.abs(rel) - 1.0, 0.0) * 3)
        # Eyelids: the upper lid comes down to the lower one.
        for name, amount in (("right", c.blink_right), ("left", c.blink_left)):
            upper, lower, _ = EYES[name]
            gap = p[lower, 1] - p[list(upper), 1]
            d[list(upper), 1] += np.clip(amount, 0, 1) * np.maximum(gap, 0.0) * 0.95
        # Head: roll about the face centre and an offset; the fixed ring outside takes up the motion.
        cs, sn = np.cos(c.head_roll), np.sin(c.head_roll)
        rel = p + d - self.centre
        rolled = np.stack([cs * rel[:, 0] - sn * rel[:, 1], sn * rel[:, 0] + cs * rel[:, 1]], 1)
        return rolled + self.centre + np.array([c.head_dx, c.head_dy]) * self.face_width - p

    def render(self, c: FaceControls = FaceControls()) -> np.ndarray:
        """One frame (H, W, 3) uint8: the image with its face moved by ``c``."""
        d_mesh = self.displacement(c)
        d = np.concatenate([d_mesh, np.zeros_like(self.anchors)])  # anchors stay put
        per_pixel = (d[self.vertex] * self.weight[..., None]).sum(1)  # (P, 2)
        src = self.pix - per_pixel  # backward map
        out = self.image.copy()
        out[self._pix_xy[:, 1], self._pix_xy[:, 0]] = np.clip(np.round(self._bilinear(src)), 0, 255).astype(np.uint8)
        moved = self.rest + d_mesh
        if self._lip_gap(moved) > self._lip_gap(self.rest) + 1.0:  # the lips part: the mouth's inside shows
            out = self._mouth_interior(out, moved)
        return out

    def _bilinear(self, xy: np.ndarray) -> np.ndarray:
        """The image sampled at (P, 2) float pixel positions, bilinear, clamped at the border → (P, 3) float32."""
        x = np.clip(xy[:, 0], 0, self.width - 1).astype(np.float32)
        y = np.clip(xy[:, 1], 0, self.height - 1).astype(np.float32)
        x0 = np.minimum(x.astype(np.intp), self.width - 2) if self.width > 1 else np.zeros(len(x), np.intp)
        y0 = np.minimum(y.astype(np.intp), self.height - 2) if self.height > 1 else np.zeros(len(y), np.intp)
        fx, fy = (x - x0)[:, None], (y - y0)[:, None]
        im = self._image_f
        top = im[y0, x0] * (1 - fx) + im[y0, x0 + 1] * fx
        bottom = im[y0 + 1, x0] * (1 - fx) + im[y0 + 1, x0 + 1] * fx
        return top * (1 - fy) + bottom * fy

    @staticmethod
    def _lip_gap(points: np.ndarray) -> float:
        return float(np.mean(points[[14, 87, 317], 1] - points[[13, 82, 312], 1]))

    def _mouth_interior(self, frame: np.ndarray, moved: np.ndarray) -> np.ndarray:
        """Draw the inside of the parted lips: a dark cavity shaded towards the corners, the upper teeth hanging
        from the upper lip (they belong to the skull and do not move with the jaw), the lower teeth standing on
        the lower lip (they move with it), and the tongue behind them. Everything is clipped to the inner-lip
        outline and drawn anti-aliased (at 4× and averaged down), in the mouth's box only."""
        upper = np.array([moved[i] for i in UPPER_INNER_LIP])  # (11, 2) corner → corner
        lower = np.array([moved[i] for i in LOWER_INNER_LIP])
        poly = np.concatenate([upper, lower[::-1]])
        x0, y0 = np.maximum(np.floor(poly.min(0)).astype(int) - 1, 0)
        x1, y1 = np.minimum(np.ceil(poly.max(0)).astype(int) + 2, [self.width, self.height])
        if x1 <= x0 or y1 <= y0:
            return frame
        scale, origin = 4, np.array([x0, y0], np.float64)
        to_box = lambda pts: [tuple(v) for v in (np.asarray(pts) - origin) * scale]  # noqa: E731
        width = max(float(np.linalg.norm(upper[-1] - upper[0])), 1.0)
        layer = Image.new("RGB", ((x1 - x0) * scale, (y1 - y0) * scale), MOUTH_INTERIOR)
        draw = ImageDraw.Draw(layer)
        # The tongue: a low ellipse resting on the floor of the mouth, under the lower teeth.
        floor = lower[len(lower) // 2]
        draw.ellipse(to_box([floor - [0.3 * width, 0.22 * width], floor + [0.3 * width, 0.05 * width]]), fill=TONGUE)
        # Teeth: a band of fixed height (a fraction of the mouth's width) following each inner lip.
        down = np.array([0.0, 1.0])
        for lip, height, sign in ((upper, 0.13 * width, 1.0), (lower, 0.08 * width, -1.0)):
            edge = lip[2:-2]  # not into the corners, where the cheeks hide the teeth
            draw.polygon(to_box(np.concatenate([edge, edge[::-1] + sign * height * down])), fill=self.teeth)
        rgb = np.asarray(layer.resize((x1 - x0, y1 - y0), Image.Resampling.BOX), np.float32)
        # The cavity darkens towards the corners (the cheeks' shadow).
        xs = (np.arange(x0, x1) + 0.5 - (upper[0, 0] + upper[-1, 0]) / 2) / (width / 2)
        rgb *= np.clip(1.15 - 0.55 * xs ** 2, 0.35, 1.0)[None, :, None]
        mask = Image.new("L", layer.size, 0)
        ImageDraw.Draw(mask).polygon(to_box(poly), fill=255)
        alpha = np.asarray(mask.resize((x1 - x0, y1 - y0), Image.Resampling.BOX), np.float32)[..., None] / 255.0
        box = frame[y0:y1, x0:x1].astype(np.float32)
        out = frame.copy()
        out[y0:y1, x0:x1] = np.clip(box * (1 - alpha) + rgb * alpha + 0.5, 0, 255).astype(np.uint8)
        return out

    def _teeth_colour(self) -> tuple[int, int, int]:
        """The image's own teeth where its lips are already apart (a smile): the brighter half of the pixels
        between the inner lips, when light and unsaturated; otherwise a neutral ivory."""
        poly = np.concatenate([self.rest[list(UPPER_INNER_LIP)], self.rest[list(LOWER_INNER_LIP)][::-1]])
        mask = Image.new("L", (self.width, self.height), 0)
        ImageDraw.Draw(mask).polygon([tuple(v) for v in poly], fill=255)
        pixels = self.image[np.asarray(mask) == 255].astype(np.float32)  # (N, 3)
        if len(pixels) >= 12:
            luma = pixels @ np.array([0.299, 0.587, 0.114], np.float32)
            bright = pixels[luma >= np.median(luma)]
            colour = np.median(bright, 0)
            if colour @ np.array([0.299, 0.587, 0.114]) > 140 and colour.min() > 0.75 * colour.max():  # light, pale
                return tuple(int(v) for v in colour)  # teeth, not a dark gap or the lips themselves
        return TEETH
