"""One character's media for one browser: the chunks of the stream on a single **playout clock**, from which the
WebRTC audio track takes 20-ms blocks and the video track takes the frame that is due.

The playout clock counts samples (the stream's rate) since the connection started; both tracks are paced against
the same wall-clock origin and stamp their frames from it (audio: the sample count; video: the same instant on
the 90-kHz RTP clock), so the browser's own A/V sync keeps the lips on the voice.

Rules (those of the C++/C# players, docs/BRIDGES.md, for one consumer that never stops):

* A new utterance starts the clients' prebuffer (80 ms, ``GRACE_SECONDS``) after the moment its first chunk arrives (jitter room), or
  right after the previous one's audio if that is still playing. Its chunks follow back to back.
* A chunk that arrives after its slot has begun to play (the server fell behind) is placed at the play position:
  the gap was silence, the video held its frame — counted in ``underruns``.
* A chunk of a newer utterance drops what is buffered of older ones (superseded); ``cut()`` drops everything
  buffered now (a local interrupt: silence and a still face within one 20-ms block).
* Frame *i* of a chunk placed at position *p* is due at *p + i · sample_rate / fps*; ``frame(position)`` gives the
  newest frame due, so the face never runs ahead of the voice. Between lines the last frame stays. Rig frames
  (the rig stream's controls) are placed the same way and handed out by ``rig_due(position)`` once due.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from mfruntime.config import DEFAULT_MEDIA
from mfruntime.runtime.server.deadlines import GRACE_SECONDS


@dataclass
class PlayoutStats:
    chunks: int = 0
    underruns: int = 0  # chunks placed late: their line had a gap
    superseded: int = 0  # buffered chunks dropped for a newer line
    cut: int = 0  # local interrupts


@dataclass
class _Line:
    utterance: int
    start: int  # playout position of its first sample
    end: int  # position after its last chunk placed so far
    ended: bool = False  # its end-of-utterance arrived
    started_sent: bool = False
    ended_sent: bool = False
    interrupted: bool = False


@dataclass
class Playout:
    """Thread-safe: the stream thread pushes, the tracks pull (asyncio), the data channel cuts."""

    sample_rate: int = DEFAULT_MEDIA.sample_rate
    fps: int = DEFAULT_MEDIA.fps
    prebuffer: int | None = None  # samples; None: the clients' default prebuffer (GRACE_SECONDS)
    stats: PlayoutStats = field(default_factory=PlayoutStats)

    def __post_init__(self) -> None:
        if self.prebuffer is None:
            self.prebuffer = round(GRACE_SECONDS * self.sample_rate)
        self._lock = threading.Lock()
        self.position = 0  # next sample the audio track takes
        self._audio: deque[tuple[int, np.ndarray]] = deque()  # (start position, pcm) in order
        self._frames: deque[tuple[int, np.ndarray]] = deque()  # (due position, (H, W, 3) uint8) in order
        self._last_frame: np.ndarray | None = None
        self._rig: deque[tuple[int, np.ndarray]] = deque()  # (due position, (controls,) float32) in order
        self._lines: deque[_Line] = deque()  # lines not yet reported ended, oldest first
        self._cut_below = 0  # utterances ≤ this are ignored (cut locally)
        self._events: deque[dict] = deque(maxlen=256)

    # --- stream side --------------------------------------------------------------------------
    def push(self, utterance: int, seq: int, pcm: np.ndarray, frames: np.ndarray | None, eou: bool,
             interrupted: bool, arrived: int | None = None, rig: np.ndarray | None = None) -> None:
        """A chunk of the stream (decoded). ``arrived``: the playout position now (None: the current position);
        ``rig``: its rig frames (F, controls), if the stream carries them."""
        with self._lock:
            now = self.position if arrived is None else arrived
            if utterance <= self._cut_below:
                return
            line = self._lines[-1] if self._lines else None
            if line is None or utterance > line.utterance:
                if line is not None and not line.ended:  # superseded: drop what is buffered of it
                    self._drop_from(now, line)
                start = max(now + self.prebuffer,  # type: ignore[operator]
                             line.end if line is not None and line.ended else 0)
                line = _Line(utterance, start, start)
                self._lines.append(line)
            elif utterance < line.utterance:
                return  # a chunk of a line already superseded
            self.stats.chunks += 1
            n = int(pcm.shape[0])
            at = line.end
            if n and at < now:  # its slot began playing before it came: a gap
                self.stats.underruns += 1
                at = now
            if n:
                self._audio.append((at, np.asarray(pcm, np.float32)))
                line.end = at + n
            step = self.sample_rate // self.fps
            if frames is not None and len(frames):
                for i, f in enumerate(frames):
                    self._frames.append((at + i * step, f))
            if rig is not None and len(rig):
                for i, r in enumerate(rig):
                    self._rig.append((at + i * step, np.asarray(r, np.float32)))
            if eou:
                line.ended, line.interrupted = True, interrupted

    def _drop_from(self, now: int, line: _Line) -> None:
        """Drop buffered audio and frames due after ``now`` (a superseded or cut line)."""
        kept = deque((s, p[: max(0, now - s)]) for s, p in self._audio if s < now)
        self.stats.superseded += len(self._audio) - len(kept)
        self._audio = deque((s, p) for s, p in kept if len(p))
        self._frames = deque((s, f) for s, f in self._frames if s <= now)
        self._rig = deque((s, r) for s, r in self._rig if s <= now)
        line.end = min(line.end, now)
        line.ended, line.interrupted = True, True

    def cut(self) -> None:
        """A local interrupt: everything buffered stops now."""
        with self._lock:
            self.stats.cut += 1
            for line in self._lines:
                if not line.ended or line.end > self.position:
                    self._drop_from(self.position, line)
                self._cut_below = max(self._cut_below, line.utterance)

    # --- track side ---------------------------------------------------------------------------
    def audio(self, n: int) -> np.ndarray:
        """The next ``n`` samples (silence where nothing is placed); advances the playout clock."""
        out = np.zeros(n, np.float32)
        with self._lock:
            lo, hi = self.position, self.position + n
            while self._audio and self._audio[0][0] + len(self._audio[0][1]) <= lo:
                self._audio.popleft()
            for s, p in self._audio:
                if s >= hi:
                    break
                a, b = max(s, lo), min(s + len(p), hi)
                if b > a:
                    out[a - lo:b - lo] = p[a - s:b - s]
            self.position = hi
            self._events_for(hi)
        return out

    def frame(self, position: int) -> np.ndarray | None:
        """The newest frame due at ``position`` (or the last one shown); older ones are dropped."""
        with self._lock:
            while self._frames and self._frames[0][0] <= position:
                self._last_frame = self._frames.popleft()[1]
            return self._last_frame

    def rig_due(self, position: int) -> list[tuple[int, np.ndarray]]:
        """The rig frames due by ``position`` not handed out yet, oldest first, each with its due position."""
        out = []
        with self._lock:
            while self._rig and self._rig[0][0] <= position:
                out.append(self._rig.popleft())
        return out

    def _events_for(self, position: int) -> None:
        while self._lines:
            line = self._lines[0]
            if not line.started_sent and line.start < position and line.end > line.start:
                line.started_sent = True
                self._events.append({"event": "started", "utterance": line.utterance})
            if line.ended and line.end <= position:
                self._events.append({"event": "ended", "utterance": line.utterance, "interrupted": line.interrupted})
                self._lines.popleft()
                continue
            break

    def events(self) -> list[dict]:
        """Line started / ended (by the playout clock), oldest first; each once."""
        with self._lock:
            out = list(self._events)
            self._events.clear()
        return out
