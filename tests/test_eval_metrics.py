"""Evaluation building blocks: the AV offset estimator, Fréchet distance, PSNR/SSIM, PESQ/STOI."""
import json

import numpy as np
import pytest

from mfruntime.data.media import read_clip
from mfruntime.eval.metrics import frechet_distance, psnr, speech_quality, ssim
from mfruntime.eval.offset import estimate_offset, shift_audio


def _truth_clips(corpus):
    out = []
    for side in sorted(corpus.glob("clip_*.json")):
        truth = json.loads(side.read_text())
        clip = read_clip(side.with_suffix(".mp4"), 64, 25, 16_000)
        out.append((np.asarray(truth["mouth_open"], np.float32), clip.audio))
    return out


def test_offset_estimator_recovers_known_shifts(tiny_corpus):
    """Ground-truth mouth track vs the clip's own audio delayed/advanced by known amounts: the measured
    offset moves by the shift (within 10 ms) relative to the unshifted clip."""
    for mouth, audio in _truth_clips(tiny_corpus[0]):
        base = estimate_offset(mouth, 25, audio, 16_000, max_ms=300)
        assert base.confidence > 0.1 and abs(base.offset_ms) < 150
        for shift in (-120, -40, 40, 120):
            got = estimate_offset(mouth, 25, shift_audio(audio, 16_000, shift), 16_000, max_ms=300)
            assert abs((got.offset_ms - base.offset_ms) - shift) <= 10, (shift, got.offset_ms, base.offset_ms)


def test_offset_estimator_rejects_bad_input():
    with pytest.raises(ValueError, match="too short"):
        estimate_offset(np.zeros(10), 25, np.zeros(6400, np.float32), 16_000)
    with pytest.raises(ValueError, match="finite"):
        estimate_offset(np.full(100, np.nan), 25, np.zeros(64000, np.float32), 16_000)


def test_frechet_distance_of_a_set_with_itself_is_zero_and_grows_with_noise():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((500, 16)) @ rng.standard_normal((16, 16))
    assert frechet_distance(a, a) < 1e-6
    fds = [frechet_distance(a, a + s * rng.standard_normal(a.shape)) for s in (0.1, 0.5, 1.0, 2.0)]
    assert all(x < y for x, y in zip(fds, fds[1:])), fds
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        frechet_distance(a, a[:, :8])


def test_psnr_ssim_identity_and_noise():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    noisy = np.clip(x.astype(int) + rng.integers(-20, 21, x.shape), 0, 255).astype(np.uint8)
    assert psnr(x, x) > 100 and ssim(x, x) == pytest.approx(1.0)
    assert psnr(x, noisy) < 40 and ssim(x, noisy) < 0.99


def test_pesq_of_speech_with_itself_is_maximal_and_drops_with_noise(tiny_corpus):
    audio = read_clip(sorted(tiny_corpus[0].glob("clip_*.mp4"))[0], 64, 25, 16_000).audio
    rng = np.random.default_rng(2)
    best, stoi_best = speech_quality(audio, audio)
    assert best > 4.5 and stoi_best > 0.99
    scores = []
    for snr_db in (40, 20, 5):
        noise = rng.standard_normal(len(audio)).astype(np.float32)
        noise *= np.sqrt(np.mean(audio**2) / np.mean(noise**2)) / 10 ** (snr_db / 20)
        scores.append(speech_quality(audio, audio + noise)[0])
    assert best > scores[0] > scores[1] > scores[2], (best, scores)
    with pytest.raises(ValueError, match="16 kHz"):
        speech_quality(audio, audio, 8000)


def test_instrument_weights_round_trip_and_clear_errors(tmp_path):
    import torch

    from mfruntime.errors import UserFacingError
    from mfruntime.eval.probe import FaceProbe
    from mfruntime.eval.syncnet import SyncNet
    from mfruntime.eval.weights import load_probe, load_syncnet, save_instruments

    torch.manual_seed(0)
    probe = FaceProbe()
    path = save_instruments({"probe": probe}, tmp_path / "eval.safetensors")
    back = load_probe(path)
    frames = np.random.default_rng(0).integers(0, 256, (3, 96, 96, 3), dtype=np.uint8)  # any square size
    m1, f1 = probe.eval().measure(frames)
    m2, f2 = back.measure(frames)
    assert m1.shape == (3,) and f1.shape == (3, 128) and np.allclose(f1, f2, atol=1e-2)  # stored as float16
    with pytest.raises(UserFacingError, match="no syncnet weights"):
        load_syncnet(path)
    save_instruments({"probe": probe, "syncnet": SyncNet()}, path)
    assert isinstance(load_syncnet(path), SyncNet)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(UserFacingError, match="corrupt or truncated"):
        load_probe(bad)
    with pytest.raises(UserFacingError, match="not found"):
        load_probe(tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="square uint8"):
        probe.measure(np.zeros((2, 64, 48, 3), np.uint8))


def test_syncnet_scores_have_the_documented_shape(tiny_corpus):
    import torch

    from mfruntime.eval.syncnet import MAX_OFFSET, SyncNet, sync_score

    torch.manual_seed(0)
    clip = read_clip(sorted(tiny_corpus[0].glob("clip_*.mp4"))[0], 64, 25, 16_000)
    s = sync_score(SyncNet(), clip.video, clip.audio)
    assert s.distances.shape == (2 * MAX_OFFSET + 1,) and s.lse_d == s.distances.min()
    assert s.lse_c >= 0 and -MAX_OFFSET <= s.offset_frames <= MAX_OFFSET and s.offset_ms == s.offset_frames * 40
    with pytest.raises(ValueError, match="at least 36 frames"):
        sync_score(SyncNet(), clip.video[:20], clip.audio[:20 * 640])
