"""Real speech with phoneme timings from the eSpeak NG C library (via ctypes).

The library and its data come from the PyPI package ``espeakng-loader``, so no
system package is needed. eSpeak runs in synchronous mode: our callback receives
the 22.05 kHz waveform buffer by buffer together with the events (words,
phonemes, pauses) and the sample position at which each starts. The waveform is
resampled to the project's sample rate (16 kHz mono float32) and the phoneme
times are kept in seconds, so they stay exact under resampling.

eSpeak keeps global state, so all calls go through one process-wide lock; run
several processes (as ``mf data synth`` does) for parallel synthesis.

Determinism: the noise generator is re-seeded before every call, so the first
call in a fresh process is exactly reproducible. eSpeak's pitch "flutter"
phase, however, is a static counter inside the library that keeps running
across calls, so repeating a call later in the same process gives the same
phonemes but a slightly different waveform and timings (within a few ms). The corpus builder
therefore makes every clip in a fresh process.
"""
from __future__ import annotations

import ctypes
import logging
import threading
from dataclasses import dataclass, field
from math import gcd
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from mfruntime.config import DEFAULT_MEDIA
from mfruntime.data.spoken_text import MAX_TEXT_CHARS, prepare_text  # noqa: F401  (MAX_TEXT_CHARS re-exported)

log = logging.getLogger(__name__)


# espeak_AUDIO_OUTPUT / options / event types / parameters (speak_lib.h).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS = 0x0001
_CHARS_UTF8 = 1
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH, _PARAM_RANGE = 1, 2, 3, 4

#: Accents used by the synthetic corpus (eSpeak voice identifiers, English text).
ENGLISH_ACCENTS = ("en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us-nyc", "en-gb-x-gbclan")
#: Voice variants (timbre) that keep normal voiced speech.
VOICE_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """espeak_EVENT from speak_lib.h."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # milliseconds
        ("sample", ctypes.c_int),  # sample index at the engine's own rate
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass(frozen=True)
class Voice:
    """How eSpeak should speak: accent + variant, pitch and rate."""

    name: str = "en-us+m3"  # eSpeak voice, "<accent>+<variant>", e.g. "en-gb-x-rp+f2"
    pitch: int = 50  # base pitch, 0–100
    rate: int = 160  # speaking rate in words per minute, 80–450
    pitch_range: int = 50  # intonation range, 0–100

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"voice name must be a non-empty string like 'en-us+m3', got {self.name!r}")
        if not 0 <= self.pitch <= 100:
            raise ValueError(f"voice pitch must be in 0..100, got {self.pitch}")
        if not 80 <= self.rate <= 450:
            raise ValueError(f"voice rate must be in 80..450 words per minute, got {self.rate}")
        if not 0 <= self.pitch_range <= 100:
            raise ValueError(f"voice pitch_range must be in 0..100, got {self.pitch_range}")

    def to_dict(self) -> dict:
        return {"name": self.name, "pitch": self.pitch, "rate": self.rate, "pitch_range": self.pitch_range}

    @classmethod
    def from_dict(cls, d: dict) -> "Voice":
        return cls(name=d["name"], pitch=int(d["pitch"]), rate=int(d["rate"]), pitch_range=int(d["pitch_range"]))

    @classmethod
    def random(cls, rng: np.random.Generator) -> "Voice":
        """A random English voice: accent, variant, pitch and rate drawn from ``rng``."""
        accent = ENGLISH_ACCENTS[rng.integers(len(ENGLISH_ACCENTS))]
        variant = VOICE_VARIANTS[rng.integers(len(VOICE_VARIANTS))]
        return cls(
            name=f"{accent}+{variant}",
            pitch=int(rng.integers(25, 76)),
            rate=int(rng.integers(135, 206)),
            pitch_range=int(rng.integers(30, 81)),
        )


@dataclass(frozen=True)
class Phoneme:
    """One phoneme (or pause, symbol ``_``) and where it sits in the waveform."""

    symbol: str  # eSpeak phoneme mnemonic without stress marks, e.g. "oU"; "_" is a pause
    start: float  # seconds from the start of the waveform
    end: float  # seconds; equals the next phoneme's start
    stressed: bool = False  # eSpeak marked primary or secondary stress

    def to_dict(self) -> dict:
        return {"symbol": self.symbol, "start": round(self.start, 6), "end": round(self.end, 6), "stressed": self.stressed}

    @classmethod
    def from_dict(cls, d: dict) -> "Phoneme":
        return cls(str(d["symbol"]), float(d["start"]), float(d["end"]), bool(d.get("stressed", False)))


@dataclass
class Speech:
    """Result of :func:`synthesize`."""

    pcm: np.ndarray  # (S,) float32 in [-1, 1], mono
    sample_rate: int  # Hz
    phonemes: list[Phoneme] = field(default_factory=list)  # in time order, covering [0, duration]
    text: str = ""
    voice: Voice = field(default_factory=Voice)

    @property
    def duration(self) -> float:
        return len(self.pcm) / self.sample_rate


class _Engine:
    """The loaded eSpeak library; one per process."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as exc:  # pragma: no cover - install problem
            raise RuntimeError(
                "eSpeak NG is missing: install the 'espeakng-loader' package (make demo does this)"
            ) from exc
        lib_path = espeakng_loader.get_library_path()
        data_path = espeakng_loader.get_data_path()
        lib = ctypes.CDLL(lib_path)
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.restype = ctypes.c_int
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ng_SetRandSeed.restype = None
        self.sample_rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, str(data_path).encode(), _INIT_PHONEME_EVENTS
        )
        if self.sample_rate <= 0:
            raise RuntimeError(f"eSpeak NG failed to initialise from {data_path} (code {self.sample_rate})")
        self.lib = lib
        self.data_path = Path(data_path)
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, str]] = []  # (sample position, raw phoneme mnemonic)
        self._callback = _CALLBACK(self._on_audio)  # keep a reference: C holds the pointer
        lib.espeak_SetSynthCallback(self._callback)
        self._voice: Voice | None = None

    def _on_audio(self, wav, n_samples, events) -> int:
        if n_samples > 0:
            # Copy the bytes, not np.ctypeslib.as_array(wav, shape=(n,)): that makes (and ctypes caches forever) a
            # new array type for every distinct length, about 5.6 KB each — the slow memory creep of long streams.
            raw = ctypes.string_at(wav, n_samples * ctypes.sizeof(ctypes.c_short))
            self._chunks.append(np.frombuffer(raw, dtype=np.int16).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == _EVENT_PHONEME:
                self._events.append((int(ev.sample), bytes(ev.id.string).split(b"\0")[0].decode("ascii", "replace")))
            i += 1
        return 0  # 0 = continue synthesis

    def set_voice(self, voice: Voice) -> None:
        if voice == self._voice:
            return
        if self.lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
            raise ValueError(
                f"unknown eSpeak voice {voice.name!r}: use '<accent>+<variant>' with an accent such as "
                f"{', '.join(ENGLISH_ACCENTS[:3])} and a variant such as m3 or f2 (see mfruntime.data.speech.list_voices())"
            )
        for param, value in ((_PARAM_RATE, voice.rate), (_PARAM_PITCH, voice.pitch), (_PARAM_RANGE, voice.pitch_range)):
            self.lib.espeak_SetParameter(param, int(value), 0)
        self._voice = voice
        _accepted_names.add(voice.name)

    def synth(self, text: str) -> tuple[np.ndarray, list[tuple[int, str]]]:
        self._chunks, self._events = [], []
        self.lib.espeak_ng_SetRandSeed(0)
        data = text.encode("utf-8")
        code = self.lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, _CHARS_UTF8, None, None)
        self.lib.espeak_Synchronize()
        if code != 0:
            raise RuntimeError(f"eSpeak NG synthesis failed with code {code} for text {text[:60]!r}")
        pcm = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return pcm, list(self._events)


