"""The stage interface: a small module whose forward computes one step's losses.

The shared loop (loop.py) owns data order, optimiser, EMA, logging and checkpoints;
a stage only says what its trainable network is, how a batch is made from item
indices, and what the losses are. Everything random in a step comes from the
``torch.Generator`` the loop passes in, seeded by (recipe seed, step, rank), so a
resumed run repeats an uninterrupted one bit for bit.
"""
from __future__ import annotations

import logging
from abc import ABCMeta, abstractmethod
from pathlib import Path

import torch
from torch import nn

from mfruntime.config import ModelConfig
from mfruntime.training.recipe import DataRecipe, StageRecipe

log = logging.getLogger(__name__)


class Stage(nn.Module, metaclass=ABCMeta):
    name = ""

    def __init__(self, cfg: ModelConfig, recipe: StageRecipe, data: DataRecipe, run_root: Path, progress: bool) -> None:
        super().__init__()
        self.cfg, self.recipe, self.data_recipe = cfg, recipe, data
        self.run_root, self.progress = Path(run_root), progress

    # --- every stage defines these ---------------------------------------------------------
    @abstractmethod
    def prepare(self) -> int:
        """Load data; return the number of training items."""
        ...

    @abstractmethod
    def make_batch(self, indices: list[int], g: torch.Generator) -> dict:
        """A batch from item indices; randomness only from ``g``."""

    @abstractmethod
    def forward(self, batch: dict, g: torch.Generator) -> dict[str, torch.Tensor]:
        """Losses of one step; "loss" is the one to minimise."""
        ...

    @abstractmethod
    def export(self) -> dict[str, torch.Tensor]:
        """The weights this stage produces (what later stages and the bundled model load)."""
        ...

    # --- optional hooks --------------------------------------------------------------------
    def untracked(self, key: str) -> bool:
        """State-dict entries the training loop's weight EMA leaves out (parts the optimiser does not train)."""
        return False

    def after_step(self, step: int) -> None:
        """After each optimiser step (``step`` counts the steps done), e.g. to move a slow teacher."""

    def finalize(self) -> None:
        """After the last step (e.g. codec latent statistics)."""

    def validate(self) -> dict[str, float]:
        """Held-out metrics after training."""
        return {}

    def load_init(self, stage: str, weights: dict[str, torch.Tensor]) -> None:
        raise ValueError(f"stage {self.name} cannot start from {stage}")

    # --- helpers ---------------------------------------------------------------------------
    def frozen_codecs(self) -> dict:
        """The trained codecs (stages codec-video and codec-audio), frozen: {"video": …, "audio": …}."""
        from safetensors.torch import load_file

        from mfruntime.model.codec_audio import make_audio_codec
        from mfruntime.model.codec_video import VideoCodec

        vc = VideoCodec(self.cfg.video_codec)
        vc.load_state_dict(load_file(str(self.stage_output("codec-video"))))
        ac = make_audio_codec(self.cfg.audio_codec)
        ac.load_state_dict(load_file(str(self.stage_output("codec-audio"))))
        return {"video": vc.freeze(), "audio": ac.freeze()}

    def stage_output(self, stage: str) -> Path:
        path = self.run_root / stage / "final.safetensors"
        if not path.is_file():
            raise FileNotFoundError(f"stage {self.name} needs the output of stage {stage} ({path}): "
                                    f"run `mf train --stage {stage}` with the same recipe first")
        return path
