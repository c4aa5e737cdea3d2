"""eSpeak NG speech: real waveforms and phoneme timings."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from mfruntime.data.speech import MAX_TEXT_CHARS, Voice, list_voices, synthesize


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if len(x) else 0.0


def test_waveform_and_phoneme_times():
    speech = synthesize("Hello there. How are you today?", Voice("en-us+f2", pitch=60, rate=170))
    assert speech.sample_rate == 16_000
    assert speech.pcm.dtype == np.float32 and speech.pcm.ndim == 1
    assert 1.0 < speech.duration < 4.0
    assert np.abs(speech.pcm).max() > 0.05  # real sound, not silence
    starts = [p.start for p in speech.phonemes]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)  # strictly increasing
    assert speech.phonemes[0].start == 0.0
    assert abs(speech.phonemes[-1].end - speech.duration) < 1e-9
    for a, b in zip(speech.phonemes, speech.phonemes[1:]):
        assert a.end == b.start  # contiguous, covering the waveform
    for p in speech.phonemes:
        assert 0.0 <= p.start < p.end <= speech.duration
    spoken = [p.symbol for p in speech.phonemes if p.symbol != "_"]
    assert len(spoken) >= 15


def test_phoneme_times_match_the_audio():
    """Pauses between sentences are quiet; vowels are loud, at the times eSpeak reports."""
    speech = synthesize("Mama. Papa. Banana.", Voice("en-gb-x-rp+m3", rate=140))
    sr = speech.sample_rate

    def seg(p):
        return speech.pcm[int(p.start * sr): int(p.end * sr)]

    pauses = [p for p in speech.phonemes[1:-1] if p.symbol == "_" and p.end - p.start > 0.05]
    vowels = [p for p in speech.phonemes if p.symbol in ("A:", "a", "@", "a#")]
    assert pauses and vowels
    pause_rms = max(_rms(seg(p)) for p in pauses)
    vowel_rms = np.median([_rms(seg(p)) for p in vowels])
    assert vowel_rms > 10 * pause_rms


@pytest.mark.parametrize("voice", ["en-us+m1", "en+f4", "en-gb-scotland+m7", "en-029+f1", "en-us-nyc+m4"])
def test_many_voices(voice):
    speech = synthesize("The quick brown fox.", Voice(voice))
    assert speech.duration > 0.5 and speech.voice.name == voice


def test_rate_and_pitch_change_the_speech():
    slow = synthesize("Please bring the golden lamp to the table.", Voice("en-us+m3", rate=120))
    fast = synthesize("Please bring the golden lamp to the table.", Voice("en-us+m3", rate=260))
    assert fast.duration < 0.75 * slow.duration
    low = synthesize("Hello.", Voice("en-us+m3", pitch=10))
    high = synthesize("Hello.", Voice("en-us+m3", pitch=90))
    assert not np.array_equal(low.pcm[: min(len(low.pcm), len(high.pcm))], high.pcm[: min(len(low.pcm), len(high.pcm))])
    assert len(list_voices()) >= 50


_HASH_SCRIPT = """
import hashlib
from mfruntime.data.speech import Voice, synthesize
s = synthesize("Same words twice.", Voice("en+f3", pitch=40, rate=180))
print(hashlib.sha256(s.pcm.tobytes()).hexdigest(), [(p.symbol, p.start) for p in s.phonemes])
"""


def test_deterministic():
    """Exactly reproducible in a fresh process; within one process only eSpeak's flutter phase moves (a few ms)."""
    a = synthesize("Same words twice.", Voice("en+f3", pitch=40, rate=180))
    b = synthesize("Same words twice.", Voice("en+f3", pitch=40, rate=180))
    assert [p.symbol for p in a.phonemes] == [p.symbol for p in b.phonemes]
    assert max(abs(p.start - q.start) for p, q in zip(a.phonemes, b.phonemes)) < 0.005
    runs = [subprocess.run([sys.executable, "-c", _HASH_SCRIPT], capture_output=True, text=True, check=True).stdout
            for _ in range(2)]
    assert runs[0] == runs[1] and len(runs[0]) > 64


@pytest.mark.parametrize("text", ["", "   ", "x" * (MAX_TEXT_CHARS + 1)])
def test_bad_text(text):
    with pytest.raises(ValueError, match="text"):
        synthesize(text)


def test_bad_voice():
    with pytest.raises(ValueError, match="unknown eSpeak voice"):
        synthesize("hello", Voice("xx-nowhere+m9"))
    with pytest.raises(ValueError, match="rate"):
        Voice("en-us+m1", rate=20)
    with pytest.raises(ValueError, match="pitch"):
        Voice("en-us+m1", pitch=150)


def test_synthesis_keeps_no_memory_per_audio_chunk_length():
    """The audio callback copies each block without making a ctypes array type per block length (such types
    are cached forever: about 5.6 KB each, the slow memory creep of long streams before this was fixed)."""
    import tracemalloc

    texts = [f"Line number {i}, said a little {'longer ' * (i % 7)}each time." for i in range(24)]
    synthesize(texts[0])  # load eSpeak first
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for text in texts:
            synthesize(text)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    kept = [s for s in after.compare_to(before, "filename")
            if "ctypeslib" in s.traceback[0].filename or "ctypes/__init__" in s.traceback[0].filename]
    assert sum(s.size_diff for s in kept if s.size_diff > 0) < 4096, kept
