"""The web page's 3D preview head: a stylised head made by code, written as binary glTF 2.0 (``.glb``), whose
morph targets are named by the rig stream's convention (mfruntime/rig.py), so a studio sees what its rig will
receive before it wires its engine.

Nodes: ``head`` (the page turns it by the head pose and moves it by the head offset) holding four meshes —
``face`` (skin, lips, nose, hair by vertex colour; a mouth slit whose lips part), ``eyes``, ``eyelids`` and
``mouth`` (the dark inside and the upper teeth, seen where the lips part). Morph targets:

- ``face``: the ARKit face controls ``jawOpen``, ``mouthClose``, ``mouthFunnel``, ``mouthPucker``,
  ``mouthStretchLeft``, ``mouthStretchRight``, and the 15 OVR visemes ``viseme_sil`` … ``viseme_ou`` (each a
  mix of the ARKit shapes, for rigs driven by visemes instead);
- ``eyelids``: ``eyeBlinkLeft``, ``eyeBlinkRight``.

Axes: glTF's (right-handed, +Y up); the face looks along +Z. "Left" is the subject's left, which is +X.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field

import numpy as np

from mfruntime.rig import OVR_VISEMES

SKIN = (0.93, 0.76, 0.66)
LIPS = (0.72, 0.33, 0.36)
HAIR = (0.20, 0.13, 0.09)
BROW = (0.25, 0.17, 0.12)
EYE_WHITE = (0.96, 0.96, 0.94)
IRIS = (0.12, 0.22, 0.30)
CAVITY = (0.22, 0.05, 0.07)
TEETH = (0.95, 0.93, 0.86)

RADII = (0.78, 1.0, 0.86)  # the head ellipsoid (x, y, z)
MOUTH_Y = -0.40  # height of the mouth line
MOUTH_HALF_ANGLE = 0.42  # the slit spans longitudes ±this (radians) around the front
EYE_CENTRES = ((0.27, 0.14), (-0.27, 0.14))  # (x, y) of the left (+x) and right eye
EYE_RADIUS = 0.105
JAW_ANGLE = 0.38  # radians the jaw turns down at jawOpen = 1
JAW_PIVOT = (-0.05, -0.15)  # (y, z) of the jaw's hinge

#: The OVR visemes as mixes of the ARKit mouth shapes (jaw, close, funnel, pucker, stretch both sides).
VISEME_MIX = {
    "sil": {}, "PP": {"mouthClose": 0.9, "mouthPucker": 0.15}, "FF": {"jawOpen": 0.08, "mouthClose": 0.5,
                                                                        "stretch": 0.2},
    "TH": {"jawOpen": 0.2, "stretch": 0.1}, "DD": {"jawOpen": 0.25, "stretch": 0.2},
    "kk": {"jawOpen": 0.3, "stretch": 0.15}, "CH": {"jawOpen": 0.2, "mouthFunnel": 0.5},
    "SS": {"jawOpen": 0.1, "stretch": 0.5}, "nn": {"jawOpen": 0.2, "stretch": 0.1},
    "RR": {"jawOpen": 0.15, "mouthFunnel": 0.4}, "aa": {"jawOpen": 0.7}, "E": {"jawOpen": 0.4, "stretch": 0.4},
    "ih": {"jawOpen": 0.3, "stretch": 0.3}, "oh": {"jawOpen": 0.45, "mouthFunnel": 0.6},
    "ou": {"jawOpen": 0.1, "mouthPucker": 0.9},
}


@dataclass
class Mesh:
    """One mesh of the head: positions (V, 3), colours (V, 3), triangles (T, 3) and named position deltas."""

    name: str
    positions: np.ndarray
    colours: np.ndarray
    triangles: np.ndarray
    targets: dict[str, np.ndarray] = field(default_factory=dict)


def _smooth(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _face(n_lat: int = 56, n_lon: int = 72) -> Mesh:
    """The skin: an ellipsoid with a nose and a chin, cut along the mouth line so the lips can part."""
    a, b, c = RADII
    theta_m = float(np.arccos(MOUTH_Y / b))
    # Latitudes: even, with the mouth line one of them; longitudes: even, φ = 0 at the front (+z).
    theta = np.linspace(0.0, np.pi, n_lat + 1)
    theta[np.argmin(np.abs(theta - theta_m))] = theta_m
    i_m = int(np.argmin(np.abs(theta - theta_m)))
    phi = np.linspace(-np.pi, np.pi, n_lon + 1)[:-1]
    rows = list(range(n_lat + 1))
    rows.insert(i_m + 1, i_m)  # the mouth row twice: the upper lip's copy, then the lower lip's
    th = theta[rows][:, None]  # (R, 1)
    ph = phi[None, :]  # (1, L)
    x = a * np.sin(th) * np.sin(ph)
    y = b * np.cos(th) * np.ones_like(ph)
    z = c * np.sin(th) * np.cos(ph)
    # Shape: a narrower jaw and chin, a nose.
    low = np.clip(-y, 0.0, None)
    x = x * (1 - 0.18 * low ** 2)
    z = z * (1 + 0.06 * np.exp(-((x / 0.25) ** 2) - ((y + 0.8) / 0.15) ** 2))  # chin
    z = z + (z > 0) * 0.17 * np.exp(-((x / 0.085) ** 2) - ((y + 0.08) / 0.16) ** 2)  # nose
    pos = np.stack([x, y, z], -1)  # (R, L, 3)
    r_count, l_count = pos.shape[:2]
    up_row, low_row = i_m, i_m + 1  # indices in the duplicated row list
    # Triangles: quads between consecutive rows, except across the two copies of the mouth row.
    tris = []
    for r in range(r_count - 1):
        if r == up_row:  # between the upper and the lower copy: the slit (its sides coincide outside the mouth)
            continue
        for j in range(l_count):
            p00, p01 = r * l_count + j, r * l_count + (j + 1) % l_count
            p10, p11 = (r + 1) * l_count + j, (r + 1) * l_count + (j + 1) % l_count
            tris += [(p00, p10, p11), (p00, p11, p01)]  # counter-clockwise seen from outside
    # Close the seam of the slit outside the mouth (where both copies stay together).
    ang = np.abs(phi)
    for j in range(l_count):
        jn = (j + 1) % l_count
        if ang[j] >= MOUTH_HALF_ANGLE and ang[jn] >= MOUTH_HALF_ANGLE:
            p00, p01 = up_row * l_count + j, up_row * l_count + jn
            p10, p11 = low_row * l_count + j, low_row * l_count + jn
            tris += [(p00, p10, p11), (p00, p11, p01)]
    flat = pos.reshape(-1, 3)
    row_of = np.repeat(np.arange(r_count), l_count)
    ang_v = np.tile(ang, r_count)
    # Colours: skin; lips around the slit; hair on the crown and the back; brows above the eyes.
    col = np.tile(np.array(SKIN), (len(flat), 1))
    yv, xv, zv = flat[:, 1], flat[:, 0], flat[:, 2]
    taper = np.clip(1.15 - (ang_v / MOUTH_HALF_ANGLE) ** 2, 0.0, None)
    lip_band = (yv < MOUTH_Y + 0.05 * taper) & (yv > MOUTH_Y - 0.075 * taper) & (ang_v < MOUTH_HALF_ANGLE) & (zv > 0)
    col[lip_band] = LIPS
    hair = (yv > 0.58) | ((zv < -0.15) & (yv > -0.3))
    col[hair] = HAIR
    for ex, ey in EYE_CENTRES:
        brow = (np.abs(xv - ex) < 0.13) & (np.abs(yv - (ey + 0.17 - 0.3 * (xv - ex) ** 2)) < 0.025) & (zv > 0)
        col[brow] = BROW
    targets = _face_targets(flat, row_of, ang_v, up_row, low_row)
    return Mesh("face", flat.astype(np.float32), col.astype(np.float32), np.array(tris, np.uint32), targets)


def _face_targets(p: np.ndarray, row: np.ndarray, ang: np.ndarray, up_row: int, low_row: int) -> dict:
    """The face's morph targets (position deltas at full weight)."""
    y, z = p[:, 1], p[:, 2]
    front = _smooth((1.5 - ang) / 0.6)  # 1 over the face, 0 toward the back
    in_slit = ang < MOUTH_HALF_ANGLE
    c = np.cos(0.5 * np.pi * np.clip(ang / MOUTH_HALF_ANGLE, 0, 1)) ** 2  # 1 at the mouth's centre, 0 at a corner
    corner_w = 0.3 * np.exp(-(((ang - MOUTH_HALF_ANGLE) / 0.25) ** 2))
    # How much each vertex follows the jaw: all of the face below the mouth; on the mouth line, the lower lip's
    # copy in the slit (most at the centre: a lens-shaped opening), the corners a little.
    jaw = np.where(row > low_row, 1.0, 0.0) * _smooth((MOUTH_Y - y) / 0.04 + 1.0)
    jaw = np.where(row == low_row, np.where(in_slit, 0.3 + 0.7 * c, corner_w), jaw)
    jaw = np.where(row == up_row, np.where(in_slit, 0.3 * (1 - c), corner_w), jaw)
    jaw = jaw * front
    py, pz = JAW_PIVOT
    ca, sa = np.cos(JAW_ANGLE), np.sin(JAW_ANGLE)
    ry, rz = y - py, z - pz
    turned = np.stack([np.zeros_like(y), py + ca * ry - sa * rz - y, pz + sa * ry + ca * rz - z], 1)  # about +x, down
    d_jaw = turned * jaw[:, None]
    # The lips: the region around the mouth, for rounding and spreading.
    lips = _smooth(1.0 - np.abs(y - MOUTH_Y) / 0.16) * _smooth(1.0 - (ang / (1.35 * MOUTH_HALF_ANGLE) - 0.6) / 0.4)
    lips = lips * (z > 0)
    part = np.zeros_like(p)  # the lips parting a little (rounding opens the mouth)
    part[:, 1] = np.where(row == low_row, -0.05 * c, np.where(row == up_row, 0.025 * c, 0.0)) * in_slit
    d_close = np.zeros_like(p)
    d_close[:, 1] = np.where(row == low_row, 0.02 * c * in_slit, 0.0)  # the lower lip presses up
    d_close[:, 2] = 0.015 * lips
    d_funnel = np.stack([-0.28 * p[:, 0] * lips, np.zeros_like(y), 0.06 * lips], 1) + part
    d_pucker = np.stack([-0.38 * p[:, 0] * lips, np.zeros_like(y), 0.09 * lips], 1) + 0.3 * part
    out = {"jawOpen": d_jaw, "mouthClose": d_close, "mouthFunnel": d_funnel, "mouthPucker": d_pucker}
    for name, side in (("mouthStretchLeft", 1.0), ("mouthStretchRight", -1.0)):
        w = lips * _smooth(side * p[:, 0] / 0.25)
        out[name] = np.stack([side * 0.09 * w, -0.01 * w, -0.02 * w], 1)
    for v in OVR_VISEMES:
        mix = VISEME_MIX[v]
        d = np.zeros_like(p)
        for k, wgt in mix.items():
            d = d + wgt * (out["mouthStretchLeft"] + out["mouthStretchRight"] if k == "stretch" else out[k])
        out[f"viseme_{v}"] = d
    return {k: v.astype(np.float32) for k, v in out.items()}


