"""Folders of talking-head clips → fixed-length audio-video windows for PyTorch.

Works on our synthetic corpus (with ground truth from the JSON sidecars) and on
a user's own footage in any layout (HDTF, VoxCeleb2 ``id/video/clip.mp4``,
LRS3 ``id/clip.mp4`` + ``clip.txt``): every media file below the root is
found recursively. Files that are corrupt, silent or lack an audio or video
track are skipped with one warning each and counted; they never stop a run.

The train/validation split is by clip (never by window, so no clip leaks into
both) and depends only on each clip's relative path and ``split_seed``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from mfruntime.config import DEFAULT_MEDIA, FRAME_SIZES, MediaConfig
from mfruntime.data.media import DecodedClip, MediaError, read_clip
from mfruntime.data.speech import Phoneme

log = logging.getLogger(__name__)

MEDIA_EXTENSIONS = (".mp4", ".mkv", ".webm", ".mov", ".m4v")


@dataclass(frozen=True)
class LoaderConfig:
    """How clips are decoded and cut into windows."""

    size: int = 64  # output frame size (square), pixels: 64, 128 or 256
    fps: int = DEFAULT_MEDIA.fps  # output frame rate
    sample_rate: int = DEFAULT_MEDIA.sample_rate  # output audio rate (mono)
    window_seconds: float = 1.92  # window length (a whole number of frames; 1.92 s = 12 chunks of 160 ms)
    hop_seconds: float | None = None  # distance between window starts; None = window_seconds (no overlap)
    val_fraction: float = 0.1  # fraction of clips held out for validation
    split_seed: int = 0  # changes which clips are held out
    cache_clips: int = 8  # decoded clips kept in memory per worker (LRU)

    def __post_init__(self) -> None:
        if self.size not in FRAME_SIZES:
            raise ValueError(f"size must be one of {FRAME_SIZES}, got {self.size}")
        MediaConfig(fps=self.fps, sample_rate=self.sample_rate)
        if self.window_frames < 1:
            raise ValueError(f"window_seconds must cover at least one frame, got {self.window_seconds}")
        if self.hop_frames < 1:
            raise ValueError(f"hop_seconds must cover at least one frame, got {self.hop_seconds}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")

    @property
    def window_frames(self) -> int:
        return int(round(self.window_seconds * self.fps))

    @property
    def hop_frames(self) -> int:
        return int(round((self.hop_seconds or self.window_seconds) * self.fps))

    @property
    def samples_per_frame(self) -> int:
        return self.sample_rate // self.fps


@dataclass
class ClipRecord:
    """One usable clip found by :func:`scan_clips`."""

    path: Path
    relpath: str  # path relative to the scanned root (used for the split)
    n_frames: int  # frames after decoding at the loader's fps
    text: str | None = None  # transcript, from a sidecar or an LRS3-style .txt
    truth: dict | None = None  # sidecar ground truth: {"mouth_open": [...], "phonemes": [...], ...}


@dataclass
class ScanResult:
    clips: list[ClipRecord] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (file, reason)
    decoded: dict[str, DecodedClip] = field(default_factory=dict)  # relpath → clip, when scanned with keep_decoded


def find_media(root: str | Path) -> list[Path]:
    """Media files below ``root``, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"clip folder {root} does not exist or is not a folder")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in MEDIA_EXTENSIONS)


def _read_transcript(media: Path) -> tuple[str | None, dict | None]:
    """Sidecar (ours) or LRS3 .txt next to a media file → (text, ground truth or None)."""
    sidecar = media.with_suffix(".json")
    if sidecar.is_file():
        try:
            data = json.loads(sidecar.read_text())
            if isinstance(data, dict) and "mouth_open" in data and "fps" in data:
                return data.get("text"), data
            log.warning("%s: not a clip sidecar (no mouth_open/fps), ignoring it", sidecar)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            log.warning("%s: unreadable sidecar (%s), ignoring it", sidecar, exc)
    txt = media.with_suffix(".txt")
    if txt.is_file():
        for line in txt.read_text(errors="replace").splitlines():
            if line.startswith("Text:"):
                return line[5:].strip(), None
    return None, None


def _check_truth(path: Path, truth: dict | None, n_frames: int, cfg: LoaderConfig) -> dict | None:
    """Keep sidecar ground truth only if it matches the decoded clip (never misaligned truth)."""
    if truth is None:
        return None
    if int(truth["fps"]) != cfg.fps:
        log.warning("%s: sidecar is at %s fps, loader at %d fps; ignoring its ground truth", path, truth["fps"], cfg.fps)
        return None
    n_truth = len(truth["mouth_open"])
    if abs(n_truth - n_frames) > 1:
        log.warning("%s: sidecar has %d frames of ground truth, video decodes to %d; ignoring it", path, n_truth, n_frames)
        return None
    return truth


def scan_clips(root: str | Path, cfg: LoaderConfig = LoaderConfig(), progress: bool = True,
               keep_decoded: bool = False) -> ScanResult:
    """Decode every media file under ``root`` once to check it; skip bad ones with one warning each.

    keep_decoded keeps the decoded clips in ``ScanResult.decoded`` (for corpora that fit in memory).
    """
    root = Path(root)
    result = ScanResult()
    files = find_media(root)
    for path in tqdm(files, desc="scan clips", unit="clip", disable=not progress or len(files) < 20):
        try:
            clip = read_clip(path, cfg.size, cfg.fps, cfg.sample_rate)
        except MediaError as exc:
            log.warning("skipping %s", exc)
            result.skipped.append((path, str(exc)))
            continue
        text, truth = _read_transcript(path)
        truth = _check_truth(path, truth, len(clip.video), cfg)
        rec = ClipRecord(path, path.relative_to(root).as_posix(), len(clip.video), text, truth)
        result.clips.append(rec)
        if keep_decoded:
            result.decoded[rec.relpath] = clip
    if result.skipped:
        log.warning("skipped %d of %d files in %s (see warnings above)", len(result.skipped), len(files), root)
    log.info("found %d usable clips in %s", len(result.clips), root)
    return result


