"""The built-in synthetic talking-character corpus (``mf data synth``).

Each clip: random sentences spoken by a random eSpeak NG voice, a random face
whose mouth follows the phoneme timeline, written as an mp4 (H.264 + AAC) and a
JSON sidecar holding the exact ground truth (text, voice, phoneme times,
identity, per-frame mouth opening). Clip ``i`` of a corpus depends only on
(seed, i) and the config, so corpora are reproducible and can be extended.
"""
from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mfruntime.config import DEFAULT_MEDIA, FRAME_SIZES, MediaConfig
from mfruntime.data.animation import animate
from mfruntime.data.media import write_clip
from mfruntime.data.render import FaceRenderer, Identity
from mfruntime.data.speech import Phoneme, Speech, Voice, engine_started, synthesize
from mfruntime.data.text import random_sentence

log = logging.getLogger(__name__)

#: The FaceState fields a sidecar keeps per frame.
FACE_STATE_FIELDS = ("open", "spread", "blink", "dx", "dy", "angle")
SIDECAR_VERSION = 2  # 2: + face_state (the renderer's full per-frame state: the rig stream's ground truth)


@dataclass(frozen=True)
class SynthConfig:
    """What ``mf data synth`` makes."""

    out: str  # output folder (created if missing)
    clips: int = 200  # number of clips
    seconds: float = 4.0  # length of every clip, seconds (rounded to whole frames)
    size: int = 64  # frame size in pixels (square): 64, 128 or 256
    seed: int = 0  # corpus seed; clip i depends only on (seed, i)
    workers: int = 0  # worker processes; 0 = one per CPU core
    fps: int = DEFAULT_MEDIA.fps  # video frame rate
    sample_rate: int = DEFAULT_MEDIA.sample_rate  # audio sample rate

    def __post_init__(self) -> None:
        if self.clips < 1 or self.clips > 1_000_000:
            raise ValueError(f"--clips must be between 1 and 1000000, got {self.clips}")
        if not 1.0 <= self.seconds <= 300.0:
            raise ValueError(f"--seconds must be between 1 and 300, got {self.seconds}")
        if self.size not in FRAME_SIZES:
            raise ValueError(f"--size must be one of {', '.join(map(str, FRAME_SIZES))}, got {self.size}")
        if self.seed < 0:
            raise ValueError(f"--seed must be non-negative, got {self.seed}")
        if self.workers < 0:
            raise ValueError(f"--workers must be 0 (auto) or more, got {self.workers}")
        MediaConfig(fps=self.fps, sample_rate=self.sample_rate)  # validates the time base

    @property
    def n_frames(self) -> int:
        return int(round(self.seconds * self.fps))


def _speech_that_fits(rng: np.random.Generator, voice: Voice, max_seconds: float, sample_rate: int) -> Speech:
    """Random sentences that, spoken by ``voice``, last at most ``max_seconds`` (and close to it)."""
    words_per_second = voice.rate / 60.0
    words: list[str] = []
    while len(words) < max_seconds * words_per_second * 1.1:
        words += random_sentence(rng).split()
    speech = synthesize(" ".join(words), voice, sample_rate)
    # Drop words from the end until it fits; estimate how many from the overshoot.
    while speech.duration > max_seconds and len(words) > 1:
        excess = speech.duration - max_seconds
        drop = max(1, min(len(words) - 1, int(excess * words_per_second)))
        words = words[:-drop]
        text = " ".join(words).rstrip(",")
        speech = synthesize(text if text.endswith((".", "?")) else text + ".", voice, sample_rate)
    if speech.duration > max_seconds:
        raise RuntimeError(f"cannot fit speech into {max_seconds:.2f}s with voice {voice.name} (rate {voice.rate})")
    return speech


def _place(speech: Speech, lead: float, n_samples: int) -> tuple[np.ndarray, list[Phoneme]]:
    """Put ``speech`` at ``lead`` seconds into a silent buffer of ``n_samples``; shift phonemes to match."""
    sr = speech.sample_rate
    offset = int(round(lead * sr))
    pcm = np.zeros(n_samples, np.float32)
    pcm[offset : offset + len(speech.pcm)] = speech.pcm
    lead = offset / sr
    total = n_samples / sr
    phonemes = [Phoneme(p.symbol, p.start + lead, p.end + lead, p.stressed) for p in speech.phonemes]
    # Pauses that cover the silence before and after the speech (merged with eSpeak's own).
    if phonemes and phonemes[0].symbol == "_":
        phonemes[0] = Phoneme("_", 0.0, phonemes[0].end)
    else:
        phonemes.insert(0, Phoneme("_", 0.0, lead))
    if phonemes[-1].symbol == "_":
        phonemes[-1] = Phoneme("_", phonemes[-1].start, total)
    elif phonemes[-1].end < total:
        phonemes.append(Phoneme("_", phonemes[-1].end, total))
    return pcm, phonemes


