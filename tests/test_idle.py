"""Idle motion (the character listening between lines): the procedural layer, Session.idle and the server op."""
import time

import numpy as np
import pytest

from mfruntime.engine.utterance import Utterance
from mfruntime.idle import EASE_SECONDS, IdleMotion
from mfruntime.rig import CONTROLS, FACE_CONTROLS, OVR_VISEMES

I = {name: i for i, name in enumerate(CONTROLS)}
VIS = slice(len(FACE_CONTROLS), len(CONTROLS))


def test_idle_frames_are_deterministic_and_independent_of_chunking():
    a, b = IdleMotion(25, seed=3), IdleMotion(25, seed=3)
    whole = a.frames(0, 40)
    pieces = np.concatenate([b.frames(k, 4) for k in range(0, 40, 4)])
    assert whole.shape == (40, len(CONTROLS)) and whole.dtype == np.float32
    assert np.array_equal(whole, pieces)
    assert not np.array_equal(whole, IdleMotion(25, seed=4).frames(0, 40))


def test_idle_pose_blinks_sways_and_keeps_the_mouth_closed():
    r = IdleMotion(25, seed=0).frames(0, 25 * 12)  # 12 s: blinks come every 2–6 s
    blink = r[:, I["eyeBlinkLeft"]]
    assert np.array_equal(blink, r[:, I["eyeBlinkRight"]]) and 0 <= blink.min() and blink.max() <= 1
    closed = blink > 0.9
    starts = np.flatnonzero(closed[1:] & ~closed[:-1])
    assert 2 <= len(starts) <= 7  # separate blinks, not one long closure
    assert (~closed).mean() > 0.9
    for name in ("headRoll", "headOffsetX", "headOffsetY"):
        assert np.ptp(r[:, I[name]]) > 0  # the head moves
    assert np.abs(r[:, I["headRoll"]]).max() <= np.deg2rad(3.0) + 1e-6
    for name in ("jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthStretchLeft", "mouthStretchRight"):
        assert np.all(r[:, I[name]] == 0)
    assert np.allclose(r[:, VIS].sum(axis=1), 1) and np.all(r[:, len(FACE_CONTROLS) + OVR_VISEMES.index("sil")] == 1)


def test_idling_eases_from_the_last_spoken_frame_without_a_jump():
    m = IdleMotion(25, seed=0)
    last = np.zeros(len(CONTROLS), np.float32)
    last[I["jawOpen"]], last[I["headOffsetX"]] = 0.8, 0.2
    last[len(FACE_CONTROLS) + OVR_VISEMES.index("aa")] = 1.0
    r = m.frames(100, 50, last, since=100)
    assert abs(r[0, I["jawOpen"]] - 0.8) < 0.1 and abs(r[0, I["headOffsetX"]] - 0.2) < 0.03
    assert np.all(np.diff(r[:, I["jawOpen"]]) <= 0)  # closes steadily
    assert r[-1, I["jawOpen"]] < 0.8 * np.exp(-(50 / 25) / EASE_SECONDS) + 1e-3
    assert np.allclose(r[:, VIS].sum(axis=1), 1)
    # the ease is tied to where idling began, so chunked calls agree with one call
    pieces = np.concatenate([m.frames(k, 5, last, since=100) for k in range(100, 150, 5)])
    assert np.allclose(pieces, r)
    with pytest.raises(ValueError, match="one rig frame"):
        m.frames(0, 4, np.zeros(3))


def test_an_idle_utterance_has_neither_phonemes_nor_speech():
    u = Utterance.silence(5)
    assert u.idle and u.chunks == 5 and u.phonemes is None and u.driving is None
    with pytest.raises(ValueError, match="exactly one"):
        Utterance(3, None, np.zeros(7680, np.float32), idle=True)
    with pytest.raises(ValueError, match="at least one chunk"):
        Utterance.silence(0)


@pytest.fixture(scope="module")
def session():
    from mfruntime import Session
    return Session(device="cpu", backend="eager", threads=2)


def test_idle_chunks_are_silent_and_carry_the_idle_rig(session):
    session.set_outputs(video=True, rig=True)
    list(session.say("Hi."))
    clock = session.clock
    chunks = list(session.reserve_idle(0.5, paced=False).chunks())
    assert len(chunks) == 4 and chunks[-1].last and all(c.idle for c in chunks)
    assert chunks[0].pts == pytest.approx(clock)
    for c in chunks:
        assert c.frames.shape == (4, 64, 64, 3) and c.frames.dtype == np.uint8
        assert c.pcm.dtype == np.float32 and len(c.pcm) == 2560 and not c.pcm.any()
        assert c.rig.shape == (4, len(CONTROLS))
    rig = np.concatenate([c.rig for c in chunks])
    assert np.allclose(rig[:, VIS].sum(axis=1), 1)
    frames = np.concatenate([c.frames for c in chunks]).astype(int)
    assert np.abs(np.diff(frames, axis=0)).max() > 0  # the model's face is drawn on, not frozen


def test_idle_without_frames_of_the_models_face_does_not_run_the_model():
    from mfruntime import Session
    s = Session(device="cpu", backend="eager", threads=2, video=False)
    chunks = list(s.reserve_idle(1.0, paced=False).chunks())
    assert s._generator is None  # rig-only: the idle layer alone
    assert all(c.frames is None and c.rig.shape == (4, len(CONTROLS)) for c in chunks) and len(chunks) == 7


def test_idle_is_paced_and_ends_on_the_next_line_or_interrupt(session):
    it = session.idle()  # until the next line
    t0 = time.perf_counter()
    first = [next(it) for _ in range(6)]
    assert time.perf_counter() - t0 >= (6 - 1 - 3) * 0.16 - 0.02  # at most 3 chunks ahead of real time
    assert [c.seq for c in first] == list(range(6)) and not first[-1].last
    line = session.say("Yes?")
    assert list(it) == []  # the idle iterator stops: the new line took over
    assert list(line)[-1].last
    it = session.idle()
    next(it)
    session.interrupt()
    rest = list(it)
    assert len(rest) == 1 and rest[0].last and rest[0].interrupted


@pytest.mark.parametrize("seconds", [0, -1, 601, True, "5", float("nan")])
def test_bad_idle_lengths_are_refused(session, seconds):
    with pytest.raises(ValueError, match="idle seconds"):
        session.idle(seconds)
