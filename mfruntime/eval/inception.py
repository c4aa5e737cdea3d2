"""Inception-v3 pool features for FID, from a weights file the user already has.

Nothing is downloaded: ``mf eval --inception-weights FILE`` loads one of the two common Inception-v3
weight files and reports FID (Heusel et al. 2017) next to the project's own face-probe FD.

- the FID port of the TensorFlow graph (``pt_inception-2015-12-05-*.pth``, 1008-way classifier): inputs
  scaled to [-1, 1], average pools that ignore padding, and a max pool in the last block's pool branch —
  the variant FID numbers in papers use;
- the torchvision ImageNet weights (``inception_v3_google-*.pth``, 1000-way classifier): ImageNet
  mean/std inputs and plain average pools. Scores from this variant are *not* comparable with published FID.

The variant is read from the classifier's width. Frames are resized to 299×299 (bilinear) and the 2048-d
output of the last average pool is the feature (Szegedy et al. 2016, "Rethinking the Inception
Architecture", Fig. 5–7 and Table 1 give the blocks below).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mfruntime.errors import UserFacingError

FEATURES = 2048
INPUT_SIZE = 299


class ConvBN(nn.Module):
    """Convolution without bias, batch norm (eps 1e-3), ReLU. Attribute names match the weight files."""

    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg3(x: torch.Tensor, fid: bool) -> torch.Tensor:
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=not fid)


class BlockA(nn.Module):
    """35×35 block: 1×1, 5×5, double 3×3 and pooled branches."""

    def __init__(self, cin: int, pool_features: int, fid: bool) -> None:
        super().__init__()
        self.fid = fid
        self.branch1x1 = ConvBN(cin, 64, 1)
        self.branch5x5_1 = ConvBN(cin, 48, 1)
        self.branch5x5_2 = ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, padding=1)
        self.branch_pool = ConvBN(cin, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_avg3(x, self.fid)),
        ], 1)


class BlockB(nn.Module):
    """35→17 grid reduction."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = ConvBN(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, 3, stride=2),
        ], 1)


class BlockC(nn.Module):
    """17×17 block with factorised 7×7 convolutions (1×7 then 7×1)."""

    def __init__(self, cin: int, c7: int, fid: bool) -> None:
        super().__init__()
        self.fid = fid
        self.branch1x1 = ConvBN(cin, 192, 1)
        self.branch7x7_1 = ConvBN(cin, c7, 1)
        self.branch7x7_2 = ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = ConvBN(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = ConvBN(cin, c7, 1)
        self.branch7x7dbl_2 = ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = ConvBN(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = ConvBN(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for name in ("branch7x7dbl_1", "branch7x7dbl_2", "branch7x7dbl_3", "branch7x7dbl_4", "branch7x7dbl_5"):
            d = getattr(self, name)(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_avg3(x, self.fid))], 1)


class BlockD(nn.Module):
    """17→8 grid reduction."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = ConvBN(cin, 192, 1)
        self.branch3x3_2 = ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBN(cin, 192, 1)
        self.branch7x7x3_2 = ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBN(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = x
        for name in ("branch7x7x3_1", "branch7x7x3_2", "branch7x7x3_3", "branch7x7x3_4"):
            b7 = getattr(self, name)(b7)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, 3, stride=2)], 1)


class BlockE(nn.Module):
    """8×8 block with split 1×3 / 3×1 outputs. ``max_pool``: the FID port's last block pools by max."""

    def __init__(self, cin: int, fid: bool, max_pool: bool = False) -> None:
        super().__init__()
        self.fid, self.max_pool = fid, max_pool
        self.branch1x1 = ConvBN(cin, 320, 1)
        self.branch3x3_1 = ConvBN(cin, 384, 1)
        self.branch3x3_2a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = ConvBN(cin, 448, 1)
        self.branch3x3dbl_2 = ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = ConvBN(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg3(x, self.fid)
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(s), self.branch3x3_2b(s),
            self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d),
            self.branch_pool(pooled),
        ], 1)