def split_clips(clips: list[ClipRecord], cfg: LoaderConfig) -> tuple[list[ClipRecord], list[ClipRecord]]:
    """Deterministic (train, validation) split by clip.

    Clips are ordered by a hash of (split_seed, relative path); the first
    ceil(val_fraction × N) are validation (at least one when N ≥ 2 and
    val_fraction > 0). The result does not depend on listing order.
    """
    def key(c: ClipRecord) -> str:
        return hashlib.sha1(f"{cfg.split_seed}:{c.relpath}".encode()).hexdigest()

    ordered = sorted(clips, key=key)
    n_val = math.ceil(cfg.val_fraction * len(ordered)) if cfg.val_fraction > 0 else 0
    if cfg.val_fraction > 0 and len(ordered) >= 2:
        n_val = max(n_val, 1)
    n_val = min(n_val, max(len(ordered) - 1, 0))
    val = sorted(ordered[:n_val], key=lambda c: c.relpath)
    train = sorted(ordered[n_val:], key=lambda c: c.relpath)
    return train, val


class ClipWindows(Dataset):
    """Fixed-length windows of the clips in one split.

    Item: ``video`` (T, 3, H, W) uint8, ``audio`` (T·S_f,) float32, ``mouth_open``
    (T,) float32 (NaN without ground truth), ``has_truth`` bool, ``phonemes``
    list of (symbol, start, end) in seconds from the window start, ``text``,
    ``clip`` (relative path) and ``start_frame``.
    """

    def __init__(self, root: str | Path, split: Literal["train", "val", "all"] = "train",
                 cfg: LoaderConfig = LoaderConfig(), scan: ScanResult | None = None, progress: bool = True) -> None:
        if split not in ("train", "val", "all"):
            raise ValueError(f"split must be 'train', 'val' or 'all', got {split!r}")
        self.cfg = cfg
        self.root = Path(root)
        self.scan = scan if scan is not None else scan_clips(root, cfg, progress=progress)
        train, val = split_clips(self.scan.clips, cfg)
        self.clips = {"train": train, "val": val, "all": sorted(self.scan.clips, key=lambda c: c.relpath)}[split]
        self.index: list[tuple[int, int]] = []  # (clip number, start frame)
        short = 0
        for ci, clip in enumerate(self.clips):
            starts = range(0, clip.n_frames - cfg.window_frames + 1, cfg.hop_frames)
            short += len(starts) == 0
            self.index.extend((ci, s) for s in starts)
        if short:
            log.warning("%d clips are shorter than one %.2f s window and give no windows", short, cfg.window_seconds)
        self._cache: OrderedDict[int, DecodedClip] = OrderedDict()

    def __len__(self) -> int:
        return len(self.index)

    def _decoded(self, ci: int) -> DecodedClip:
        if ci in self._cache:
            self._cache.move_to_end(ci)
            return self._cache[ci]
        clip = read_clip(self.clips[ci].path, self.cfg.size, self.cfg.fps, self.cfg.sample_rate)
        self._cache[ci] = clip
        while len(self._cache) > max(self.cfg.cache_clips, 1):
            self._cache.popitem(last=False)
        return clip

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not 0 <= i < len(self.index):
            raise IndexError(f"window {i} out of range for {len(self.index)} windows")
        ci, start = self.index[i]
        rec, clip = self.clips[ci], self._decoded(ci)
        cfg = self.cfg
        end = start + cfg.window_frames
        video = torch.from_numpy(np.ascontiguousarray(clip.video[start:end])).permute(0, 3, 1, 2)  # (T, 3, H, W)
        audio = torch.from_numpy(clip.audio[start * cfg.samples_per_frame : end * cfg.samples_per_frame].copy())
        mouth = torch.full((cfg.window_frames,), float("nan"))
        phonemes: list[tuple[str, float, float]] = []
        if rec.truth is not None:
            truth_open = np.asarray(rec.truth["mouth_open"], np.float32)[start:end]
            mouth[: len(truth_open)] = torch.from_numpy(truth_open)
            t0, t1 = start / cfg.fps, end / cfg.fps
            for p in map(Phoneme.from_dict, rec.truth.get("phonemes", [])):
                if p.end > t0 and p.start < t1:
                    phonemes.append((p.symbol, max(p.start, t0) - t0, min(p.end, t1) - t0))
        return {
            "video": video,
            "audio": audio,
            "mouth_open": mouth,
            "has_truth": rec.truth is not None,
            "phonemes": phonemes,
            "text": rec.text or "",
            "clip": rec.relpath,
            "start_frame": start,
        }


def collate_windows(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors; keep the variable-length phoneme lists and strings as lists."""
    out: dict[str, Any] = {}
    for key in ("video", "audio", "mouth_open"):
        out[key] = torch.stack([it[key] for it in items])
    out["has_truth"] = torch.tensor([it["has_truth"] for it in items])
    out["start_frame"] = torch.tensor([it["start_frame"] for it in items])
    for key in ("phonemes", "text", "clip"):
        out[key] = [it[key] for it in items]
    return out
