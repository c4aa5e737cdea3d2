"""``mfruntime.Session``: one character that speaks (text → voice + face) or lip-syncs (audio → face).

    from mfruntime import Session
    s = Session()                       # the bundled tiny model, 4 steps, best backend for this machine
    for chunk in s.say("Hello there!"):
        engine.show(chunk.frames)       # (4, 64, 64, 3) uint8
        engine.play(chunk.pcm)          # (2560,) float32 at 16 kHz
    print(s.stats())

Chunks come out as they are generated (160 ms of media each). Utterances continue one stream: the KV cache
and the stream clock (``pts``) carry over, so consecutive lines flow on. Threading: one thread produces
(iterates say()/drive()); any thread may call interrupt(), stats(), set_character() or change ``steps``.
"""
from __future__ import annotations

import functools
import logging
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from math import gcd
from typing import Iterator

import numpy as np
from scipy.signal import resample_poly

from mfruntime.data.speech import Voice, synthesize, voice_known
from mfruntime.data.spoken_text import prepare_text
from mfruntime.engine.backends import kernels_for, pick_backend, resolve_device
from mfruntime.config import (DEFAULT_BACKEND, DEFAULT_DEVICE, DEFAULT_MEDIA, DEFAULT_MODEL, DEFAULT_PORTRAIT_SIZE,
                              DEFAULT_RENDERER, DEFAULT_STEPS, MODEL_IMAGE_MAX_SIDE, PORTRAIT_SIZES)
from mfruntime.engine.batch import ChunkJob
from mfruntime.engine.generator import GenerationOptions, Generator, check_steps
from mfruntime.engine.utterance import Utterance
from mfruntime.idle import IdleMotion
from mfruntime.data.media import square_resize
from mfruntime.runtime.character import as_voice, choose_renderer, default_character, load_image, voice_sample
from mfruntime.runtime.registry import shared_model
from mfruntime.runtime.threads import THREADS_AUTO, ThreadPolicy

log = logging.getLogger(__name__)

MAX_DRIVE_SECONDS = 600.0
MAX_IDLE_SECONDS = 600.0  # one idle() call listens at most this long (call it again to go on)
IDLE_LEAD_CHUNKS = 3  # idle chunks are made at most this many chunks ahead of real time (they would never end)
MAX_DRIVE_PEAK = 2.0  # float driving audio louder than this is refused (wrong scale); above 1.0 it is clipped with a warning
SPEECH_CACHE = 256  # (text, voice) pairs whose eSpeak timing is kept


@dataclass(frozen=True)
class Chunk:
    """160 ms of a character: video frames, the PCM that goes with them and the rig frames of the same span."""

    utterance: int  # utterance id within the session (1, 2, …)
    seq: int  # chunk number within the utterance (0, 1, …)
    pts: float  # presentation time of the first frame / sample, seconds on the session's stream clock
    frames: np.ndarray | None  # (F, H, W, 3) uint8 RGB; None in rig-only mode (Session(video=False))
    pcm: np.ndarray  # (S,) float32 in [-1, 1], mono
    sample_rate: int  # Hz of pcm
    fps: int  # frames per second of frames
    last: bool  # the utterance's final chunk (its end, or an interrupt)
    interrupted: bool = False  # ended early by interrupt()
    # wall time spent generating this chunk; on a batching server (``batched_jobs``) it runs from planning the
    # chunk to its publishing, so it includes the other characters' batches of the same round
    compute_seconds: float = 0.0
    idle: bool = False  # a chunk of idle() (the character listening: silent PCM, closed mouth, blinks)
    steps: int = 0  # denoising steps it was made with (a server under load may lower them: min_steps); 0 = none ran
    # (F, len(mfruntime.rig.CONTROLS)) float32: per video frame, the face controls and OVR viseme weights of what
    # was generated (docs/RIG.md); None for a model without a rig head or with Session(rig=False).
    rig: np.ndarray | None = None

    @property
    def duration(self) -> float:
        return len(self.pcm) / self.sample_rate


