"""A small SyncNet (Chung & Zisserman 2016) for footage without ground truth.

Two encoders map a 5-frame (0.2 s) window of the lower half of the face and the 0.2 s of log-mel
audio around it to unit vectors in one 128-d space; trained contrastively (``mf train --stage
syncnet``) so that in-sync pairs are close and the same clip's audio shifted by 3–15 frames (and other
clips' audio) is far. Scoring a clip slides the video window over every frame and compares it with the
audio at offsets −15 … +15 frames (±600 ms):

- **LSE-D** (lip-sync error, distance): the smallest mean distance over offsets — lower is better;
- **LSE-C** (confidence): median mean distance − smallest — higher is better;
- **offset**: the offset of the smallest distance, in frames and ms (positive = audio late).

Works on any folder of talking-head clips the loader reads (frames centre-cropped to a square; the
lower half is taken as the mouth region).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mfruntime.config import DEFAULT_MEDIA

WINDOW_FRAMES = 5  # video frames per window (0.2 s at 25 fps)
MEL_BANDS = 40
MEL_HOP = 160  # 10 ms at 16 kHz
MEL_FRAMES_PER_VIDEO_FRAME = 4
MAX_OFFSET = 15  # frames searched each way when scoring
SIZE = 64


def mel_filterbank(sample_rate: int, n_fft: int, bands: int, fmin: float = 50.0, fmax: float | None = None) -> np.ndarray:
    """Triangular mel filters (HTK mel scale, m = 2595·log10(1 + f/700)) as a (bands, n_fft/2+1) matrix."""
    fmax = fmax or sample_rate / 2
    mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)  # noqa: E731
    inv = lambda m: 700.0 * (10 ** (m / 2595.0) - 1.0)  # noqa: E731
    edges = inv(np.linspace(mel(fmin), mel(fmax), bands + 2))
    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    fb = np.zeros((bands, len(freqs)), np.float32)
    for i in range(bands):
        lo, mid, hi = edges[i], edges[i + 1], edges[i + 2]
        fb[i] = np.clip(np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)), 0, None)
    return fb


class LogMel(nn.Module):
    def __init__(self, sample_rate: int = DEFAULT_MEDIA.sample_rate) -> None:
        super().__init__()
        self.register_buffer("fb", torch.from_numpy(mel_filterbank(sample_rate, 512, MEL_BANDS)), persistent=False)
        self.register_buffer("window", torch.hann_window(400), persistent=False)

    def forward(self, pcm: torch.Tensor) -> torch.Tensor:
        """(B, S) → (B, MEL_BANDS, S / MEL_HOP) log-mel, frame j centred at sample j·MEL_HOP."""
        spec = torch.stft(pcm, 512, hop_length=MEL_HOP, win_length=400, window=self.window, center=True,
                          return_complex=True).abs().pow(2)  # (B, 257, S/hop + 1)
        return torch.log(self.fb @ spec + 1e-6)[..., : pcm.shape[-1] // MEL_HOP]


def _encoder(cin: int, dims: tuple[int, ...], embed: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for d in dims:
        layers += [nn.Conv2d(cin, d, 3, stride=2, padding=1), nn.GroupNorm(8, d), nn.GELU()]
        cin = d
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, embed))


class SyncNet(nn.Module):
    def __init__(self, embed: int = 128) -> None:
        super().__init__()
        self.video = _encoder(3 * WINDOW_FRAMES, (32, 64, 128), embed)  # (B, 15, 32, 64) lower half of 5 frames
        self.audio = _encoder(1, (32, 64, 128), embed)  # (B, 1, 40, 20) log-mel
        self.logmel = LogMel()
        self.register_buffer("mel_mean", torch.zeros(()))
        self.register_buffer("mel_std", torch.ones(()))

    @staticmethod
    def mouth_windows(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 (T, H, H, 3) → (T − 4, 15, 32, 64): every 5-frame window of the lower half, resized to 64 px."""
        x = torch.as_tensor(frames)
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[-1] != 3 or x.shape[1] != x.shape[2]:
            raise ValueError(f"SyncNet takes square uint8 RGB frames (T, H, H, 3), got {tuple(x.shape)} {x.dtype}")
        if len(x) < WINDOW_FRAMES:
            raise ValueError(f"SyncNet needs at least {WINDOW_FRAMES} frames, got {len(x)}")
        x = x.permute(0, 3, 1, 2).float() / 127.5 - 1.0
        if x.shape[-1] != SIZE:
            x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", antialias=True, align_corners=False)
        x = x[:, :, SIZE // 2:]  # (T, 3, 32, 64) lower half
        return x.unfold(0, WINDOW_FRAMES, 1).permute(0, 4, 1, 2, 3).flatten(1, 2)  # (T−4, 15, 32, 64)

    def mel_windows(self, pcm: torch.Tensor, n_frames: int) -> torch.Tensor:
        """(S,) audio at 16 kHz → (n_frames − 4, 1, 40, 20): the log-mel under each 5-frame video window."""
        mel = (self.logmel(pcm[None])[0] - self.mel_mean) / self.mel_std  # (40, M)
        need = n_frames * MEL_FRAMES_PER_VIDEO_FRAME
        mel = F.pad(mel, (0, max(0, need - mel.shape[-1])))[:, :need]
        w = WINDOW_FRAMES * MEL_FRAMES_PER_VIDEO_FRAME
        return mel.unfold(1, w, MEL_FRAMES_PER_VIDEO_FRAME).permute(1, 0, 2)[:, None]  # (n−4, 1, 40, 20)

    def embed_video(self, windows: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.video(windows), dim=-1)

    def embed_audio(self, windows: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.audio(windows), dim=-1)


@dataclass(frozen=True)
class SyncScore:
    lse_d: float  # smallest mean distance over offsets (lower = better sync)
    lse_c: float  # median − smallest mean distance (higher = more confident)
    offset_frames: int  # positive = audio late
    offset_ms: float
    distances: np.ndarray  # (2·MAX_OFFSET + 1,) mean distance per offset


@torch.no_grad()
def sync_score(net: SyncNet, frames: np.ndarray, pcm: np.ndarray, fps: int = DEFAULT_MEDIA.fps) -> SyncScore:
    """LSE-D / LSE-C / offset of one clip (frames (T, H, H, 3) uint8, pcm (S,) float32 at 16 kHz)."""
    net.eval()
    if len(frames) < WINDOW_FRAMES + 2 * MAX_OFFSET + 1:
        raise ValueError(f"SyncNet scoring needs at least {WINDOW_FRAMES + 2 * MAX_OFFSET + 1} frames "
                         f"({(WINDOW_FRAMES + 2 * MAX_OFFSET + 1) / fps:.2f} s), got {len(frames)}")
    v = net.embed_video(net.mouth_windows(frames))  # (W, E)
    a = net.embed_audio(net.mel_windows(torch.as_tensor(np.asarray(pcm, np.float32)), len(frames)))  # (W, E)
    n = len(v)
    dists = []
    for off in range(-MAX_OFFSET, MAX_OFFSET + 1):  # video window i vs audio window i + off
        lo, hi = max(0, -off), min(n, n - off)
        dists.append(float((v[lo:hi] - a[lo + off:hi + off]).norm(dim=-1).mean()))
    d = np.asarray(dists)
    k = int(np.argmin(d))
    return SyncScore(lse_d=float(d[k]), lse_c=float(np.median(d) - d[k]), offset_frames=k - MAX_OFFSET,
                     offset_ms=(k - MAX_OFFSET) * 1000.0 / fps, distances=d)


def score_folder(net: SyncNet, root, size: int = SIZE, progress: bool = True) -> list[tuple[str, SyncScore]]:
    """SyncNet scores of every readable clip under ``root`` (unreadable ones are skipped with a warning)."""
    from mfruntime.data.dataset import LoaderConfig, scan_clips

    scan = scan_clips(root, LoaderConfig(size=size), progress=progress, keep_decoded=True)
    if not scan.clips:
        raise ValueError(f"no readable clips with audio under {root}")
    out = []
    for rec in scan.clips:
        clip = scan.decoded[rec.relpath]
        try:
            out.append((rec.relpath, sync_score(net, clip.video, clip.audio)))
        except ValueError as exc:  # too short to score
            out.append((rec.relpath, exc))  # type: ignore[arg-type]
    return out
