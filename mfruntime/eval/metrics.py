"""Quality metrics: Fréchet distance, PSNR/SSIM, PESQ/STOI."""
from __future__ import annotations

import numpy as np
from scipy import linalg


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature sets a (N, D) and b (M, D)
    (Heusel et al. 2017, eq. 6): ‖μa − μb‖² + Tr(Σa + Σb − 2 (Σa Σb)^{1/2})."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets must be (N, D) and (M, D), got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"need at least 2 feature vectors per set, got {len(a)} and {len(b)}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(cov_a @ cov_b)
    if not np.all(np.isfinite(covmean)):  # singular product: regularise both covariances slightly
        eps = 1e-6 * np.eye(a.shape[1])
        covmean = linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
    covmean = np.real(covmean)
    fd = float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(covmean))
    return max(fd, 0.0)


def psnr(x: np.ndarray, y: np.ndarray) -> float:
    """PSNR (dB) between uint8 frame arrays of the same shape."""
    if x.shape != y.shape:
        raise ValueError(f"PSNR needs frames of the same shape, got {x.shape} and {y.shape}")
    mse = float(np.mean((x.astype(np.float64) - y.astype(np.float64)) ** 2))
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def ssim(x: np.ndarray, y: np.ndarray) -> float:
    """Mean SSIM (Wang et al. 2004, eq. 13) over frames (..., H, W, 3) uint8: 7×7 uniform windows on luma."""
    from scipy.ndimage import uniform_filter

    if x.shape != y.shape:
        raise ValueError(f"SSIM needs frames of the same shape, got {x.shape} and {y.shape}")
    w = np.array([0.299, 0.587, 0.114])
    a = (x.astype(np.float64) @ w).reshape(-1, *x.shape[-3:-1])
    b = (y.astype(np.float64) @ w).reshape(-1, *y.shape[-3:-1])
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    f = lambda z: uniform_filter(z, size=(1, 7, 7))  # noqa: E731
    mu_a, mu_b = f(a), f(b)
    va, vb, cov = f(a * a) - mu_a**2, f(b * b) - mu_b**2, f(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (va + vb + c2))
    return float(s[:, 3:-3, 3:-3].mean())


PESQ_RATE = 16_000  # PESQ wideband (and our STOI) work at 16 kHz: the metrics' own rate, not the media's


def speech_quality(reference: np.ndarray, degraded: np.ndarray, sample_rate: int = PESQ_RATE) -> tuple[float, float]:
    """(PESQ wideband, STOI) of ``degraded`` against ``reference`` (mono float PCM, same rate).
    The shorter length is used. PESQ-wb ranges about 1.0–4.64, STOI 0–1."""
    from pesq import pesq
    from pesq.cypesq import NoUtterancesError
    from pystoi import stoi

    if sample_rate != PESQ_RATE:
        raise ValueError(f"PESQ wideband needs 16 kHz audio, got {sample_rate} Hz")
    n = min(len(reference), len(degraded))
    if n < sample_rate // 4:
        raise ValueError(f"need at least 0.25 s of audio for PESQ/STOI, got {n / sample_rate:.2f} s")
    ref = np.asarray(reference[:n], np.float32)
    deg = np.asarray(degraded[:n], np.float32)
    if not np.all(np.isfinite(deg)):
        raise ValueError("degraded audio contains NaN or infinity")
    try:
        p = float(pesq(sample_rate, ref, deg, "wb"))
    except NoUtterancesError as exc:
        raise ValueError("PESQ found no speech in the reference audio") from exc
    return p, float(stoi(ref, deg, sample_rate, extended=False))
