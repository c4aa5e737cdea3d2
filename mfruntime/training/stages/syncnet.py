"""Stage `syncnet`: train the evaluation SyncNet on any paired audio-video folder (no ground truth needed)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from mfruntime.config import DEFAULT_MEDIA
from mfruntime.eval.offset import shift_audio
from mfruntime.eval.syncnet import MAX_OFFSET, MEL_FRAMES_PER_VIDEO_FRAME, WINDOW_FRAMES, SyncNet, sync_score
from mfruntime.training.data import ClipBank
from mfruntime.training.losses import info_nce
from mfruntime.training.stages.base import Stage

MIN_NEGATIVE_SHIFT = 3  # frames: shifts this large or larger are out of sync


class SyncNetStage(Stage):
    """InfoNCE over a batch of 5-frame windows: each video window's positive is its own audio; negatives
    are every other audio window of the batch plus, per item, the same clip's audio shifted by 3–15 frames
    either way (the hard negative that teaches *timing* rather than *who is speaking*).

    L = −log softmax_j(⟨v_i, a_j⟩ / τ)[i] over j ∈ {aligned audio of the batch} ∪ {shifted audio of the batch},
    averaged with the symmetric audio→video term over aligned pairs (InfoNCE, van den Oord et al. 2018, eq. 4).
    """

    name = "syncnet"

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.net = SyncNet()

    def _bank(self, split: str, progress: bool) -> ClipBank:
        d = self.data_recipe
        return ClipBank(d.corpus, split, self.cfg.video_codec.size, d.val_fraction, d.split_seed, progress)

    def prepare(self) -> int:
        self.bank = self._bank("train", self.progress)
        with torch.no_grad():
            self.mels = [self.net.logmel(torch.from_numpy(c.audio)[None])[0] for c in self.bank.clips]  # (40, M)
            allmel = torch.cat(self.mels, dim=1)
            self.net.mel_mean.fill_(float(allmel.mean()))
            self.net.mel_std.fill_(float(allmel.std()))
        self.items = [(ci, s) for ci, c in enumerate(self.bank.clips)
                      for s in range(MAX_OFFSET, len(c.video) - WINDOW_FRAMES - MAX_OFFSET + 1)]
        if not self.items:
            raise ValueError(f"stage syncnet needs clips of at least {(WINDOW_FRAMES + 2 * MAX_OFFSET) / 25:.1f} s")
        return len(self.items)

    def _mel_window(self, ci: int, start: int) -> torch.Tensor:
        m = (self.mels[ci] - self.net.mel_mean) / self.net.mel_std
        a = start * MEL_FRAMES_PER_VIDEO_FRAME
        w = m[:, a:a + WINDOW_FRAMES * MEL_FRAMES_PER_VIDEO_FRAME]
        return F.pad(w, (0, WINDOW_FRAMES * MEL_FRAMES_PER_VIDEO_FRAME - w.shape[-1]))[None]  # (1, 40, 20)

    def make_batch(self, indices, g):
        video, aligned, shifted = [], [], []
        for i in indices:
            ci, s = self.items[i]
            clip = self.bank.clips[ci]
            video.append(SyncNet.mouth_windows(clip.video[s:s + WINDOW_FRAMES])[0])
            aligned.append(self._mel_window(ci, s))
            mag = int(torch.randint(MIN_NEGATIVE_SHIFT, MAX_OFFSET + 1, (1,), generator=g))
            sign = 1 if bool(torch.rand((), generator=g) < 0.5) else -1
            shifted.append(self._mel_window(ci, s + sign * mag))
        return {"video": torch.stack(video), "aligned": torch.stack(aligned), "shifted": torch.stack(shifted)}

    def forward(self, batch, g):
        v = self.net.embed_video(batch["video"])
        a = self.net.embed_audio(torch.cat([batch["aligned"], batch["shifted"]]))
        b = len(v)
        logits = v @ a.t() / 0.1  # (B, 2B)
        labels = torch.arange(b)
        l_v = F.cross_entropy(logits, labels)
        l_a = info_nce(a[:b], v, 0.1)
        acc = (logits.argmax(1) == labels).float().mean()
        return {"loss": 0.5 * (l_v + l_a), "video_to_audio": l_v, "accuracy": acc}

    def export(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.net.state_dict().items()}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Held-out clips: LSE-D / LSE-C in sync, and how often a known 6-frame (240 ms) shift is found (±1 frame)."""
        if self.data_recipe.val_fraction <= 0:
            return {}
        bank = self._bank("val", False)
        need = WINDOW_FRAMES + 2 * MAX_OFFSET + 1
        clips = [c for c in bank.clips if len(c.video) >= need]
        if not clips:
            return {}
        in_sync = [sync_score(self.net, c.video, c.audio) for c in clips]
        found = [abs(sync_score(self.net, c.video, shift_audio(c.audio, DEFAULT_MEDIA.sample_rate, 240.0)).offset_frames - 6) <= 1
                 for c in clips]
        return {"val_lse_d": float(np.mean([s.lse_d for s in in_sync])),
                "val_lse_c": float(np.mean([s.lse_c for s in in_sync])),
                "val_offset0_rate": float(np.mean([abs(s.offset_frames) <= 1 for s in in_sync])),
                "val_shift240_found_rate": float(np.mean(found))}
