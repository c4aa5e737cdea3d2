"""Model bundles: round trip, loading by name or path, clear errors for bad files."""
from __future__ import annotations

import pytest
import torch

from mfruntime.model.av import AVModel
from mfruntime.model.bundle import BundleError, bundle_info, config_from_dict, config_to_dict, load_model, save_bundle
from tests.model_helpers import micro_config, randomize


def test_config_round_trip():
    for cfg in (micro_config(), micro_config(video=False)):
        assert config_from_dict(config_to_dict(cfg)) == cfg


def test_bundle_round_trip_in_half_precision(tmp_path):
    model = AVModel(micro_config())
    randomize(model, std=0.05)
    path = save_bundle(model, tmp_path / "m.safetensors", {"note": "test"})
    loaded = load_model(path)
    assert loaded.cfg == model.cfg and bundle_info(path) == {"note": "test"}
    for k, v in model.state_dict().items():
        w = loaded.state_dict()[k]
        assert w.dtype == v.dtype
        assert torch.allclose(w, v.half().to(v.dtype)), k  # stored as float16
    assert not any(p.requires_grad for p in loaded.video_codec.parameters())


def test_bad_bundles_name_the_problem(tmp_path):
    with pytest.raises(BundleError, match="no bundled model named 'nosuch'"):
        load_model("nosuch")
    with pytest.raises(BundleError, match="does not exist"):
        load_model(tmp_path / "missing.safetensors")
    path = save_bundle(AVModel(micro_config()), tmp_path / "m.safetensors")
    data = path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match="cut.safetensors"):
        load_model(cut)
    from safetensors.torch import save_file
    other = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(2)}, str(other))
    with pytest.raises(BundleError, match="not an mfruntime model bundle"):
        load_model(other)


def test_bundled_tiny_model_loads_by_name_and_generates():
    from mfruntime.data.render import FaceRenderer, FaceState, Identity
    from mfruntime.model.bundle import bundle_info
    from mfruntime.engine.generator import GenerationOptions, Generator
    from tests.model_helpers import sample_phonemes

    model = load_model("tiny")
    info = bundle_info("tiny")
    assert info["preset"] == "tiny" and {"codec-video", "codec-audio", "audio", "video", "joint"} <= set(info["stages"])
    assert model.cfg.audio_codec.kind == "harmonic" and model.cfg.phonemes[:2] == ("<pad>", "<unk>")
    face = FaceRenderer(Identity.from_seed(1), 64).render(FaceState())
    chunks = list(Generator(model, face, options=GenerationOptions(steps=2)).generate(sample_phonemes(), n_chunks=2))
    assert chunks[0].frames.shape == (4, 64, 64, 3) and chunks[0].pcm.shape == (2560,)
    assert chunks[1].frames.std() > 5  # a picture, not a flat colour


def test_bundle_from_another_version_is_a_clear_error(tmp_path):
    """A bundle whose stored config has a field this version does not know (or lacks one) is refused by name."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    path = save_bundle(AVModel(micro_config()), tmp_path / "m.safetensors")
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    cfg = json.loads(meta["config"])
    cfg["audio_codec"]["synthesis"] = "filterbank"  # a field of an older version
    meta["config"] = json.dumps(cfg)
    old = tmp_path / "old.safetensors"
    save_file(tensors, str(old), metadata=meta)
    with pytest.raises(BundleError, match="does not fit this mfruntime version"):
        load_model(old)


def test_bundle_stores_its_phoneme_vocabulary(tmp_path):
    """Phoneme ids come from the vocabulary saved with the model, not from a table that may change later;
    a bundle without one (made by an older version) is refused with the fix."""
    import dataclasses
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    from mfruntime.model.phonemes import PhonemeTrack
    from tests.model_helpers import sample_phonemes

    cfg = micro_config()
    shuffled = ("<pad>", "<unk>", *reversed(cfg.phonemes[2:]))
    model = AVModel(dataclasses.replace(cfg, phonemes=shuffled))
    path = save_bundle(model, tmp_path / "m.safetensors")
    loaded = load_model(path)
    assert loaded.cfg.phonemes == shuffled
    ids_own = PhonemeTrack.from_phonemes(sample_phonemes(), vocab=loaded.cfg.phonemes).ids
    ids_default = PhonemeTrack.from_phonemes(sample_phonemes()).ids
    assert [shuffled[i] for i in ids_own] == [cfg.phonemes[i] for i in ids_default]  # same symbols, own numbering
    assert not torch.equal(ids_own, ids_default)

    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    doc = json.loads(meta["config"])
    del doc["phonemes"]
    meta["config"] = json.dumps(doc)
    old = tmp_path / "old.safetensors"
    save_file(tensors, str(old), metadata=meta)
    with pytest.raises(BundleError, match=r"older mfruntime.*no phoneme vocabulary.*make train-tiny"):
        load_model(old)
