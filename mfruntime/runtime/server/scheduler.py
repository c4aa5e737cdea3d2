"""The character scheduler: who generates the next chunk.

Each :class:`Character` holds a Session and its queue of utterances (and, listening, its idle utterances). The
:class:`Scheduler` owns the characters and runs the engine loop: one chunk per character with something to do,
in turn (round robin, so characters share the machine fairly), handing each chunk to ``publish``.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Callable

import numpy as np

from mfruntime.runtime.character import default_character
from mfruntime.runtime.session import Chunk, PendingUtterance, Session

log = logging.getLogger(__name__)

Publish = Callable[[str, Chunk], None]


class Character:
    """One character: its Session and its queue of utterances, advanced a chunk at a time by the engine."""

    def __init__(self, cid: str, session: Session) -> None:
        self.cid, self.session = cid, session
        self.jobs: deque[PendingUtterance] = deque()  # waiting utterances, in order; appended on request
        self.current: tuple | None = None  # (utterance id, chunk iterator, idle) being generated
        self.seq = 0  # next chunk of the current utterance
        self.ended = True  # the current utterance's end (eou) has been published
        self.listen = False  # op idle: stream idle chunks (the character listening) whenever nothing is queued
        # Taking an utterance id and queueing it is one step (say on the control thread, idle on the engine's), so
        # an idle utterance can never supersede a line that is being queued.
        self.lock = threading.Lock()

    @property
    def speaking(self) -> bool:
        return self.current is not None or bool(self.jobs)

    @property
    def idle(self) -> bool:
        """The utterance being generated is an idle one (the character listening)."""
        return self.current is not None and self.current[2]

    def submit(self, reserve) -> PendingUtterance:
        """Queue an utterance: ``reserve()`` (Session.reserve_say/reserve_drive: checked, id taken) is called with
        the character's lock held."""
        with self.lock:
            pending = reserve()
            self.jobs.append(pending)
        return pending

    def _start_idle(self) -> None:
        """Listening and nothing queued: queue an idle utterance (paced here, by step())."""
        with self.lock:
            if not self.jobs and self.current is None:
                self.jobs.append(self.session.reserve_idle(paced=False))

    def step(self, publish: Publish) -> bool:
        """Generate and publish this character's next chunk; False when it has nothing to do (yet)."""
        if self.current is None and self.listen and not self.jobs:
            self._start_idle()
        if self.current is None:
            if not self.jobs or not self.jobs[0].ready.is_set():
                return False  # nothing queued, or its phoneme timing is still being made
            pending = self.jobs.popleft()
            self.seq, self.ended = 0, False
            try:
                self.current = (pending.uid, pending.chunks(), pending.idle)
            except Exception:  # e.g. eSpeak failed: end the utterance for receivers below
                log.exception("character %s: utterance %d could not be prepared", self.cid, pending.uid)
                self.current = (pending.uid, iter(()), False)
        uid, chunks, idle = self.current
        if idle and not self.session.interrupted and self.session.utterance == uid \
                and time.perf_counter() < self.session.idle_due:
            return False  # listening: the next idle chunk is not due yet (made in real time, never far ahead)
        try:
            chunk = next(chunks, None)
        except Exception:  # a failing utterance must not take the character (or the server) down
            log.exception("character %s: utterance %d failed", self.cid, uid)
            chunk = None
        if chunk is not None:
            publish(self.cid, chunk)
            self.seq, self.ended = chunk.seq + 1, chunk.last
            if not chunk.last:
                return True
        elif not self.ended:  # superseded by a newer utterance, or failed: still close it for receivers
            s = self.session
            h, w = s.frame_size
            frames = np.zeros((0, h, w, 3), np.uint8) if s.outputs["video"] else None  # the header's video as its chunks'
            publish(self.cid, Chunk(utterance=uid, seq=self.seq, pts=s.clock, frames=frames, pcm=np.zeros(0, np.float32),
                                    sample_rate=s.sample_rate, fps=s.fps, last=True, interrupted=True))
            self.ended = True
        self.current = None
        return True

    def finish(self, publish: Publish) -> None:
        """At shutdown: drop queued utterances and end the running one (interrupt: one more chunk)."""
        self.listen = False
        self.jobs.clear()
        self.session.interrupt()
        while self.current is not None:
            self.step(publish)


class Scheduler:
    """The characters of one server and the engine loop over them."""

    def __init__(self, make_session: Callable[[], Session], max_characters: int) -> None:
        self.make_session, self.max_characters = make_session, max_characters
        self.characters: dict[str, Character] = {}
        self.work = threading.Event()  # set when something is queued: wakes the engine

    def check_room(self, creating: int = 0) -> None:
        """A ValueError when the server cannot take one more character (``creating``: others on their way)."""
        if len(self.characters) + creating >= self.max_characters:
            raise ValueError(f"the server already runs {self.max_characters} characters (--max-characters)")

    def add(self, cid: str, image=None, face_seed: int | None = None, voice: str | None = None) -> Character:
        self.check_room()
        session = self.make_session()
        if image is None and face_seed is not None:
            image = default_character(session.size, face_seed)
        if image is not None:
            session.set_character(image)
        if voice is not None:
            session.set_voice(voice)
        ch = Character(cid, session)
        self.characters[cid] = ch
        log.info("character %s ready (%s, %d steps)", cid, session.backend, session.steps)
        return ch

    def get(self, cid: str) -> Character:
        if cid not in self.characters:
            raise ValueError(f"no character {cid!r} (characters: {', '.join(self.characters)}); "
                             "make it with set_character")
        return self.characters[cid]

    def run(self, stop: threading.Event, publish: Publish) -> None:
        """Round robin over the characters, one chunk each, until ``stop``; then end what is running."""
        while not stop.is_set():
            self.work.clear()
            busy = False
            for ch in list(self.characters.values()):
                busy |= ch.step(publish)
            if not busy:
                self.work.wait(0.1)
        for ch in list(self.characters.values()):
            ch.finish(publish)
