"""Chunk-by-chunk generation: chunk shapes, determinism, snapshot/restore, audio-driven mode, bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mfruntime.data.render import FaceRenderer, FaceState, Identity
from mfruntime.engine.generator import GenerationOptions, Generator
from mfruntime.model.av import AVModel
from tests.model_helpers import micro_config, randomize, sample_phonemes


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = AVModel(micro_config()).eval()
    randomize(m, std=0.05)
    return m


@pytest.fixture(scope="module")
def face():
    return FaceRenderer(Identity.from_seed(3), 64).render(FaceState())


def _run(gen, n, **kw):
    return list(gen.generate(sample_phonemes(), n_chunks=n, **kw))


def test_chunks_have_the_right_shapes(model, face):
    chunks = list(Generator(model, face, options=GenerationOptions(steps=2)).generate(sample_phonemes()))
    assert len(chunks) == 7  # 15 phonemes × 70 ms = 1.05 s → 7 chunks of 160 ms
    for i, c in enumerate(chunks):
        assert c.index == i and c.pts == pytest.approx(0.16 * i)
        assert c.frames.shape == (4, 64, 64, 3) and c.frames.dtype == np.uint8
        assert c.pcm.shape == (2560,) and c.pcm.dtype == np.float32
        assert c.latents["video"].shape == (1, 1, 4, 4, 8, 8)


def test_same_seed_same_output_and_snapshot_replay(model, face):
    a = _run(Generator(model, face, options=GenerationOptions(steps=2, seed=5)), 4)
    b = _run(Generator(model, face, options=GenerationOptions(steps=2, seed=5)), 4)
    c = _run(Generator(model, face, options=GenerationOptions(steps=2, seed=6)), 4)
    assert all(np.array_equal(x.pcm, y.pcm) and np.array_equal(x.frames, y.frames) for x, y in zip(a, b))
    assert not np.array_equal(a[-1].pcm, c[-1].pcm)

    gen = Generator(model, face, options=GenerationOptions(steps=2, seed=1))
    _run(gen, 3)
    snap = gen.snapshot()
    first = _run(gen, 4)
    gen.restore(snap)
    again = _run(gen, 4)
    for x, y in zip(first, again):
        assert x.index == y.index
        assert np.array_equal(x.frames, y.frames) and np.array_equal(x.pcm, y.pcm)


def test_audio_driven_mode_keeps_the_given_speech(model, face):
    pcm = (0.2 * np.sin(np.arange(16_000) * 0.05)).astype(np.float32)
    gen = Generator(model, face, options=GenerationOptions(steps=2))
    chunks = list(gen.generate(None, driving_pcm=pcm))
    assert len(chunks) == 7  # 1 s → 6.25 chunks → 7
    got = np.concatenate([c.pcm for c in chunks])
    # The chunks carry the given speech itself (zero-padded to whole chunks), not a re-synthesis of it.
    assert np.array_equal(got, np.pad(pcm, (0, 7 * 2560 - 16_000)))


def test_bad_generation_input(model, face):
    with pytest.raises(ValueError, match=r"reference image must be 64×64×3 uint8"):
        Generator(model, face[:32, :32])
    with pytest.raises(ValueError, match=r"reference image must be 64×64×3 uint8"):
        Generator(model, np.zeros((64, 64, 4), np.uint8))
    with pytest.raises(ValueError, match=r"reference image must be 64×64×3 uint8"):
        Generator(model, face.astype(np.float32))
    gen = Generator(model, face)
    with pytest.raises(ValueError, match="phoneme list is empty"):
        list(gen.generate([]))
    with pytest.raises(ValueError, match="pass phonemes"):
        list(gen.generate(None))
    with pytest.raises(ValueError, match="steps must be"):
        list(gen.generate(sample_phonemes(), steps=0))
    with pytest.raises(ValueError, match="driving audio must be mono"):
        list(gen.generate(None, driving_pcm=np.zeros((2, 100), np.float32)))


def test_speaker_reference_changes_the_audio_sink(model, face):
    ref = (0.1 * np.sin(np.arange(4000) * 0.03)).astype(np.float32)
    with_ref = _run(Generator(model, face, audio_reference=ref, options=GenerationOptions(steps=1, seed=2)), 2)
    without = _run(Generator(model, face, options=GenerationOptions(steps=1, seed=2)), 2)
    assert not np.array_equal(with_ref[0].pcm, without[0].pcm)
    with pytest.raises(ValueError, match="audio reference must hold at least"):
        Generator(model, face, audio_reference=ref[:100])


def test_temperature_scales_the_starting_noise(model, face):
    """At temperature 0 the sampler starts from zeros: the seed no longer matters; out of range is an error."""
    cold = [GenerationOptions(steps=2, seed=s, audio_temperature=0.0, video_temperature=0.0) for s in (1, 2)]
    a, b = (_run(Generator(model, face, options=o), 2) for o in cold)
    assert all(np.array_equal(x.frames, y.frames) and np.array_equal(x.pcm, y.pcm) for x, y in zip(a, b))
    warm = [GenerationOptions(steps=2, seed=s, audio_temperature=1.0) for s in (1, 2)]
    c, d = (_run(Generator(model, face, options=o), 2) for o in warm)
    assert not np.array_equal(c[1].pcm, d[1].pcm)
    with pytest.raises(ValueError, match="audio_temperature must be between 0 and 2"):
        GenerationOptions(audio_temperature=-0.1)


def test_the_utterance_contract_decides_chunks_and_padding_once():
    """One plan per utterance: chunks cover the speech's length (eSpeak's, or the last phoneme's end), driving
    audio is zero-padded to whole chunks, and a plan is driven by phonemes or by speech, never both."""
    from mfruntime.config import MediaConfig
    from mfruntime.engine.utterance import Utterance

    media = MediaConfig()
    ph = sample_phonemes()  # 15 × 70 ms
    assert Utterance.speech(ph, media).chunks == 7  # 1.05 s
    assert Utterance.speech(ph, media, duration=1.28).chunks == 8  # eSpeak's length wins when given
    assert Utterance.speech(ph, media, duration=0.32).chunks == 2 and Utterance.speech(ph, media, chunks=3).chunks == 3
    pcm = np.full(3000, 0.5, np.float32)
    utt = Utterance.drive(pcm, media)
    assert utt.chunks == 2 and utt.driving.shape == (5120,) and np.array_equal(utt.driving[:3000], pcm)
    assert not utt.driving[3000:].any() and np.array_equal(utt.driving_chunk(1, media)[:440], pcm[2560:])
    with pytest.raises(ValueError, match="exactly one"):
        Utterance(2, tuple(ph), utt.driving)
    with pytest.raises(ValueError, match="at least one chunk"):
        Utterance.speech(ph, media, chunks=0)
    with pytest.raises(ValueError, match="mono float32"):
        Utterance.drive(pcm.astype(np.float64), media)


def test_generated_speech_is_clipped_by_the_generator(model, face, monkeypatch):
    """The [-1, 1] PCM contract is the generator's: every caller (Session, server, mf eval) gets clipped audio."""
    codec = model.audio_codec
    loud = lambda latents, state: 3 * type(codec).decode_stream(codec, latents, state)  # noqa: E731
    monkeypatch.setattr(codec, "decode_stream", loud)
    chunks = _run(Generator(model, face, options=GenerationOptions(steps=1)), 2)
    assert max(float(np.abs(c.pcm).max()) for c in chunks) <= 1.0
    assert any(float(np.abs(c.pcm).max()) == 1.0 for c in chunks)


