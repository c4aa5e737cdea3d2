"""Training stages: each overrides one step function of the shared loop."""
from mfruntime.training.stages.base import Stage
from mfruntime.training.stages.codecs import AudioCodecStage, VideoCodecStage
from mfruntime.training.stages.diffusion import AudioStage, JointStage, VideoStage
from mfruntime.training.stages.mutual import MutualStage
from mfruntime.training.stages.probe import ProbeStage
from mfruntime.training.stages.rig import RigStage
from mfruntime.training.stages.syncnet import SyncNetStage

STAGES: dict[str, type[Stage]] = {
    cls.name: cls for cls in (VideoCodecStage, AudioCodecStage, AudioStage, VideoStage, JointStage, MutualStage,
                       ProbeStage, SyncNetStage, RigStage)
}

__all__ = ["STAGES", "Stage"]
