"""Deadline-aware steps and admission: the server trades a chunk's denoising steps for time when a stream would
fall behind, and refuses a new line it cannot keep in real time.

A chunk's *deadline* is when its client needs it: a client starts playing an utterance as soon as its first
chunk is in (plus its prebuffer, :data:`GRACE_SECONDS`), so chunk k of an utterance whose first chunk was sent
at ``t0`` is due at ``t0 + GRACE_SECONDS + k · chunk_seconds``. The *margin* of a chunk is its deadline minus
the time it was sent (negative: late, the client's audio ran dry).

Steps (the paper's adaptive step schedules, applied per chunk): before a character's chunk is made, its margin
after this chunk is predicted from the measured cost of a chunk at each step count (:class:`CostModel`). A line's first chunk
(no deadline yet) starts at the most steps whose round (characters generating × cost) fits in a chunk's time.
Below
:data:`LOW_MARGIN` the chunk gets fewer steps, notch by notch down the ladder (it halves: 4 → 2 → 1) until its
predicted margin is enough or it reaches the character's ``min_steps``; above :data:`HIGH_MARGIN` one notch more,
up to its target ``steps``. Idle chunks
(a listening character) are always made at ``min_steps``.

Admission: a say/drive is refused with a ``busy`` error when the characters already generating, plus the new
one, would need more than :data:`ADMIT_BUDGET` of each chunk's time even at their ``min_steps``; a line with no
other character generating is always taken.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from mfruntime.config import DEFAULT_MEDIA, MIN_STEPS

GRACE_SECONDS = 0.08  # the clients' default prebuffer: how long after the first chunk playback starts
# Seconds of margin predicted after the chunk is made: below LOW_MARGIN it gets fewer steps (it would be late, or
# nearly), above HIGH_MARGIN more. A stream that keeps up gains margin every chunk, so it is never lowered.
LOW_MARGIN = 0.05  # a third of a chunk: room for a round that runs slower than measured (2026-12-06: at 0.02, one
# stall per line in one of three 16-line overload runs)
HIGH_MARGIN = 0.5
ADMIT_BUDGET = 0.9  # share of real time the generating characters may need at their min_steps
EWMA = 0.2  # weight of the newest measurement in the cost model
# What a chunk costs besides its denoising steps (the commit forward, planning, decoding, publishing), in forwards'
# worth: a chunk at S steps costs about S + FIXED_FORWARDS. Measured (benchmarks.serve, one character, native,
# 2026-12-06): 0.35 / 0.25 / 0.22 of real time at 4 / 2 / 1 steps, i.e. about 4. The cost model uses it only to
# guess a step count it has not measured yet from one it has; (S + 1) — the forwards alone — guessed 1-step chunks
# 40 % too cheap, and admission then took lines it could not keep (benchmarks.overload).
FIXED_FORWARDS = 4


def step_down(steps: int, floor: int) -> int:
    """One notch fewer steps: half (rounded down), not below ``floor``."""
    return max(floor, MIN_STEPS, steps // 2)


def step_up(steps: int, target: int) -> int:
    """One notch more steps: double, not above ``target``."""
    return min(target, max(steps * 2, steps + 1))


@dataclass
class CostModel:
    """Wall seconds per chunk at each step count, learned from the chunks made (one model and backend per
    server, so one cost model). A step count never measured is estimated from the measured ones: a chunk costs
    a fixed part (the commit forward, decoding) plus a part per step."""

    seconds: dict[int, float] = field(default_factory=dict)

    def observe(self, steps: int, seconds: float) -> None:
        if steps < MIN_STEPS or not seconds > 0:
            return
        old = self.seconds.get(steps)
        self.seconds[steps] = seconds if old is None else (1 - EWMA) * old + EWMA * seconds

    def estimate(self, steps: int) -> float | None:
        """Seconds per chunk at ``steps``, or None before any chunk was measured."""
        if steps in self.seconds:
            return self.seconds[steps]
        if not self.seconds:
            return None
        known = sorted(self.seconds)
        if len(known) == 1:  # one measurement: a chunk costs steps + FIXED_FORWARDS forwards' worth
            s0 = known[0]
            return self.seconds[s0] * (steps + FIXED_FORWARDS) / (s0 + FIXED_FORWARDS)
        lo, hi = known[0], known[-1]
        per_step = max((self.seconds[hi] - self.seconds[lo]) / (hi - lo), 0.0)
        return max(self.seconds[lo] + per_step * (steps - lo), 0.0)


@dataclass
class Pacing:
    """One character's deadlines within its current utterance, and its record."""

    chunk_seconds: float = DEFAULT_MEDIA.chunk_seconds
    t0: float | None = None  # perf_counter time the utterance's first chunk was sent
    uid: int = 0  # the utterance these deadlines belong to
    steps: int = 0  # the step count the character's chunks are made with now (0: its target)
    margin: float | None = None  # the latest chunk's margin, seconds
    late: int = 0  # chunks sent after their deadline, over the server's life
    sent: int = 0  # chunks sent

    def deadline(self, seq: int) -> float | None:
        return None if self.t0 is None else self.t0 + GRACE_SECONDS + seq * self.chunk_seconds

    def choose(self, seq: int, target: int, floor: int, cost: CostModel, now: float | None = None,
               rows: int = 1) -> int:
        """The steps of chunk ``seq`` of the current utterance. ``rows``: the characters generating in this round
        (a batched server publishes a chunk once all the round's batches have run, so it is ready about
        ``rows × cost`` from now; ``cost`` is per character: its planning, its share of its batch, its decoding)."""
        steps = min(max(self.steps or target, floor), target)
        due = self.deadline(seq)
        if due is None:  # the first chunk of an utterance: no deadline yet, but the round must keep real time
            c = cost.estimate(steps)
            while c is not None and steps > floor and rows * c > self.chunk_seconds:
                steps = step_down(steps, floor)  # a line joining a loaded server starts at what fits
                c = cost.estimate(steps)
            self.steps = steps
            return steps
        now = time.perf_counter() if now is None else now
        c = cost.estimate(steps)
        if c is not None and due - (now + rows * c) < LOW_MARGIN:
            # As many notches as it takes (a round that grew from 1 to 5 characters needs 4 → 1 at once), not one
            # per chunk: each chunk still too slow is one the client may not have in time.
            while c is not None and steps > floor and due - (now + rows * c) < LOW_MARGIN:
                steps = step_down(steps, floor)
                c = cost.estimate(steps)
        elif steps < target:
            up = step_up(steps, target)
            cu = cost.estimate(up)
            if cu is not None and due - (now + rows * cu) > HIGH_MARGIN:
                steps = up
        self.steps = steps
        return steps

    def sent_chunk(self, uid: int, seq: int, now: float | None = None) -> None:
        """A chunk of utterance ``uid`` went out: its margin, and whether it was late."""
        now = time.perf_counter() if now is None else now
        if uid != self.uid or self.t0 is None:
            self.uid, self.t0 = uid, now - seq * self.chunk_seconds  # a new utterance: its clock starts now
        self.sent += 1
        self.margin = self.deadline(seq) - now  # type: ignore[operator]
        if self.margin < 0:
            self.late += 1

    def end(self) -> None:
        """The utterance ended: the next one starts its own clock."""
        self.t0 = None


def admission_error(need: float, chunk_seconds: float, count: int, cost_floor: float) -> ValueError:
    capacity = int(ADMIT_BUDGET * chunk_seconds / cost_floor) if cost_floor > 0 else count
    return ValueError(f"busy: the server cannot keep another line in real time — the {count} characters that would "
                      f"be generating need {1000 * need:.0f} ms of compute per {1000 * chunk_seconds:.0f}-ms chunk even "
                      f"at their fewest steps (min_steps); its capacity is about {capacity} at once. Try again when "
                      "a line ends, or lower min_steps")
