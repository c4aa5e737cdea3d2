"""Reading and writing audio-video files with PyAV (FFmpeg).

Writing produces ordinary mp4 files (H.264 video, AAC audio) that any player
opens. Reading accepts any container FFmpeg knows (mp4, mkv, webm, mov, …),
converts the video to a constant frame rate by sample-and-hold on presentation
timestamps, centre-crops it square and resizes it, and resamples the audio to
mono float32 at the requested rate, aligned to the same time zero as the video.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

#: Files whose content is fine but that cannot serve as talking-head clips.
class MediaError(ValueError):
    """A media file is corrupt, truncated, silent or lacks a stream we need."""


@dataclass
class DecodedClip:
    """A clip decoded to the project's time base."""

    video: np.ndarray  # (T, H, W, 3) uint8, frame i shown at i / fps
    audio: np.ndarray  # (S,) float32 mono, sample j at j / sample_rate
    fps: int
    sample_rate: int

    @property
    def duration(self) -> float:
        return len(self.video) / self.fps


def write_clip(
    path: str | Path,
    frames: np.ndarray,
    pcm: np.ndarray,
    fps: int,
    sample_rate: int,
    crf: int = 16,
    audio_bitrate: int = 96_000,
) -> None:
    """Write an mp4 with H.264 video (yuv420p) and AAC mono audio.

    frames: (T, H, W, 3) uint8 with even H and W; pcm: (S,) float32 in [-1, 1].
    One encoder thread, so output is byte-identical for identical input.
    """
    frames = np.asarray(frames)
    pcm = np.asarray(pcm, dtype=np.float32)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    if frames.shape[1] % 2 or frames.shape[2] % 2:
        raise ValueError(f"frame height and width must be even for yuv420p, got {frames.shape[1]}x{frames.shape[2]}")
    if pcm.ndim != 1:
        raise ValueError(f"pcm must be mono (S,), got shape {pcm.shape}")
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    with av.open(str(tmp), mode="w", format="mp4") as container:
        vs = container.add_stream("libx264", rate=fps)
        vs.width, vs.height = frames.shape[2], frames.shape[1]
        vs.pix_fmt = "yuv420p"
        vs.codec_context.thread_count = 1
        vs.options = {"crf": str(crf), "preset": "medium", "tune": "animation"}
        aus = container.add_stream("aac", rate=sample_rate, layout="mono")
        aus.bit_rate = audio_bitrate
        aus.codec_context.thread_count = 1
        for i, img in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(img, format="rgb24")
            vf.pts = i
            vf.time_base = Fraction(1, fps)
            container.mux(vs.encode(vf))
        container.mux(vs.encode(None))
        block = 1024  # AAC frame size
        for start in range(0, len(pcm), block):
            piece = pcm[start : start + block]
            af = av.AudioFrame.from_ndarray(piece[None, :], format="fltp", layout="mono")
            af.sample_rate = sample_rate
            af.pts = start
            af.time_base = Fraction(1, sample_rate)
            container.mux(aus.encode(af))
        container.mux(aus.encode(None))
    tmp.replace(path)


def square_resize(img: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop to a square and resize to size×size (H, W, 3) uint8."""
    h, w = img.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    img = img[top : top + side, left : left + side]
    if side != size:
        img = np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.LANCZOS))
    return img


def read_clip(path: str | Path, size: int, fps: int, sample_rate: int, max_seconds: float | None = None) -> DecodedClip:
    """Decode a clip to (T, size, size, 3) uint8 at ``fps`` and mono float32 at ``sample_rate``.

    Raises MediaError when the file is unreadable or truncated, has no video or no
    audio track, or its audio is silent.
    """
    path = Path(path)
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise MediaError(f"{path}: not a readable media file ({exc})") from exc
    with container:
        if not container.streams.video:
            raise MediaError(f"{path}: has no video track")
        if not container.streams.audio:
            raise MediaError(f"{path}: has no audio track (video-only files cannot train a talking face)")
        vstream, astream = container.streams.video[0], container.streams.audio[0]
        frames: list[tuple[float, np.ndarray]] = []
        audio_parts: list[np.ndarray] = []
        audio_t0: float | None = None
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        try:
            for packet in container.demux(vstream, astream):
                for frame in packet.decode():
                    if frame.pts is None:
                        continue
                    t = float(frame.pts * frame.time_base)
                    if max_seconds is not None and t > max_seconds + 1.0:
                        continue
                    if isinstance(frame, av.VideoFrame):
                        frames.append((t, square_resize(frame.to_ndarray(format="rgb24"), size)))
                    else:
                        for out in resampler.resample(frame):
                            if audio_t0 is None:
                                audio_t0 = float(out.pts * out.time_base) if out.pts is not None else t
                            audio_parts.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                audio_parts.append(out.to_ndarray().reshape(-1))
        except (av.error.FFmpegError, ValueError) as exc:
            raise MediaError(f"{path}: corrupt or truncated stream ({exc})") from exc

    if not frames:
        raise MediaError(f"{path}: no decodable video frames")
    if not audio_parts:
        raise MediaError(f"{path}: no decodable audio")
    audio = np.concatenate(audio_parts).astype(np.float32)
    # Put audio sample 0 at the container's time zero (the first video frame's clock).
    start_t = frames[0][0] if frames[0][0] < 0 else 0.0
    shift = int(round(((audio_t0 or 0.0) - start_t) * sample_rate))
    if shift > 0:
        audio = np.concatenate([np.zeros(shift, np.float32), audio])
    elif shift < 0:
        audio = audio[-shift:]
    if float(np.max(np.abs(audio), initial=0.0)) < 1e-4:
        raise MediaError(f"{path}: audio track is silent")

    # Constant frame rate by sample-and-hold: output frame i shows the last input frame with pts <= i / fps.
    frames.sort(key=lambda f: f[0])
    times = np.array([t for t, _ in frames]) - start_t
    video_end = times[-1] + (times[-1] - times[-2] if len(times) > 1 else 1.0 / fps)
    duration = min(video_end, len(audio) / sample_rate)
    if max_seconds is not None:
        duration = min(duration, max_seconds)
    n_out = int(np.floor(duration * fps + 1e-6))
    if n_out < 1:
        raise MediaError(f"{path}: shorter than one frame")
    pick = np.searchsorted(times, np.arange(n_out) / fps + 1e-6, side="right") - 1
    pick = np.clip(pick, 0, len(frames) - 1)
    video = np.stack([frames[k][1] for k in pick])  # (T, H, W, 3)
    audio = audio[: n_out * sample_rate // fps]
    if len(audio) < n_out * sample_rate // fps:
        audio = np.pad(audio, (0, n_out * sample_rate // fps - len(audio)))
    return DecodedClip(video=video, audio=audio, fps=fps, sample_rate=sample_rate)
