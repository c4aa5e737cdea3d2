"""Assemble the final outputs of the training stages into one model bundle."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from safetensors.torch import save_file

from mfruntime.config import preset
from mfruntime.errors import UserFacingError
from mfruntime.model.av import AVModel
from mfruntime.model.bundle import save_bundle
from mfruntime.training.checkpoint import load_weights
from mfruntime.training.recipe import SIDE_STAGES, STAGE_NAMES


def _stage_info(path: Path) -> dict | None:
    """A stage's final.json without the bulky recipe and per-rank digests (the lineage kept in exports)."""
    if not path.is_file():
        return None
    doc = json.loads(path.read_text())
    doc.pop("recipe", None)
    doc.pop("rank_weight_digests", None)
    return doc


def export_bundle(runs: Path, preset_name: str, out: str | Path, transformer_stage: str = "mutual",
                  rig: bool | None = None) -> Path:
    """One bundle of the codecs, ``transformer_stage``'s transformer and the ``rig`` stage's head (rig None: when
    that stage has been trained; True: it must have been; False: a bundle without a rig stream)."""
    root = Path(runs) / preset_name
    parts = {"video_codec": "codec-video", "audio_codec": "codec-audio", "transformer": transformer_stage}
    rig_dir = root / "rig"
    if rig is None:
        rig = (rig_dir / "final.safetensors").is_file()
    if rig:
        parts["rig"] = "rig"
    # The transformer stage's [model] overrides (an ablation switch, the trained step-size range) are part of
    # the model: the bundle's config carries them. The rig head's input comes from the rig stage alone.
    overrides = {k: v for k, v in _overrides(root / transformer_stage).items() if k != "rig"}
    if rig:
        overrides["rig"] = _overrides(rig_dir).get("rig") or preset(preset_name).rig
    model = AVModel(dataclasses.replace(preset(preset_name), **overrides))
    meta: dict = {"preset": preset_name, "stages": {}, "model_overrides": overrides}
    for attr, stage in parts.items():
        weights = root / stage / "final.safetensors"
        if not weights.is_file():
            raise UserFacingError(f"{weights} is missing: train stage {stage} first (mf train --stage {stage})")
        getattr(model, attr).load_state_dict(load_weights(weights))
    model_stages = [n for n in STAGE_NAMES if n not in SIDE_STAGES]
    meta["transformer"] = transformer_stage
    for stage in model_stages[: model_stages.index(transformer_stage) + 1]:  # the lineage: metrics, wall times
        doc = _stage_info(root / stage / "final.json")
        if doc is not None:
            meta["stages"][stage] = doc
    if rig:
        meta["rig"] = _stage_info(rig_dir / "final.json") or {}
    return save_bundle(model, out, meta)


def _overrides(stage_dir: Path) -> dict:
    final = stage_dir / "final.json"
    return json.loads(final.read_text()).get("model_overrides", {}) if final.is_file() else {}


def unpack_bundle(bundle: str | Path, runs: Path, preset_name: str | None = None) -> dict[str, Path]:
    """The inverse of :func:`export_bundle`: write a bundle's parts as the final outputs of the stages that made
    them (``codec-video``, ``codec-audio``, ``joint`` — the transformer stage every later stage starts from — and
    ``rig`` when the bundle has a rig head),
    so a stage can be trained on from a shipped model without retraining the stages before it. Bundles store
    float16, so the unpacked weights are the bundle's, not the original float32 run's. Refuses to overwrite."""
    from mfruntime.model.bundle import bundle_info, load_model

    from mfruntime.training.loop import stage_config_overrides
    from mfruntime.training.recipe import Recipe, DataRecipe
    from mfruntime.training.stages.diffusion import CRITIC_FILE

    model = load_model(bundle)
    info = bundle_info(bundle)
    name = info.get("preset") or preset_name
    if not name:
        raise UserFacingError(f"bundle {bundle} does not say which preset it is: pass --preset")
    if preset_name and preset_name != name:
        raise UserFacingError(f"bundle {bundle} is a {name} model, not {preset_name}: leave out --preset")
    root = Path(runs) / name
    parts = {"codec-video": model.video_codec, "codec-audio": model.audio_codec, "joint": model.transformer}
    if model.rig is not None:
        parts["rig"] = model.rig
    for stage in parts:
        for existing in (root / stage / "final.safetensors", root / stage / CRITIC_FILE):
            if existing.exists():
                raise UserFacingError(f"{existing} exists: unpack into another --runs folder or delete that stage's run first")
    overrides = stage_config_overrides(model.cfg, Recipe(preset=name, data=DataRecipe(), stages={}))
    rig_source = overrides.pop("rig", None)
    written = {}
    for stage, module in parts.items():
        out = root / stage / "final.safetensors"
        out.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().float().contiguous() if v.is_floating_point() else v.contiguous()
                   for k, v in module.state_dict().items()}, str(out))
        doc = {"stage": stage, "unpacked_from": str(bundle), "bundle_transformer": info.get("transformer"),
               "model_overrides": overrides if stage == "joint" else {"rig": rig_source} if stage == "rig" else {}}
        out.with_suffix(".json").write_text(json.dumps(doc, indent=1))
        written[stage] = out
    return written


def export_instruments(runs: Path, preset_name: str, out: str | Path) -> Path:
    """Write the evaluation instruments (stage ``probe``, and ``syncnet`` if trained) to one file for ``mf eval``."""
    from mfruntime.eval.weights import INSTRUMENTS, save_instruments

    nets, meta = {}, {}
    for name, cls in INSTRUMENTS.items():
        weights = Path(runs) / preset_name / name / "final.safetensors"
        if not weights.is_file():
            if name == "probe":
                raise UserFacingError(f"{weights} is missing: train the face probe first (mf train --stage probe)")
            continue
        net = cls()
        net.load_state_dict(load_weights(weights))
        nets[name] = net
        doc = _stage_info(weights.with_suffix(".json"))
        if doc is not None:
            meta[name] = doc
    return save_instruments(nets, out, meta)
