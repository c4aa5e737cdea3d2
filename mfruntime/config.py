"""Typed configuration shared by every part of mfruntime.

Everything that depends on time is derived from three numbers — the video frame
rate, the audio sample rate and the chunk length — so no other module needs a
magic constant (one chunk = 160 ms = 4 video frames; docs/MODEL.md).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


#: Step sizes d the flow-matching stages draw (the multi-step mode, 8–50 steps, and d = 0, the instantaneous
#: velocity). The velocity target is the same for every d there, so these stages give d no meaning beyond this
#: range: a network trained only by them must never be shown a larger d (``ModelConfig.max_step_size``).
MULTI_STEP_D: tuple[float, ...] = (0.0, 1 / 50, 1 / 32, 1 / 16, 1 / 8)


#: Denoising steps per chunk: the range every entry point accepts (1–4 live, 8–50 quality) and the default.
MIN_STEPS, MAX_STEPS = 1, 50
DEFAULT_STEPS = 4

#: What a Session, mf demo, mf serve and mf eval use unless told otherwise.
DEFAULT_MODEL = "tiny"  # the bundled model
DEFAULT_DEVICE = "auto"  # CUDA when there is one, else the CPU
DEFAULT_BACKEND = "auto"  # the fastest chunk-step backend that works here
DEFAULT_THREADS = "auto"  # CPU threads per chunk: the cores other processes leave free, re-measured every chunk

#: What draws a character's face (Session.set_character(image, renderer=…), mf demo --renderer, the server's
#: set_character): the model's own learned face, the portrait renderer (docs/PORTRAIT.md), or "auto": the model
#: for images the size of its own characters (long side at most MODEL_IMAGE_MAX_SIDE), the portrait renderer for
#: larger ones (photos, paintings, renders).
RENDERERS = ("auto", "model", "portrait")
DEFAULT_RENDERER = "auto"
MODEL_IMAGE_MAX_SIDE = 128  # the model draws 64-px faces; its own characters are made at that scale
#: A portrait's output long side, px (at least, at most) and its default: real time beside the model here.
PORTRAIT_SIZES = (256, 512)
DEFAULT_PORTRAIT_SIZE = 256

#: mf serve's defaults (runtime/server/config.py's ServeConfig and the CLI read them here).
DEFAULT_BIND = "tcp://127.0.0.1:5555"  # the control socket; the stream socket takes the next port
DEFAULT_STREAM = "tcp://127.0.0.1:5556"  # where a client finds the stream of a server on DEFAULT_BIND
DEFAULT_MAX_CHARACTERS = 16
DEFAULT_SEND_HWM = 64  # messages queued per subscriber before ZeroMQ drops for a slow one


@dataclass(frozen=True)
class MediaConfig:
    """Time base of the generated media."""

    fps: int = 25  # video frames per second
    sample_rate: int = 16_000  # audio samples per second (mono PCM)
    chunk_seconds: float = 0.16  # length of one autoregressive chunk
    # Derived in __post_init__ (not constructor arguments):
    samples_per_frame: int = field(init=False)  # audio samples covered by one video frame
    frames_per_chunk: int = field(init=False)  # video frames in one chunk
    samples_per_chunk: int = field(init=False)  # audio samples in one chunk

    def __post_init__(self) -> None:
        if self.fps <= 0 or self.sample_rate <= 0:
            raise ValueError(f"fps and sample_rate must be positive, got {self.fps} and {self.sample_rate}")
        if self.sample_rate % self.fps:
            raise ValueError(
                f"sample_rate ({self.sample_rate}) must be a whole multiple of fps ({self.fps}) "
                "so every video frame covers a whole number of audio samples"
            )
        frames = self.chunk_seconds * self.fps
        if abs(frames - round(frames)) > 1e-6 or round(frames) < 1:
            raise ValueError(
                f"chunk_seconds ({self.chunk_seconds}) must cover a whole number of frames at {self.fps} fps"
            )
        object.__setattr__(self, "samples_per_frame", self.sample_rate // self.fps)
        object.__setattr__(self, "frames_per_chunk", int(round(frames)))
        object.__setattr__(self, "samples_per_chunk", self.frames_per_chunk * self.samples_per_frame)


#: The time base used everywhere unless a caller passes another one.
DEFAULT_MEDIA = MediaConfig()

#: Frame sizes the renderer and loader accept (square frames).
FRAME_SIZES = (64, 128, 256)


# --- phonemes ----------------------------------------------------------------------------

#: The phoneme vocabulary of new models: id 0 pads, id 1 is any unknown symbol, then eSpeak NG phoneme
#: mnemonics (stress marks removed). A model stores its own copy (ModelConfig.phonemes, saved in its
#: bundle), so editing this list never renumbers the embeddings of a model that was already trained.
PHONEME_VOCAB: tuple[str, ...] = (
    '<pad>', '<unk>', '*', '0', '3', '3:', '3r', '?', '@', '@-', '@2', '@5', '@L', '@r', 'A', 'A:',
    'A@', 'D', 'E', 'E2', 'E3', 'I', 'I#', 'I2', 'L', 'N', 'O', 'O2', 'O:', 'O@', 'OI', 'R', 'S',
    'T', 'U', 'U@', 'V', 'VR', 'Z', '_', 'a', 'a#', 'a2', 'aI', 'aI3', 'aI@', 'aU', 'aU3', 'aU@',
    'aa', 'b', 'd', 'd#', 'd2', 'dZ', 'e', 'e#', 'e@', 'eI', 'f', 'g', 'h', 'i', 'i:', 'i@', 'i@3',
    'j', 'k', 'l', 'l-', 'l/', 'm', 'm-', 'n', 'n-', 'n^', 'o', 'o@', 'oU', 'p', 'r', 'r-', 's',
    't', 't#', 't2', 'tS', 'u', 'u:', 'u@', 'v', 'w', 'x', 'y', 'z',
)


# --- model -------------------------------------------------------------------------------

@dataclass(frozen=True)
class VideoCodecConfig:
    """Per-frame convolutional autoencoder (8× spatial downsampling)."""

    size: int = 64  # frame size in pixels (square)
    channels: tuple[int, ...] = (32, 64, 128)  # conv widths; one stride-2 stage each (3 stages = 8×)
    latent_channels: int = 8  # channels of the latent map
    # Derived:
    latent_size: int = field(init=False)  # side of the latent map (size / 2**stages)

    def __post_init__(self) -> None:
        if self.size not in FRAME_SIZES:
            raise ValueError(f"video size must be one of {FRAME_SIZES}, got {self.size}")
        down = 2 ** len(self.channels)
        if self.size % down:
            raise ValueError(f"video size {self.size} is not divisible by the codec's {down}x downsampling")
        object.__setattr__(self, "latent_size", self.size // down)


#: Audio codec kinds: "harmonic" (phase-free source-filter parameters, synthesised; the default) and
#: "stft" (a learned codec on compressed complex STFT frames, whose latents carry phase).
AUDIO_CODEC_KINDS = ("harmonic", "stft")


@dataclass(frozen=True)
class AudioCodecConfig:
    """Audio codec: 16 kHz PCM ↔ 50 Hz latent sequence (causal, streamable). Fields marked [stft] or
    [harmonic] apply to that kind only."""

    kind: str = "harmonic"  # one of AUDIO_CODEC_KINDS (docs/TRAINING.md compares them)
    sample_rate: int = 16_000  # Hz
    latent_rate: int = 50  # latent frames per second
    latent_channels: int = 66  # channels per latent frame ([harmonic]: log f0, periodicity, then latent_channels − 2 envelope bands)
    hidden: int = 384  # [stft] width of the encoder and decoder convs
    decoder_layers: int = 3  # [stft] causal conv layers (kernel 3) on the latent sequence in the decoder
    encoder_layers: int = 2  # [stft] causal conv layers (kernel 3) on the analysed frames in the encoder
    compression: float = 0.3  # [stft] power p of the compressed spectrum |X|^p·e^{i∠X} the codec works on
    pitch_window: int = 800  # [harmonic] samples per pitch (YIN) analysis frame; must hold two periods of 60 Hz
    envelope_window: int = 384  # [harmonic] samples of the Hann window the spectral envelope is measured with
    voicing_low: float = 0.2  # [harmonic] periodicity at or below which a frame is synthesised as pure noise
    voicing_high: float = 0.5  # [harmonic] periodicity at or above which a frame is purely harmonic
    pitch_emphasis: float = 3.0  # [harmonic] log f0 and periodicity are scaled to this std (not 1) in the latent
    # Derived:
    hop: int = field(init=False)  # samples per latent frame

    def __post_init__(self) -> None:
        if self.kind not in AUDIO_CODEC_KINDS:
            raise ValueError(f"audio codec kind must be one of {', '.join(AUDIO_CODEC_KINDS)}, got {self.kind!r}")
        if not 0 < self.compression <= 1:
            raise ValueError(f"audio codec compression must be in (0, 1], got {self.compression}")
        if self.sample_rate % self.latent_rate:
            raise ValueError(f"sample_rate {self.sample_rate} must be a multiple of latent_rate {self.latent_rate}")
        if self.pitch_emphasis <= 0:
            raise ValueError(f"pitch_emphasis must be positive, got {self.pitch_emphasis}")
        if not 0 <= self.voicing_low < self.voicing_high <= 1:
            raise ValueError(f"need 0 <= voicing_low < voicing_high <= 1, got {self.voicing_low}, {self.voicing_high}")
        object.__setattr__(self, "hop", self.sample_rate // self.latent_rate)
        if self.kind == "harmonic":
            if self.latent_channels < 10:
                raise ValueError(f"a harmonic audio codec needs latent_channels >= 10 (log f0, periodicity and at least "
                                 f"8 envelope bands), got {self.latent_channels}")
            if self.pitch_window < 2 * self.sample_rate // 60 or self.envelope_window > self.pitch_window:
                raise ValueError(f"pitch_window ({self.pitch_window}) must hold two periods of 60 Hz and be at least "
                                 f"envelope_window ({self.envelope_window})")


@dataclass(frozen=True)
class StreamConfig:
    """One stream (video or audio) of the twin-stream transformer."""

    dim: int = 128  # token width
    layers: int = 4  # transformer blocks
    heads: int = 4  # attention heads (head_dim = dim / heads, equal in both streams)
    mlp_ratio: float = 4.0  # MLP hidden width / dim

    def __post_init__(self) -> None:
        if self.dim % self.heads:
            raise ValueError(f"stream dim {self.dim} must be divisible by heads {self.heads}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads


#: What a rig head can read (ModelConfig.rig).
RIG_SOURCES = ("video", "av")


@dataclass(frozen=True)
class ModelConfig:
    """The dual-mode causal audio-video model (docs/MODEL.md)."""

    media: MediaConfig = MediaConfig()  # time base: fps, sample rate, chunk length
    video_codec: VideoCodecConfig = VideoCodecConfig()
    audio_codec: AudioCodecConfig = AudioCodecConfig()
    video: StreamConfig | None = StreamConfig()  # None switches the video stream off (audio-only model)
    audio: StreamConfig | None = StreamConfig()  # None switches the audio stream off (video-only model)
    patch: int = 2  # video latent patch size (tokens per frame = (latent_size / patch)²)
    window_chunks: int = 8  # W: past chunks kept in the KV ring cache (plus the sink)
    phoneme_window: float = 0.32  # seconds of phonemes visible before a chunk starts and after it ends
    max_phonemes: int = 32  # phoneme tokens per chunk window (static shape; more is an error)
    audio_ref_steps: int = 16  # audio latent steps in the speaker-reference sink (0.32 s at 50 Hz)
    phonemes: tuple[str, ...] = PHONEME_VOCAB  # phoneme vocabulary (ids index it; stored in the bundle)
    aligned_phonemes: bool = True  # add the phoneme sounding at each latent step / frame to its token (ablation: False)
    # Show the network the step size d at all (an embedding added to the noise level's). False: no d input, the
    # paper's plain multi-step baseline (recipes/ablations/tiny-no-step-d.toml); every d a caller passes is ignored.
    step_conditioning: bool = True
    reference_anchor: bool = True  # add the reference frame's latent patch to each video token (ablation: False)
    rope_time_min_hz: float = 0.2  # slowest rotary frequency on the time axis
    rope_time_max_hz: float = 25.0  # fastest rotary frequency on the time axis
    rope_time_fraction: float = 0.5  # fraction of each head's dims rotated by time (video: the rest by row/column)
    # Largest step size d the network was trained on. An Euler step larger than this (1, ½, ¼ in the few-step
    # modes) is shown d = max_step_size: a d outside training is out of distribution (docs/EVAL.md). 1.0 for a
    # model whose training drew the few-step sizes too (the mutual stage with few_step_d).
    max_step_size: float = max(MULTI_STEP_D)
    # What the rig head reads (model/rig_head.py): "video" (the frame's video latent), "av" (and the audio latents
    # sounding during the frame), or "" for a model without a rig head (no rig stream).
    rig: str = ""
    # Derived:
    frames_per_chunk: int = field(init=False)  # video frames per chunk (4)
    latent_steps_per_chunk: int = field(init=False)  # audio latent steps per chunk (8)
    video_tokens_per_frame: int = field(init=False)
    video_tokens_per_chunk: int = field(init=False)
    audio_tokens_per_chunk: int = field(init=False)

    def __post_init__(self) -> None:
        if self.video is None and self.audio is None:
            raise ValueError("a model needs at least one stream: video, audio or both")
        if self.video is not None and self.audio is not None and (
            self.video.heads != self.audio.heads or self.video.head_dim != self.audio.head_dim
        ):
            raise ValueError("video and audio streams must have the same heads and head_dim: "
                             "cross-modal attention reads the other stream's keys and values")
        if self.audio_codec.sample_rate != self.media.sample_rate:
            raise ValueError("audio codec sample_rate must equal the media sample_rate")
        steps = self.media.chunk_seconds * self.audio_codec.latent_rate
        if abs(steps - round(steps)) > 1e-6:
            raise ValueError(f"a {self.media.chunk_seconds}s chunk must hold whole audio latent steps")
        if self.video_codec.latent_size % self.patch:
            raise ValueError(f"patch {self.patch} must divide the latent size {self.video_codec.latent_size}")
        if len(self.phonemes) < 3 or tuple(self.phonemes[:2]) != ("<pad>", "<unk>") or len(set(self.phonemes)) != len(self.phonemes):
            raise ValueError("phonemes must start with '<pad>', '<unk>' and hold each symbol once")
        if self.window_chunks < 1:
            raise ValueError(f"window_chunks must be >= 1, got {self.window_chunks}")
        if not max(MULTI_STEP_D) <= self.max_step_size <= 1.0:
            raise ValueError(f"max_step_size must be between {max(MULTI_STEP_D)} (the multi-step range every model is "
                             f"trained on) and 1, got {self.max_step_size}")
        if self.rig not in ("", *RIG_SOURCES):
            raise ValueError(f"rig must be one of {', '.join(RIG_SOURCES)} or empty (no rig head), got {self.rig!r}")
        if self.rig and self.video is None:
            raise ValueError("a rig head reads the video stream's latents: an audio-only model cannot have one")
        side = self.video_codec.latent_size // self.patch
        object.__setattr__(self, "frames_per_chunk", self.media.frames_per_chunk)
        object.__setattr__(self, "latent_steps_per_chunk", int(round(steps)))
        object.__setattr__(self, "video_tokens_per_frame", side * side)
        object.__setattr__(self, "video_tokens_per_chunk", side * side * self.media.frames_per_chunk)
        object.__setattr__(self, "audio_tokens_per_chunk", int(round(steps)))

    @property
    def head_dim(self) -> int:
        return (self.video or self.audio).head_dim  # type: ignore[union-attr]


def _preset(size: int, video_codec: tuple[int, ...], dim: int, layers: int, heads: int, window: int) -> ModelConfig:
    return ModelConfig(
        video_codec=VideoCodecConfig(size=size, channels=video_codec),
        video=StreamConfig(dim=dim, layers=layers, heads=heads),
        audio=StreamConfig(dim=dim, layers=layers, heads=heads),
        window_chunks=window,
        patch=2 if size == 64 else 4,
    )


#: Named model sizes. `tiny` trains on 2 CPU cores; `small` and `base` want a GPU.
PRESETS: dict[str, ModelConfig] = {
    "tiny": _preset(64, (32, 64, 128), dim=128, layers=4, heads=4, window=8),
    "small": _preset(128, (48, 96, 192), dim=384, layers=8, heads=6, window=16),
    "base": _preset(256, (64, 128, 256), dim=768, layers=12, heads=12, window=32),
}


#: ``tiny`` with the learned phase-carrying STFT audio codec of earlier versions (128 latent channels), kept
#: for comparison (docs/TRAINING.md) and to test that codec's training.
PRESETS["tiny-stft"] = dataclasses.replace(PRESETS["tiny"], audio_codec=AudioCodecConfig(kind="stft", latent_channels=128))


def preset(name: str) -> ModelConfig:
    """The named preset (tiny, small, base)."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[name]
