"""Loss functions shared by the training stages."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def stft_loss(pred: torch.Tensor, target: torch.Tensor, ffts: tuple[int, ...] = (256, 512, 1024)) -> torch.Tensor:
    """Multi-resolution STFT loss (Yamamoto et al. 2020, Parallel WaveGAN eq. 3–5):
    spectral convergence ‖|S|−|Ŝ|‖_F / ‖|S|‖_F plus mean |log|S| − log|Ŝ||, averaged over FFT sizes."""
    total = pred.new_zeros(())
    for n in ffts:
        win = torch.hann_window(n, device=pred.device)
        sp = torch.stft(pred, n, hop_length=n // 4, window=win, return_complex=True).abs().clamp_min(1e-5)
        st = torch.stft(target, n, hop_length=n // 4, window=win, return_complex=True).abs().clamp_min(1e-5)
        sc = torch.linalg.norm(st - sp) / torch.linalg.norm(st).clamp_min(1e-5)
        total = total + sc + (st.log() - sp.log()).abs().mean()
    return total / len(ffts)


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE (van den Oord et al. 2018, eq. 4) between row-aligned embeddings a, b (N, E)."""
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    logits = a @ b.t() / temperature  # (N, N); positives on the diagonal
    labels = torch.arange(len(a), device=a.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))


class LatentSync(nn.Module):
    """A SyncNet in latent space: per-chunk embeddings of video latents and audio latents.

    Trained contrastively on real pairs (the same chunk is positive; every other chunk of the batch —
    including the same clip at other offsets, i.e. mismatched offsets — is negative). The generator is
    then scored by it, with its parameters held fixed, on its own clean estimates; see JointStage.
    """

    def __init__(self, video_dim: int, audio_dim: int, hidden: int = 128, embed: int = 64) -> None:
        super().__init__()
        self.video = nn.Sequential(nn.Flatten(), nn.Linear(video_dim, hidden), nn.GELU(), nn.Linear(hidden, embed))
        self.audio = nn.Sequential(nn.Flatten(), nn.Linear(audio_dim, hidden), nn.GELU(), nn.Linear(hidden, embed))

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """video (B, C, F, Cv, h, w), audio (B, C, S, Ca) → embeddings (B·C, E) each."""
        return self.video(video.flatten(0, 1)), self.audio(audio.flatten(0, 1))
