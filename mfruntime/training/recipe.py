"""Training recipes: one TOML file per preset (recipes/<preset>.toml), one table per stage.

    preset = "tiny"
    [data]              # shared by all stages
    corpus = "corpus/train"
    [stages.codec-video]
    steps = 3000
    ...

Every table maps onto a frozen dataclass; an unknown field is an error that names it (a typo must
never silently fall back to a default).
"""
from __future__ import annotations

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser as the tomli package
    import tomli as tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from mfruntime.config import RIG_SOURCES

STAGE_NAMES = ("codec-video", "codec-audio", "audio", "video", "joint", "mutual", "probe", "syncnet", "rig")
#: Stages whose output is not the transformer (a bundle's lineage lists only the transformer's).
SIDE_STAGES = ("probe", "syncnet", "rig")


@dataclass(frozen=True)
class DataRecipe:
    corpus: str = "corpus/train"  # folder of clips (searched recursively)
    window_seconds: float = 1.92  # training window (a whole number of chunks for the diffusion stages)
    val_fraction: float = 0.05  # clips held out for validation
    split_seed: int = 0  # which clips are held out
    cache: str = "cache"  # where decoded clips and latents are cached (git-ignored)


TEACHERS = ("ema", "frozen", "self")  # where the mutual stage's multi-step target comes from
FM_HISTORIES = ("generated", "real", "both")  # the context of the mutual stage's flow-matching term


@dataclass(frozen=True)
class StageRecipe:
    steps: int = 1000  # optimiser steps
    batch_size: int = 8  # windows (or frames / audio crops for codecs) per step, per process
    lr: float = 3e-4  # peak learning rate (AdamW)
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.99)
    warmup_steps: int = 50  # linear warm-up, then cosine decay to lr_min_ratio·lr
    lr_min_ratio: float = 0.1
    grad_clip: float = 1.0  # max gradient norm (0 = off)
    ema_decay: float = 0.999  # exponential moving average of the weights (0 = off)
    seed: int = 0
    log_every: int = 10  # steps between metric log lines
    ckpt_every: int = 200  # steps between checkpoints
    keep_last: int = 3  # checkpoints kept
    init_from: list[str] = field(default_factory=list)  # earlier stages whose final weights this stage starts from
    # Stage-specific knobs (ignored by stages that do not use them):
    window_chunks: int = 0  # diffusion stages: chunks per training window; 0 = data.window_seconds
    crop_frames: int = 8  # codec-video: frames per window used per step
    crop_seconds: float = 0.64  # codec-audio: audio crop per example
    stft_weight: float = 1.0  # codec-audio: multi-resolution STFT loss weight
    spectrum_weight: float = 10.0  # codec-audio: compressed-spectrum (complex + magnitude) loss weight
    sync_weight: float = 0.1  # joint/mutual: synchronisation loss weight
    sync_temperature: float = 0.1  # joint/mutual: InfoNCE temperature
    drive_fraction: float = 0.0  # joint/mutual: fraction of windows trained in audio-driven mode (clean audio, no phonemes)
    few_steps: tuple[int, ...] = (1, 2, 4)  # mutual: few-step counts sampled per rollout
    teacher_steps: int = 16  # mutual: multi-step teacher steps
    rollout_chunks: int = 4  # mutual: chunks per self-generated rollout
    distill_weight: float = 1.0  # mutual: few-step → multi-step distillation weight
    fm_weight: float = 1.0  # mutual: flow-matching weight on real chunks (history: fm_history)
    shortcut_weight: float = 0.0  # mutual: shortcut self-consistency weight (one 2d step = two d steps)
    # mutual: where the multi-step target comes from. "frozen": a copy of the weights the stage starts from (the
    # best measured, docs/EVAL.md); "ema": a teacher network holding the exponential moving average of the
    # student's weights (teacher_decay per step); "self": the student's own current weights (the teacher moves
    # with every update).
    teacher: str = "frozen"
    teacher_decay: float = 0.999  # mutual, teacher "ema": the teacher's decay per optimiser step
    # mutual: the history the flow-matching term sees: "generated" (the few-step rollout's own chunks, as at
    # inference), "real" (teacher forcing on the real window) or "both" (the mean of the two).
    fm_history: str = "generated"
    # mutual: show the few-step rollouts their own step sizes (1, ½, ¼), which the distillation then trains, and
    # export a model that sees them (ModelConfig.max_step_size = 1). False: every d is clipped to the joint
    # stage's range (1/8), in training as at inference.
    few_step_d: bool = True
    rig_source: str = "av"  # rig: what the rig head reads, "video" or "av" (ModelConfig.rig; docs/MODEL.md)
    critic_steps: int = 300  # mutual: sync-critic training steps on real pairs before the stage, when the joint stage's critic is not found

    def __post_init__(self) -> None:
        if self.teacher not in TEACHERS:
            raise ValueError(f"teacher must be one of {', '.join(TEACHERS)}, got {self.teacher!r}")
        if not 0.0 < self.teacher_decay < 1.0:
            raise ValueError(f"teacher_decay must be between 0 and 1 (exclusive), got {self.teacher_decay}")
        if self.shortcut_weight > 0 and not self.few_step_d:
            raise ValueError("shortcut_weight needs few_step_d = true: with the step size clipped to 1/8 a 2d step is "
                             "shown the same d as a d step, so the self-consistency target contradicts flow matching")
        if self.rig_source not in RIG_SOURCES:
            raise ValueError(f"rig_source must be one of {', '.join(RIG_SOURCES)}, got {self.rig_source!r}")
        if self.fm_history not in FM_HISTORIES:
            raise ValueError(f"fm_history must be one of {', '.join(FM_HISTORIES)}, got {self.fm_history!r}")


