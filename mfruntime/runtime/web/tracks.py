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

    def __init__(self, playout: Playout, pacer: Pacer, size: tuple[int, int]) -> None:
        super().__init__()
        self.playout, self.pacer = playout, pacer
        self.k = 0
        self.blank = np.zeros((size[1], size[0], 3), np.uint8)

    async def recv(self) -> av.VideoFrame:
        p = self.playout
        pos = self.k * p.sample_rate // p.fps  # the playout instant of this frame, in samples
        await self.pacer.wait_until(pos / p.sample_rate)
        self.k += 1
        rgb = p.frame(pos)
        frame = av.VideoFrame.from_ndarray(self.blank if rgb is None else np.ascontiguousarray(rgb), format="rgb24")
        frame.pts, frame.time_base = pos * VIDEO_CLOCK // p.sample_rate, Fraction(1, VIDEO_CLOCK)
        return frame
