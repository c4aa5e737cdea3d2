"""Stage-1 generators side by side: `python -m benchmarks.stage1 --run LABEL=RECIPE:RUNS ...`

Chooses between design candidates (audio codec kinds, conditioning ablations) before the expensive joint
stages. Each ``--run`` names a recipe (its preset and ``[model]`` switches give the model config) and the
runs folder its stages were trained into (``RUNS/<preset>/{codec-audio,audio,video}``). On the same
held-out clips (the evaluation's reference corpus) it reports, for every run that has them:

- **audio** (``audio`` stage, audio-only generator): PESQ-wb / STOI of the codec round trip (its ceiling)
  and of generated speech at the given step counts — same phonemes and voice (speaker reference: a
  different sentence by that voice);
- **video** (``video`` stage, video-only generator): AV offset of the generated mouth (face probe) against
  the *reference* speech, with its confidence, FD and the identity error (face-probe attribute error of
  the generated frames vs the reference frame), at the first step count.

One table, side by side. docs/TRAINING.md records the runs that chose the design.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from mfruntime.engine.generator import GenerationOptions, Generator
from mfruntime.eval.metrics import frechet_distance, speech_quality
from mfruntime.eval.offset import estimate_offset
from mfruntime.eval.references import reference_clips
from mfruntime.eval.weights import load_probe
from mfruntime.model.av import AVModel
from mfruntime.runtime.character import voice_sample
from mfruntime.training.recipe import load_recipe


def stage_model(root: Path, cfg, stage: str) -> AVModel | None:
    """The stage-1 generator of ``stage`` with its codecs, or None if that stage was not trained."""
    weights = root / stage / "final.safetensors"
    if not weights.is_file():
        return None
    cfg = dataclasses.replace(cfg, video=None) if stage == "audio" else dataclasses.replace(cfg, audio=None)
    model = AVModel(cfg)
    model.audio_codec.load_state_dict(load_file(str(root / "codec-audio" / "final.safetensors")))
    model.video_codec.load_state_dict(load_file(str(root / "codec-video" / "final.safetensors")))
    model.transformer.load_state_dict(load_file(str(weights)))
    model.audio_codec.freeze()
    model.video_codec.freeze()
    return model.eval()


def speech_scores(refs, outs, sr: int) -> str:
    q = [speech_quality(r.audio[: len(o)], o[: len(r.audio)], sr) for r, o in zip(refs, outs)]
    return f"{np.mean([p for p, _ in q]):.2f} / {np.mean([s for _, s in q]):.2f}"


def audio_rows(model: AVModel, refs, steps: list[int], seed: int, temperature: float) -> dict[str, str]:
    cfg = model.cfg
    sr, hop = cfg.media.sample_rate, cfg.audio_codec.hop
    with torch.no_grad():
        trip = [model.audio_codec.decode(model.audio_codec.encode(torch.from_numpy(r.audio[: len(r.audio) // hop * hop])[None]))[0].numpy()
                for r in refs]
    out = {"round trip PESQ/STOI": speech_scores(refs, trip, sr)}
    for n in steps:
        gens = []
        for r in refs:
            speaker = voice_sample(r.voice, sr, cfg.audio_ref_steps * hop)
            gen = Generator(model, audio_reference=speaker,
                            options=GenerationOptions(steps=n, seed=seed, audio_temperature=temperature))
            chunks = len(r.audio) // cfg.media.samples_per_chunk
            gens.append(np.concatenate([c.pcm for c in gen.generate(r.phonemes, n_chunks=chunks)]))
        out[f"{n} steps PESQ/STOI"] = speech_scores(refs, gens, sr)
    return out


def video_rows(model: AVModel, refs, steps: int, seed: int, probe, bias: float) -> dict[str, str]:
    cfg = model.cfg
    fps, sr = cfg.media.fps, cfg.media.sample_rate
    offs, confs, feats, idents = [], [], [], []
    for r in refs:
        gen = Generator(model, reference_image=r.frames[0], options=GenerationOptions(steps=steps, seed=seed))
        chunks = len(r.frames) // cfg.frames_per_chunk
        frames = np.concatenate([c.frames for c in gen.generate(r.phonemes, n_chunks=chunks)])
        mouth, f = probe.measure(frames)
        res = estimate_offset(mouth, fps, r.audio[: len(frames) * sr // fps], sr)
        offs.append(res.offset_ms - bias)
        confs.append(res.confidence)
        feats.append(f)
        idents.append(float(np.abs(probe.attributes_of(frames) - probe.attributes_of(r.frames[:1])).mean()))
    real = np.concatenate([probe.measure(r.frames)[1] for r in refs])
    return {f"{steps}-step offset ms": f"{np.mean(offs):+.1f} ± {np.std(offs):.1f}", "conf": f"{np.mean(confs):.2f}",
            "FD": f"{frechet_distance(np.concatenate(feats), real):.2f}", "ID err": f"{np.mean(idents):.3f}"}


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    refs = reference_clips(args.cache, args.clips, args.seconds, 64, progress=False)  # before eSpeak runs here
    probe = load_probe(args.instruments)
    fps, sr = 25, 16_000
    natural = [estimate_offset(probe.measure(r.frames)[0], fps, r.audio, sr).offset_ms for r in refs]
    bias = float(np.mean(natural))  # the estimator's lag on the reference clips themselves
    table = []
    for spec in args.run:
        label, _, rest = spec.partition("=")
        recipe_path, _, runs = rest.partition(":")
        if not (label and recipe_path and runs):
            raise SystemExit(f"--run must be LABEL=RECIPE:RUNS, got {spec!r}")
        recipe = load_recipe(recipe_path)
        cfg = recipe.model_config()
        root = Path(runs).expanduser() / recipe.preset
        row = {"run": label, "codec": f"{cfg.audio_codec.kind} {cfg.audio_codec.latent_channels}"}
        audio = stage_model(root, cfg, "audio")
        if audio is not None:
            row.update(audio_rows(audio, refs, args.steps, args.seed, args.audio_temperature))
        video = stage_model(root, cfg, "video")
        if video is not None:
            row.update(video_rows(video, refs, args.steps[0], args.seed, probe, bias))
        table.append(row)
    cols = [c for c in dict.fromkeys(k for row in table for k in row)]
    widths = {c: max(len(c), *(len(str(r.get(c, "—"))) for r in table)) + 2 for c in cols}
    print(f"{len(refs)} held-out clips of {args.seconds:g} s; offsets relative to the reference clips' own lag ({bias:+.1f} ms)")
    print("".join(f"{c:>{widths[c]}}" for c in cols))
    for r in table:
        print("".join(f"{str(r.get(c, '—')):>{widths[c]}}" for c in cols))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", action="append", required=True, metavar="LABEL=RECIPE:RUNS",
                   help="a trained candidate: its label, recipe file and runs folder (repeat for each)")
    p.add_argument("--steps", nargs="+", type=int, default=[4, 50], help="denoising steps (default: 4 50; video uses the first)")
    p.add_argument("--clips", type=int, default=8, help="held-out clips (default: 8)")
    p.add_argument("--seconds", type=float, default=4.0, help="length of each clip (default: 4)")
    p.add_argument("--cache", default="cache", help="where the held-out clips are cached (default: cache)")
    p.add_argument("--instruments", default=None, help="face probe weights (default: the bundled eval.safetensors)")
    p.add_argument("--seed", type=int, default=0, help="generation noise seed (default: 0)")
    p.add_argument("--audio-temperature", type=float, default=GenerationOptions.audio_temperature,
                   help=f"audio sampling temperature (default: {GenerationOptions.audio_temperature})")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
