"""The portrait renderer driven by the bundled model: `python -m benchmarks.portrait [--image FILE] [--lines 4]
[--sheet OUT.png [--sheet-only]]`.

For a portrait (default: one of the project's own cartoon faces drawn at 256 px; pass a photo with --image),
prints one table:

- cost of one warped frame at 256 and 512 px (median over the frames of the lines, one process, torch's threads);
- identity: mean absolute difference, in 8-bit levels, between the rendered frames and the scaled input outside
  the animated region (the ring around the face);
- lip-sync at each size: the face mesh found again on every rendered frame, its inner-lip gap as the
  mouth-opening track, against the generated speech with the project's offset estimator (docs/EVAL.md), and the
  same frames against another line's speech (what "no sync" scores); a size whose face is too small for the mesh
  to be found again is said so.

--sheet writes a contact sheet of the first line at 256 px (the input, then 7 frames from closed to the widest
opening, each captioned with its time and jawOpen); --sheet-only skips the measurements (for a busy machine).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from mfruntime.data.render import FaceRenderer, FaceState, Identity
from mfruntime.eval.offset import estimate_offset
from mfruntime.portrait.drive import PortraitRenderer, face_controls_of
from mfruntime.portrait.landmarks import FaceNotFound, find_face
from mfruntime.rig import CONTROLS
from mfruntime.runtime.character import load_image
from mfruntime.runtime.session import Session

LINES = ("Welcome everyone, and thank you for joining us today.",
         "Our next speaker has travelled a long way to be here.",
         "Please hold your questions until the end of the talk.",
         "That brings us to the final part of this morning's programme.")


def lip_gap(frame: np.ndarray) -> float:
    m = find_face(frame).mesh[:, :2]
    return float(np.mean(m[[14, 87, 317], 1] - m[[13, 82, 312], 1]))


def contact_sheet(image: np.ndarray, rig: np.ndarray, fps: int, path: str, size: int = 256) -> None:
    """The input portrait and 7 frames of one line (the most closed, the widest opening and 5 between, in time
    order), each captioned, side by side in one PNG."""
    from PIL import Image, ImageDraw

    p = PortraitRenderer(image, size)
    jaw = rig[:, CONTROLS.index("jawOpen")]
    order = np.argsort(jaw)
    picks = sorted({int(order[0]), int(order[-1]), *[int(order[k]) for k in np.linspace(0, len(order) - 1, 7)[1:-1].astype(int)]})
    tiles = [("input", p.rig.image)] + [(f"{i / fps:.2f} s  jaw {jaw[i]:.2f}", p.rig.render(face_controls_of(rig[i])))
                                        for i in picks[:7]]
    h, w = tiles[0][1].shape[:2]
    x0, y0, x1, y1 = (int(v) for v in p.rig.region)  # the animated region, shown enlarged in the second row
    pad = (x1 - x0) // 4
    box = (max(0, x0 - pad), max(0, y0 - pad), min(w, x1 + pad), min(h, y1 + pad))
    zh = round(w * (box[3] - box[1]) / (box[2] - box[0]))
    sheet = Image.new("RGB", (w * len(tiles), h + zh + 18), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (caption, frame) in enumerate(tiles):
        img = Image.fromarray(frame)
        sheet.paste(img, (k * w, 18))
        sheet.paste(img.crop(box).resize((w, zh), Image.LANCZOS), (k * w, 18 + h))
        draw.text((k * w + 4, 3), caption, fill="black")
    sheet.save(path)
    print(f"wrote {path}")


def main(args: argparse.Namespace) -> None:
    image = load_image(args.image) if args.image else FaceRenderer(Identity.from_seed(2), 256).render(FaceState())
    s = Session(steps=4)
    lines = []
    for text in LINES[: args.lines]:
        chunks = list(s.say(text))
        lines.append((np.concatenate([c.rig for c in chunks]), np.concatenate([c.pcm for c in chunks])))
    if args.sheet:
        contact_sheet(image, lines[0][0], s.fps, args.sheet)
        if args.sheet_only:
            return
    print(f"portrait {'from ' + args.image if args.image else '(built-in cartoon, 256 px)'}; {len(lines)} lines, "
          f"{sum(len(r) for r, _ in lines)} frames, {s.backend} backend")
    print("\n| size | ms per frame (median) | frames/s | identity MAE outside the face (levels) |")
    print("|---:|---:|---:|---:|")
    rendered = {}
    for size in (256, 512):
        p = PortraitRenderer(image, size)
        times, frames = [], []
        for rig, _ in lines:
            for row in rig:
                t0 = time.perf_counter()
                frames.append(p.rig.render(face_controls_of(row)))
                times.append(time.perf_counter() - t0)
        x0, y0, x1, y1 = p.rig.region
        outside = np.ones(p.rig.image.shape[:2], bool)
        outside[y0:y1, x0:x1] = False
        mae = float(np.mean([np.abs(f.astype(int) - p.rig.image.astype(int))[outside].mean() for f in frames])) \
            if outside.any() else float("nan")
        ms = 1000 * float(np.median(times))
        print(f"| {size} | {ms:.1f} | {1000 / ms:.1f} | {mae:.2f} |")
        rendered[size] = (frames, p.rig.face_width)
    print("\nlip-sync of the rendered frames (mouth landmarks found again on each frame):")
    print("\n| size | face width px | line | offset ms | confidence | confidence vs another line's speech |")
    print("|---:|---:|---:|---:|---:|---:|")
    for size, (frames, face_width) in rendered.items():
        start, tracks = 0, []
        try:
            for rig, _ in lines:
                tracks.append(np.array([lip_gap(f) for f in frames[start:start + len(rig)]]))
                start += len(rig)
        except FaceNotFound as e:
            print(f"| {size} | {face_width:.0f} | – | not measured: {e} | | |")
            continue
        for i, (track, (_, pcm)) in enumerate(zip(tracks, lines)):
            r = estimate_offset(track, s.fps, pcm, s.sample_rate)
            other = lines[(i + 1) % len(lines)][1]
            m = min(len(other), len(pcm))
            wrong = estimate_offset(track[: m * s.fps // s.sample_rate], s.fps, other[:m], s.sample_rate)
            print(f"| {size} | {face_width:.0f} | {i + 1} | {r.offset_ms:+.0f} | {r.confidence:.2f} | "
                  f"{wrong.confidence:.2f} |")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", help="a portrait (photo or painting) file; default: a built-in cartoon face")
    p.add_argument("--lines", type=int, default=4, choices=range(2, len(LINES) + 1), help="lines to speak (2–4)")
    p.add_argument("--sheet", metavar="OUT.png", help="also write a contact sheet of the first line")
    p.add_argument("--sheet-only", action="store_true", help="write the contact sheet and skip the measurements")
    return p


if __name__ == "__main__":
    main(build_parser().parse_args())
