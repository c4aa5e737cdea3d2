"""The WebRTC tracks of one character for one browser (aiortc): audio in 20-ms frames and video at the stream's
frame rate, both taken from one :class:`~.playout.Playout` and paced against one wall-clock origin, stamped from
the playout clock — audio pts in samples (1 / sample_rate), video pts on the 90-kHz RTP clock — so both tracks'
RTP timestamps come from the same integer sample clock and the browser lines them up (RTCP sender reports)."""
from __future__ import annotations

import asyncio
import time
from fractions import Fraction

import av
import numpy as np
from aiortc import MediaStreamTrack

from mfruntime.runtime.web.playout import Playout

AUDIO_BLOCK_SECONDS = 0.02  # Opus frames are 20 ms
VIDEO_CLOCK = 90000  # RTP clock rate of video


UPSCALE_TO = 256  # frames are enlarged (up to the connection's upscale) only while their long side is below this


def upscaled(rgb: np.ndarray, k: int) -> np.ndarray:
    """(H, W, 3) → (k'·H, k'·W, 3), each pixel a k' × k' block, k' = k but no more than brings the long side to
    UPSCALE_TO: a small face sent this way reaches the browser with crisp edges (VP8 smears a 64-px frame that
    the page then enlarges), and a portrait (256 px and up) goes as it is."""
    k = max(1, min(k, UPSCALE_TO // max(rgb.shape[:2])))
    if k == 1:
        return np.ascontiguousarray(rgb)
    return np.ascontiguousarray(np.repeat(np.repeat(rgb, k, axis=0), k, axis=1))


class Pacer:
    """The wall-clock origin both tracks of a connection share: set by whichever asks first."""

    def __init__(self) -> None:
        self.t0: float | None = None

    async def wait_until(self, seconds: float) -> None:
        """Sleep until ``seconds`` after the origin."""
        if self.t0 is None:
            self.t0 = time.monotonic()
        delay = self.t0 + seconds - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


class PlayoutAudioTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(self, playout: Playout, pacer: Pacer) -> None:
        super().__init__()
        self.playout, self.pacer = playout, pacer
        self.block = int(round(playout.sample_rate * AUDIO_BLOCK_SECONDS))

    async def recv(self) -> av.AudioFrame:
        pos = self.playout.position
        await self.pacer.wait_until(pos / self.playout.sample_rate)
        pcm = self.playout.audio(self.block)
        s16 = (np.clip(pcm, -1.0, 1.0) * 32767.0).astype(np.int16)[None]  # (1, n): mono, packed
        frame = av.AudioFrame.from_ndarray(s16, format="s16", layout="mono")
        frame.sample_rate = self.playout.sample_rate
        frame.pts, frame.time_base = pos, Fraction(1, self.playout.sample_rate)
        return frame


class PlayoutVideoTrack(MediaStreamTrack):
    kind = "video"

    def __init__(self, playout: Playout, pacer: Pacer, size: tuple[int, int], upscale: int = 1) -> None:
        super().__init__()
        self.playout, self.pacer, self.upscale = playout, pacer, upscale
        self.k = 0
        self.blank = upscaled(np.zeros((size[1], size[0], 3), np.uint8), upscale)

    async def recv(self) -> av.VideoFrame:
        p = self.playout
        pos = self.k * p.sample_rate // p.fps  # the playout instant of this frame, in samples
        await self.pacer.wait_until(pos / p.sample_rate)
        self.k += 1
        rgb = p.frame(pos)
        frame = av.VideoFrame.from_ndarray(self.blank if rgb is None else upscaled(rgb, self.upscale), format="rgb24")
        frame.pts, frame.time_base = pos * VIDEO_CLOCK // p.sample_rate, Fraction(1, VIDEO_CLOCK)
        return frame
