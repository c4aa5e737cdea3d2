"""``mf eval``: generate held-out clips at several step counts and score sync, quality, drift and speed.

For every model variant (the model; and, when ``--baseline`` names the same model without the Mutual
Forcing stage, that one too) and every step count, each held-out reference clip is regenerated from its
phonemes (same text, voice and timing), its first frame (identity) and a different sentence spoken by
the same voice (speaker reference). Then:

- **AV offset (ms)**: face-probe mouth track of the *generated frames* vs the envelope of the
  *generated audio* (:mod:`mfruntime.eval.offset`), minus the natural lag measured the same way on the
  reference clips; mean ± std over clips, and the mean peak confidence.
- **FD**: Fréchet distance between face-probe features of all generated and all reference frames.
- **PESQ-wb / STOI** of the generated audio against the reference speech.
- **s per s**: compute seconds per second of output; **TTFC**: time to the first chunk.
- **Rig** (a model with a rig head): accuracy, visemes, sync of the rig stream, drive mode with voices outside
  the corpus and at −12 dB (:mod:`mfruntime.eval.rig`).

Drift: one long reference (``drift_seconds``) is generated once and every metric is reported per window.
Results go to ``<out>/eval.json`` and PNG plots; the table is printed.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mfruntime.config import DEFAULT_MODEL, DEFAULT_STEPS, MAX_STEPS, MIN_STEPS, MULTI_STEP_D
from mfruntime.engine.generator import GenerationOptions, Generator
from mfruntime.engine.utterance import Utterance
from mfruntime.errors import UserFacingError
from mfruntime.eval.metrics import frechet_distance, psnr, speech_quality, ssim
from mfruntime.eval.offset import estimate_offset, shift_audio
from mfruntime.eval.probe import FaceProbe
from mfruntime.eval.references import Reference, reference_clips
from mfruntime.eval.rig import JAW, LEVEL_DB, UNSEEN_VOICES, nan_mean, nan_std, rig_scores, summarize, unseen_voice
from mfruntime.eval.report import save_contact_sheet, save_plots, write_json
from mfruntime.eval.syncnet import sync_score
from mfruntime.eval.weights import load_probe, load_syncnet
from mfruntime.model.av import AVModel
from mfruntime.runtime.character import voice_sample

log = logging.getLogger(__name__)

VALIDATION_SHIFTS_MS = (-120, -80, -40, 0, 40, 80, 120)
SHEET_CLIPS = 2  # clips shown in the contact sheet


@dataclass(frozen=True)
class EvalConfig:
    model: str = DEFAULT_MODEL  # bundled model name or bundle path
    baseline: str | None = None  # the same model without the Mutual Forcing stage (bundle path), if any
    clips: int = 8  # held-out reference clips
    seconds: float = 4.0  # length of each reference clip
    steps: tuple[int, ...] = (50, 8, 4, 1)  # step counts to compare (rows)
    drift_seconds: float = 30.0  # length of the drift run (0 = skip)
    drift_window: float = 5.0  # metric window of the drift run, seconds
    drift_steps: int = DEFAULT_STEPS  # step count of the drift run
    out: str = "runs/eval"
    cache: str = "cache"
    instruments: str | None = None  # evaluation weights (face probe, SyncNet); default: the bundled ones
    inception: str | None = None  # Inception-v3 weights file the user has: adds FID (mfruntime.eval.inception)
    # Generation noise seeds. With several, every row is the mean over seeds, and the spread (std over seeds
    # of each metric) is reported beside it, so a difference between models can be read against it.
    seeds: tuple[int, ...] = (0,)
    # Show the network at most this step size d (overrides the model's own trained range,
    # ModelConfig.max_step_size): to measure what out-of-range d does. None keeps the model's.
    max_step_size: float | None = None
    rig_drive: bool = True  # a model with a rig head: drive with unseen voices and at −12 dB (docs/RIG.md)

    def __post_init__(self) -> None:
        if self.clips < 1:
            raise ValueError(f"--clips must be at least 1, got {self.clips}")
        if not self.steps or any(not MIN_STEPS <= s <= MAX_STEPS for s in self.steps):
            raise ValueError(f"--steps must be step counts from {MIN_STEPS} to {MAX_STEPS}, got {self.steps}")
        if self.max_step_size is not None and not max(MULTI_STEP_D) <= self.max_step_size <= 1.0:
            raise ValueError(f"--max-step-size must be between {max(MULTI_STEP_D)} (the range every model is trained "
                             f"on) and 1, got {self.max_step_size}")
        if self.seconds < 1.5:
            raise ValueError(f"--seconds must be at least 1.5 (the offset search needs ±0.3 s and 1 s of overlap), got {self.seconds}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"--seeds must be distinct seeds, got {self.seeds}")
        if self.drift_seconds and self.drift_seconds < 2 * self.drift_window:
            raise ValueError(f"--drift-seconds must be 0 or at least two windows ({2 * self.drift_window:g} s)")


@dataclass
class Generated:
    frames: np.ndarray  # (T, H, W, 3)
    audio: np.ndarray  # (S,)
    chunk_seconds: list[float] = field(default_factory=list)
    rig: np.ndarray | None = None  # (T, len(rig.CONTROLS)) rig frames, for a model with a rig head


def generate_like(model: AVModel, ref: Reference, speaker: np.ndarray, steps: int, seed: int,
                  progress: tqdm | None = None) -> Generated:
    """Regenerate ``ref`` (its phonemes, first frame and speaker) with ``steps`` denoising steps."""
    cfg = model.cfg
    gen = Generator(model, reference_image=ref.frames[0], audio_reference=speaker,
                    options=GenerationOptions(steps=steps, seed=seed))
    # The same utterance contract as Session.say, as long as the reference clip (its frames, in whole chunks).
    utt = Utterance.speech(ref.phonemes, cfg.media, chunks=len(ref.frames) // cfg.media.frames_per_chunk)
    frames, pcm, times, rig = [], [], [], []
    for chunk in gen.run(utt):
        frames.append(chunk.frames)
        pcm.append(chunk.pcm)
        times.append(chunk.compute_seconds)
        rig.append(chunk.rig)
        if progress is not None:
            progress.update()
    return Generated(np.concatenate(frames), np.concatenate(pcm), times, _stack_rig(rig))


def drive_like(model: AVModel, ref: Reference, steps: int, seed: int, progress: tqdm | None = None) -> Generated:
    """Audio-driven mode: lip-sync ``ref``'s own speech (its first frame is the identity)."""
    gen = Generator(model, reference_image=ref.frames[0], options=GenerationOptions(steps=steps, seed=seed))
    frames, pcm, times, rig = [], [], [], []
    for chunk in gen.run(Utterance.drive(ref.audio.astype(np.float32), model.cfg.media)):  # as Session.drive
        frames.append(chunk.frames)
        pcm.append(chunk.pcm)
        times.append(chunk.compute_seconds)
        rig.append(chunk.rig)
        if progress is not None:
            progress.update()
    r = _stack_rig(rig)
    return Generated(np.concatenate(frames)[: len(ref.frames)], np.concatenate(pcm)[: len(ref.audio)], times,
                     None if r is None else r[: len(ref.frames)])


