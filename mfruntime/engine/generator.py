"""Chunk-by-chunk generation: the inference loop over the KV ring cache.

For each 160 ms chunk: draw noise, integrate the flow with the Euler sampler
(few-step or multi-step: only the schedule differs), commit the finished chunk
to the cache with one extra forward at t = 0, decode video latents to frames and
audio latents to PCM (streaming decoder), and yield the chunk.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from mfruntime.config import DEFAULT_STEPS, MAX_STEPS, MIN_STEPS
from mfruntime.data.speech import Phoneme
from mfruntime.engine.kernels import REFERENCE, Kernels
from mfruntime.engine.level import LevelNormalizer
from mfruntime.model.av import AVModel
from mfruntime.model.phonemes import PhonemeTrack, PhonemeWindow
from mfruntime.engine.state import StreamState
from mfruntime.engine.batch import ChunkJob, run_jobs
from mfruntime.engine.step import new_state
from mfruntime.engine.utterance import Utterance
from mfruntime.sampling import SCHEDULES


def check_steps(steps) -> int:
    """A step count every entry point accepts (config.MIN_STEPS–MAX_STEPS), or a ValueError that says so."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not MIN_STEPS <= steps <= MAX_STEPS:
        raise ValueError(f"steps must be a whole number from {MIN_STEPS} to {MAX_STEPS} (1–4 live, 8–50 quality), "
                         f"got {steps!r}")
    return int(steps)


@dataclass(frozen=True)
class GenerationOptions:
    steps: int = DEFAULT_STEPS  # denoising steps per chunk: 1–4 live (few-step), 8–50 quality (multi-step)
    schedule: str = "uniform"  # t grid: "uniform" or "shifted"
    seed: int = 0  # noise seed; the same seed gives the same output
    # Sampling temperature: the starting noise of each chunk is scaled by it. Below 1 the sampler stays nearer
    # the most likely output; eSpeak-like speech is nearly deterministic given its phonemes, and audio-only
    # runs measured STOI 0.59 at 1.0, 0.68 at 0.7, 0.73 at 0.4 (docs/TRAINING.md).
    audio_temperature: float = 0.4
    video_temperature: float = 1.0

    def __post_init__(self) -> None:
        check_steps(self.steps)
        for name in ("audio_temperature", "video_temperature"):
            if not 0 <= getattr(self, name) <= 2:
                raise ValueError(f"{name} must be between 0 and 2, got {getattr(self, name)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")

    def temperature(self, stream: str) -> float:
        """The starting-noise scale of ``stream`` ("audio" or "video")."""
        return self.audio_temperature if stream == "audio" else self.video_temperature


@dataclass
class GeneratedChunk:
    index: int  # chunk number in the stream (0, 1, …)
    pts: float  # presentation time of the chunk's first frame / sample, seconds from stream start
    frames: np.ndarray | None  # (F, H, W, 3) uint8, None for an audio-only model
    pcm: np.ndarray | None  # (S,) float32 at the model's sample rate, None for a video-only model
    latents: dict[str, torch.Tensor]  # per stream (1, 1, ...) latents of the chunk
    compute_seconds: float  # wall time spent on this chunk
    rig: np.ndarray | None = None  # (F, len(rig.CONTROLS)) float32 rig frames, None without a rig head (or not asked)
    steps: int = 0  # denoising steps this chunk was made with


def check_reference_image(image, size: int) -> np.ndarray:
    """A reference frame must be (size, size, 3) uint8 RGB; anything else is a ValueError that says so."""
    arr = np.asarray(image) if not isinstance(image, torch.Tensor) else image.cpu().numpy()
    if arr.dtype != np.uint8 or arr.shape != (size, size, 3):
        raise ValueError(f"reference image must be {size}×{size}×3 uint8 RGB, got {arr.shape} {arr.dtype}: "
                         "pass an RGB image of the model's frame size")
    return arr


