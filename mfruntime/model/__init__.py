"""The dual-mode causal audio-video model: codecs, twin-stream transformer, KV ring cache, generation."""
from mfruntime.model.cache import RingKVCache
from mfruntime.model.codec_audio import AudioCodec, AudioDecodeState, make_audio_codec
from mfruntime.model.codec_harmonic import HarmonicCodec, HarmonicDecodeState
from mfruntime.model.codec_video import VideoCodec
from mfruntime.model.generate import AVModel, GeneratedChunk, GenerationOptions, Generator
from mfruntime.model.phonemes import PhonemeTrack, PhonemeWindow
from mfruntime.model.transformer import StreamState, TwinStreamTransformer

__all__ = [
    "AVModel", "AudioCodec", "AudioDecodeState", "HarmonicCodec", "HarmonicDecodeState", "make_audio_codec", "GeneratedChunk", "GenerationOptions", "Generator",
    "PhonemeTrack", "PhonemeWindow", "RingKVCache", "StreamState", "TwinStreamTransformer", "VideoCodec",
]
