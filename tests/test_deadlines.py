"""Deadline-aware steps and admission (runtime/server/deadlines.py): the policy, per-chunk steps in generation,
and the server's busy answer."""
import numpy as np
import pytest

from mfruntime.runtime.server.deadlines import (GRACE_SECONDS, HIGH_MARGIN, CostModel, Pacing, step_down, step_up)


def test_the_step_ladder_halves_and_doubles_within_floor_and_target():
    assert [step_down(4, 1), step_down(2, 1), step_down(1, 1), step_down(4, 2), step_down(3, 1)] == [2, 1, 1, 2, 1]
    assert [step_up(1, 4), step_up(2, 4), step_up(4, 4), step_up(2, 3)] == [2, 4, 4, 3]


def test_cost_model_learns_and_estimates_unmeasured_step_counts():
    c = CostModel()
    assert c.estimate(4) is None
    c.observe(4, 0.10)
    assert c.estimate(4) == pytest.approx(0.10) and c.estimate(1) == pytest.approx(0.10 * 5 / 8)  # (1 + 4) / (4 + 4): FIXED_FORWARDS
    c.observe(1, 0.05)
    assert c.estimate(2) == pytest.approx(0.05 + (0.10 - 0.05) / 3)
    c.observe(4, 0.20)
    assert 0.10 < c.estimate(4) < 0.20  # a moving average, not the last value
    c.observe(0, 1.0)
    c.observe(2, float("nan"))
    assert set(c.seconds) == {1, 4}


def test_steps_drop_when_a_deadline_is_near_never_below_the_floor_and_come_back_with_slack():
    cost = CostModel({4: 0.12, 2: 0.07, 1: 0.045})
    p = Pacing(0.16)
    assert p.choose(0, target=4, floor=1, cost=cost, now=0.0) == 4  # first chunk: no deadline yet
    p.sent_chunk(uid=1, seq=0, now=10.0)
    assert p.margin == pytest.approx(GRACE_SECONDS) and p.late == 0
    assert p.choose(1, 4, 1, cost, now=10.0) == 4  # due at 10.24, made by 10.12 at 4 steps: in time, kept
    # at 10.11 it would be nearly late at 4 steps (10.23), in time at 2 (10.18): one notch
    assert p.choose(1, 4, 1, cost, now=10.11) == 2
    # at 10.2 it would be late at 4 steps (10.32) and at 2 (10.27): down as many notches as it takes, at once
    p.steps = 4
    assert p.choose(1, 4, 1, cost, now=10.2) == 1
    assert p.choose(1, 4, 1, cost, now=10.2) == 1  # the floor
    p.steps = 4
    assert p.choose(1, 4, 2, cost, now=10.2) == 2  # a higher floor wins
    # a round that grew (1 → 4 characters) drops a stream from 4 to 1 step in one chunk
    p.steps = 4
    assert p.choose(1, 4, 1, cost, now=10.0, rows=1) == 4 and p.choose(1, 4, 1, cost, now=10.0, rows=4) == 1
    p.sent_chunk(uid=1, seq=1, now=10.5)  # after its deadline (10.24)
    assert p.late == 1 and p.margin < 0
    # far ahead (chunk 20 is due at 13.28): back up one notch at a time
    p.steps = 1
    now = 13.28 - HIGH_MARGIN - 0.2
    assert p.choose(20, 4, 1, cost, now=now) == 2 and p.choose(20, 4, 1, cost, now=now) == 4
    p.end()
    assert p.deadline(3) is None
    p.sent_chunk(uid=2, seq=0, now=20.0)  # a new utterance starts its own clock
    assert p.deadline(1) == pytest.approx(20.0 + GRACE_SECONDS + 0.16)


