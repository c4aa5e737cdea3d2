"""Stage `probe`: train the evaluation's face probe (mouth opening + face attributes) on ground truth."""
from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F

from mfruntime.eval.probe import FaceProbe, attribute_vector
from mfruntime.training.data import ClipBank
from mfruntime.training.stages.base import Stage

log = logging.getLogger(__name__)


class ProbeStage(Stage):
    """L = MSE(mouth opening) + ½·MSE(standardised attributes), on single frames of clips with ground
    truth. Validation: correlation and mean absolute error of mouth opening on held-out clips."""

    name = "probe"

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.probe = FaceProbe()

    def _bank(self, split: str, progress: bool) -> ClipBank:
        d = self.data_recipe
        bank = ClipBank(d.corpus, split, self.cfg.video_codec.size, d.val_fraction, d.split_seed, progress)
        bank.clips = [c for c in bank.clips if c.mouth_open is not None and c.identity is not None]
        return bank

    def prepare(self) -> int:
        bank = self._bank("train", self.progress)
        if not bank.clips:
            raise ValueError(f"stage probe needs clips with ground truth (the synthetic corpus' JSON sidecars); "
                             f"none in {self.data_recipe.corpus}: make one with `mf data synth`")
        self.clips = bank.clips
        self.attrs = np.stack([attribute_vector(c.identity) for c in self.clips])  # (C, A)
        with torch.no_grad():
            self.probe.attr_mean.copy_(torch.from_numpy(self.attrs.mean(0)))
            self.probe.attr_std.copy_(torch.from_numpy(self.attrs.std(0)).clamp_min(1e-3))
        self.items = [(ci, f) for ci, c in enumerate(self.clips) for f in range(min(len(c.video), len(c.mouth_open)))]
        return len(self.items)

    def make_batch(self, indices, g):
        pairs = [self.items[i] for i in indices]
        frames = np.stack([self.clips[ci].video[f] for ci, f in pairs])
        mouth = torch.tensor([float(self.clips[ci].mouth_open[f]) for ci, f in pairs])
        attrs = torch.from_numpy(self.attrs[[ci for ci, _ in pairs]])
        return {"frames": FaceProbe.to_tensor(frames), "mouth": mouth, "attrs": attrs}

    def forward(self, batch, g):
        _, mouth, attrs = self.probe(batch["frames"])
        target = (batch["attrs"] - self.probe.attr_mean) / self.probe.attr_std
        l_mouth, l_attr = F.mse_loss(mouth, batch["mouth"]), F.mse_loss(attrs, target)
        return {"loss": l_mouth + 0.5 * l_attr, "mouth": l_mouth, "attributes": l_attr}

    def export(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.probe.state_dict().items()}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        if self.data_recipe.val_fraction <= 0:
            return {}
        bank = self._bank("val", False)
        if not bank.clips:
            return {}
        pred, true = [], []
        for c in bank.clips:
            n = min(len(c.video), len(c.mouth_open))
            pred.append(self.probe.measure(c.video[:n])[0])
            true.append(c.mouth_open[:n])
        p, t = np.concatenate(pred), np.concatenate(true)
        return {"val_mouth_corr": float(np.corrcoef(p, t)[0, 1]), "val_mouth_mae": float(np.abs(p - t).mean())}
