"""Codec stages: train the video autoencoder and the audio codec on decoded clips."""
from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F

from mfruntime.model.codec_audio import make_audio_codec
from mfruntime.model.codec_video import VideoCodec
from mfruntime.training.data import ClipBank
from mfruntime.training.losses import stft_loss
from mfruntime.training.stages.base import Stage

log = logging.getLogger(__name__)


class _CodecStage(Stage):
    def _banks(self) -> None:
        d = self.data_recipe
        self.train_bank = ClipBank(d.corpus, "train", self.cfg.video_codec.size, d.val_fraction, d.split_seed, self.progress)

    def _val_bank(self) -> ClipBank | None:
        d = self.data_recipe
        if d.val_fraction <= 0:
            log.warning("val_fraction is 0: no held-out clips, no validation metrics")
            return None
        return ClipBank(d.corpus, "val", self.cfg.video_codec.size, d.val_fraction, d.split_seed, progress=False)

    def export(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.codec.state_dict().items()}


class VideoCodecStage(_CodecStage):
    """L1 + MSE reconstruction of single frames, plus a small latent L2 penalty to keep latents compact."""

    name = "codec-video"

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.codec = VideoCodec(self.cfg.video_codec)

    def prepare(self) -> int:
        self._banks()
        self.items = [(ci, f) for ci, c in enumerate(self.train_bank.clips) for f in range(len(c.video))]
        return len(self.items)

    def make_batch(self, indices, g):
        frames = np.stack([self.train_bank.clips[ci].video[f] for ci, f in (self.items[i] for i in indices)])
        return {"frames": self.codec.frames_to_tensor(frames)}

    def forward(self, batch, g):
        x = batch["frames"]
        z = self.codec.encode_tensor(x)
        y = self.codec.decode_tensor(z)
        l1, mse = F.l1_loss(y, x), F.mse_loss(y, x)
        latent = z.pow(2).mean()
        return {"loss": l1 + mse + 1e-4 * latent, "l1": l1, "mse": mse, "latent_l2": latent}

    @torch.no_grad()
    def finalize(self) -> None:
        """Per-channel latent mean/std over training frames, so the diffusion model sees unit variance."""
        self.codec.latent_mean.zero_()
        self.codec.latent_std.fill_(1.0)
        frames = np.concatenate([c.video[::5] for c in self.train_bank.clips[:64]])
        z = torch.cat([self.codec.encode(frames[i:i + 256]) for i in range(0, len(frames), 256)])
        self.codec.latent_mean.copy_(z.mean(dim=(0, 2, 3)))
        self.codec.latent_std.copy_(z.std(dim=(0, 2, 3)).clamp_min(1e-3))

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """PSNR (dB) of the round trip on held-out clips' frames."""
        bank = self._val_bank()
        if bank is None:
            return {}
        mses = []
        for clip in bank.clips:
            x = clip.video[::2]
            y = self.codec.decode(self.codec.encode(x)).numpy()
            mses.append(np.mean((y.astype(np.float64) - x.astype(np.float64)) ** 2))
        mse = float(np.mean(mses))
        return {"val_psnr_db": float(10 * np.log10(255.0**2 / max(mse, 1e-10)))}


class AudioCodecStage(_CodecStage):
    """Compressed-spectrum loss plus a multi-resolution STFT loss on the decoded waveform, on random crops.

    With C = analyse(x) the compressed spectrum of the input and Ĉ the decoder's prediction
    (see :mod:`mfruntime.model.codec_audio`):

        L = λ_spec · ( mean |Ĉ − C|² + mean (|Ĉ| − |C|)² ) + λ_stft · L_MR-STFT(decode(encode(x)), x)

    The first term is the power-law compressed complex + magnitude loss of speech enhancement (it
    teaches phase, which the encoder sees); the second scores the overlap-added waveform at three
    resolutions, so frames that disagree where they overlap are penalised.
    """

    name = "codec-audio"

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.codec = make_audio_codec(self.cfg.audio_codec)

    def prepare(self) -> int:
        self._banks()
        hop = self.cfg.audio_codec.hop
        self.crop = int(round(self.recipe.crop_seconds * self.cfg.audio_codec.sample_rate / hop)) * hop
        self.items = [(ci, s) for ci, c in enumerate(self.train_bank.clips)
                      for s in range(0, len(c.audio) - self.crop + 1, self.crop // 2)]
        return len(self.items)

    def make_batch(self, indices, g):
        """Each item is a half-overlapping crop position; a random jitter of up to half a crop (any sample,
        not only whole hops) makes every epoch see new crops and new frame alignments — with fixed
        positions the codec overfits them (measured here, 5000 steps: held-out PESQ-wb 2.56 without, 2.94 with)."""
        crops = []
        for ci, s in (self.items[i] for i in indices):
            audio = self.train_bank.clips[ci].audio
            room = min(self.crop // 2, len(audio) - self.crop - s)
            s += int(torch.randint(room + 1, (1,), generator=g)) if room > 0 else 0
            crops.append(audio[s:s + self.crop])
        return {"pcm": torch.from_numpy(np.stack(crops))}

    def forward(self, batch, g):
        x = batch["pcm"]
        target = self.codec.stft.analyse(x)  # (B, N, bins) compressed complex
        pred = self.codec.decode_spectrum(self.codec.encode(x))
        y = self.codec.stft.synthesise(pred)
        spectrum = (pred - target).abs().pow(2).mean() + F.mse_loss(pred.abs(), target.abs())
        stft = stft_loss(y, x)
        loss = self.recipe.spectrum_weight * spectrum + self.recipe.stft_weight * stft
        return {"loss": loss, "spectrum": spectrum, "stft": stft, "l1": F.l1_loss(y, x)}

    @torch.no_grad()
    def finalize(self) -> None:
        self.codec.latent_mean.zero_()
        self.codec.latent_std.fill_(1.0)
        z = torch.cat([self.codec.encode(torch.from_numpy(c.audio[None]))[0] for c in self.train_bank.clips[:64]])
        self.codec.set_statistics(z)

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Wideband PESQ and STOI of the round trip on held-out clips."""
        from pesq import pesq
        from pystoi import stoi

        bank = self._val_bank()
        if bank is None:
            return {}
        sr = self.cfg.audio_codec.sample_rate
        p, s = [], []
        for clip in bank.clips:
            x = clip.audio[: len(clip.audio) // self.cfg.audio_codec.hop * self.cfg.audio_codec.hop]
            y = self.codec.decode(self.codec.encode(torch.from_numpy(x)[None]))[0].numpy()
            p.append(pesq(sr, x, y, "wb"))
            s.append(stoi(x, y, sr, extended=False))
        return {"val_pesq_wb": float(np.mean(p)), "val_stoi": float(np.mean(s))}