def make_clip(cfg: SynthConfig, index: int) -> dict:
    """Generate clip ``index`` and write ``clip_XXXXX.mp4`` and ``.json`` into ``cfg.out``; return the sidecar."""
    rng = np.random.default_rng([cfg.seed, index])
    voice = Voice.random(rng)
    identity = Identity.from_seed(int(rng.integers(2**31)))
    n_samples = cfg.n_frames * cfg.sample_rate // cfg.fps
    total = n_samples / cfg.sample_rate
    lead = float(rng.uniform(0.1, 0.4))
    tail = float(rng.uniform(0.1, 0.3))
    speech = _speech_that_fits(rng, voice, total - lead - tail, cfg.sample_rate)
    pcm, phonemes = _place(speech, lead, n_samples)

    states, track = animate(phonemes, cfg.n_frames, cfg.fps, rng)
    renderer = FaceRenderer(identity, cfg.size)
    frames = np.stack([renderer.render(s) for s in states])  # (T, H, W, 3)

    stem = Path(cfg.out) / f"clip_{index:05d}"
    write_clip(stem.with_suffix(".mp4"), frames, pcm, cfg.fps, cfg.sample_rate)
    sidecar = {
        "version": SIDECAR_VERSION,
        "index": index,
        "corpus_seed": cfg.seed,
        "text": speech.text,
        "voice": voice.to_dict(),
        "identity_seed": identity.seed,
        "identity": identity.to_dict(),
        "phonemes": [p.to_dict() for p in phonemes],
        "speech_start": round(lead, 6),
        "speech_end": round(lead + speech.duration, 6),
        "mouth_open": [round(float(x), 5) for x in track.open],
        "face_state": {k: [round(float(getattr(st, k)), 5) for st in states] for k in FACE_STATE_FIELDS},
        "fps": cfg.fps,
        "sample_rate": cfg.sample_rate,
        "size": cfg.size,
        "n_frames": cfg.n_frames,
        "n_samples": n_samples,
    }
    tmp = stem.with_suffix(".json.part")
    tmp.write_text(json.dumps(sidecar, indent=1))
    tmp.replace(stem.with_suffix(".json"))
    return sidecar


def _worker(args: tuple[SynthConfig, int]) -> int:
    cfg, index = args
    make_clip(cfg, index)
    return index


def synthesize_corpus(cfg: SynthConfig, progress: bool = True) -> dict:
    """Write ``cfg.clips`` clips into ``cfg.out`` in parallel; return the manifest (also saved as corpus.json)."""
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file: pass a folder to write the clips into")
    out.mkdir(parents=True, exist_ok=True)
    workers = cfg.workers or os.cpu_count() or 1
    workers = min(workers, cfg.clips)
    start = time.perf_counter()
    jobs = [(cfg, i) for i in range(cfg.clips)]
    # Every clip is made in a fresh process (maxtasksperchild=1), because eSpeak keeps a running
    # pitch-flutter phase across calls: a fresh engine makes clip i depend only on (seed, i).
    # Forking is cheap; if this process has already started eSpeak, spawn clean interpreters instead.
    ctx = mp.get_context("spawn" if engine_started() else "fork")
    with tqdm(total=cfg.clips, desc="synth clips", unit="clip", disable=not progress) as bar:
        with ctx.Pool(workers, maxtasksperchild=1) as pool:
            for _ in pool.imap_unordered(_worker, jobs, chunksize=1):
                bar.update()
    elapsed = time.perf_counter() - start
    size_bytes = sum(f.stat().st_size for f in out.glob("clip_*.*"))
    manifest = {
        "config": asdict(cfg),
        "clips": [f"clip_{i:05d}.mp4" for i in range(cfg.clips)],
        "seconds_total": cfg.clips * cfg.n_frames / cfg.fps,
        "bytes": size_bytes,
        "wall_seconds": round(elapsed, 2),
        "workers": workers,
    }
    (out / "corpus.json").write_text(json.dumps(manifest, indent=1))
    log.info("wrote %d clips (%.0f s of media, %.1f MB) to %s in %.1f s with %d workers",
             cfg.clips, manifest["seconds_total"], size_bytes / 1e6, out, elapsed, workers)
    return manifest
