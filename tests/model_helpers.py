"""Small model configs and helpers shared by the model tests."""
from __future__ import annotations

import torch

from mfruntime.config import AudioCodecConfig, ModelConfig, StreamConfig, VideoCodecConfig
from mfruntime.data.speech import Phoneme
from mfruntime.model.phonemes import PhonemeTrack, PhonemeWindow


def micro_config(video: bool = True, audio: bool = True, window: int = 3) -> ModelConfig:
    """A model small enough that every structural test runs in a second on a CPU."""
    stream = StreamConfig(dim=32, layers=2, heads=2)
    return ModelConfig(
        video_codec=VideoCodecConfig(size=64, channels=(8, 16, 16), latent_channels=4),
        audio_codec=AudioCodecConfig(latent_channels=10),
        video=stream if video else None,
        audio=stream if audio else None,
        window_chunks=window,
        max_phonemes=16,
        audio_ref_steps=4,
    )


def randomize(module: torch.nn.Module, seed: int = 0, std: float = 0.1, skip: tuple[str, ...] = ()) -> None:
    """Random values in every parameter (zero-initialised gates included), so outputs are non-trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if not any(s in name for s in skip):
                p.copy_(torch.randn(p.shape, generator=g) * std)


def sample_phonemes() -> list[Phoneme]:
    syms = ["_", "h", "@", "l", "oU", "w", "3:", "l", "d", "_", "m", "A:", "m", "A:", "_"]
    return [Phoneme(s, 0.07 * i, 0.07 * (i + 1)) for i, s in enumerate(syms)]


def windows(cfg: ModelConfig, chunks: int, first: int = 0) -> list[PhonemeWindow]:
    track = PhonemeTrack.from_phonemes(sample_phonemes())
    cs = cfg.media.chunk_seconds
    return [track.window((first + c) * cs, (first + c + 1) * cs, cfg.phoneme_window, cfg.max_phonemes) for c in range(chunks)]


def random_latents(model, batch: int, chunks: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {s: torch.randn((batch, *model.latent_shape(s, chunks)), generator=g) for s in model.active}