class InceptionV3(nn.Module):
    """Inception-v3 up to the 2048-d average pool. ``fid=True``: the FID port (see the module doc)."""

    def __init__(self, fid: bool = True, classes: int = 1008) -> None:
        super().__init__()
        self.fid = fid
        self.Conv2d_1a_3x3 = ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBN(80, 192, 3)
        self.Mixed_5b = BlockA(192, 32, fid)
        self.Mixed_5c = BlockA(256, 64, fid)
        self.Mixed_5d = BlockA(288, 64, fid)
        self.Mixed_6a = BlockB(288)
        self.Mixed_6b = BlockC(768, 128, fid)
        self.Mixed_6c = BlockC(768, 160, fid)
        self.Mixed_6d = BlockC(768, 160, fid)
        self.Mixed_6e = BlockC(768, 192, fid)
        self.Mixed_7a = BlockD(768)
        self.Mixed_7b = BlockE(1280, fid)
        self.Mixed_7c = BlockE(2048, fid, max_pool=fid)
        self.fc = nn.Linear(FEATURES, classes)  # present in the files; unused for features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, 299, 299) normalised → (B, 2048)."""
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))  # (B, 64, 147, 147)
        x = F.max_pool2d(x, 3, stride=2)  # (B, 64, 73, 73)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))  # (B, 192, 71, 71)
        x = F.max_pool2d(x, 3, stride=2)  # (B, 192, 35, 35)
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                     "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"):
            x = getattr(self, name)(x)  # ends (B, 2048, 8, 8)
        return x.mean(dim=(2, 3))

    def prepare(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 (N, H, W, 3) → (N, 3, 299, 299) in the input range the weights expect."""
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        if self.fid:
            return 2.0 * x - 1.0
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        return (x - mean) / std

    @torch.no_grad()
    def features(self, frames: np.ndarray, batch: int = 16) -> np.ndarray:
        """uint8 frames (N, H, W, 3) → pool features (N, 2048) float64."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"Inception features need uint8 frames (N, H, W, 3), got {frames.dtype} {frames.shape}")
        self.eval()
        out = [self(self.prepare(frames[i:i + batch])).double().numpy() for i in range(0, len(frames), batch)]
        return np.concatenate(out) if out else np.zeros((0, FEATURES))


def load_inception(path: str | Path) -> InceptionV3:
    """Load an Inception-v3 weights file (.pth state dict or .safetensors); see the module doc."""
    path = Path(path)
    if not path.is_file():
        raise UserFacingError(f"Inception weights file {path} does not exist. Pass the path of a file you already have "
                              "(pt_inception-2015-12-05-*.pth for paper-comparable FID); mfruntime downloads nothing.")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or not a tensor file
        raise UserFacingError(f"could not read Inception weights {path}: {type(exc).__name__}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or "fc.weight" not in state or not torch.is_tensor(state["fc.weight"]):
        raise UserFacingError(f"{path} is not an Inception-v3 state dict (no fc.weight); expected the FID port "
                              "pt_inception-2015-12-05-*.pth or torchvision's inception_v3_google-*.pth")
    classes = state["fc.weight"].shape[0]
    model = InceptionV3(fid=classes == 1008, classes=classes)
    wanted = model.state_dict()
    state = {k: v for k, v in state.items() if not k.startswith("AuxLogits.")}  # torchvision's auxiliary head
    # old files lack batch-norm step counters; load_state_dict fills them in
    missing = sorted(k for k in set(wanted) - set(state) if not k.endswith("num_batches_tracked"))
    unexpected = sorted(set(state) - set(wanted))
    bad = sorted(k for k in set(wanted) & set(state) if tuple(state[k].shape) != tuple(wanted[k].shape))
    if missing or unexpected or bad:
        detail = "; ".join(f"{label}: {', '.join(keys[:3])}{' …' if len(keys) > 3 else ''} ({len(keys)})"
                           for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", bad)) if keys)
        raise UserFacingError(f"{path} does not match Inception-v3 ({detail})")
    model.load_state_dict(state, strict=False)  # every other key was checked above
    return model.eval()