def _stack_rig(parts: list) -> np.ndarray | None:
    return None if not parts or any(p is None for p in parts) else np.concatenate(parts)


class Evaluator:
    def __init__(self, cfg: EvalConfig, progress: bool = True) -> None:
        from mfruntime.model.bundle import load_model

        self.cfg, self.progress = cfg, progress
        self.models = {"mutual": load_model(cfg.model)}
        if cfg.baseline:
            self.models["no-mutual"] = load_model(cfg.baseline)
            same = dataclasses.replace(self.models["no-mutual"].cfg, max_step_size=1.0)  # the trained d range may differ
            if same != dataclasses.replace(self.models["mutual"].cfg, max_step_size=1.0):
                raise ValueError(f"--baseline {cfg.baseline} is a different model shape than {cfg.model}")
        if cfg.max_step_size is not None:
            for m in self.models.values():
                m.cfg = m.transformer.cfg = dataclasses.replace(m.cfg, max_step_size=cfg.max_step_size)
        self.mcfg = self.models["mutual"].cfg
        self.probe: FaceProbe = load_probe(cfg.instruments)
        try:
            self.syncnet = load_syncnet(cfg.instruments)
        except UserFacingError as exc:
            log.info("no SyncNet scores (LSE-D/LSE-C): %s", exc)
            self.syncnet = None
        self.inception = None
        if cfg.inception:
            from mfruntime.eval.inception import load_inception
            self.inception = load_inception(cfg.inception)
            log.info("FID with Inception-v3 from %s (%s variant)", cfg.inception, "FID-port" if self.inception.fid else "torchvision")
        self.fps, self.sr = self.mcfg.media.fps, self.mcfg.media.sample_rate

    # --- reference side --------------------------------------------------------------------------
    def speaker_sample(self, ref: Reference) -> np.ndarray:
        """A different sentence by the same voice (the speaker reference must not leak the clip's audio)."""
        return voice_sample(ref.voice, self.sr, self.mcfg.audio_ref_steps * self.mcfg.audio_codec.hop)

    def offset(self, frames: np.ndarray, audio: np.ndarray) -> tuple[float, float]:
        mouth, _ = self.probe.measure(frames)
        r = estimate_offset(mouth, self.fps, audio, self.sr)
        return r.offset_ms, r.confidence

    def calibrate(self, refs: list[Reference]) -> dict:
        """Natural lag on reference clips, and the estimator's recovery of known shifts."""
        natural = [self.offset(r.frames, r.audio)[0] for r in refs]
        bias = float(np.mean(natural))
        rows = []
        for shift in VALIDATION_SHIFTS_MS:
            got = np.array([self.offset(r.frames, shift_audio(r.audio, self.sr, shift))[0] - bias for r in refs])
            rel = np.array([g - (n - bias) for g, n in zip(got, natural)])  # relative to each clip's own lag
            rows.append({"shift_ms": shift, "recovered_mean_ms": float(got.mean()),
                         "abs_error_of_mean_ms": float(abs(got.mean() - shift)),
                         "abs_error_per_clip_mean_ms": float(np.abs(got - shift).mean()),
                         "abs_error_per_clip_max_ms": float(np.abs(got - shift).max()),
                         "abs_error_relative_max_ms": float(np.abs(rel - shift).max())})
        # The rig's jawOpen is scored against the natural lag of the ground-truth opening (what it learns).
        rig_natural = [estimate_offset(r.mouth_open, self.fps, r.audio, self.sr).offset_ms for r in refs]
        return {"bias_ms": bias, "natural_lag_std_ms": float(np.std(natural)), "shifts": rows,
                "rig_bias_ms": float(np.mean(rig_natural))}

    # --- generated side ------------------------------------------------------------------------
    def score(self, refs: list[Reference], outs: list[Generated], bias: float, real_feats: np.ndarray,
              real_inception: np.ndarray | None = None, rig_bias: float = 0.0) -> dict:
        offs, confs, pesqs, stois, feats, lse, psnrs, ssims, idents, shuffled = [], [], [], [], [], [], [], [], [], []
        rig_clips, rig_offsets = [], []
        for i, (ref, g) in enumerate(zip(refs, outs)):
            n = min(len(ref.frames), len(g.frames))  # same timing: frame-aligned with the reference
            psnrs.append(psnr(ref.frames[:n], g.frames[:n]))
            ssims.append(ssim(ref.frames[:n], g.frames[:n]))
            if self.syncnet is not None:
                sc = sync_score(self.syncnet, g.frames, g.audio, self.fps)
                lse.append((sc.lse_d, sc.lse_c))
            o, c = self.offset(g.frames, g.audio)
            offs.append(o - bias)
            confs.append(c)
            if len(outs) > 1:  # the same frames against another clip's audio: what "no sync" scores
                other = outs[(i + 1) % len(outs)].audio
                m = min(len(other), len(g.audio))
                shuffled.append(self.offset(g.frames[: m * self.fps // self.sr], other[:m])[1])
            idents.append(float(np.abs(self.probe.attributes_of(g.frames) - self.probe.attributes_of(ref.frames[:1])).mean()))
            p, s = speech_quality(ref.audio, g.audio, self.sr)
            pesqs.append(p)
            stois.append(s)
            feats.append(self.probe.measure(g.frames)[1])
            if g.rig is not None:
                rig_clips.append(rig_scores(g.rig, ref.mouth_open, self.probe.measure(g.frames)[0], ref.phonemes, self.fps))
                rig_offsets.append(estimate_offset(g.rig[:, JAW], self.fps, g.audio, self.sr).offset_ms - rig_bias)
        seconds = sum(len(g.frames) for g in outs) / self.fps
        extra = {"lse_d": float(np.mean([x[0] for x in lse])), "lse_c": float(np.mean([x[1] for x in lse]))} if lse else {}
        if rig_clips:
            extra.update(summarize(rig_clips, rig_offsets))
        if self.inception is not None and real_inception is not None:
            extra["fid"] = frechet_distance(np.concatenate([self.inception.features(g.frames) for g in outs]), real_inception)
        return {**extra, "offset_ms": float(np.mean(offs)), "offset_std_ms": float(np.std(offs)),
                "abs_offset_ms": float(np.mean(np.abs(offs))), "confidence": float(np.mean(confs)),
                "confidence_shuffled": float(np.mean(shuffled)) if shuffled else float("nan"),
                "identity_error": float(np.mean(idents)),
                "fd": frechet_distance(np.concatenate(feats), real_feats), "pesq": float(np.mean(pesqs)),
                "stoi": float(np.mean(stois)), "psnr_db": float(np.mean(psnrs)), "ssim": float(np.mean(ssims)),
                "s_per_s": float(sum(sum(g.chunk_seconds) for g in outs) / seconds),
                "ttfc_ms": float(1000 * np.mean([g.chunk_seconds[0] for g in outs]))}

    def run(self) -> dict:
        cfg = self.cfg
        torch.manual_seed(cfg.seeds[0])
        size = self.mcfg.video_codec.size
        refs = reference_clips(cfg.cache, cfg.clips, cfg.seconds, size, progress=self.progress)
        # All reference clips are made before this process speaks (speaker samples): the synthesiser forks
        # cheap workers only while eSpeak has not started here.
        drift_ref = reference_clips(cfg.cache, 1, cfg.drift_seconds, size, progress=self.progress)[0] if cfg.drift_seconds else None
        speakers = [self.speaker_sample(r) for r in refs]
        calib = self.calibrate(refs)
        real_feats = np.concatenate([self.probe.measure(r.frames)[1] for r in refs])
        real_inception = (np.concatenate([self.inception.features(r.frames) for r in refs])
                          if self.inception is not None else None)
        result: dict = {"config": asdict(cfg), "offset_validation": calib, "rows": [], "per_seed": []}
        sheet: dict = {"rows": [], "reference": [r.frames for r in refs[:SHEET_CLIPS]], "fps": self.fps}
        chunks = sum(len(r.frames) // self.mcfg.media.frames_per_chunk for r in refs)
        total = chunks * (len(cfg.steps) * len(self.models) + 1) * len(cfg.seeds)
        with tqdm(total=total, desc="eval generate", unit="chunk", disable=not self.progress) as bar:
            for seed in cfg.seeds:
                for variant, model in self.models.items():
                    for steps in cfg.steps:
                        outs = [generate_like(model, r, spk, steps, seed, bar) for r, spk in zip(refs, speakers)]
                        if variant == "mutual" and seed == cfg.seeds[0]:
                            sheet["rows"].append((f"{steps} steps", [g.frames for g in outs[:SHEET_CLIPS]]))
                        result["per_seed"].append({"variant": variant, "steps": steps, "seed": seed,
                                                   **self.score(refs, outs, calib["bias_ms"], real_feats, real_inception,
                                                                calib["rig_bias_ms"])})
                # Audio-driven mode (Session.drive): the face follows the reference speech it is given.
                outs = [drive_like(self.models["mutual"], r, cfg.drift_steps, seed, bar) for r in refs]
                result["per_seed"].append({"variant": "drive", "steps": cfg.drift_steps, "seed": seed,
                                           **self.score(refs, outs, calib["bias_ms"], real_feats, real_inception,
                                                        calib["rig_bias_ms"])})
        if self.models["mutual"].rig is not None and cfg.rig_drive:
            result["rig_drive"] = self.rig_drive(refs, calib)
        result["rows"] = mean_over_seeds(result["per_seed"])
        if drift_ref is not None:
            result["drift"] = self.drift(drift_ref, calib["bias_ms"], real_feats)
        result["contact_sheet"] = sheet
        return result

    def rig_drive(self, refs: list[Reference], calib: dict) -> dict:
        """Drive mode beyond the corpus (first seed): each clip's text spoken by an unseen voice, offsets of the
        rig and of the frames against it; and each clip's own speech at 0 dB and −12 dB, mouth opening kept."""
        from mfruntime.data.speech import synthesize

        cfg, model = self.cfg, self.models["mutual"]
        unseen: dict[str, list[float]] = {"rig": [], "frames": [], "confidence": []}
        level: dict[str, list[float]] = {"mouth_max": [], "mouth_mean": [], "jaw_max": [], "jaw_mean": []}
        for i, ref in enumerate(tqdm(refs, desc="eval rig drive", unit="clip", disable=not self.progress)):
            speech = synthesize(ref.text, unseen_voice(i), self.sr).pcm.astype(np.float32)
            g = drive_like(model, dataclasses.replace(ref, audio=speech, frames=ref.frames[:1].repeat(
                len(speech) * self.fps // self.sr + 1, 0)), cfg.drift_steps, cfg.seeds[0])
            try:
                rig_off = estimate_offset(g.rig[:, JAW], self.fps, g.audio, self.sr).offset_ms - calib["rig_bias_ms"]
                o, c = self.offset(g.frames, g.audio)
            except ValueError:  # a fast voice made the line too short for the ±300 ms search: not scored
                rig_off = o = c = float("nan")
            unseen["rig"].append(rig_off)
            unseen["frames"].append(o - calib["bias_ms"])
            unseen["confidence"].append(c)
            loud = drive_like(model, ref, cfg.drift_steps, cfg.seeds[0])
            quiet = drive_like(model, dataclasses.replace(ref, audio=ref.audio * 10 ** (LEVEL_DB / 20)), cfg.drift_steps,
                               cfg.seeds[0])
            ml, mq = self.probe.measure(loud.frames)[0], self.probe.measure(quiet.frames)[0]
            level["mouth_max"].append(mq.max() / ml.max())
            level["mouth_mean"].append(mq.mean() / ml.mean())
            level["jaw_max"].append(quiet.rig[:, JAW].max() / max(loud.rig[:, JAW].max(), 1e-6))
            level["jaw_mean"].append(quiet.rig[:, JAW].mean() / max(loud.rig[:, JAW].mean(), 1e-6))
        return {"voices": [v.to_dict() for v in UNSEEN_VOICES], "level_db": LEVEL_DB, "steps": cfg.drift_steps,
                "unseen_scored": int(np.isfinite(unseen["rig"]).sum()),
                "unseen_rig_offset_ms": nan_mean(unseen["rig"]), "unseen_rig_offset_std_ms": nan_std(unseen["rig"]),
                "unseen_frames_offset_ms": nan_mean(unseen["frames"]),
                "unseen_frames_offset_std_ms": nan_std(unseen["frames"]),
                "unseen_confidence": nan_mean(unseen["confidence"]),
                **{f"level_{k}_ratio": nan_mean(v) for k, v in level.items()}}

    def drift(self, ref: Reference, bias: float, real_feats: np.ndarray) -> dict:
        cfg = self.cfg
        n_chunks = len(ref.frames) // self.mcfg.media.frames_per_chunk
        with tqdm(total=n_chunks, desc=f"eval drift {cfg.drift_seconds:g}s", unit="chunk", disable=not self.progress) as bar:
            g = generate_like(self.models["mutual"], ref, self.speaker_sample(ref), cfg.drift_steps, cfg.seeds[0], bar)
        wf, ws = int(cfg.drift_window * self.fps), int(cfg.drift_window * self.sr)
        windows = []
        for i in range(len(g.frames) // wf):
            fr, au, ra = g.frames[i * wf:(i + 1) * wf], g.audio[i * ws:(i + 1) * ws], ref.audio[i * ws:(i + 1) * ws]
            o, c = self.offset(fr, au)
            try:
                p, s = speech_quality(ra, au, self.sr)
            except ValueError:  # a window of silence in the reference
                p = s = float("nan")
            windows.append({"start_s": i * cfg.drift_window, "offset_ms": o - bias, "confidence": c,
                            "fd": frechet_distance(self.probe.measure(fr)[1], real_feats), "pesq": p, "stoi": s})
        per_chunk = g.chunk_seconds
        return {"steps": cfg.drift_steps, "seconds": cfg.drift_seconds, "windows": windows,
                "chunk_ms": [1000 * t for t in per_chunk]}


def mean_over_seeds(per_seed: list[dict]) -> list[dict]:
    """One row per (variant, steps): each metric's mean over seeds, and in ``spread`` its std over seeds."""
    groups: dict[tuple, list[dict]] = {}
    for r in per_seed:
        groups.setdefault((r["variant"], r["steps"]), []).append(r)
    rows = []
    for (variant, steps), rs in groups.items():
        keys = [k for k, v in rs[0].items() if k not in ("variant", "steps", "seed") and isinstance(v, float)]
        row = {"variant": variant, "steps": steps, "seeds": [r["seed"] for r in rs]}
        row.update({k: float(np.mean([r[k] for r in rs])) for k in keys})
        row["spread"] = {k: float(np.std([r[k] for r in rs])) for k in keys}
        rows.append(row)
    return rows


def evaluate(cfg: EvalConfig, progress: bool = True) -> dict:
    start = time.perf_counter()
    result = Evaluator(cfg, progress).run()
    result["wall_seconds"] = round(time.perf_counter() - start, 1)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    sheet = result.pop("contact_sheet")
    write_json(result, out / "eval.json")
    result["plots"] = [str(p) for p in save_plots(result, out)] + [str(save_contact_sheet(sheet, out / "contact_sheet.png"))]
    return result
