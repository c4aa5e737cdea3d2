"""Assemble the final outputs of the training stages into one model bundle."""
from __future__ import annotations

import json
from pathlib import Path

from mfruntime.config import preset
from mfruntime.errors import UserFacingError
from mfruntime.model.av import AVModel
from mfruntime.model.bundle import save_bundle
from mfruntime.training.checkpoint import load_weights
from mfruntime.training.recipe import STAGE_NAMES


def _stage_info(path: Path) -> dict | None:
    """A stage's final.json without the bulky recipe and per-rank digests (the lineage kept in exports)."""
    if not path.is_file():
        return None
    doc = json.loads(path.read_text())
    doc.pop("recipe", None)
    doc.pop("rank_weight_digests", None)
    return doc


def export_bundle(runs: Path, preset_name: str, out: str | Path, transformer_stage: str = "mutual") -> Path:
    root = Path(runs) / preset_name
    parts = {"video_codec": "codec-video", "audio_codec": "codec-audio", "transformer": transformer_stage}
    model = AVModel(preset(preset_name))
    meta: dict = {"preset": preset_name, "stages": {}}
    for attr, stage in parts.items():
        weights = root / stage / "final.safetensors"
        if not weights.is_file():
            raise UserFacingError(f"{weights} is missing: train stage {stage} first (mf train --stage {stage})")
        getattr(model, attr).load_state_dict(load_weights(weights))
    model_stages = [n for n in STAGE_NAMES if n not in ("probe", "syncnet")]
    meta["transformer"] = transformer_stage
    for stage in model_stages[: model_stages.index(transformer_stage) + 1]:  # the lineage: metrics, wall times
        doc = _stage_info(root / stage / "final.json")
        if doc is not None:
            meta["stages"][stage] = doc
    return save_bundle(model, out, meta)


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
