"""Data: speech with phoneme timings, the procedural face, the synthetic corpus and the clip loader."""
from mfruntime.data.dataset import ClipRecord, ClipWindows, LoaderConfig, ScanResult, collate_windows, scan_clips, split_clips
from mfruntime.data.media import DecodedClip, MediaError, read_clip, write_clip
from mfruntime.data.render import FaceRenderer, FaceState, Identity
from mfruntime.data.speech import Phoneme, Speech, Voice, list_voices, synthesize
from mfruntime.data.synth import SynthConfig, synthesize_corpus

__all__ = [
    "ClipRecord", "ClipWindows", "DecodedClip", "FaceRenderer", "FaceState", "Identity", "LoaderConfig",
    "MediaError", "Phoneme", "ScanResult", "Speech", "SynthConfig", "Voice", "collate_windows", "list_voices",
    "read_clip", "scan_clips", "split_clips", "synthesize", "synthesize_corpus", "write_clip",
]
