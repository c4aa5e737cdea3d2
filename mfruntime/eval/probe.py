"""The face probe: a small CNN that looks at a frame and reports mouth opening and face attributes.

It is the evaluation's eyes, independent of the generator:

- its **mouth-opening** head gives the per-frame track the AV offset estimator correlates with the
  speech envelope (:mod:`mfruntime.eval.offset`);
- its 128-d **feature** layer is the fixed feature space of the Fréchet distance (FD) between
  generated and real frames (:mod:`mfruntime.eval.metrics`);
- an **attribute** head (face shape, skin/hair/background/shirt/lip colours, eye and mouth geometry,
  standardised) is trained alongside, so the features describe the whole face, not just the mouth.

Trained by ``mf train --stage probe`` on clips with ground truth (the synthetic corpus' sidecars).
Input: uint8 frames (..., H, W, 3) of any square size; they are resized to 64 px.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: Identity fields of the synthetic corpus sidecar the attribute head predicts (colours are RGB triples).
ATTRIBUTE_FIELDS = ("face_rx", "face_ry", "jaw", "eye_spacing", "eye_y", "eye_rx", "eye_ry", "brow", "nose",
                    "mouth_y", "mouth_w", "skin", "hair", "background", "shirt", "lips", "iris")
PROBE_SIZE = 64
FEATURE_DIM = 128


def attribute_vector(identity: dict) -> np.ndarray:
    """The attribute target of one identity (sidecar ``identity`` dict) — colours scaled to [0, 1]."""
    out: list[float] = []
    for name in ATTRIBUTE_FIELDS:
        v = identity[name]
        out.extend([c / 255.0 for c in v] if isinstance(v, list) else [float(v)])
    return np.asarray(out, np.float32)


N_ATTRIBUTES = len(attribute_vector({k: ([0, 0, 0] if k in ("skin", "hair", "background", "shirt", "lips", "iris") else 0.0)
                                     for k in ATTRIBUTE_FIELDS}))


class FaceProbe(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        ch = (32, 64, 128, 128)
        layers: list[nn.Module] = []
        cin = 3
        for c in ch:  # 64 → 32 → 16 → 8 → 4
            layers += [nn.Conv2d(cin, c, 3, stride=2, padding=1), nn.GroupNorm(8, c), nn.GELU(),
                       nn.Conv2d(c, c, 3, padding=1), nn.GELU()]
            cin = c
        self.conv = nn.Sequential(*layers)
        self.features = nn.Linear(ch[-1] * 4 * 4, FEATURE_DIM)
        self.mouth = nn.Linear(FEATURE_DIM, 1)
        self.attributes = nn.Linear(FEATURE_DIM, N_ATTRIBUTES)
        # Attribute targets are standardised with statistics set by the training stage.
        self.register_buffer("attr_mean", torch.zeros(N_ATTRIBUTES))
        self.register_buffer("attr_std", torch.ones(N_ATTRIBUTES))

    @staticmethod
    def to_tensor(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 (..., H, W, 3) square frames → float (N, 3, 64, 64) in [-1, 1]."""
        x = torch.as_tensor(frames)
        if x.dtype != torch.uint8 or x.dim() < 3 or x.shape[-1] != 3 or x.shape[-2] != x.shape[-3]:
            raise ValueError(f"the face probe takes square uint8 RGB frames (..., H, H, 3), got {tuple(x.shape)} {x.dtype}")
        x = x.reshape(-1, *x.shape[-3:]).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (N, 3, H, W)
        if x.shape[-1] != PROBE_SIZE:
            x = F.interpolate(x, size=(PROBE_SIZE, PROBE_SIZE), mode="bilinear", antialias=True, align_corners=False)
        return x

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (N, 3, 64, 64) → features (N, 128), mouth opening (N,), standardised attributes (N, A)."""
        f = F.gelu(self.features(self.conv(x).flatten(1)))
        return f, self.mouth(f)[:, 0], self.attributes(f)

    @torch.no_grad()
    def measure(self, frames: np.ndarray, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """Frames (T, H, W, 3) uint8 → (mouth opening (T,), features (T, 128)) as numpy."""
        self.eval()
        x = self.to_tensor(frames)
        feats, mouth = [], []
        for i in range(0, len(x), batch):
            f, m, _ = self(x[i:i + batch])
            feats.append(f)
            mouth.append(m)
        return torch.cat(mouth).numpy(), torch.cat(feats).numpy()

    @torch.no_grad()
    def attributes_of(self, frames: np.ndarray, batch: int = 256) -> np.ndarray:
        """Frames (T, H, W, 3) uint8 → standardised face attributes (T, A) (face shape, colours, eye and mouth
        geometry): the identity the probe sees."""
        self.eval()
        x = self.to_tensor(frames)
        return torch.cat([self(x[i:i + batch])[2] for i in range(0, len(x), batch)]).numpy()

