"""Assemble the final outputs of the training stages into one model bundle."""
from __future__ import annotations

import json
from pathlib import Path

from mfruntime.config import preset
from mfruntime.errors import UserFacingError
from mfruntime.model.bundle import save_bundle
from mfruntime.model.generate import AVModel
from mfruntime.training.checkpoint import load_weights
from mfruntime.training.recipe import STAGE_NAMES


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
    for stage in STAGE_NAMES:  # the lineage: every stage's metrics and wall time
        info = root / stage / "final.json"
        if info.is_file():
            doc = json.loads(info.read_text())
            doc.pop("recipe", None)
            doc.pop("rank_weight_digests", None)
            meta["stages"][stage] = doc
    return save_bundle(model, out, meta)
