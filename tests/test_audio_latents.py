"""The harmonic (source-filter) audio codec and frame-aligned phoneme conditioning."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mfruntime.config import AudioCodecConfig
from mfruntime.data.speech import Phoneme
from mfruntime.model.codec_harmonic import HarmonicCodec
from mfruntime.model.phonemes import PAD, PhonemeTrack, align, symbol_id

SR, HOP = 16_000, 320


def tone(f0: float, seconds: float = 1.0, harmonics: int = 10) -> torch.Tensor:
    n = torch.arange(int(seconds * SR), dtype=torch.float64)
    x = sum(math.pow(0.7, h) * torch.sin(2 * math.pi * f0 * (h + 1) * n / SR) for h in range(harmonics))
    return (0.3 * x / x.abs().max()).float()


@pytest.fixture(scope="module")
def codec() -> HarmonicCodec:
    return HarmonicCodec(AudioCodecConfig()).freeze()


def test_analysis_finds_pitch_and_periodicity(codec):
    for f0 in (90.0, 160.0, 310.0):
        p = codec.analyse(tone(f0)[None])[0]  # (50, 66): log f0, periodicity, envelope
        assert p.shape == (50, 66)
        mid = p[5:-5]
        assert torch.allclose(torch.exp(mid[:, 0]), torch.full((len(mid),), f0), rtol=0.01), f0
        assert mid[:, 1].min() > 0.9  # strongly periodic
    noise = torch.randn(1, SR, generator=torch.Generator().manual_seed(0)) * 0.1
    assert codec.analyse(noise)[0, 5:-5, 1].mean() < 0.5  # white noise is not periodic


def test_synthesis_puts_energy_at_the_analysed_harmonics(codec):
    x = tone(200.0)
    y = codec.decode(codec.encode(x[None]))[0]
    spec = torch.fft.rfft(y[4000:12000] * torch.hann_window(8000)).abs()  # 2 Hz bins
    peak = int(spec[100:].argmax()) + 100
    assert abs(peak * SR / 8000 - 200.0) < 4  # the strongest component is the fundamental
    ratio = float(y[4000:12000].pow(2).mean() / x[4000:12000].pow(2).mean())
    assert 0.5 < ratio < 2.0  # the level survives the round trip


def test_streaming_decode_equals_full_decode_at_any_chunking(codec):
    g = torch.Generator().manual_seed(3)
    x = torch.cat([tone(140.0, 0.6), torch.randn(int(0.4 * SR), generator=g) * 0.05])[None]
    z = codec.encode(x)
    full = codec.decode(z)
    for sizes in ([8] * 7, [3, 5, 1, 13, 28], [50]):
        state, parts, i = codec.new_decode_state(), [], 0
        for n in sizes:
            parts.append(codec.decode_stream(z[:, i:i + n], state))
            i += n
        assert torch.allclose(torch.cat(parts, 1), full, atol=1e-5), sizes
    copy_state = codec.new_decode_state()
    codec.decode_stream(z[:, :8], copy_state)
    snap = copy_state.copy()
    a = codec.decode_stream(z[:, 8:16], copy_state)
    assert torch.equal(a, codec.decode_stream(z[:, 8:16], snap))  # a copied state replays identically
    assert torch.equal(codec.decode(z), full)  # deterministic (seeded noise)


def test_rows_of_separate_streams_decode_together_as_each_alone(codec):
    """decode_stream_rows (a batch of characters): each row the PCM its own stream would give, chunk after chunk,
    rows starting at different times and with different pitch."""
    g = torch.Generator().manual_seed(5)
    a = codec.encode(tone(110.0, 0.8)[None])  # (1, 40, C)
    b = codec.encode(torch.cat([tone(290.0, 0.5), torch.randn(int(0.3 * SR), generator=g) * 0.05])[None])
    alone = [codec.new_decode_state(), codec.new_decode_state()]
    rows = [codec.new_decode_state(), codec.new_decode_state()]
    codec.decode_stream(b[:, :8], alone[1])  # b is one chunk ahead, in both
    codec.decode_stream(b[:, :8], rows[1])
    for i in range(0, 32, 8):
        za, zb = a[:, i:i + 8], b[:, i + 8:i + 16]
        ref = [codec.decode_stream(za, alone[0])[0], codec.decode_stream(zb, alone[1])[0]]
        got = codec.decode_stream_rows([za, zb], rows)
        for r, o in zip(ref, got):
            assert o.shape == r.shape and torch.allclose(o, r, atol=1e-6)
    with pytest.raises(ValueError, match="one state per row"):
        codec.decode_stream_rows([a[:, :8]], rows)


def test_harmonic_codec_bad_input(codec):
    with pytest.raises(ValueError, match="multiple of the hop"):
        codec.encode(torch.zeros(1, 1000))
    with pytest.raises(ValueError, match="float tensor"):
        codec.encode(torch.zeros(1, 640, dtype=torch.int16))
    with pytest.raises(ValueError, match=r"audio latents must be \(B, N, 66\)"):
        codec.decode(torch.zeros(1, 8, 5))
    with pytest.raises(ValueError, match="latent_channels >= 10"):
        AudioCodecConfig(latent_channels=6)
    with pytest.raises(ValueError, match="kind must be one of"):
        AudioCodecConfig(kind="wavenet")
    silent = codec.decode(codec.encode(torch.zeros(1, 3200)))  # silence in, (near) silence out, no NaN
    assert torch.isfinite(silent).all() and silent.abs().max() < 1e-3


def test_aligned_phonemes_name_the_sounding_phoneme_and_its_neighbours():
    phs = [Phoneme("_", 0.0, 0.1), Phoneme("h", 0.1, 0.15, True), Phoneme("@", 0.15, 0.3), Phoneme("l", 0.3, 0.4)]
    track = PhonemeTrack.from_phonemes(phs)
    window = track.window(0.0, 0.16, margin=0.32, max_tokens=8)
    times = torch.tensor([[0.05, 0.12, 0.225, 0.39, 0.45]], dtype=torch.float64)  # one chunk, 5 instants
    w = type(window)(*(x[None] for x in (window.ids, window.stressed, window.start, window.end, window.mask)))
    a = align(w, times)
    sid = [symbol_id(s) for s in ("_", "h", "@", "l")]
    assert a.current[0, 0].tolist() == [sid[0], sid[1], sid[2], sid[3], PAD]  # 0.45 s: after the last phoneme
    assert a.previous[0, 0].tolist() == [PAD, sid[0], sid[1], sid[2], PAD]
    assert a.following[0, 0].tolist() == [sid[1], sid[2], sid[3], PAD, PAD]
    assert a.stressed[0, 0].tolist() == [0, 1, 0, 0, 0]
    frac = a.position[0, 0, :, 0]
    assert torch.allclose(frac[:4], torch.tensor([0.5, 0.4, 0.5, 0.9]), atol=1e-5)
    assert np.allclose(a.position[0, 0, 4].numpy(), 0)


def test_latent_statistics_emphasise_pitch():
    """After set_statistics the envelope bands have unit variance and log f0 / periodicity pitch_emphasis."""
    codec = HarmonicCodec(AudioCodecConfig(pitch_emphasis=3.0))
    g = torch.Generator().manual_seed(1)
    clips = [tone(f0, 0.5) * float(a) for f0, a in zip((100.0, 140.0, 220.0, 300.0), torch.rand(4, generator=g) + 0.5)]
    x = torch.cat(clips + [torch.randn(8000, generator=g) * 0.05])[None]
    codec.set_statistics(codec.analyse(x)[0])
    z = codec.encode(x)[0]
    std = z.std(dim=0)
    assert torch.allclose(std[:2], torch.full((2,), 3.0), rtol=1e-3)
    assert torch.allclose(std[2:], torch.ones(64), rtol=1e-3)
    assert torch.allclose(codec.decode(z[None])[0], codec.decode(codec.encode(x))[0])