def _sphere(centre, radii, n_lat: int, n_lon: int, beta_max: float = np.pi):
    """(positions (V, 3), triangles (T, 3), local unit directions (V, 3)) of an ellipsoid cap: polar angle from
    +Y 0 … beta_max."""
    beta = np.linspace(0.0, beta_max, n_lat + 1)[:, None]
    az = np.linspace(0.0, 2 * np.pi, n_lon + 1)[:-1][None, :]
    d = np.stack([np.sin(beta) * np.sin(az), np.cos(beta) * np.ones_like(az), np.sin(beta) * np.cos(az)], -1)
    d = d.reshape(-1, 3)
    pos = np.asarray(centre) + d * np.asarray(radii)
    tris = []
    for r in range(n_lat):
        for j in range(n_lon):
            p00, p01 = r * n_lon + j, r * n_lon + (j + 1) % n_lon
            p10, p11 = (r + 1) * n_lon + j, (r + 1) * n_lon + (j + 1) % n_lon
            tris += [(p00, p10, p11), (p00, p11, p01)]
    return pos, np.array(tris, np.uint32), d


def _surface_z(x: float, y: float) -> float:
    a, b, c = RADII
    return c * float(np.sqrt(max(0.0, 1 - (x / a) ** 2 - (y / b) ** 2)))


