"""Latent codecs, the flow-matching sampler, rotary time positions."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mfruntime.config import preset
from mfruntime.model.codec_audio import AudioCodec, AudioDecodeState
from mfruntime.model.codec_video import VideoCodec
from mfruntime.model.rope import Rotary
from mfruntime.sampling import FlowMatching, euler_sample, shifted_schedule, uniform_schedule
from tests.model_helpers import randomize

CFG = preset("tiny")
STFT_CODEC = dataclasses.replace(CFG.audio_codec, kind="stft", latent_channels=128)  # the learned STFT codec


def test_video_codec_shapes_and_chunked_decode():
    codec = VideoCodec(CFG.video_codec).eval()
    randomize(codec, std=0.05)
    frames = np.random.default_rng(0).integers(0, 256, (2, 8, 64, 64, 3), dtype=np.uint8)
    with torch.no_grad():
        z = codec.encode(frames)
        assert z.shape == (2, 8, 8, 8, 8)  # 8× downsampling, 8 latent channels
        full = codec.decode(z)
        chunked = torch.cat([codec.decode(z[:, i:i + 4]) for i in (0, 4)], dim=1)
    assert full.shape == (2, 8, 64, 64, 3) and full.dtype == torch.uint8
    assert torch.equal(full, chunked)


def test_compressed_stft_reconstructs_exactly():
    """Sine-window analysis/synthesis at 50 % overlap is a perfect-reconstruction pair (Princen–Bradley),
    compression and decompression invert each other; only the first hop (no frame before it) fades in."""
    stft = AudioCodec(STFT_CODEC).stft
    pcm = torch.randn(2, 16_000) * 0.3
    comp = stft.analyse(pcm)
    assert comp.shape == (2, 50, 321) and comp.is_complex()
    back = stft.synthesise(comp)
    assert back.shape == pcm.shape
    assert (back[:, 320:] - pcm[:, 320:]).abs().max() < 1e-4


def test_audio_codec_shapes_causality_and_seamless_streaming():
    codec = AudioCodec(STFT_CODEC).eval()
    randomize(codec, std=0.05)
    pcm = torch.randn(2, 16_000) * 0.3
    with torch.no_grad():
        z = codec.encode(pcm)
        assert z.shape == (2, 50, 128)  # 50 Hz latents
        full = codec.decode(z)
        assert full.shape == (2, 16_000)
        state = AudioDecodeState()
        parts = [codec.decode_stream(z[:, i:i + 8], state) for i in range(0, 48, 8)]
        streamed = torch.cat(parts, dim=1)
        scale = full.abs().max().clamp_min(1.0)  # random weights: |x|^(1/p) makes large samples
        assert (streamed - full[:, :48 * 320]).abs().max() <= 1e-5 * scale  # no seams at chunk borders
        # Causal: changing the future leaves earlier latents and decoded samples untouched.
        later = pcm.clone()
        later[:, 8000:] = 0
        z2 = codec.encode(later)
        assert torch.equal(z2[:, :24], z[:, :24])
        assert torch.equal(codec.decode(z2[:, :24]), codec.decode(z[:, :24]))


def test_codec_bad_inputs_and_freeze():
    v, a = VideoCodec(CFG.video_codec), AudioCodec(STFT_CODEC)
    with pytest.raises(ValueError, match=r"\(\.\.\., 64, 64, 3\) uint8"):
        v.encode(np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        v.encode(np.zeros((2, 64, 64, 3), np.float32))
    with pytest.raises(ValueError, match="video latents"):
        v.decode(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="multiple of the hop"):
        a.encode(torch.zeros(1, 1000))
    with pytest.raises(ValueError, match="float tensor"):
        a.encode(torch.zeros(1, 640, dtype=torch.int16))
    with pytest.raises(ValueError, match="audio latents"):
        a.decode(torch.zeros(1, 8, 5))
    with pytest.raises(ValueError, match="compression must be"):
        dataclasses.replace(CFG.audio_codec, compression=0.0)
    assert not any(p.requires_grad for p in v.freeze().parameters()) and not v.training
    assert not any(p.requires_grad for p in a.freeze().parameters())


def test_schedules_are_pure_grids():
    for steps in (1, 4, 8, 50):
        for grid in (uniform_schedule(steps), shifted_schedule(steps, 3.0)):
            assert grid.shape == (steps + 1,) and grid[0] == 1.0 and grid[-1] == 0.0
            assert torch.all(grid[1:] < grid[:-1])
    assert torch.equal(uniform_schedule(4), uniform_schedule(4))  # no hidden state
    assert shifted_schedule(4, 3.0)[1] > uniform_schedule(4)[1]  # more time spent near t = 1
    with pytest.raises(ValueError):
        uniform_schedule(0)


@pytest.mark.parametrize("steps", [1, 4, 50])
def test_euler_follows_an_exact_flow(steps):
    """With the exact velocity of a point target, Euler reaches it from pure noise at any step count."""
    x0 = torch.randn(3, 5)
    noise = torch.randn(3, 5)
    driving = torch.randn(2)

    def step_fn(x, t, d, cond):
        return {"video": (x["video"] - x0) / t}  # v = (x_t − x_0)/t = ε − x_0 on the straight path

    out = euler_sample(step_fn, {"video": FlowMatching.noisy(x0, noise, torch.tensor(1.0)), "audio": driving},
                       uniform_schedule(steps))
    assert torch.allclose(out["video"], x0, atol=1e-5)
    assert torch.equal(out["audio"], driving)  # streams without a velocity are carried through


def test_flow_parametrisation_round_trip():
    x0, noise, t = torch.randn(2, 3, 4), torch.randn(2, 3, 4), torch.rand(2, 3)
    xt = FlowMatching.noisy(x0, noise, t)
    v = FlowMatching.velocity_target(x0, noise)
    assert torch.allclose(FlowMatching.x0_from_velocity(xt, v, t), x0, atol=1e-6)


def test_rotary_is_relative_even_after_an_hour():
    rot = Rotary(32, 0.5, 0.2, 25.0)
    q, k = torch.randn(1, 2, 4, 32), torch.randn(1, 2, 4, 32)
    t_q = torch.tensor([0.0, 0.04, 0.08, 0.12], dtype=torch.float64)
    t_k = torch.tensor([-0.5, -0.1, 0.0, 0.3], dtype=torch.float64)
    scores = []
    for shift in (0.0, 3600.0):
        qr = Rotary.rotate(q, rot.angles(t_q + shift)[None])
        kr = Rotary.rotate(k, rot.angles(t_k + shift)[None])
        scores.append(qr @ kr.transpose(-1, -2))
    assert (scores[0] - scores[1]).abs().max() < 1e-4
