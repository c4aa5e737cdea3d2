"""The rig control set and its ground truth from the synthetic corpus."""
from __future__ import annotations

import numpy as np

from mfruntime.data.animation import animate, frame_times
from mfruntime.data.speech import Phoneme
from mfruntime.data.visemes import mouth_track
from mfruntime.rig import CONTROLS, FACE_CONTROLS, OVR_VISEMES, RIG_VERSION, ground_truth, ovr_weights


def _phonemes():
    # "map": m (lips pressed), a (open), p (pressed), then silence
    return [Phoneme("_", 0.0, 0.2), Phoneme("m", 0.2, 0.3), Phoneme("a", 0.3, 0.55), Phoneme("p", 0.55, 0.65),
            Phoneme("_", 0.65, 1.0)]


def test_the_control_set_is_fixed_and_named_by_convention():
    assert RIG_VERSION == 1 and len(OVR_VISEMES) == 15 and len(set(CONTROLS)) == len(CONTROLS)
    for name in ("jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthStretchLeft", "mouthStretchRight",
                 "eyeBlinkLeft", "eyeBlinkRight", "headYaw", "headPitch", "headRoll"):
        assert name in FACE_CONTROLS
    assert CONTROLS[len(FACE_CONTROLS):] == tuple(f"viseme_{v}" for v in OVR_VISEMES)
    from mfruntime.data.visemes import VISEMES
    from mfruntime.rig import CORPUS_TO_OVR

    assert set(CORPUS_TO_OVR) == set(VISEMES) and set(CORPUS_TO_OVR.values()) <= set(OVR_VISEMES)


def test_ground_truth_follows_the_rendered_face_and_the_phonemes():
    times = frame_times(25, 25)
    states, track = animate(_phonemes(), 25, 25, np.random.default_rng(0))
    gt = ground_truth(states, _phonemes(), times)
    assert gt.shape == (25, len(CONTROLS)) and gt.dtype == np.float32
    col = {n: gt[:, i] for i, n in enumerate(CONTROLS)}
    assert np.allclose(col["jawOpen"], track.open)  # the renderer's own opening
    assert np.allclose(col["eyeBlinkLeft"], [s.blink for s in states])
    visemes = gt[:, len(FACE_CONTROLS):]
    assert np.allclose(visemes.sum(1), 1.0, atol=1e-5)
    frame = lambda t: int(round(t * 25))  # noqa: E731
    assert OVR_VISEMES[int(visemes[frame(0.05)].argmax())] == "sil"
    assert OVR_VISEMES[int(visemes[frame(0.44)].argmax())] == "aa"
    assert OVR_VISEMES[int(visemes[frame(0.6)].argmax())] == "PP" and col["mouthClose"][frame(0.6)] > 0.5
    assert np.allclose(ovr_weights([], times)[:, 0], 1.0)  # nothing said: silence
    assert np.allclose(mouth_track(_phonemes(), times).open, track.open)  # the shared dominance model is unchanged


def test_corpus_sidecars_carry_the_rig_ground_truth(tiny_corpus):
    """New corpora keep the renderer's full face state per frame; an old sidecar without it is a clear error."""
    import json

    import pytest

    from mfruntime.rig import ground_truth_from_sidecar

    out, cfg, _ = tiny_corpus
    sidecar = json.loads(sorted(out.glob("clip_*.json"))[0].read_text())
    assert sidecar["version"] == 2
    gt = ground_truth_from_sidecar(sidecar)
    assert gt.shape == (cfg.n_frames, len(CONTROLS))
    assert np.allclose(gt[:, CONTROLS.index("jawOpen")], sidecar["mouth_open"], atol=1e-4)
    old = {k: v for k, v in sidecar.items() if k != "face_state"} | {"version": 1}
    with pytest.raises(ValueError, match="remake the corpus"):
        ground_truth_from_sidecar(old)


def test_the_rig_head_outputs_controls_in_range_and_learns():
    """The head's outputs: bounded controls clamped to 0–1, viseme weights a distribution; a few optimiser
    steps on a fixed batch lower its loss; an "av" head refuses to run without the audio latents."""
    import dataclasses

    import pytest
    import torch

    from mfruntime.config import preset
    from mfruntime.model.rig_head import RigHead, rig_loss
    from mfruntime.rig import BOUNDED_CONTROLS

    cfg = dataclasses.replace(preset("tiny"), rig="av")
    torch.manual_seed(0)
    head = RigHead(cfg)
    cv, side, ca = cfg.video_codec.latent_channels, cfg.video_codec.latent_size, cfg.audio_codec.latent_channels
    video = torch.randn(3, cfg.frames_per_chunk, cv, side, side)
    audio = torch.randn(3, cfg.latent_steps_per_chunk, ca)
    out = head.controls(video * 20, audio * 20)  # extreme inputs: still in range
    assert out.shape == (3, cfg.frames_per_chunk, len(CONTROLS))
    assert torch.allclose(out[..., len(FACE_CONTROLS):].sum(-1), torch.ones(3, cfg.frames_per_chunk), atol=1e-5)
    bounded = out[..., :len(BOUNDED_CONTROLS)]
    assert bounded.min() >= 0 and bounded.max() <= 1
    truth = torch.cat([torch.rand(3, cfg.frames_per_chunk, len(FACE_CONTROLS)),
                       torch.softmax(torch.randn(3, cfg.frames_per_chunk, len(OVR_VISEMES)), -1)], -1)
    opt = torch.optim.Adam(head.parameters(), lr=1e-3)
    before = rig_loss(head, video, audio, truth)["loss"].item()
    for _ in range(10):
        opt.zero_grad()
        rig_loss(head, video, audio, truth)["loss"].backward()
        opt.step()
    assert rig_loss(head, video, audio, truth)["loss"].item() < before
    with pytest.raises(ValueError, match="audio latents"):
        head(video, None)
    with pytest.raises(ValueError, match="rig must be one of"):
        dataclasses.replace(preset("tiny"), rig="pixels")