_engine: _Engine | None = None
_lock = threading.Lock()


def _get_engine() -> _Engine:
    global _engine
    if _engine is None:
        _engine = _Engine()
    return _engine


def engine_started() -> bool:
    """Whether this process has loaded eSpeak (a fork would inherit its running state)."""
    return _engine is not None


_accepted_names: set[str] = set()  # voice names eSpeak NG has accepted in this process


def voice_known(voice: Voice) -> bool:
    """Whether ``voice`` will be accepted without asking eSpeak NG (a listed voice, or one it accepted before)."""
    return voice.name in _accepted_names or voice.name in _LISTED


def list_voices() -> list[str]:
    """Voice names this installation accepts for English text (accent × variant)."""
    return [f"{a}+{v}" for a in ENGLISH_ACCENTS for v in VOICE_VARIANTS]


_LISTED = frozenset(list_voices())


def _clean_symbol(raw: str) -> tuple[str, bool]:
    """Strip eSpeak's stress marks (' primary, , secondary) and map pauses to "_"."""
    stressed = "'" in raw or "," in raw
    sym = raw.replace("'", "").replace(",", "")
    if sym.startswith("_") or not sym:
        sym = "_"
    return sym, stressed


def synthesize(text: str, voice: Voice | None = None, sample_rate: int = DEFAULT_MEDIA.sample_rate) -> Speech:
    """Speak ``text`` with eSpeak NG and return the waveform with per-phoneme timings.

    The text is checked and normalised by :func:`~mfruntime.data.spoken_text.prepare_text` (control characters,
    NUL, unpaired surrogates and non-Latin letters are refused, naming the character and its position).
    Raises ValueError for such text, for empty or over-long text and for an unknown voice.
    """
    text = prepare_text(text)
    voice = voice or Voice()
    with _lock:
        engine = _get_engine()
        engine.set_voice(voice)
        raw_pcm, events = engine.synth(text)
        native_rate = engine.sample_rate
    if raw_pcm.size == 0:
        raise ValueError(f"eSpeak produced no audio for {text[:60]!r}: the text has nothing speakable")

    pcm = raw_pcm.astype(np.float32) / 32768.0
    if native_rate != sample_rate:
        g = gcd(native_rate, sample_rate)
        pcm = resample_poly(pcm, sample_rate // g, native_rate // g).astype(np.float32)
    np.clip(pcm, -1.0, 1.0, out=pcm)
    duration = len(pcm) / sample_rate

    phonemes: list[Phoneme] = []
    starts = [min(s / native_rate, duration) for s, _ in events]
    for i, (start, (_, raw)) in enumerate(zip(starts, events)):
        end = starts[i + 1] if i + 1 < len(starts) else duration
        sym, stressed = _clean_symbol(raw)
        if end <= start:
            continue  # zero-length event (e.g. a pause marker at the very end)
        if phonemes and sym == "_" and phonemes[-1].symbol == "_":
            phonemes[-1] = Phoneme("_", phonemes[-1].start, end)  # merge adjacent pauses
            continue
        phonemes.append(Phoneme(sym, start, end, stressed))
    if phonemes and phonemes[0].start > 0:
        phonemes.insert(0, Phoneme("_", 0.0, phonemes[0].start))
    log.debug("spoke %d chars as %.2fs with %d phonemes (%s)", len(text), duration, len(phonemes), voice.name)
    return Speech(pcm=pcm, sample_rate=sample_rate, phonemes=phonemes, text=text, voice=voice)
