"""FID's Inception-v3 from a user-supplied weights file: loading both file layouts, features, clear errors.

No real Inception weights exist on this machine (nothing is downloaded), so the files here hold randomly
initialised weights in the layouts of the two common files; the architecture, key names and shapes are
what these tests pin down.
"""
import numpy as np
import pytest
import torch

from mfruntime.errors import UserFacingError
from mfruntime.eval.inception import FEATURES, InceptionV3, load_inception
from mfruntime.eval.metrics import frechet_distance


def _save(model: InceptionV3, path, extra=None, drop_counters=True):
    state = {k: v for k, v in model.state_dict().items() if not (drop_counters and k.endswith("num_batches_tracked"))}
    state.update(extra or {})
    torch.save(state, path)
    return path


def test_fid_port_weights_load_and_give_pool_features(tmp_path):
    torch.manual_seed(0)
    path = _save(InceptionV3(fid=True, classes=1008), tmp_path / "pt_inception.pth")
    net = load_inception(path)
    assert net.fid
    # 23.85 M parameters: Inception-v3 without the auxiliary head (torchvision's 27.2 M include it).
    assert sum(p.numel() for p in net.parameters()) == 23_850_960
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (6, 64, 64, 3), dtype=np.uint8)
    feats = net.features(frames, batch=4)
    assert feats.shape == (6, FEATURES) and np.isfinite(feats).all()
    assert np.allclose(net.features(frames[:2]), feats[:2], atol=1e-4)  # batching does not change features
    noisy = np.clip(frames.astype(int) + rng.integers(-60, 60, frames.shape), 0, 255).astype(np.uint8)
    # Random weights squash features towards a constant, so FD values are tiny here; with real weights they are not.
    assert frechet_distance(feats, feats) < 1e-12
    assert np.abs(net.features(noisy) - feats).max() > 0


def test_torchvision_layout_is_recognised_and_aux_head_ignored(tmp_path):
    extra = {"AuxLogits.fc.weight": torch.zeros(1000, 768), "AuxLogits.fc.bias": torch.zeros(1000)}
    path = _save(InceptionV3(fid=False, classes=1000), tmp_path / "inception_v3_google.pth", extra, drop_counters=False)
    net = load_inception(path)
    assert not net.fid
    x = net.prepare(np.full((1, 32, 32, 3), 255, np.uint8))
    assert x.shape == (1, 3, 299, 299)
    assert torch.allclose(x[0, :, 0, 0], (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225]))


def test_bad_inception_files_give_clear_errors(tmp_path):
    with pytest.raises(UserFacingError, match="does not exist"):
        load_inception(tmp_path / "missing.pth")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a torch file")
    with pytest.raises(UserFacingError, match="could not read"):
        load_inception(corrupt)
    other = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(3)}, other)
    with pytest.raises(UserFacingError, match="not an Inception-v3 state dict"):
        load_inception(other)
    state = InceptionV3().state_dict()
    del state["Mixed_6b.branch1x1.conv.weight"]
    state["Conv2d_1a_3x3.conv.weight"] = torch.zeros(32, 3, 5, 5)
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(UserFacingError, match=r"missing: Mixed_6b.branch1x1.conv.weight.*wrong shape: Conv2d_1a_3x3"):
        load_inception(tmp_path / "broken.pth")
    with pytest.raises(ValueError, match="uint8 frames"):
        InceptionV3().features(np.zeros((2, 64, 64), np.uint8))
