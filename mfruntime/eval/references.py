"""Held-out reference clips for evaluation, made by the project's own synthesiser.

The evaluation corpus uses its own seed (``EVAL_SEED``), so its sentences and faces are new draws,
never the training corpus' clips. (Voices are drawn from the same 84 eSpeak accent × variant presets as
training, with their own random pitch, rate and range.) Corpora are cached under ``cache/`` and reused
when the same (clips, seconds, size) is asked for again.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mfruntime.data.media import read_clip
from mfruntime.data.speech import Phoneme, Voice
from mfruntime.data.synth import SynthConfig, synthesize_corpus

log = logging.getLogger(__name__)

EVAL_SEED = 2_000_003  # training corpora use small seeds (0, 1, …); this one is reserved for evaluation


@dataclass
class Reference:
    name: str
    frames: np.ndarray  # (T, H, W, 3) uint8
    audio: np.ndarray  # (T·640,) float32
    phonemes: list[Phoneme]
    voice: Voice
    text: str
    mouth_open: np.ndarray  # (T,) ground truth


def reference_clips(cache: str | Path, clips: int, seconds: float, size: int, seed: int = EVAL_SEED,
                    progress: bool = True) -> list[Reference]:
    """``clips`` held-out clips of ``seconds`` each at ``size`` px (synthesised once, then cached)."""
    out = Path(cache) / f"eval-corpus-s{seed}-n{clips}-{seconds:g}s-{size}px"
    manifest = out / "corpus.json"
    if not manifest.is_file():
        log.info("making %d held-out reference clips of %.0f s in %s", clips, seconds, out)
        synthesize_corpus(SynthConfig(out=str(out), clips=clips, seconds=seconds, size=size, seed=seed), progress=progress)
    refs = []
    for name in json.loads(manifest.read_text())["clips"]:
        truth = json.loads((out / name).with_suffix(".json").read_text())
        clip = read_clip(out / name, size, truth["fps"], truth["sample_rate"])
        refs.append(Reference(name=name, frames=clip.video, audio=clip.audio,
                              phonemes=[Phoneme.from_dict(p) for p in truth["phonemes"]],
                              voice=Voice.from_dict(truth["voice"]), text=truth["text"],
                              mouth_open=np.asarray(truth["mouth_open"], np.float32)))
    return refs
