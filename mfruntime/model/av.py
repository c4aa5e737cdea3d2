"""The loadable model: the twin-stream transformer, both codecs and the optional rig head."""
from __future__ import annotations

from torch import nn

from mfruntime.config import ModelConfig
from mfruntime.model.codec_audio import make_audio_codec
from mfruntime.model.codec_video import VideoCodec
from mfruntime.model.rig_head import RigHead
from mfruntime.model.transformer import TwinStreamTransformer


class AVModel(nn.Module):
    """The transformer, both codecs and (when ``cfg.rig`` is set) the rig head, as one loadable unit."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.transformer = TwinStreamTransformer(cfg)
        self.video_codec = VideoCodec(cfg.video_codec)
        self.audio_codec = make_audio_codec(cfg.audio_codec)
        self.rig = RigHead(cfg) if cfg.rig else None
