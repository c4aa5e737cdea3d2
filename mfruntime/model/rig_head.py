"""The rig head: per video frame, the face controls (mfruntime/rig.py) of what the model generated.

It reads the generated latents of a chunk, never pixels, so a client that drives a 3D character gets the rig
stream without the video decoder running (rig-only mode). Two inputs were measured (docs/MODEL.md, "The rig
head"; ``ModelConfig.rig``):

- ``"video"``: the frame's video latent (Cv × h × w) alone;
- ``"av"``: the frame's video latent and the audio latents that sound during it (latent_steps_per_chunk /
  frames_per_chunk steps): the voice says which of two look-alike mouth shapes a viseme is.

Outputs per frame: :data:`~mfruntime.rig.FACE_CONTROLS` (blendshape weights clamped to 0–1, head pose and
offset unbounded) and the 15 OVR viseme weights (a softmax: they sum to 1). Trained by ``mf train --stage rig``
against the corpus' ground truth (:func:`mfruntime.rig.ground_truth`), on the codecs' latents of real clips.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mfruntime.config import RIG_SOURCES, ModelConfig
from mfruntime.rig import BOUNDED_CONTROLS, CONTROLS, FACE_CONTROLS, OVR_VISEMES

HIDDEN = 256


class RigHead(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.rig not in RIG_SOURCES:
            raise ValueError(f"a rig head needs ModelConfig.rig set to one of {', '.join(RIG_SOURCES)}, got {cfg.rig!r}")
        self.source = cfg.rig
        cv, side = cfg.video_codec.latent_channels, cfg.video_codec.latent_size
        self.audio_per_frame = cfg.latent_steps_per_chunk // cfg.frames_per_chunk
        self.video = nn.Sequential(nn.Conv2d(cv, 32, 3, stride=2, padding=1), nn.GELU(), nn.Flatten())
        n_in = 32 * ((side + 1) // 2) ** 2
        if self.source == "av":
            n_in += self.audio_per_frame * cfg.audio_codec.latent_channels
        self.trunk = nn.Sequential(nn.Linear(n_in, HIDDEN), nn.GELU(), nn.Linear(HIDDEN, HIDDEN), nn.GELU(),
                                   nn.Linear(HIDDEN, len(CONTROLS)))
        # Face-control targets are standardised with statistics the training stage sets (head angles are a few
        # hundredths of a radian, blendshapes up to 1).
        self.register_buffer("face_mean", torch.zeros(len(FACE_CONTROLS)))
        self.register_buffer("face_std", torch.ones(len(FACE_CONTROLS)))
        self.register_buffer("bounded", torch.tensor([c in BOUNDED_CONTROLS for c in FACE_CONTROLS]))

    def forward(self, video: torch.Tensor, audio: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """video (N, F, Cv, h, w) latents; audio (N, F · a, Ca) latents of the same span (``"av"`` only) →
        (standardised face controls (N, F, len(FACE_CONTROLS)), viseme logits (N, F, 15))."""
        n, f = video.shape[:2]
        feats = [self.video(video.flatten(0, 1)).reshape(n, f, -1)]  # (N·F, Cv, h, w) → (N, F, 32·h/2·w/2)
        if self.source == "av":
            if audio is None:
                raise ValueError("this rig head reads the audio latents too: pass them")
            feats.append(audio.reshape(n, f, -1))  # (N, F·a, Ca) → (N, F, a·Ca): the steps sounding in each frame
        out = self.trunk(torch.cat(feats, dim=-1))
        return out[..., :len(FACE_CONTROLS)], out[..., len(FACE_CONTROLS):]

    @torch.no_grad()
    def controls(self, video: torch.Tensor, audio: torch.Tensor | None) -> torch.Tensor:
        """The rig frames of latents: (N, F, len(CONTROLS)) float32 — face controls in their units (blendshapes
        clamped to 0–1), then viseme weights summing to 1."""
        face, logits = self(video, audio)
        face = face * self.face_std + self.face_mean
        face = torch.where(self.bounded, face.clamp(0.0, 1.0), face)
        return torch.cat([face, logits.softmax(-1)], dim=-1).float()


def rig_loss(head: RigHead, video: torch.Tensor, audio: torch.Tensor | None, truth: torch.Tensor) -> dict[str, torch.Tensor]:
    """MSE on standardised face controls + cross-entropy of the viseme weights against the (soft) true ones.
    truth: (N, F, len(CONTROLS)) in the units of :func:`mfruntime.rig.ground_truth`."""
    face, logits = head(video, audio)
    k = len(FACE_CONTROLS)
    target = (truth[..., :k] - head.face_mean) / head.face_std
    l_face = F.mse_loss(face, target)
    l_vis = -(truth[..., k:] * logits.log_softmax(-1)).sum(-1).mean()
    assert truth.shape[-1] == k + len(OVR_VISEMES)
    return {"loss": l_face + l_vis, "face": l_face, "visemes": l_vis}