class Generator:
    """Streaming generation for one character (batch 1). Holds the KV cache between utterances."""

    def __init__(self, model: AVModel, reference_image=None, audio_reference: np.ndarray | None = None,
                 options: GenerationOptions = GenerationOptions(), kernels: Kernels = REFERENCE) -> None:
        """kernels: the cache operations' implementation (engine/kernels.py; a backend's choice, same weights)."""
        self.model, self.cfg, self.options = model, model.cfg, options
        tr = model.transformer
        dev = next(model.parameters()).device
        with torch.no_grad():
            identity = None
            if "video" in tr.active:
                if reference_image is None:
                    raise ValueError("a reference image is needed for a model with a video stream")
                ref = check_reference_image(reference_image, self.cfg.video_codec.size)
                identity = model.video_codec.encode(ref[None])  # (1, Cv, h, w)
            audio_ref = None
            if audio_reference is not None and "audio" in tr.active:
                need = self.cfg.audio_ref_steps * self.cfg.audio_codec.hop
                pcm = torch.tensor(np.asarray(audio_reference, np.float32)[:need], device=dev)
                if pcm.numel() < need:
                    raise ValueError(f"audio reference must hold at least {need} samples "
                                     f"({need / self.cfg.audio_codec.sample_rate:.2f} s), got {pcm.numel()}")
                audio_ref = model.audio_codec.encode(pcm[None])  # (1, R, Ca)
            self.sinks = tr.make_sinks(identity, audio_ref, batch=1)
            self.identity = identity
        self.state: StreamState = new_state(tr, self.sinks, batch=1, kernels=kernels)
        self.audio_state = model.audio_codec.new_decode_state()
        self.rng = torch.Generator(device="cpu").manual_seed(options.seed)
        self.device = dev

    # --- streaming state -----------------------------------------------------------------
    def snapshot(self) -> dict:
        return {"model": self.state.snapshot(), "rng": self.rng.get_state(),
                "audio": self.audio_state.copy()}

    def restore(self, snap: dict) -> None:
        self.state.restore(snap["model"])
        self.rng.set_state(snap["rng"])
        self.audio_state = snap["audio"].copy()

    # --- generation ----------------------------------------------------------------------
    def _noise(self, stream: str) -> torch.Tensor:
        shape = (1, *self.model.transformer.latent_shape(stream, 1))
        return (torch.randn(shape, generator=self.rng) * self.options.temperature(stream)).to(self.device)

    def generate(self, phonemes: Sequence[Phoneme] | None, n_chunks: int | None = None,
                 driving_pcm: np.ndarray | None = None, steps: int | None = None) -> Iterator[GeneratedChunk]:
        """Yield chunks of an utterance as they finish: ``run`` on the :class:`Utterance` these arguments make.

        phonemes: the utterance's phonemes with times from its start (from eSpeak), or None in audio-driven
        mode; driving_pcm: clean speech (float32, 16 kHz) to lip-sync instead of generating audio;
        n_chunks: length (default: until the last phoneme / the driving audio ends); steps: overrides the
        options' step count for this utterance.
        """
        media = self.cfg.media
        if driving_pcm is not None:
            utt = Utterance.drive(np.asarray(driving_pcm, dtype=np.float32), media, chunks=n_chunks)
        elif phonemes is None:
            raise ValueError("pass phonemes to speak, or driving_pcm for audio-driven lip-sync")
        else:
            utt = Utterance.speech(phonemes, media, chunks=n_chunks)
        return self.run(utt, steps)

    def run(self, utt: Utterance, steps: int | None = None, video: bool = True, rig: bool = True,
            steps_of: Callable[[int], int] | None = None, batched: bool = False
            ) -> Iterator[GeneratedChunk | ChunkJob]:
        """Yield the chunks of ``utt`` as they finish (``utt.chunks`` of them). Generated speech is clipped to
        [−1, 1]; in audio-driven mode each chunk carries the given speech itself, not a re-synthesis of it.

        video: decode frames (False: ``frames`` is None and the video decoder does not run — rig-only mode; the
        video latents are still generated, so the stream and its cache are the same); rig: compute the rig frames
        (when the model has a rig head); steps_of: the step count of chunk ``i`` of the utterance, asked just before
        it is made (a scheduler lowers it when a deadline is near); by default ``steps`` for every chunk;
        batched: before each chunk, yield its :class:`~mfruntime.engine.batch.ChunkJob` (planned, not yet denoised)
        for the caller to run with ``run_jobs`` — together with other characters' jobs — then the chunk itself."""
        cfg, tr = self.cfg, self.model.transformer
        steps = check_steps(steps if steps is not None else self.options.steps)
        schedules = {steps: SCHEDULES[self.options.schedule](steps)}
        offset = self.state.chunk * cfg.media.chunk_seconds
        track = PhonemeTrack.from_phonemes(utt.phonemes, offset, cfg.phonemes) if utt.phonemes is not None else None
        driven = None
        if utt.idle:  # listening: the model lip-syncs silence (the same every chunk)
            if "audio" not in tr.active or "video" not in tr.active:
                raise ValueError("idle generation needs a joint audio-video model")
            silence = np.zeros(cfg.media.samples_per_chunk, np.float32)
            with torch.no_grad():
                driven = self.model.audio_codec.encode(torch.from_numpy(silence).to(self.device)[None])  # (1, S, Ca)
        elif utt.driving is not None:
            if "audio" not in tr.active or "video" not in tr.active:
                raise ValueError("audio-driven generation needs a joint audio-video model")
            # The model hears the speech at the level it was trained on (causal, chunk by chunk: engine/level.py);
            # the chunks carry it as given.
            norm = LevelNormalizer(cfg.media.sample_rate)
            heard = np.concatenate([norm.process(utt.driving_chunk(i, cfg.media)) for i in range(utt.chunks)])
            with torch.no_grad():
                driven = self.model.audio_codec.encode(torch.from_numpy(heard).to(self.device)[None])  # (1, N, Ca)
        generated = [s for s in tr.active if not (s == "audio" and driven is not None)]

        for i in range(utt.chunks):
            start = time.perf_counter()
            n = steps if steps_of is None else check_steps(steps_of(i))
            if n not in schedules:
                schedules[n] = SCHEDULES[self.options.schedule](n)
            schedule = schedules[n]
            k = self.state.chunk
            ph = None
            if track is not None:
                t0 = k * cfg.media.chunk_seconds
                ph = PhonemeWindow.stack([track.window(t0, t0 + cfg.media.chunk_seconds, cfg.phoneme_window, cfg.max_phonemes)])
            x = {s: self._noise(s) for s in tr.active}
            if driven is not None:
                s_per = cfg.latent_steps_per_chunk
                j = 0 if utt.idle else i  # idle: one chunk of silence, repeated
                x["audio"] = driven[:, j * s_per:(j + 1) * s_per][:, None]  # (1, 1, S, Ca) clean

            speech = not utt.idle and driven is None and "audio" in x  # generated speech to synthesise
            job = ChunkJob(tr, self.state, x, ph, schedule, tuple(generated),
                           codec=self.model.video_codec if video and "video" in x else None, identity=self.identity,
                           audio_codec=self.model.audio_codec if speech else None,
                           audio_state=self.audio_state if speech else None,
                           rig_head=self.model.rig if rig and "video" in x else None)
            if batched:
                yield job  # the caller denoises it (batch.run_jobs), alone or in one batch with other characters'
                if job.result is None and job.error is None:
                    raise RuntimeError("Generator.run(batched=True): run each ChunkJob it yields (engine.batch.run_jobs) "
                                       "before asking for the next item")
            else:
                run_jobs([job])
            x = job.outcome()  # a failed batch: its error, raised here for this character's line
            with torch.no_grad():
                frames = pcm_out = rig_out = None
                if "video" in x:
                    z = tr.from_residual(x["video"], self.identity)  # (1, 1, F, Cv, h, w)
                    if video:  # decoded with the batch's other rows, or here
                        decoded = job.frames if job.frames is not None else self.model.video_codec.decode(z[0, 0])
                        frames = decoded.cpu().numpy()  # (F, H, W, 3)
                    if rig and self.model.rig is not None:
                        # The rig head reads the latents the model made (and, driven, the speech it heard).
                        audio_latents = x["audio"][:, 0] if "audio" in x else None  # (1, S, Ca)
                        rig_t = job.rig if job.rig is not None else self.model.rig.controls(z[:, 0], audio_latents)[0]
                        rig_out = rig_t.cpu().numpy()  # (F, C): read with the batch's other rows, or here
                if utt.idle:
                    pcm_out = np.zeros(cfg.media.samples_per_chunk, np.float32)
                elif driven is not None:  # audio-driven: the audio that came in goes out, untouched
                    pcm_out = utt.driving_chunk(i, cfg.media)
                elif "audio" in x:
                    # Generated speech can overshoot full scale a little; the chunk contract (and the wire protocol)
                    # is [-1, 1], so clip here, once, for every consumer.
                    pcm_t = job.pcm if job.pcm is not None else \
                        self.model.audio_codec.decode_stream(x["audio"][:, 0], self.audio_state)[0]  # or with the batch
                    pcm = pcm_t.cpu().numpy()
                    pcm_out = np.clip(pcm, -1.0, 1.0)
            yield GeneratedChunk(index=k, pts=k * cfg.media.chunk_seconds, frames=frames, pcm=pcm_out,
                                 latents={s: v.detach() for s, v in x.items()}, rig=rig_out, steps=n,
                                 compute_seconds=time.perf_counter() - start)
