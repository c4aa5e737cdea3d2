"""Typed configuration shared by every part of mfruntime.

Everything that depends on time is derived from three numbers — the video frame
rate, the audio sample rate and the chunk length — so no other module needs a
magic constant (DESIGN.md, "Chunks": one chunk = 160 ms = 4 video frames).
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class MediaConfig:
    """Time base of the generated media."""

    fps: int = 25  # video frames per second
    sample_rate: int = 16_000  # audio samples per second (mono PCM)
    chunk_seconds: float = 0.16  # length of one autoregressive chunk
    # Derived in __post_init__ (not constructor arguments):
    samples_per_frame: int = field(init=False)  # audio samples covered by one video frame
    frames_per_chunk: int = field(init=False)  # video frames in one chunk
    samples_per_chunk: int = field(init=False)  # audio samples in one chunk

    def __post_init__(self) -> None:
        if self.fps <= 0 or self.sample_rate <= 0:
            raise ValueError(f"fps and sample_rate must be positive, got {self.fps} and {self.sample_rate}")
        if self.sample_rate % self.fps:
            raise ValueError(
                f"sample_rate ({self.sample_rate}) must be a whole multiple of fps ({self.fps}) "
                "so every video frame covers a whole number of audio samples"
            )
        frames = self.chunk_seconds * self.fps
        if abs(frames - round(frames)) > 1e-6 or round(frames) < 1:
            raise ValueError(
                f"chunk_seconds ({self.chunk_seconds}) must cover a whole number of frames at {self.fps} fps"
            )
        object.__setattr__(self, "samples_per_frame", self.sample_rate // self.fps)
        object.__setattr__(self, "frames_per_chunk", int(round(frames)))
        object.__setattr__(self, "samples_per_chunk", self.frames_per_chunk * self.samples_per_frame)


#: The time base used everywhere unless a caller passes another one.
DEFAULT_MEDIA = MediaConfig()

#: Frame sizes the renderer and loader accept (square frames).
FRAME_SIZES = (64, 128, 256)