def _eyes() -> tuple[Mesh, Mesh]:
    """The eyeballs (an iris where they face +z) and, over each, an upper lid that closes with its blink."""
    eye_pos, eye_tri, eye_col = [], [], []
    lid_pos, lid_tri, lid_col = [], [], []
    blinks = {}
    for k, (ex, ey) in enumerate(EYE_CENTRES):
        centre = np.array([ex, ey, _surface_z(ex, ey) - 0.06])
        p, t, d = _sphere(centre, (EYE_RADIUS,) * 3, 12, 20)
        col = np.tile(np.array(EYE_WHITE), (len(p), 1))
        col[d[:, 2] > 0.88] = IRIS
        eye_tri.append(t + sum(len(q) for q in eye_pos))
        eye_pos.append(p)
        eye_col.append(col)
        # The lid: a cap over the top of the eyeball, turned about +x over the front to close it.
        lp, lt, _ = _sphere(centre, (EYE_RADIUS * 1.12,) * 3, 8, 20, beta_max=1.0)
        ang = 1.35
        rel = lp - centre
        closed = centre + np.stack([rel[:, 0], np.cos(ang) * rel[:, 1] - np.sin(ang) * rel[:, 2],
                                    np.sin(ang) * rel[:, 1] + np.cos(ang) * rel[:, 2]], 1)
        base = sum(len(q) for q in lid_pos)
        lid_tri.append(lt + base)
        lid_pos.append(lp)
        lid_col.append(np.tile(np.array(SKIN), (len(lp), 1)))
        blinks[k] = (base, closed - lp)
    n_lid = sum(len(q) for q in lid_pos)
    targets = {}
    for k, name in enumerate(("eyeBlinkLeft", "eyeBlinkRight")):  # EYE_CENTRES[0] is at +x: the subject's left
        base, delta = blinks[k]
        d = np.zeros((n_lid, 3), np.float32)
        d[base:base + len(delta)] = delta
        targets[name] = d
    eyes = Mesh("eyes", np.concatenate(eye_pos).astype(np.float32), np.concatenate(eye_col).astype(np.float32),
                np.concatenate(eye_tri))
    lids = Mesh("eyelids", np.concatenate(lid_pos).astype(np.float32), np.concatenate(lid_col).astype(np.float32),
                np.concatenate(lid_tri), targets)
    return eyes, lids