@dataclass
class SessionStats:
    backend: str
    device: str
    steps: int
    threads: int  # CPU threads the latest chunk ran with
    threads_setting: int | str  # the Session's setting: a number, or "auto" (the cores other processes leave free)
    utterances: int
    chunks: int
    ttfc_ms: float | None  # time from say()/drive() to the first chunk of the latest utterance
    ttfc_ms_mean: float | None  # … averaged over utterances
    rtf: float | None  # compute seconds per second of media (below 1 = faster than real time)
    chunk_ms_p50: float | None
    chunk_ms_p95: float | None
    chunk_ms_max: float | None
    chunk_ms: list[float] = field(default_factory=list)  # the most recent chunk compute times (up to 256)
    min_steps: int = 0  # the floor a server may lower the steps to under load (Session.min_steps)
    steps_used: dict[int, int] = field(default_factory=dict)  # chunks made at each step count (model chunks only)


@dataclass(frozen=True)
class SpeechTiming:
    """What generation needs from eSpeak NG: the phonemes and the length (not the waveform)."""

    duration: float  # seconds
    phonemes: tuple


@functools.lru_cache(maxsize=SPEECH_CACHE)
def speak_timing(text: str, voice: Voice, sample_rate: int) -> SpeechTiming:
    """eSpeak NG's phonemes for ``text``, cached: eSpeak's timing shifts by a few ms depending on what the
    process spoke before, so a repeated line is looked up, and one seed gives one output in a process. Only the
    timing is kept (a few KB per line; the waveform would be ~100 KB a second), so the cache stays small."""
    speech = synthesize(text, voice, sample_rate)
    return SpeechTiming(speech.duration, tuple(speech.phonemes))


def prepare_pcm(pcm, sample_rate: int, target_rate: int) -> np.ndarray:
    """User audio → mono float32 at ``target_rate``. int16 is scaled; (S, C) channels are averaged."""
    return resample_pcm(check_pcm(pcm, sample_rate), sample_rate, target_rate)