def test_level_normalisation_is_causal_and_independent_of_recording_level():
    """Driving speech at 0 dB and −12 dB is normalised to the same signal, chunk by chunk: streaming equals the
    whole call, and no chunk depends on audio after it."""
    from mfruntime.data.speech import Voice, synthesize
    from mfruntime.engine.level import TARGET_RMS, LevelNormalizer

    pcm = synthesize("Level does not matter to the face.", Voice("en-us+m3")).pcm
    spc = 2560
    blocks = [pcm[i:i + spc] for i in range(0, len(pcm) - spc + 1, spc)]

    def run(scale):
        norm = LevelNormalizer(16_000)
        return [norm.process(b * scale) for b in blocks]
    loud, quiet = run(1.0), run(10 ** (-12 / 20))
    assert all(np.allclose(a, b, atol=1e-5) for a, b in zip(loud, quiet))
    active = [b for b in loud if np.sqrt(np.mean(b ** 2)) > 0.01]
    assert 0.5 * TARGET_RMS < np.median([np.sqrt(np.mean(b ** 2)) for b in active]) < 2 * TARGET_RMS
    # Causal: changing the future leaves the past alone.
    norm = LevelNormalizer(16_000)
    changed = [norm.process(b * (0.1 if i >= 5 else 1.0)) for i, b in enumerate(blocks)]
    assert all(np.array_equal(a, b) for a, b in zip(loud[:5], changed[:5]))
    silence = LevelNormalizer(16_000).process(np.zeros(spc, np.float32))
    assert not silence.any()


def test_audio_driven_faces_do_not_depend_on_the_recording_level(model, face):
    """The same speech 12 dB quieter drives the same face; the chunks still carry the speech as given."""
    from mfruntime.data.speech import Voice, synthesize

    pcm = synthesize("Quiet or loud.", Voice("en-us+m3")).pcm
    quiet = (pcm * 10 ** (-12 / 20)).astype(np.float32)
    a = list(Generator(model, face, options=GenerationOptions(steps=1, seed=3)).generate(None, driving_pcm=pcm))
    b = list(Generator(model, face, options=GenerationOptions(steps=1, seed=3)).generate(None, driving_pcm=quiet))
    # What the model is given (the encoded driving speech) is the same, so is the face.
    for x, y in zip(a, b):
        assert torch.allclose(x.latents["audio"], y.latents["audio"], atol=1e-3)
        assert np.abs(x.frames.astype(int) - y.frames.astype(int)).max() <= 1
    assert np.array_equal(np.concatenate([c.pcm for c in b])[: quiet.size], quiet)