def _mouth() -> Mesh:
    """The inside of the mouth (a dark pocket behind the lips) and the upper teeth."""
    zf = _surface_z(0.0, MOUTH_Y)
    p, t, _ = _sphere((0.0, MOUTH_Y - 0.04, zf - 0.32), (0.24, 0.15, 0.2), 10, 20)  # its front 0.12 behind the lips
    col = np.tile(np.array(CAVITY), (len(p), 1))
    # Upper teeth: a thin curved band just behind the upper lip.
    xs = np.linspace(-0.16, 0.16, 9)
    zt = zf - 0.06 - 0.9 * xs ** 2
    top, bottom = MOUTH_Y + 0.01, MOUTH_Y - 0.045
    band = np.concatenate([np.stack([xs, np.full_like(xs, top), zt], 1), np.stack([xs, np.full_like(xs, bottom), zt], 1)])
    n = len(xs)
    bt = [(len(p) + j, len(p) + n + j, len(p) + n + j + 1) for j in range(n - 1)]
    bt += [(len(p) + j, len(p) + n + j + 1, len(p) + j + 1) for j in range(n - 1)]
    pos = np.concatenate([p, band])
    cols = np.concatenate([col, np.tile(np.array(TEETH), (len(band), 1))])
    return Mesh("mouth", pos.astype(np.float32), cols.astype(np.float32), np.concatenate([t, np.array(bt, np.uint32)]))


def head_meshes() -> list[Mesh]:
    eyes, lids = _eyes()
    return [_face(), eyes, lids, _mouth()]


def _linear(srgb: np.ndarray) -> np.ndarray:
    """Vertex colours are linear in glTF; the colours above are written as sRGB."""
    c = np.asarray(srgb, np.float32)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


def _normals(pos: np.ndarray, tris: np.ndarray) -> np.ndarray:
    n = np.zeros_like(pos)
    a, b, c = pos[tris[:, 0]], pos[tris[:, 1]], pos[tris[:, 2]]
    fn = np.cross(b - a, c - a)
    for k in range(3):
        np.add.at(n, tris[:, k], fn)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    return (n / np.maximum(length, 1e-9)).astype(np.float32)


