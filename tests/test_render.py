"""The procedural face: determinism, sizes, and a mouth that follows the visemes."""
from __future__ import annotations

import numpy as np
import pytest

from mfruntime.data.animation import animate, blink_curve
from mfruntime.data.render import FaceRenderer, FaceState, Identity
from mfruntime.data.speech import Phoneme, Voice, synthesize
from mfruntime.data.visemes import mouth_track, visemes_for


def _mouth_change(renderer: FaceRenderer, state: FaceState) -> float:
    """Pixels that differ clearly from the closed-mouth frame: the open mouth, measured from pixels."""
    closed = renderer.render(FaceState(open=0.0)).astype(np.float32)
    img = renderer.render(state).astype(np.float32)
    return float((np.abs(img - closed).max(axis=-1) > 40).sum())


def test_identity_and_frames_are_deterministic():
    a, b = Identity.from_seed(123), Identity.from_seed(123)
    assert a == b and Identity.from_seed(124) != a
    state = FaceState(open=0.4, spread=0.2, blink=0.3, dx=0.02, dy=-0.01, angle=0.03)
    assert np.array_equal(FaceRenderer(a, 64).render(state), FaceRenderer(b, 64).render(state))
    assert not np.array_equal(FaceRenderer(a, 64).render(state), FaceRenderer(Identity.from_seed(124), 64).render(state))


@pytest.mark.parametrize("size", [64, 128, 256])
def test_sizes(size):
    frame = FaceRenderer(Identity.from_seed(1), size).render(FaceState())
    assert frame.shape == (size, size, 3) and frame.dtype == np.uint8
    assert frame.std() > 20  # a face, not a flat colour


def test_bad_size():
    with pytest.raises(ValueError, match="frame size"):
        FaceRenderer(Identity.from_seed(1), 100)


@pytest.mark.parametrize("seed", [0, 5, 11])
def test_rendered_mouth_grows_with_opening(seed):
    renderer = FaceRenderer(Identity.from_seed(seed), 128)
    changed = [_mouth_change(renderer, FaceState(open=o)) for o in (0.0, 0.3, 0.6, 1.0)]
    assert changed[0] == 0 and changed == sorted(changed) and changed[-1] > 100


def test_viseme_table():
    assert visemes_for("m") == ("PP",) and visemes_for("A:") == ("AA",)
    assert visemes_for("aI") == ("AA", "IH")  # diphthongs have two halves
    assert visemes_for("zz9") == ("SS",)  # unknown symbols fall back by their first letter


def test_mouth_track_follows_visemes():
    """m-a-m-a: closed on each /m/, open on each /a/, with smooth transitions between."""
    seq = ["_", "m", "A:", "m", "A:", "_"]
    phonemes = [Phoneme(s, 0.2 * i, 0.2 * (i + 1)) for i, s in enumerate(seq)]
    centres = np.array([0.1 + 0.2 * i for i in range(len(seq))])
    track = mouth_track(phonemes, centres)
    opening = dict(zip(range(len(seq)), track.open))
    assert opening[1] < 0.1 and opening[3] < 0.1  # lips closed for /m/
    assert opening[2] > 0.6 and opening[4] > 0.6  # jaw open for /A:/
    fine = mouth_track(phonemes, np.linspace(0, 1.2, 241)).open
    assert np.abs(np.diff(fine)).max() < 0.1  # coarticulated, no jumps


def test_ground_truth_follows_real_speech():
    """On eSpeak speech, the mouth is open while speaking and closed in the pauses."""
    speech = synthesize("Hello there. Look at the moon. Good morning.", Voice("en-us+m2", rate=150))
    times = np.arange(int(speech.duration * 25)) / 25
    opening = mouth_track(speech.phonemes, times).open
    def phoneme_at(t):
        return next(p for p in speech.phonemes if p.start <= t < p.end)
    in_pause = [o for t, o in zip(times, opening) if phoneme_at(t).symbol == "_" and phoneme_at(t).end - phoneme_at(t).start > 0.2]
    in_vowel = [o for t, o in zip(times, opening) if visemes_for(phoneme_at(t).symbol)[0] in ("AA", "OH", "EH", "AH")]
    assert in_pause and in_vowel
    assert np.mean(in_vowel) > 0.4 > 0.15 > np.mean(in_pause)


def test_animation_blinks_and_moves():
    rng = np.random.default_rng(3)
    phonemes = [Phoneme("_", 0.0, 10.0)]
    states, track = animate(phonemes, 250, 25, rng)
    blinks = np.array([s.blink for s in states])
    assert blinks.max() > 0.9 and (blinks > 0.5).mean() < 0.1  # blinks happen, briefly
    dx = np.array([s.dx for s in states])
    assert dx.std() > 0.002 and np.abs(dx).max() < 0.05  # small head motion
    assert np.allclose(track.open, 0.0)  # silence: mouth closed
    assert blink_curve(np.arange(0), rng).shape == (0,)