#: ModelConfig fields a recipe's [model] table may change (switches for ablations), with their types; anything
#: else is an error.
MODEL_OVERRIDES: dict[str, type] = {"aligned_phonemes": bool, "reference_anchor": bool, "step_conditioning": bool}
#: ModelConfig fields a stage's output may differ in from its preset: the [model] switches, and the trained range
#: of the step size (set by the mutual stage's ``few_step_d``). final.json records them; mf export applies them.
STAGE_CONFIG_FIELDS = (*MODEL_OVERRIDES, "max_step_size", "rig")


@dataclass(frozen=True)
class Recipe:
    preset: str
    data: DataRecipe
    stages: dict[str, StageRecipe]
    path: str = ""
    model: dict[str, Any] = field(default_factory=dict)  # [model] overrides of the preset (MODEL_OVERRIDES)

    def model_config(self):
        """The preset's ModelConfig with the [model] overrides applied."""
        import dataclasses

        from mfruntime.config import preset

        return dataclasses.replace(preset(self.preset), **self.model)

    def stage(self, name: str) -> StageRecipe:
        if name not in STAGE_NAMES:
            raise ValueError(f"unknown stage {name!r}: choose one of {', '.join(STAGE_NAMES)}")
        if name not in self.stages:
            raise ValueError(f"recipe {self.path} has no [stages.{name}] table")
        return self.stages[name]


_TUPLE_FIELDS = ("betas", "few_steps")


def _build(cls, table: dict[str, Any], where: str):
    known = {f.name: f for f in fields(cls)}
    for key in table:
        if key not in known:
            raise ValueError(f"{where}: unknown field {key!r} (known: {', '.join(sorted(known))})")
    values = {k: tuple(v) if isinstance(v, list) and k in _TUPLE_FIELDS else v for k, v in table.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}") from exc


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file; errors name the file and the offending field."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recipe {path} not found (recipes live in recipes/<preset>.toml)")
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML ({exc})") from exc
    for key in doc:
        if key not in ("preset", "data", "stages", "model"):
            raise ValueError(f"{path}: unknown field {key!r} (known: data, model, preset, stages)")
    model = doc.get("model", {})
    for key, value in model.items():
        if key not in MODEL_OVERRIDES:
            raise ValueError(f"{path} [model]: {key!r} cannot be set by a recipe (allowed: {', '.join(MODEL_OVERRIDES)})")
        if MODEL_OVERRIDES[key] is bool and not isinstance(value, bool):
            raise ValueError(f"{path} [model]: {key} must be true or false, got {value!r}")
    if "preset" not in doc:
        raise ValueError(f"{path}: missing 'preset' (e.g. preset = \"tiny\")")
    data = _build(DataRecipe, doc.get("data", {}), f"{path} [data]")
    stages = {}
    for name, table in doc.get("stages", {}).items():
        if name not in STAGE_NAMES:
            raise ValueError(f"{path}: unknown stage {name!r} (known: {', '.join(STAGE_NAMES)})")
        stages[name] = _build(StageRecipe, table, f"{path} [stages.{name}]")
    return Recipe(preset=str(doc["preset"]), data=data, stages=stages, path=str(path), model=dict(model))
