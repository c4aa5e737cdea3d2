"""Reporting for ``mf eval``: the printed table, eval.json, PNG plots and the contact sheet."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from mfruntime.config import DEFAULT_MEDIA


def _finite(x):
    """NaN and ±inf become None (JSON has no NaN), recursively."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, np.generic):
        return _finite(x.item())
    return x


def write_json(result: dict, path: Path) -> Path:
    """Strict JSON: a metric that could not be computed is null, never NaN."""
    path.write_text(json.dumps(_finite(result), indent=1, allow_nan=False))
    return path


def _label(row: dict) -> str:
    name = {"mutual": "Mutual Forcing", "no-mutual": "without MF", "drive": "audio-driven"}[row["variant"]]
    return f"{name} ({'multi-step' if row['steps'] >= 8 else 'few-step'})"


def format_table(result: dict) -> str:
    lse = all("lse_c" in r for r in result["rows"])
    fid = all("fid" in r for r in result["rows"])
    head = (f"{'model':<28}{'steps':>6}{'AV offset ms':>18}{'conf':>7}{'shuf':>6}{'FD':>9}{'ID err':>8}{'PESQ':>7}{'STOI':>7}{'s per s':>9}{'TTFC ms':>9}"
            + (f"{'LSE-D':>7}{'LSE-C':>7}" if lse else "") + (f"{'FID':>9}" if fid else ""))
    lines = [head, "-" * len(head)]
    for r in result["rows"]:
        lines.append(f"{_label(r):<28}{r['steps']:>6}{r['offset_ms']:>+10.1f} ± {r['offset_std_ms']:<5.1f}"
                     f"{r['confidence']:>7.2f}{r.get('confidence_shuffled', float('nan')):>6.2f}{r['fd']:>9.2f}"
                     f"{r.get('identity_error', float('nan')):>8.3f}{r['pesq']:>7.2f}{r['stoi']:>7.2f}{r['s_per_s']:>9.3f}{r['ttfc_ms']:>9.1f}"
                     + (f"{r['lse_d']:>7.2f}{r['lse_c']:>7.2f}" if lse else "") + (f"{r['fid']:>9.2f}" if fid else ""))
    if any(len(r.get("seeds", [])) > 1 for r in result["rows"]):
        lines.append("")
        lines.append(f"spread over seeds (std of each metric over {len(result['rows'][0]['seeds'])} seeds):")
        lines.append(f"{'model':<28}{'steps':>6}{'offset ms':>11}{'off std':>9}{'conf':>7}{'FD':>9}{'ID err':>8}{'PESQ':>7}{'STOI':>7}")
        for r in result["rows"]:
            sp = r["spread"]
            lines.append(f"{_label(r):<28}{r['steps']:>6}{sp['offset_ms']:>11.1f}{sp['offset_std_ms']:>9.1f}{sp['confidence']:>7.2f}"
                         f"{sp['fd']:>9.2f}{sp['identity_error']:>8.3f}{sp['pesq']:>7.2f}{sp['stoi']:>7.3f}")
    if all("rig_jaw_r" in r for r in result["rows"]):
        lines.append("")
        lines.append("rig stream (docs/RIG.md): jawOpen r vs the true opening / vs the frames' mouth; dominant viseme = "
                     "the phonemes' (all frames / spoken); rig offset vs the audio:")
        for r in result["rows"]:
            lines.append(f"  {_label(r):<28}{r['steps']:>3} steps: r {r['rig_jaw_r']:.3f} / {r['rig_frames_r']:.3f}, "
                         f"visemes {r['rig_viseme_agree']:.3f} / {r['rig_viseme_agree_spoken']:.3f}, "
                         f"offset {r['rig_offset_ms']:+.1f} ± {r['rig_offset_std_ms']:.1f} ms")
    if "rig_drive" in result:
        d = result["rig_drive"]
        lines.append(f"  drive, unseen voices ({d['steps']} steps): rig offset {d['unseen_rig_offset_ms']:+.1f} ± "
                     f"{d['unseen_rig_offset_std_ms']:.1f} ms, frames {d['unseen_frames_offset_ms']:+.1f} ± "
                     f"{d['unseen_frames_offset_std_ms']:.1f} ms (conf {d['unseen_confidence']:.2f}); at {d['level_db']:g} dB "
                     f"vs 0 dB: mouth max {d['level_mouth_max_ratio']:.3f}, mean {d['level_mouth_mean_ratio']:.3f}, "
                     f"jawOpen max {d['level_jaw_max_ratio']:.3f}, mean {d['level_jaw_mean_ratio']:.3f}")
    v = result["offset_validation"]
    lines.append("")
    lines.append(f"offset estimator: natural lag {v['bias_ms']:+.1f} ms (std {v['natural_lag_std_ms']:.1f} over clips); "
                 "known shifts recovered (mean over clips): " +
                 ", ".join(f"{s['shift_ms']:+d}→{s['recovered_mean_ms']:+.0f}" for s in v["shifts"]))
    if "drift" in result:
        d = result["drift"]
        lines.append(f"drift ({d['seconds']:g} s, {d['steps']} steps), per window: " + "; ".join(
            f"{w['start_s']:g}s: {w['offset_ms']:+.0f} ms, STOI {w['stoi']:.2f}, PESQ {w['pesq']:.2f}, FD {w['fd']:.1f}"
            for w in d["windows"]))
        ms = d["chunk_ms"]
        q = max(1, len(ms) // 10)
        lines.append(f"chunk time: first 10% {np.mean(ms[:q]):.1f} ms, last 10% {np.mean(ms[-q:]):.1f} ms")
    return "\n".join(lines)


def save_contact_sheet(sheet: dict, path: Path, frames_per_clip: int = 8) -> Path:
    """One PNG: for each of the first clips, a row of generated frames per step count above a row of the
    reference frames at the same times (evenly spaced over the clip)."""
    from PIL import Image, ImageDraw

    refs, rows = sheet["reference"], sheet["rows"]
    size = refs[0].shape[1]
    label_w, gap = 80, 6
    n_rows = len(refs) * (len(rows) + 1)
    img = Image.new("RGB", (label_w + frames_per_clip * size, n_rows * size + (len(refs) - 1) * gap), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    y = 0
    for c, ref in enumerate(refs):
        idx = np.linspace(0, len(ref) - 1, frames_per_clip).round().astype(int)
        for label, frames in [(name, per_clip[c]) for name, per_clip in rows] + [("reference", ref)]:
            for j, f in enumerate(idx):
                if f < len(frames):
                    img.paste(Image.fromarray(frames[f]), (label_w + j * size, y))
            draw.text((4, y + size // 2 - 6), label, fill=(0, 0, 0))
            y += size
        y += gap
    img.save(path)
    return path


def save_plots(result: dict, out: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.5))
    for variant in sorted({r["variant"] for r in result["rows"]}):
        rows = sorted((r for r in result["rows"] if r["variant"] == variant), key=lambda r: r["steps"])
        xs = [r["steps"] for r in rows]
        for ax, key, label in zip(axes, ("abs_offset_ms", "fd", "pesq", "s_per_s"), ("|AV offset| ms", "FD", "PESQ-wb", "s per s")):
            ax.plot(xs, [r[key] for r in rows], marker="o", label=variant)
            ax.set_xscale("log")
            ax.set_xlabel("steps")
            ax.set_title(label)
    axes[0].legend()
    fig.tight_layout()
    paths.append(out / "metrics_vs_steps.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    if "drift" in result:
        d = result["drift"]
        fig, axes = plt.subplots(1, 4, figsize=(16, 3.5))
        t = [w["start_s"] for w in d["windows"]]
        for ax, key in zip(axes[:3], ("offset_ms", "pesq", "fd")):
            ax.plot(t, [w[key] for w in d["windows"]], marker="o")
            ax.set_xlabel("window start (s)")
            ax.set_title(key)
        axes[3].plot(np.arange(len(d["chunk_ms"])) * DEFAULT_MEDIA.chunk_seconds, d["chunk_ms"])
        axes[3].set_xlabel("stream time (s)")
        axes[3].set_title("chunk compute ms")
        fig.tight_layout()
        paths.append(out / "drift.png")
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    return paths


