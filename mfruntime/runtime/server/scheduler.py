"""The character scheduler: who generates the next chunk.

Each :class:`Character` holds a Session and its queue of utterances (and, listening, its idle utterances). The
:class:`Scheduler` owns the characters and runs the engine loop in rounds: every character with something to do
makes one chunk per round (so characters share the machine fairly), and each chunk goes to ``publish``.

Batched (the default): in a round, every character first plans its chunk (a ChunkJob: engine/batch.py), then
the jobs are denoised together — one forward per denoising step for all the characters at the same step count
— and then each character decodes and publishes its chunk. One by one (``batch=False``): each character makes
its whole chunk in turn.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from typing import Callable

import numpy as np

from mfruntime.config import DEFAULT_RENDERER
from mfruntime.engine.batch import ChunkJob, run_jobs
from mfruntime.runtime.character import default_character
from mfruntime.runtime.server.deadlines import ADMIT_BUDGET, CostModel, Pacing, admission_error
from mfruntime.runtime.session import Chunk, PendingUtterance, Session

log = logging.getLogger(__name__)

Publish = Callable[[str, Chunk], None]


class Character:
    """One character: its Session and its queue of utterances, advanced a chunk at a time by the engine."""

    def __init__(self, cid: str, session: Session, cost: CostModel | None = None) -> None:
        self.cid, self.session = cid, session
        self.cost = cost if cost is not None else CostModel()  # shared by a server's characters
        self.pacing = Pacing(session.cfg.media.chunk_seconds)
        self.jobs: deque[PendingUtterance] = deque()  # waiting utterances, in order; appended on request
        self.current: tuple | None = None  # (utterance id, chunk iterator, idle, target steps) being generated
        self.seq = 0  # next chunk of the current utterance
        self.line_size: tuple[int, int] | None = None  # (H, W) of the frames the current line has published
        self.ended = True  # the current utterance's end (eou) has been published
        self.listen = False  # op idle: stream idle chunks (the character listening) whenever nothing is queued
        self.job: ChunkJob | None = None  # batched: this round's chunk, planned, waiting for the batch to run
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

    def step(self, publish: Publish, rows: int = 1) -> bool | ChunkJob:
        """Generate and publish this character's next chunk; False when it has nothing to do (yet). With a
        batched session it returns the chunk's :class:`ChunkJob` instead: run it (``run_jobs``), then call
        ``step`` again to finish and publish the chunk. ``rows``: characters generating in this round."""
        if self.job is not None:  # the second half of a batched chunk: decode and publish it
            return self._advance(publish, *self.current)  # type: ignore[misc]
        if self.current is None and self.listen and not self.jobs:
            self._start_idle()
        if self.current is None:
            if not self.jobs or not self.jobs[0].ready.is_set():
                return False  # nothing queued, or its phoneme timing is still being made
            pending = self.jobs.popleft()
            self.seq, self.ended = 0, False
            try:
                self.current = (pending.uid, pending.chunks(), pending.idle, pending.steps)
            except Exception:  # e.g. eSpeak failed: end the utterance for receivers below
                log.exception("character %s: utterance %d could not be prepared", self.cid, pending.uid)
                self.current = (pending.uid, iter(()), False, pending.steps)
        uid, chunks, idle, target = self.current
        if idle and not self.session.interrupted and self.session.utterance == uid \
                and time.perf_counter() < self.session.idle_due:
            return False  # listening: the next idle chunk is not due yet (made in real time, never far ahead)
        # The steps of this chunk: the floor while listening, else what its deadline allows (deadlines.py).
        self.session.next_chunk_steps = self.session.min_steps if idle else \
            self.pacing.choose(self.seq, target, min(self.session.min_steps, target), self.cost, rows=rows)
        return self._advance(publish, uid, chunks, idle, target)

    def _advance(self, publish: Publish, uid: int, chunks, idle: bool, target: int) -> bool | ChunkJob:
        try:
            chunk = next(chunks, None)
        except Exception:  # a failing utterance must not take the character (or the server) down
            log.exception("character %s: utterance %d failed", self.cid, uid)
            chunk = None
        if isinstance(chunk, ChunkJob):
            self.job = chunk
            return chunk
        self.job = None
        if chunk is not None:
            if chunk.frames is not None:
                self.line_size = chunk.frames.shape[1:3]  # (H, W) of this line's frames
            publish(self.cid, chunk)
            if chunk.steps and not self.session.batched_jobs:  # batched: the scheduler measures the round
                self.cost.observe(chunk.steps, chunk.compute_seconds)
            if not idle:
                self.pacing.sent_chunk(uid, chunk.seq)
            self.seq, self.ended = chunk.seq + 1, chunk.last
            if not chunk.last:
                return True
        elif not self.ended:  # superseded by a newer utterance, or failed: still close it for receivers
            s = self.session
            # The size of the line being ended (a renderer switch since it began changes s.frame_size, not it).
            h, w = self.line_size if self.line_size is not None and self.seq > 0 else s.frame_size
            frames = np.zeros((0, h, w, 3), np.uint8) if s.outputs["video"] else None  # the header's video as its chunks'
            publish(self.cid, Chunk(utterance=uid, seq=self.seq, pts=s.clock, frames=frames, pcm=np.zeros(0, np.float32),
                                    sample_rate=s.sample_rate, fps=s.fps, last=True, interrupted=True))
            self.ended = True
        self.current = None
        self.pacing.end()
        return True

    @property
    def generating(self) -> bool:
        """It will need the model in the coming chunks: a line is running or queued, or it listens with the
        model drawing its face (a listening portrait or rig-only character costs next to nothing)."""
        if self.jobs or (self.current is not None and not self.current[2]):
            return True
        return self.idle and self.session.idle_runs_model

    def finish(self, publish: Publish) -> None:
        """At shutdown: drop queued utterances and end the running one (interrupt: one more chunk)."""
        self.listen = False
        self.jobs.clear()
        self.session.interrupt()
        while self.current is not None:
            got = self.step(publish)
            if isinstance(got, ChunkJob):
                run_jobs([got])  # a failure is kept on the job: the next step ends the line


class Scheduler:
    """The characters of one server and the engine loop over them."""

    def __init__(self, make_session: Callable[[], Session], max_characters: int, admission: bool = True,
                 batch: bool = True) -> None:
        self.make_session, self.max_characters, self.admission = make_session, max_characters, admission
        self.batch = batch  # characters that speak at once share forwards (engine/batch.py)
        self.batches: Counter = Counter()  # batches run, by size (rows)
        self.characters: dict[str, Character] = {}
        self.work = threading.Event()  # set when something is queued: wakes the engine
        self.cost = CostModel()  # seconds per chunk at each step count, measured on this server's chunks

    def check_room(self, creating: int = 0) -> None:
        """A ValueError when the server cannot take one more character (``creating``: others on their way)."""
        if len(self.characters) + creating >= self.max_characters:
            raise ValueError(f"the server already runs {self.max_characters} characters (--max-characters)")

    def add(self, cid: str, image=None, face_seed: int | None = None, voice: str | None = None,
            renderer: str = DEFAULT_RENDERER, size: int | None = None) -> Character:
        self.check_room()
        session = self.make_session()
        session.batched_jobs = self.batch
        if image is None and face_seed is not None:
            image = default_character(session.size, face_seed)
        if image is not None:
            session.set_character(image, renderer=renderer, size=size)
        if voice is not None:
            session.set_voice(voice)
        ch = Character(cid, session, self.cost)
        self.characters[cid] = ch
        log.info("character %s ready (%s, %d steps)", cid, session.backend, session.steps)
        return ch

    def get(self, cid: str) -> Character:
        if cid not in self.characters:
            raise ValueError(f"no character {cid!r} (characters: {', '.join(self.characters)}); "
                             "make it with set_character")
        return self.characters[cid]

    def admit(self, cid: str) -> None:
        """A ValueError (busy) when a new line for ``cid`` could not be kept in real time: the characters that
        would be generating, at their min_steps, need more than ADMIT_BUDGET of real time (deadlines.py). A line
        with no other character generating is always taken (there is no running stream to protect; on a machine
        too slow for one stream it plays with gaps, and stats show its margin)."""
        others = [c for c in self.characters.values() if c.cid != cid and c.generating]
        if not self.admission or not others:
            return
        me = self.get(cid)
        costs = [self.cost.estimate(c.session.min_steps) for c in [*others, me]]
        if any(c is None for c in costs):
            return  # nothing measured yet: admit
        need = sum(costs)  # type: ignore[arg-type]
        cs = me.session.cfg.media.chunk_seconds
        if need > ADMIT_BUDGET * cs:
            raise admission_error(need, cs, len(costs), costs[-1])  # type: ignore[arg-type]

    def run(self, stop: threading.Event, publish: Publish) -> None:
        """Rounds over the characters, one chunk each, until ``stop``; then end what is running."""
        while not stop.is_set():
            self.work.clear()
            if not self.round(publish):
                self.work.wait(0.1)
        for ch in list(self.characters.values()):
            ch.finish(publish)

    def round(self, publish: Publish) -> bool:
        """One chunk for every character with something to do; False when none had anything."""
        chars = list(self.characters.values())
        rows = max(1, sum(c.generating for c in chars)) if self.batch else 1
        busy, jobs = False, []
        for ch in chars:
            first = ch.current is None or ch.seq == 0  # a line's first chunk: its planning may include one-off work
            t0 = time.perf_counter()
            got = ch.step(publish, rows)
            if isinstance(got, ChunkJob):
                # Planning the chunk counts towards its cost, except for a line's first chunk, whose planning can
                # include one-off work (a new character's reference encoding, a driven clip's audio encoding).
                jobs.append((ch, got, 0.0 if first else time.perf_counter() - t0))
            busy |= bool(got)
        if jobs:
            # Each batch is timed; a failed batch marks its jobs, and their characters' next step ends their lines
            # (an interrupted end-of-utterance chunk) while the other batches' characters go on.
            try:
                runs = run_jobs([job for _, job, _ in jobs])
            except Exception as exc:  # a planning bug (a job run twice, …): these chunks fail, the engine goes on
                log.exception("chunk jobs could not be run")
                runs = []
                for _, job, _ in jobs:
                    if job.result is None:
                        job.error = exc
            self.batches.update(r.size for r in runs)
            for ch, job, planning in jobs:
                t0 = time.perf_counter()
                ch.step(publish)  # decode (unless the batch did), publish
                if job.error is None:  # a character's cost: its planning, its share of its batch, its finishing
                    self.cost.observe(job.steps, planning + job.seconds + time.perf_counter() - t0)
        return busy
