"""Model bundles: one safetensors file with both codecs, the transformer and the config.

The bundled default model ships inside the package (``mfruntime/weights/tiny.safetensors``)
and loads by name: ``load_model("tiny")``. Any other bundle loads by path. Tensors are stored
in float16 (half the size) and loaded as float32.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from mfruntime.config import AudioCodecConfig, MediaConfig, ModelConfig, StreamConfig, VideoCodecConfig
from mfruntime.errors import UserFacingError
from mfruntime.model.av import AVModel

log = logging.getLogger(__name__)

BUNDLE_FORMAT = "mfruntime-bundle-1"
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"


class BundleError(UserFacingError, ValueError):
    """A model bundle is missing, corrupt, or was made for another model shape."""


def config_to_dict(cfg: ModelConfig) -> dict:
    """Constructor fields only (derived fields are recomputed on load)."""
    def fields_of(obj) -> dict | None:
        if obj is None:
            return None
        out = {}
        for f in dataclasses.fields(obj):
            if not f.init:
                continue
            v = getattr(obj, f.name)
            out[f.name] = fields_of(v) if dataclasses.is_dataclass(v) else (list(v) if isinstance(v, tuple) else v)
        return out
    return fields_of(cfg)  # type: ignore[return-value]


def config_from_dict(d: dict) -> ModelConfig:
    """The config saved by :func:`config_to_dict`. A config without its phoneme vocabulary (or audio codec
    kind) comes from an older mfruntime whose phoneme ids depended on a table that may have changed since:
    that is a :class:`BundleError`, never a silent renumbering."""
    if "phonemes" not in d or "kind" not in d.get("audio_codec", {}):
        raise BundleError("the bundle was made by an older mfruntime: it stores no phoneme vocabulary and no audio "
                          "codec kind, so its phoneme ids cannot be trusted. Retrain and re-export it with this "
                          "version (make train-tiny, then mf export), or use the mfruntime version that made it")

    def stream(x):
        return None if x is None else StreamConfig(**x)
    vc = dict(d["video_codec"])
    vc["channels"] = tuple(vc["channels"])
    return ModelConfig(**{**d, "phonemes": tuple(d["phonemes"]), "media": MediaConfig(**d["media"]), "video_codec": VideoCodecConfig(**vc),
                          "audio_codec": AudioCodecConfig(**d["audio_codec"]), "video": stream(d["video"]),
                          "audio": stream(d["audio"])})


def save_bundle(model: AVModel, path: str | Path, meta: dict | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    metadata = {"format": BUNDLE_FORMAT, "config": json.dumps(config_to_dict(model.cfg)), "meta": json.dumps(meta or {})}
    tmp = path.with_name(path.name + ".part")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)
    return path


def resolve(name_or_path: str | Path) -> Path:
    """A bundled model name ("tiny") or a path to a .safetensors bundle."""
    p = Path(name_or_path)
    if p.suffix != ".safetensors" and not p.exists():
        bundled = WEIGHTS_DIR / f"{name_or_path}.safetensors"
        if bundled.is_file():
            return bundled
        names = sorted(q.stem for q in WEIGHTS_DIR.glob("*.safetensors"))
        raise BundleError(f"no bundled model named {str(name_or_path)!r} (bundled: {', '.join(names) or 'none'}); "
                          "pass a path to a .safetensors bundle instead")
    if not p.is_file():
        raise BundleError(f"model bundle {p} does not exist")
    return p


def load_model(name_or_path: str | Path = "tiny", device: str | torch.device = "cpu") -> AVModel:
    """Load a bundle by name or path; codecs come back frozen, everything in eval mode."""
    path = resolve(name_or_path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            if metadata.get("format") != BUNDLE_FORMAT:
                raise BundleError(f"{path}: not an mfruntime model bundle (format {metadata.get('format')!r})")
            doc = json.loads(metadata["config"])
            try:
                cfg = config_from_dict(doc)
            except BundleError as exc:
                raise BundleError(f"{path}: {exc}") from exc
            except (TypeError, ValueError) as exc:
                raise BundleError(f"{path}: its model config does not fit this mfruntime version ({exc}); "
                                  "re-export it with this version or use the version that made it") from exc
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, json.JSONDecodeError, KeyError) as exc:
        raise BundleError(f"{path}: corrupt or truncated model bundle ({exc})") from exc
    model = AVModel(cfg)
    state = model.state_dict()
    missing = sorted(set(state) - set(tensors))
    unexpected = sorted(set(tensors) - set(state))
    if missing or unexpected:
        raise BundleError(f"{path}: weights do not fit the model in its config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.load_state_dict({k: v.to(state[k].dtype) for k, v in tensors.items()})
    model.video_codec.freeze()
    model.audio_codec.freeze()
    model.eval()
    return model.to(device)


def bundle_info(name_or_path: str | Path = "tiny") -> dict:
    """The metadata stored with a bundle (training stages, wall times, metrics)."""
    path = resolve(name_or_path)
    with safe_open(str(path), framework="pt") as f:
        return json.loads((f.metadata() or {}).get("meta", "{}"))