def check_pcm(pcm, sample_rate: int) -> np.ndarray:
    """User audio → checked mono float32 at its own rate (the fast part of :func:`prepare_pcm`)."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or not 4_000 <= sample_rate <= 192_000:
        raise ValueError(f"sample_rate must be a whole number of Hz from 4000 to 192000, got {sample_rate!r}")
    a = np.asarray(pcm)
    if a.dtype == np.int16:
        a = a.astype(np.float32) / 32768.0
    elif a.dtype.kind != "f":
        raise ValueError(f"driving audio must be float (−1…1) or int16 samples, got {a.dtype}")
    if a.ndim == 2 and 1 <= a.shape[1] <= 8:
        a = a.mean(axis=1)
    if a.ndim != 1:
        raise ValueError(f"driving audio must be mono (S,) or (S, channels), got shape {a.shape}")
    if a.size == 0:
        raise ValueError("driving audio is empty")
    if a.size / sample_rate > MAX_DRIVE_SECONDS:
        raise ValueError(f"driving audio is {a.size / sample_rate:.0f} s, more than {MAX_DRIVE_SECONDS:.0f} s in one call: split it")
    if not np.all(np.isfinite(a)):
        raise ValueError("driving audio contains NaN or infinite samples")
    peak = float(np.abs(a).max())
    if peak > MAX_DRIVE_PEAK:
        raise ValueError(f"float driving audio must lie in −1…1, but its peak is {peak:g}: scale it (int16 values "
                         "stored as float need dividing by 32768)")
    if peak > 1.0:
        over = int(np.count_nonzero(np.abs(a) > 1.0))
        log.warning("driving audio peaks at %.3f: %d samples above 1.0 are clipped", peak, over)
    return a.astype(np.float32)


def resample_pcm(a: np.ndarray, sample_rate: int, target_rate: int) -> np.ndarray:
    """Checked mono float32 (:func:`check_pcm`) → ``target_rate``, clipped to −1…1."""
    if sample_rate != target_rate:
        g = gcd(int(sample_rate), target_rate)
        a = resample_poly(a, target_rate // g, int(sample_rate) // g).astype(np.float32)
    return np.clip(a, -1.0, 1.0)


class PendingUtterance:
    """An utterance whose id is taken — it has already ended the one before — but whose slow preparation
    (eSpeak NG's phoneme timing, resampling driving audio) has not run yet. ``prepare()`` runs it on any
    thread; ``chunks()`` then iterates. A server takes the id on the thread that answers requests and
    prepares elsewhere, so its replies never wait for eSpeak."""

    def __init__(self, session: "Session", uid: int, start: float, steps: int, make, idle: bool = False,
                 paced: bool = True) -> None:
        self.session, self.uid, self.start, self.steps, self.idle = session, uid, start, steps, idle
        self.paced = paced  # idle: wait in chunks() for each chunk's time (a server checks Session.idle_due instead)
        self._make = make  # () → Utterance
        self._plan = None
        self.ready = threading.Event()

    @property
    def superseded(self) -> bool:
        return self.uid != self.session.utterance

    def prepare(self) -> None:
        """The slow part; skipped for an utterance a newer one has already replaced. Errors surface in chunks()."""
        try:
            self._plan = None if self.superseded else self._make()
        except Exception as exc:  # noqa: BLE001 — handed to whoever iterates
            self._plan = exc
        finally:
            self.ready.set()

    def chunks(self) -> Iterator[Chunk]:
        if not self.ready.is_set():
            self.prepare()
        if isinstance(self._plan, Exception):
            raise self._plan
        if self._plan is None:
            return iter(())
        return self.session._run(self.uid, self.start, self._plan, self.steps, self.paced)


class Session:
    """A talking character backed by a (shared) model. See the module doc for an example."""

    def __init__(self, model: str = DEFAULT_MODEL, device: str = DEFAULT_DEVICE, steps: int = DEFAULT_STEPS,
                 backend: str = DEFAULT_BACKEND,
                 character=None, voice: Voice | str | None = None, seed: int = 0,
                 threads: int | str = THREADS_AUTO, video: bool = True, rig: bool = True) -> None:
        """video=False: rig-only mode (no frames are decoded: for a client that drives a 3D character);
        rig=False: no rig frames. See set_outputs()."""
        self._threads = ThreadPolicy(threads)  # checked first: a bad setting fails before the model loads
        self._video, self._rig = self._check_outputs(video, rig)
        self.device = resolve_device(device)
        self.backend = pick_backend(backend, self.device)
        self.model = shared_model(model, self.device)
        self._kernels = kernels_for(self.backend)
        self.cfg = self.model.cfg
        self._check_rig_only(self._video)
        if "video" not in self.model.transformer.active or "audio" not in self.model.transformer.active:
            raise ValueError(f"model {model!r} is not a joint audio-video model; a Session needs one")
        self.fps, self.sample_rate = self.cfg.media.fps, self.cfg.media.sample_rate
        self.size = self.cfg.video_codec.size
        self.seed = int(seed)
        self._steps = check_steps(steps)
        self._voice = as_voice(voice, Voice())
        self._image = default_character(self.size)
        self._generator: Generator | None = None  # rebuilt when the character or voice changes
        self._portrait = None  # a PortraitRenderer (set_portrait): frames come from it, moved by the rig stream
        self._idle = IdleMotion(self.fps, self.seed)  # the idle layer's blinks and sway (mfruntime/idle.py)
        self._last_rig: np.ndarray | None = None  # the latest rig frame sent (idle eases from it)
        self._idle_due = 0.0  # perf_counter time the next idle chunk is due (idle_due)
        self._lock = threading.RLock()
        self._interrupt = threading.Event()
        self._utterance = 0  # id of the newest utterance; older iterators stop
        self._clock_chunks = 0  # chunks on the stream clock so far
        self._last_ttfc: float | None = None  # the latest utterance's time to first chunk, s
        self._utterances_started = 0
        self._ttfc_total = 0.0
        self._chunk_times: deque[float] = deque(maxlen=256)
        self._min_steps = self._steps
        self.next_chunk_steps: int | None = None  # set by a scheduler: the steps of the next chunk (None: the utterance's)
        # Set by a server that batches characters: the chunk iterators then yield each chunk's ChunkJob before the
        # chunk, for the server to run together with other characters' jobs (engine/batch.py).
        self.batched_jobs = False
        self._steps_used: Counter = Counter()
        self._compute_total = 0.0
        self._media_total = 0.0
        self._chunks = 0
        if character is not None:
            self.set_character(character)  # the renderer is chosen as set_character chooses it

    # --- settings ------------------------------------------------------------------------------
    @property
    def steps(self) -> int:
        return self._steps

    @steps.setter
    def steps(self, steps: int) -> None:
        """Denoising steps per chunk from the next utterance on (1–4 live, 8–50 quality); the floor
        (``min_steps``) follows it down."""
        self._steps = check_steps(steps)
        self._min_steps = min(self._min_steps, self._steps)

    @property
    def min_steps(self) -> int:
        """The fewest steps a server may give a chunk of this character when a deadline is near (its target is
        ``steps``). Equal to ``steps`` by default: never lowered."""
        return self._min_steps

    @min_steps.setter
    def min_steps(self, n: int) -> None:
        n = check_steps(n)
        if n > self._steps:
            raise ValueError(f"min_steps ({n}) cannot be above steps ({self._steps}): lower the floor or raise steps")
        self._min_steps = n

    @property
    def has_rig(self) -> bool:
        """Whether the model has a rig head (chunks can carry rig frames)."""
        return self.model.rig is not None

    @property
    def outputs(self) -> dict[str, bool]:
        """What chunks carry besides PCM: {"video": frames decoded, "rig": rig frames computed}."""
        return {"video": self._video, "rig": self._rig and self.has_rig}

    def set_outputs(self, video: bool | None = None, rig: bool | None = None) -> None:
        """Choose what chunks carry, from the next utterance on: ``video=False`` is rig-only mode (the video
        decoder does not run; the stream generated is the same), ``rig=False`` drops the rig frames."""
        v, r = self._check_outputs(self._video if video is None else video, self._rig if rig is None else rig)
        self._check_rig_only(v)
        with self._lock:
            self._video, self._rig = v, r

    def _check_rig_only(self, video: bool) -> None:
        if not video and not self.has_rig:
            raise ValueError("video=False (rig-only mode) needs a model with a rig head, and this one has none: "
                             "train one (mf train --stage rig, then mf export) or keep video on")

    @staticmethod
    def _check_outputs(video, rig) -> tuple[bool, bool]:
        for name, value in (("video", video), ("rig", rig)):
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {value!r}")
        return bool(video), bool(rig)

    @property
    def clock(self) -> float:
        """The stream clock: seconds of media produced so far (the next chunk's pts)."""
        return self._clock_chunks * self.cfg.media.samples_per_chunk / self.sample_rate

    @property
    def utterance(self) -> int:
        """Id of the newest utterance (0 before the first)."""
        return self._utterance

    @property
    def character(self) -> np.ndarray:
        return self._image.copy()

    def set_character(self, image, renderer: str = DEFAULT_RENDERER, size: int | None = None) -> str:
        """Swap identity from the next utterance on, and choose what draws the face; returns the choice, "model" or
        "portrait" (also logged, and in ``renderer``). ``image``: any RGB image (array, PIL image or file).

        - "model": the model's own learned face, from the image centre-cropped and resized to its frame size (the
          model's own characters: cartoons drawn like the built-in ones);
        - "portrait": the portrait renderer (docs/PORTRAIT.md): the image in its own framing, ``size`` px on its
          long side (256–512, default 256), moved by the model's rig stream; FaceNotFound (a ValueError) when it
          shows no usable face;
        - "auto" (default): "model" for an image no larger than MODEL_IMAGE_MAX_SIDE (128 px) on its long side,
          "portrait" for a larger one — or "model" with a warning when this model has no rig head. ``size`` only
          applies when the portrait renderer is chosen.
        """
        img = load_image(image)
        chosen = choose_renderer(img, renderer)
        if chosen == "portrait" and not self.has_rig:
            if renderer == "portrait":
                raise ValueError("a portrait is driven by the rig stream, and this model has no rig head: use the "
                                 "bundled model or one exported with a rig stage, or the renderer \"model\" "
                                 "(mf demo: --renderer model)")
            log.warning("set_character: this model has no rig head to drive a portrait; the %d×%d image is drawn "
                        "as the model's own %d-px face", img.shape[1], img.shape[0], self.size)
            chosen = "model"
        if chosen == "model":
            if size is not None and renderer == "model":
                raise ValueError(f"size is the portrait renderer's; the model draws {self.size}-px faces "
                                 "(leave size out, or choose the renderer \"portrait\": mf demo --renderer portrait)")
            square = np.array(square_resize(img, self.size))
            with self._lock:
                self._image, self._generator, self._portrait = square, None, None
            log.info("set_character: the model draws the face (%d×%d image → %d px)", img.shape[1], img.shape[0],
                     self.size)
            return chosen
        from mfruntime.portrait.drive import PortraitRenderer
        from mfruntime.portrait.landmarks import MIN_FACE_PIXELS, FaceNotFound

        try:
            portrait = PortraitRenderer(img, DEFAULT_PORTRAIT_SIZE if size is None else size)
        except FaceNotFound as exc:
            if renderer == "auto":
                raise FaceNotFound(f"{exc} (an image larger than {MODEL_IMAGE_MAX_SIDE} px is animated as a portrait; to "
                                   f"have the model redraw it as its own {self.size}-px face, choose the renderer "
                                   "\"model\": renderer=\"model\", mf demo --renderer model)") from exc
            raise
        with self._lock:
            self._portrait = portrait
        h, w = portrait.frame_size
        log.info("set_character: the portrait renderer draws the face (%d×%d image → %d×%d frames, face %.0f px wide)",
                 img.shape[1], img.shape[0], w, h, portrait.rig.face_width)
        if portrait.rig.face_width < MIN_FACE_PIXELS:
            log.warning("set_character: at %d×%d the face is only %.0f px wide, too small for a clear mouth: choose a "
                        "larger size (up to %d; mf demo --size %d) or crop the image closer to the face", w, h,
                        portrait.rig.face_width, PORTRAIT_SIZES[1], PORTRAIT_SIZES[1])
        return chosen

    def set_portrait(self, image, size: int = DEFAULT_PORTRAIT_SIZE) -> str:
        """``set_character(image, renderer="portrait", size=size)``: animate a portrait — a photo, a painting, a
        render — at its own resolution instead of the model's own 64-px face (docs/PORTRAIT.md)."""
        return self.set_character(image, renderer="portrait", size=size)

    @property
    def renderer(self) -> str:
        """What draws the face: "model" (the model's own frames) or "portrait" (the portrait renderer)."""
        return "portrait" if self._portrait is not None else "model"

    @property
    def frame_size(self) -> tuple[int, int]:
        """(height, width) of the frames the chunks of the next utterance carry: the model's, or the portrait's (a
        running utterance keeps the size it started with)."""
        p = self._portrait
        return p.frame_size if p is not None else (self.size, self.size)

    def check_voice(self, voice: Voice | str) -> Voice:
        """The Voice ``voice`` names, or a ValueError (unknown names fail here, not mid-stream); changes nothing."""
        v = as_voice(voice, self._voice)
        speak_timing("a", v, self.sample_rate)
        return v

    def set_voice(self, voice: Voice | str) -> None:
        """The default voice of later say() calls."""
        v = self.check_voice(voice)
        with self._lock:
            if v != self._voice:
                self._voice, self._generator = v, None

    # --- speaking ------------------------------------------------------------------------------
    def say(self, text: str, voice: Voice | str | None = None, steps: int | None = None) -> Iterator[Chunk]:
        """Speak ``text``: an iterator of chunks, produced as they are generated.

        Bad text or voices raise here (not on the first next()). Starting another utterance ends this one.
        """
        start = time.perf_counter()
        steps = self._steps if steps is None else check_steps(steps)
        v = as_voice(voice, self._voice)
        text = prepare_text(text)
        plan = self._speech_plan(text, v)  # eSpeak NG first: an unknown voice fails before anything is ended
        with self._lock:
            uid = self._begin(v)
        return self._run(uid, start, plan, steps)

    def reserve_say(self, text: str, voice: Voice | str | None = None, steps: int | None = None) -> PendingUtterance:
        """Like say(), but only the fast checks run now; eSpeak runs in ``prepare()``. The voice must be one eSpeak
        NG has already accepted in this process or one of ``mfruntime.data.speech.list_voices()``."""
        start = time.perf_counter()
        steps = self._steps if steps is None else check_steps(steps)
        v = as_voice(voice, self._voice)
        if not voice_known(v):
            raise ValueError(f"unknown voice {v.name!r}: use one of mfruntime.data.speech.list_voices(), "
                             "e.g. en-us+m3 or en-gb-x-rp+f2")
        text = prepare_text(text)
        with self._lock:
            uid = self._begin(v)
        return PendingUtterance(self, uid, start, steps, lambda: self._speech_plan(text, v))

    def _speech_plan(self, text: str, voice: Voice) -> Utterance:
        """The utterance of cleaned ``text``, from eSpeak NG's timing (its chunks cover eSpeak's length of the line)."""
        speech = speak_timing(text, voice, self.sample_rate)
        return Utterance.speech(speech.phonemes, self.cfg.media, duration=speech.duration)

    def drive(self, pcm, sample_rate: int = DEFAULT_MEDIA.sample_rate, steps: int | None = None) -> Iterator[Chunk]:
        """Lip-sync given speech: frames are generated, the PCM of each chunk is the input (at 16 kHz)."""
        pending = self.reserve_drive(pcm, sample_rate, steps)
        return pending.chunks()

    def reserve_drive(self, pcm, sample_rate: int = DEFAULT_MEDIA.sample_rate, steps: int | None = None) -> PendingUtterance:
        """Like drive(), but the resampling runs in ``prepare()``; the checks run now."""
        start = time.perf_counter()
        steps = self._steps if steps is None else check_steps(steps)
        audio = check_pcm(pcm, sample_rate)
        with self._lock:
            uid = self._begin()
        return PendingUtterance(self, uid, start, steps, lambda: self._drive_plan(audio, sample_rate))

    def _drive_plan(self, audio: np.ndarray, sample_rate: int) -> Utterance:
        return Utterance.drive(resample_pcm(audio, sample_rate, self.sample_rate), self.cfg.media)

    def idle(self, seconds: float | None = None, steps: int | None = None) -> Iterator[Chunk]:
        """Listen between lines: chunks of silence in which the character keeps the mouth closed, blinks and moves
        its head a little (in every output: frames, rig), until the next say()/drive(), interrupt(), or
        ``seconds`` (at most MAX_IDLE_SECONDS). The rig frames come from the idle layer (mfruntime/idle.py); the
        model's own face is generated lip-syncing silence, a portrait is moved by the idle rig. With no frames
        of the model's own face to make (rig-only mode, or a portrait) the model does not run at all."""
        return self.reserve_idle(seconds, steps).chunks()

    def reserve_idle(self, seconds: float | None = None, steps: int | None = None, paced: bool = True) -> PendingUtterance:
        """Like idle(): the checks run now, nothing slow is left to prepare. Idle chunks are paced to real time
        (at most IDLE_LEAD_CHUNKS ahead of the call): ``paced=False`` leaves the waiting to the caller, which
        makes the next chunk once ``time.perf_counter() >= idle_due`` (a server's engine never sleeps)."""
        start = time.perf_counter()
        steps = self._steps if steps is None else check_steps(steps)
        n = self._idle_chunks(seconds)
        with self._lock:
            uid = self._begin()
        pending = PendingUtterance(self, uid, start, steps, lambda: Utterance.silence(n), idle=True, paced=paced)
        pending.prepare()
        return pending

    def _idle_chunks(self, seconds) -> int:
        if seconds is None:
            seconds = MAX_IDLE_SECONDS
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float, np.integer, np.floating)) \
                or not 0 < seconds <= MAX_IDLE_SECONDS:
            raise ValueError(f"idle seconds must be a number above 0 and at most {MAX_IDLE_SECONDS:g} (leave it out to "
                             f"listen until the next line), got {seconds!r}")
        return max(1, int(np.ceil(float(seconds) / self.cfg.media.chunk_seconds - 1e-9)))

    @property
    def idle_runs_model(self) -> bool:
        """Whether idle chunks need the model: only to draw the model's own face (not rig-only, not a portrait)."""
        return self._video and self._portrait is None

    @property
    def interrupted(self) -> bool:
        """interrupt() was called and the utterance it ends has not ended yet."""
        return self._interrupt.is_set()

    @property
    def idle_due(self) -> float:
        """``time.perf_counter()`` at which the running idle utterance's next chunk is due (0 when not idling)."""
        return self._idle_due

    def interrupt(self) -> None:
        """End the current utterance: at most one more chunk comes out (marked last and interrupted)."""
        self._interrupt.set()

    def _begin(self, voice: Voice | None = None) -> int:
        """Take the next utterance id (ending the running one); call with the lock held."""
        if voice is not None and voice != self._voice:
            self._voice, self._generator = voice, None
        self._utterance += 1
        self._interrupt.clear()
        self._idle_due = 0.0
        return self._utterance

    def _ensure_generator(self) -> Generator:
        if self._generator is None:
            need = self.cfg.audio_ref_steps * self.cfg.audio_codec.hop
            self._generator = Generator(self.model, reference_image=self._image,
                                        audio_reference=voice_sample(self._voice, self.sample_rate, need),
                                        options=GenerationOptions(steps=self._steps, seed=self.seed),
                                        kernels=self._kernels)
        return self._generator

    def _run(self, uid: int, start: float, utt: Utterance, steps: int, paced: bool = True) -> Iterator[Chunk]:
        """Pull chunks from the model's generator one at a time (compute happens inside next())."""
        n = utt.chunks
        source = None  # the Generator's iterator, made on the first chunk (a character swap applies next utterance)
        portrait = None
        idle_from = idle_last = None  # idle: the stream frame idling began at, and the rig frame shown before it
        fpc = self.cfg.frames_per_chunk
        for seq in range(n):
            if utt.idle and paced:  # wait for this chunk's time; a new utterance or interrupt() ends the wait
                while time.perf_counter() < self._idle_due and uid == self._utterance and not self._interrupt.is_set():
                    self._interrupt.wait(min(0.02, max(0.0, self._idle_due - time.perf_counter())))
            t0 = time.perf_counter()
            # CPU threads for this chunk (fixed, or what other processes leave free); set before the generator is
            # made too, since making it runs the model (reference encoding, sinks).
            self._threads.apply()
            with self._lock:
                if uid != self._utterance:
                    return  # a newer utterance took over
                if source is None:
                    portrait = self._portrait  # fixed for the utterance, like the character
                    if utt.idle:
                        idle_from, idle_last = self._clock_chunks * fpc, self._last_rig
                        # the model runs while idle only to draw its own face; the rig comes from the idle layer
                        source = self._ensure_generator().run(utt, steps, video=True, rig=False,
                                                              batched=self.batched_jobs) \
                            if self._video and portrait is None else iter(())
                    else:
                        # A portrait is drawn from the rig frames: the model's own frames are not decoded.
                        source = self._ensure_generator().run(utt, steps, video=self._video and portrait is None,
                                                              rig=self._rig or portrait is not None,
                                                              steps_of=lambda _i: self.next_chunk_steps or steps,
                                                              batched=self.batched_jobs)
                frame0 = self._clock_chunks * fpc
            # The model runs without the lock, so stats(), interrupt() and set_character() never wait for a chunk.
            out = next(source, None)
            while isinstance(out, ChunkJob):  # batched_jobs: the server denoises it, with other characters' chunks
                yield out  # type: ignore[misc]
                out = next(source, None)
            made_with = out.steps if out is not None else 0
            if utt.idle:
                frames = out.frames if out is not None else None
                pcm = np.zeros(self.cfg.media.samples_per_chunk, np.float32)
                rig = self._idle.frames(frame0, fpc, idle_last, idle_from) \
                    if self.has_rig and (self._rig or portrait is not None) else None
            else:
                frames, rig, pcm = out.frames, out.rig, out.pcm
            if portrait is not None:
                frames = portrait.frames(rig) if self._video else None
                rig = rig if self._rig else None
            compute = time.perf_counter() - t0
            with self._lock:
                interrupted = self._interrupt.is_set() and seq < n - 1
                last = interrupted or seq == n - 1
                chunk = Chunk(utterance=uid, seq=seq, pts=self.clock,
                              frames=frames, pcm=pcm, sample_rate=self.sample_rate, fps=self.fps, last=last,
                              interrupted=interrupted, compute_seconds=compute, rig=rig, idle=utt.idle,
                              steps=made_with)
                self._clock_chunks += 1
                self._idle_due = start + (seq + 1 - IDLE_LEAD_CHUNKS) * self.cfg.media.chunk_seconds if utt.idle else 0.0
                if rig is not None:
                    self._last_rig = rig[-1].copy()
                self._record(chunk, start if seq == 0 else None)
            yield chunk
            if last:
                return

    def _record(self, chunk: Chunk, started: float | None) -> None:
        if started is not None:
            self._last_ttfc = time.perf_counter() - started
            self._utterances_started += 1
            self._ttfc_total += self._last_ttfc
        self._chunks += 1
        if chunk.steps:
            self._steps_used[chunk.steps] += 1
        self._chunk_times.append(chunk.compute_seconds)
        self._compute_total += chunk.compute_seconds
        self._media_total += chunk.duration

    # --- numbers -------------------------------------------------------------------------------
    def stats(self) -> SessionStats:
        with self._lock:
            ms = [1000 * t for t in self._chunk_times]
            pct = (lambda q: float(np.percentile(ms, q))) if ms else (lambda q: None)
            return SessionStats(
                backend=self.backend, device=str(self.device), steps=self._steps, threads=self._threads.current,
                threads_setting=self._threads.setting, utterances=self._utterances_started,
                chunks=self._chunks, ttfc_ms=1000 * self._last_ttfc if self._utterances_started else None,
                ttfc_ms_mean=1000 * self._ttfc_total / self._utterances_started if self._utterances_started else None,
                rtf=self._compute_total / self._media_total if self._media_total else None,
                chunk_ms_p50=pct(50), chunk_ms_p95=pct(95), chunk_ms_max=max(ms) if ms else None, chunk_ms=ms,
                min_steps=self._min_steps, steps_used=dict(sorted(self._steps_used.items())))