def test_a_chunk_made_with_fewer_steps_is_the_chunk_those_steps_make():
    """Per-chunk steps: a 4-step utterance whose chunks are told 2 steps equals a 2-step utterance (same seed),
    and each chunk reports the steps it was made with."""
    from mfruntime import Session

    text = "Fewer steps, same stream."
    a = Session(device="cpu", backend="eager", threads=1, seed=3)
    b = Session(device="cpu", backend="eager", threads=1, seed=3)
    two = list(a.say(text, steps=2))
    b.next_chunk_steps = 2
    told = list(b.say(text, steps=4))
    assert [c.steps for c in two] == [c.steps for c in told] == [2] * len(two)
    for x, y in zip(two, told):
        assert np.array_equal(x.frames, y.frames) and np.array_equal(x.pcm, y.pcm)
    b.next_chunk_steps = None
    assert {c.steps for c in b.say("Back to four.")} == {4}
    assert b.stats().steps_used == {2: len(told), 4: b.stats().chunks - len(told)}


def test_min_steps_is_checked():
    from mfruntime import Session

    s = Session(device="cpu", backend="eager", threads=1)
    assert s.min_steps == s.steps == 4
    s.min_steps = 1
    with pytest.raises(ValueError, match="cannot be above steps"):
        s.min_steps = 8
    s.steps = 2
    s.min_steps = 2
    s.steps = 1
    assert s.min_steps == 1  # the floor follows the target down


def test_the_server_refuses_a_line_it_cannot_keep_in_real_time():
    """Admission: with the characters' cost at min_steps measured above real time, a say gets a busy error that
    names the capacity, and nothing is queued; set_steps sets the floor; stats report margins and steps."""
    from mfruntime.runtime.client import Client, ServerError
    from mfruntime.runtime.server import ServeConfig, Server

    with Server(ServeConfig(bind="tcp://127.0.0.1:*", device="cpu", backend="eager", threads=1, min_steps=1)) as srv, \
            Client(srv.control_address, timeout=30) as c:
        assert c.request("set_steps", character="default", steps=4, min_steps=2)["min_steps"] == 2
        u = c.request("say", character="default", text="Hello.")["utterance"]
        deadline = 60
        import time
        t0 = time.monotonic()
        while c.request("state", character="default")["speaking"] and time.monotonic() - t0 < deadline:
            time.sleep(0.05)
        st = c.request("stats", character="default")["characters"]["default"]
        assert st["chunks_sent"] >= 1 and st["min_steps"] == 2 and st["steps_now"] in (2, 4)
        assert sum(st["steps_used"].values()) == st["chunks"] and st["margin_ms"] is not None
        srv.scheduler.cost.seconds = {1: 0.5, 2: 0.6, 4: 0.8}  # as if a chunk took longer than its 160 ms
        u = c.request("say", character="default", text="Alone, a line is always taken.")["utterance"]
        c.request("set_character", character="other", face_seed=2)
        c.request("idle", character="other", on=True)  # listening with the model drawing its face: generating
        t0 = time.monotonic()
        while not c.request("state", character="other")["idling"] and time.monotonic() - t0 < deadline:
            time.sleep(0.02)
        srv.scheduler.cost.seconds = {1: 0.5, 2: 0.6, 4: 0.8}
        with pytest.raises(ServerError, match=r"busy: .* 2 characters .* capacity is about 0 at once"):
            c.request("say", character="default", text="Too much.")
        assert c.request("state", character="default")["utterance"] == u  # nothing was taken
        c.request("idle", character="other", on=False)


def test_a_line_joining_a_loaded_server_starts_at_the_steps_that_fit():
    """The first chunk has no deadline yet; with 3 characters generating, 4 steps (3 × 0.12 s) and 2 steps
    (3 × 0.07 s) do not fit in a 0.16-s chunk, 1 step (3 × 0.045 s) does; never below the floor."""
    cost = CostModel({4: 0.12, 2: 0.07, 1: 0.045})
    assert Pacing(0.16).choose(0, 4, 1, cost, now=0.0, rows=1) == 4
    assert Pacing(0.16).choose(0, 4, 1, cost, now=0.0, rows=3) == 1
    assert Pacing(0.16).choose(0, 4, 2, cost, now=0.0, rows=3) == 2
    assert Pacing(0.16).choose(0, 4, 1, CostModel(), now=0.0, rows=3) == 4  # nothing measured yet: the target