def head_glb() -> bytes:
    """The preview head as one binary glTF 2.0 file."""
    meshes = head_meshes()
    buf = bytearray()
    views, accessors = [], []

    def add(array: np.ndarray, target: int | None, kind: str, minmax: bool = False) -> int:
        data = np.ascontiguousarray(array).tobytes()
        while len(buf) % 4:
            buf.append(0)
        view = {"buffer": 0, "byteOffset": len(buf), "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        buf.extend(data)
        views.append(view)
        acc = {"bufferView": len(views) - 1, "componentType": 5125 if array.dtype == np.uint32 else 5126,
               "count": int(array.shape[0]) if kind != "SCALAR" else int(array.size), "type": kind}
        if minmax:
            acc["min"] = [float(v) for v in array.min(0)]
            acc["max"] = [float(v) for v in array.max(0)]
        accessors.append(acc)
        return len(accessors) - 1

    gl_meshes, nodes = [], []
    for m in meshes:
        prim = {"attributes": {"POSITION": add(m.positions, 34962, "VEC3", True),
                               "NORMAL": add(_normals(m.positions, m.triangles), 34962, "VEC3"),
                               "COLOR_0": add(_linear(m.colours), 34962, "VEC3")},
                "indices": add(m.triangles.reshape(-1), 34963, "SCALAR"), "material": 0}
        entry: dict = {"name": m.name, "primitives": [prim]}
        if m.targets:
            prim["targets"] = [{"POSITION": add(d, 34962, "VEC3", True)} for d in m.targets.values()]
            entry["weights"] = [0.0] * len(m.targets)
            entry["extras"] = {"targetNames": list(m.targets)}
        gl_meshes.append(entry)
        nodes.append({"name": m.name, "mesh": len(gl_meshes) - 1})
    nodes.append({"name": "head", "children": list(range(len(meshes)))})
    doc = {
        "asset": {"version": "2.0", "generator": "mfruntime head.py"},
        "scene": 0, "scenes": [{"nodes": [len(nodes) - 1]}], "nodes": nodes, "meshes": gl_meshes,
        "materials": [{"name": "skin", "pbrMetallicRoughness": {"baseColorFactor": [1, 1, 1, 1], "metallicFactor": 0.0,
                                                                  "roughnessFactor": 0.75}}],
        "accessors": accessors, "bufferViews": views, "buffers": [{"byteLength": len(buf)}],
    }
    js = json.dumps(doc, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 4)
    bin_ = bytes(buf) + b"\0" * (-len(buf) % 4)
    total = 12 + 8 + len(js) + 8 + len(bin_)
    return (struct.pack("<4sII", b"glTF", 2, total) + struct.pack("<I4s", len(js), b"JSON") + js
            + struct.pack("<I4s", len(bin_), b"BIN\0") + bin_)


def read_glb(data: bytes) -> tuple[dict, bytes]:
    """(the JSON document, the binary chunk) of a .glb file; a ValueError when it is not one."""
    if len(data) < 20 or data[:4] != b"glTF":
        raise ValueError("not a binary glTF file")
    _, version, total = struct.unpack_from("<4sII", data)
    if version != 2 or total != len(data):
        raise ValueError(f"glTF version {version}, length {total} of {len(data)} bytes")
    n_js, kind = struct.unpack_from("<I4s", data, 12)
    if kind != b"JSON":
        raise ValueError("the first chunk of a .glb is its JSON")
    doc = json.loads(data[20:20 + n_js])
    n_bin, kind = struct.unpack_from("<I4s", data, 20 + n_js)
    if kind != b"BIN\0":
        raise ValueError("the second chunk of this .glb is not binary")
    return doc, data[28 + n_js:28 + n_js + n_bin]


def accessor_array(doc: dict, blob: bytes, index: int) -> np.ndarray:
    """One accessor of a .glb read by :func:`read_glb`, as an array (float32 VEC3 → (N, 3); uint32 → (N,))."""
    acc = doc["accessors"][index]
    view = doc["bufferViews"][acc["bufferView"]]
    dtype = np.uint32 if acc["componentType"] == 5125 else np.float32
    width = {"SCALAR": 1, "VEC3": 3}[acc["type"]]
    arr = np.frombuffer(blob, dtype, acc["count"] * width, view.get("byteOffset", 0))
    return arr.reshape(-1, width) if width > 1 else arr
