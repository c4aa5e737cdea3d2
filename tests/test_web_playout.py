"""The web playout (runtime/web/playout.py): chunks on one sample clock for the WebRTC tracks."""
from __future__ import annotations

import numpy as np

from mfruntime.runtime.web.playout import Playout

N = 2560  # samples per chunk (160 ms at 16 kHz)
SPF = 640  # samples per frame (25 fps)


def _chunk(value: float, frames: int = 4) -> tuple[np.ndarray, np.ndarray]:
    pcm = np.full(N, value, np.float32)
    fr = np.stack([np.full((2, 2, 3), int(value * 100) + i, np.uint8) for i in range(frames)])
    return pcm, fr


def _play(p: Playout, samples: int) -> np.ndarray:
    return np.concatenate([p.audio(320) for _ in range(samples // 320)])


def test_a_line_plays_after_the_prebuffer_with_its_frames_on_the_same_clock():
    p = Playout()
    assert p.prebuffer == 1280
    for seq, v in enumerate((0.1, 0.2, 0.3)):
        pcm, fr = _chunk(v)
        p.push(1, seq, pcm, fr, eou=seq == 2, interrupted=False)
    out = _play(p, 1280 + 3 * N + 640)
    assert not out[:1280].any()
    np.testing.assert_allclose(out[1280:1280 + 3 * N], np.repeat([0.1, 0.2, 0.3], N).astype(np.float32))
    assert not out[1280 + 3 * N:].any()
    assert p.frame(1280 + N + 2 * SPF)[0, 0, 0] == 20 + 2  # chunk 1, frame 2
    assert p.frame(1280 - 1)[0, 0, 0] == 22  # never backwards: the newest due frame stays
    ev = p.events()
    assert ev == [{"event": "started", "utterance": 1}, {"event": "ended", "utterance": 1, "interrupted": False}]
    assert p.stats.underruns == 0 and p.stats.chunks == 3


def test_a_late_chunk_is_a_gap_not_a_shift_of_what_follows():
    p = Playout()
    p.push(1, 0, *_chunk(0.1), eou=False, interrupted=False)
    _play(p, 1280 + N + 960)  # chunk 1 should have started 960 samples ago
    p.push(1, 1, *_chunk(0.2), eou=True, interrupted=False)
    assert p.stats.underruns == 1
    out = _play(p, N)
    np.testing.assert_allclose(out, 0.2)  # placed at the play position


def test_a_newer_line_supersedes_what_is_buffered_and_cut_silences_at_once():
    p = Playout()
    p.push(1, 0, *_chunk(0.1), eou=False, interrupted=False)
    p.push(1, 1, *_chunk(0.1), eou=False, interrupted=False)
    _play(p, 1280 + 640)
    p.push(2, 0, *_chunk(0.5), eou=False, interrupted=False)  # superseded: line 1 stops now
    out = _play(p, 1280)
    assert not out.any()  # line 2 waits for its prebuffer
    np.testing.assert_allclose(_play(p, 640), 0.5)
    p.cut()
    assert not _play(p, N).any()
    p.push(2, 1, *_chunk(0.7), eou=True, interrupted=False)  # a chunk of the cut line: ignored
    assert not _play(p, N).any()
    ended = [e for e in p.events() if e["event"] == "ended"]
    assert [(e["utterance"], e["interrupted"]) for e in ended] == [(1, True), (2, True)]


def test_rig_frames_are_due_with_the_frames_of_their_chunk_and_dropped_with_them():
    p = Playout()
    rig = np.arange(8, dtype=np.float32).reshape(4, 2)  # 4 frames × 2 controls
    p.push(1, 0, *_chunk(0.1), eou=False, interrupted=False, rig=rig)
    p.push(1, 1, *_chunk(0.2), eou=False, interrupted=False, rig=rig + 10)
    assert p.rig_due(1279) == []  # nothing before the prebuffer ends
    due = p.rig_due(1280 + SPF)
    assert [pos for pos, _ in due] == [1280, 1280 + SPF] and np.array_equal(due[1][1], rig[1])
    assert p.rig_due(1280 + SPF) == []  # each once
    _play(p, 1280 + N + SPF)
    p.cut()  # what was not due yet is gone
    rest = p.rig_due(10 * N)
    assert [pos for pos, _ in rest] == [1280 + 2 * SPF, 1280 + 3 * SPF, 1280 + N, 1280 + N + SPF]
    assert rest[-1][1][0] == 12.0


def test_small_frames_travel_enlarged_in_blocks_and_portraits_as_they_are():
    from mfruntime.runtime.web.tracks import upscaled

    face = np.arange(64 * 64 * 3, dtype=np.uint8).reshape(64, 64, 3)
    big = upscaled(face, 4)
    assert big.shape == (256, 256, 3) and np.array_equal(big[::4, ::4], face) and np.array_equal(big[3::4, 3::4], face)
    assert upscaled(face, 1).shape == (64, 64, 3)
    assert upscaled(np.zeros((100, 80, 3), np.uint8), 4).shape == (200, 160, 3)  # up to a 256-px long side
    assert upscaled(np.zeros((256, 384, 3), np.uint8), 4).shape == (256, 384, 3)  # a portrait goes as it is
