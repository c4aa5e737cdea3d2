"""Training data: decoded clips held in memory, the latent cache, and a resumable batch order.

- :class:`ClipBank` decodes the clips of one split once (video uint8, audio float32, phonemes).
- :class:`LatentBank` encodes a ClipBank with frozen codecs and caches the latents as safetensors
  shards keyed by the codec weights and the clip list, so diffusion stages never decode video per step.
- :class:`BatchOrder` is the data position: a seeded permutation per epoch, sharded by rank, whose
  (epoch, index) is saved in checkpoints so a resumed run sees exactly the batches it would have.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from mfruntime.config import ModelConfig
from mfruntime.data.dataset import ClipRecord, LoaderConfig, scan_clips, split_clips
from mfruntime.data.speech import Phoneme
from mfruntime.rig import ground_truth_from_sidecar

log = logging.getLogger(__name__)


@dataclass
class Clip:
    name: str  # relative path in the corpus
    video: np.ndarray  # (T, H, W, 3) uint8
    audio: np.ndarray  # (T·640,) float32
    phonemes: list[Phoneme]  # from the sidecar (empty for clips without ground truth)
    mouth_open: np.ndarray | None  # (T,) ground truth, if any
    identity: dict | None = None  # the synthetic face's parameters, if any
    text: str = ""  # the spoken text, if known
    voice: dict | None = None  # the eSpeak voice, if known
    rig: np.ndarray | None = None  # (T, len(rig.CONTROLS)) rig ground truth (sidecar version >= 2), if any


class ClipBank:
    """All clips of one split, decoded once."""

    def __init__(self, corpus: str | Path, split: str, size: int, val_fraction: float, split_seed: int,
                 progress: bool = True) -> None:
        cfg = LoaderConfig(size=size, val_fraction=val_fraction, split_seed=split_seed)
        scan = scan_clips(corpus, cfg, progress=progress, keep_decoded=True)
        train, val = split_clips(scan.clips, cfg)
        records: list[ClipRecord] = {"train": train, "val": val}[split]
        if not records:
            raise ValueError(f"no {split} clips in {corpus}: make a corpus first (mf data synth --out {corpus})")
        self.clips: list[Clip] = []
        for rec in records:
            dc = scan.decoded[rec.relpath]
            truth = rec.truth or {}
            phs = [Phoneme.from_dict(p) for p in truth.get("phonemes", [])]
            mo = np.asarray(truth["mouth_open"], np.float32)[: len(dc.video)] if "mouth_open" in truth else None
            rig = None
            if "face_state" in truth:
                rig = ground_truth_from_sidecar(truth)[: len(dc.video)]
            self.clips.append(Clip(rec.relpath, dc.video, dc.audio, phs, mo, truth.get("identity"),
                                   rec.text or "", truth.get("voice"), rig))
        self.key = hashlib.sha1(json.dumps([(c.name, len(c.video)) for c in self.clips]).encode()).hexdigest()[:12]

    def __len__(self) -> int:
        return len(self.clips)


class LatentBank:
    """Per-clip video latents (T, Cv, h, w) and audio latents (N, Ca), cached on disk."""

    def __init__(self, bank: ClipBank, video_codec, audio_codec, cache_dir: str | Path, progress: bool = True) -> None:
        digest = hashlib.sha1()
        for module in (video_codec, audio_codec):
            for name, tensor in sorted(module.state_dict().items()):
                digest.update(name.encode())
                digest.update(tensor.detach().cpu().numpy().tobytes())
        key = f"latents-{bank.key}-{digest.hexdigest()[:12]}"
        path = Path(cache_dir) / f"{key}.safetensors"
        if path.is_file():
            tensors = load_file(str(path))
            log.info("loaded cached latents %s", path)
        else:
            tensors = {}
            with torch.no_grad():
                for i, clip in enumerate(tqdm(bank.clips, desc="encode latents", unit="clip", disable=not progress)):
                    tensors[f"{i}.video"] = torch.cat([video_codec.encode(clip.video[j:j + 64]) for j in range(0, len(clip.video), 64)])
                    tensors[f"{i}.audio"] = audio_codec.encode(torch.from_numpy(clip.audio)[None])[0]
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".part")
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
            tmp.replace(path)
            log.info("cached latents of %d clips in %s", len(bank), path)
        self.video = [tensors[f"{i}.video"] for i in range(len(bank))]
        self.audio = [tensors[f"{i}.audio"] for i in range(len(bank))]


def window_items(bank: ClipBank, cfg: ModelConfig, chunks: int) -> list[tuple[int, int]]:
    """(clip, first chunk) for every window of ``chunks`` whole chunks, hop one chunk."""
    items = []
    for ci, clip in enumerate(bank.clips):
        n_chunks = len(clip.video) // cfg.frames_per_chunk
        items += [(ci, c) for c in range(0, n_chunks - chunks + 1)]
    if not items:
        raise ValueError(f"no clip holds {chunks} chunks ({chunks * cfg.media.chunk_seconds:.2f} s): use longer clips or a shorter window")
    return items


class BatchOrder:
    """Deterministic, resumable, rank-sharded batch order over ``n_items``."""

    def __init__(self, n_items: int, batch_size: int, seed: int, rank: int = 0, world: int = 1) -> None:
        if n_items < batch_size * world:
            raise ValueError(f"{n_items} training items are fewer than one batch ({batch_size} × {world} processes)")
        self.n, self.batch, self.seed, self.rank, self.world = n_items, batch_size, seed, rank, world
        self.epoch, self.index = 0, 0
        self._perm = self._permutation(0)

    def _permutation(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.n, generator=g)

    @property
    def batches_per_epoch(self) -> int:
        return self.n // (self.batch * self.world)

    def next(self) -> list[int]:
        if self.index >= self.batches_per_epoch:
            self.epoch, self.index = self.epoch + 1, 0
            self._perm = self._permutation(self.epoch)
        start = (self.index * self.world + self.rank) * self.batch
        self.index += 1
        return self._perm[start:start + self.batch].tolist()

    def state(self) -> dict:
        return {"epoch": self.epoch, "index": self.index}

    def load(self, state: dict) -> None:
        self.epoch, self.index = int(state["epoch"]), int(state["index"])
        self._perm = self._permutation(self.epoch)
