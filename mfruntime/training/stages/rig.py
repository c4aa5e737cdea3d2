"""Stage `rig`: train the rig head (model/rig_head.py) on the codecs' latents of real clips and their ground truth.

Independent of the transformer: it reads the latents the frozen codecs make of corpus clips and learns the
face controls and OVR viseme weights of mfruntime/rig.py (``rig.ground_truth``: the renderer's per-frame face
state and the coarticulated viseme track). At inference it reads the generated latents of each chunk instead.
Items are whole chunks (frames_per_chunk frames with their audio latents), as the engine hands them over.
"""
from __future__ import annotations

import dataclasses
import logging

import numpy as np
import torch
from mfruntime.model.rig_head import RigHead, rig_loss
from mfruntime.rig import FACE_CONTROLS, OVR_VISEMES
from mfruntime.training.data import ClipBank, LatentBank
from mfruntime.training.stages.base import Stage

log = logging.getLogger(__name__)


class RigStage(Stage):
    """L = MSE(standardised face controls) + CE(viseme weights). Validation on held-out clips: mean absolute
    error of each face control in its units, viseme top-1 agreement and total-variation distance."""

    name = "rig"

    def __init__(self, cfg, recipe, *args, **kw) -> None:
        cfg = dataclasses.replace(cfg, rig=recipe.rig_source)  # recorded in final.json: mf export builds this head
        super().__init__(cfg, recipe, *args, **kw)
        self.head = RigHead(self.cfg)
        self.codecs: dict = {}  # frozen, not registered: not trained, not checkpointed

    def _chunks(self, split: str, progress: bool) -> tuple[list, list, list]:
        """(video (F, Cv, h, w), audio (S, Ca), truth (F, C)) per whole chunk of every clip with rig ground truth."""
        d, cfg = self.data_recipe, self.cfg
        bank = ClipBank(d.corpus, split, cfg.video_codec.size, d.val_fraction, d.split_seed, progress)
        latents = LatentBank(bank, self.codecs["video"], self.codecs["audio"], d.cache, progress)
        f, s = cfg.frames_per_chunk, cfg.latent_steps_per_chunk
        video, audio, truth = [], [], []
        for ci, clip in enumerate(bank.clips):
            if clip.rig is None:
                continue
            n = min(len(clip.rig), len(latents.video[ci])) // f
            n = min(n, len(latents.audio[ci]) // s)
            for k in range(n):
                video.append(latents.video[ci][k * f:(k + 1) * f])
                audio.append(latents.audio[ci][k * s:(k + 1) * s])
                truth.append(torch.from_numpy(clip.rig[k * f:(k + 1) * f]))
        return video, audio, truth

    def prepare(self) -> int:
        self.codecs = self.frozen_codecs()
        self.video, self.audio, self.truth = self._chunks("train", self.progress)
        if not self.truth:
            raise ValueError(f"stage rig needs clips whose sidecars hold the per-frame face state (sidecar version 2): "
                             f"none in {self.data_recipe.corpus}; remake the corpus with this mfruntime (mf data synth)")
        face = torch.cat(self.truth)[:, :len(FACE_CONTROLS)]  # (T, K)
        with torch.no_grad():
            self.head.face_mean.copy_(face.mean(0))
            self.head.face_std.copy_(face.std(0).clamp_min(1e-3))
        return len(self.truth)

    def make_batch(self, indices, g):
        return {"video": torch.stack([self.video[i] for i in indices]),  # (B, F, Cv, h, w)
                "audio": torch.stack([self.audio[i] for i in indices]),  # (B, S, Ca)
                "truth": torch.stack([self.truth[i] for i in indices])}  # (B, F, C)

    def forward(self, batch, g):
        return rig_loss(self.head, batch["video"], batch["audio"], batch["truth"])

    def export(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.head.state_dict().items()}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        if self.data_recipe.val_fraction <= 0:
            return {}
        video, audio, truth = self._chunks("val", False)
        if not truth:
            return {}
        self.head.eval()
        pred = self.head.controls(torch.stack(video), torch.stack(audio)).flatten(0, 1).numpy()  # (N·F, C)
        true = torch.stack(truth).flatten(0, 1).numpy()
        return rig_metrics(pred, true)


def rig_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Accuracy of rig frames (T, C) against ground truth: MAE per face control (its units), correlation of
    jawOpen, viseme top-1 agreement over frames where something is said, and the mean total-variation distance
    of the viseme weights (0 = the same, 1 = disjoint)."""
    k = len(FACE_CONTROLS)
    out = {f"val_mae_{name}": float(np.abs(pred[:, i] - true[:, i]).mean()) for i, name in enumerate(FACE_CONTROLS)}
    jaw = FACE_CONTROLS.index("jawOpen")
    out["val_jaw_corr"] = float(np.corrcoef(pred[:, jaw], true[:, jaw])[0, 1])
    vp, vt = pred[:, k:], true[:, k:]
    speaking = vt[:, OVR_VISEMES.index("sil")] < 0.5
    out["val_viseme_top1"] = float((vp[speaking].argmax(1) == vt[speaking].argmax(1)).mean()) if speaking.any() else float("nan")
    out["val_viseme_tv"] = float(0.5 * np.abs(vp - vt).sum(1).mean())
    return out
