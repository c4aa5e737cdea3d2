"""Speed of the model on this machine: `python -m benchmarks.model [--preset tiny] [--backends eager,native]`.

Untrained weights (cost does not depend on the values). A chunk is 160 ms of
output: the denoising steps, the commit forward at t = 0 and decoding to frames
and PCM. Everything is measured in one run so the ratios are side by side: the
step-count table, the FLOP count, the backends (eager vs native kernels, one chunk
of each in turn so machine drift hits both alike, plus the seam's attention calls
alone at the preset's shapes), what rig-only mode saves (frames + rig vs rig only vs
frames only, interleaved) and chunk 10 vs chunk N.
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from mfruntime.config import preset
from mfruntime.data.render import FaceRenderer, FaceState, Identity
from mfruntime.data.speech import Phoneme, synthesize
from mfruntime.engine.backends import kernels_for, pick_backend
from mfruntime.engine.generator import GenerationOptions, Generator
from mfruntime.engine.utterance import Utterance
from mfruntime.model.av import AVModel


def long_phonemes(seconds: float) -> list[Phoneme]:
    """Real eSpeak phonemes of one sentence, repeated back to back for ``seconds``."""
    one = synthesize("The quick brown fox jumps over the lazy dog, and then it rests for a while.").phonemes
    period = one[-1].end
    out: list[Phoneme] = []
    k = 0
    while k * period < seconds:
        out += [Phoneme(p.symbol, p.start + k * period, p.end + k * period, p.stressed) for p in one]
        k += 1
    return out


def chunk_times(gen: Generator, phonemes, n: int, steps: int) -> list[float]:
    return [c.compute_seconds for c in gen.generate(phonemes, n_chunks=n, steps=steps)]


def matmul_peak(n: int = 1024, reps: int = 20) -> float:
    """Measured fp32 matmul throughput on this machine, FLOP/s."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - start)


def main(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = dataclasses.replace(preset(args.preset), rig="av")  # with the rig head, as the bundled model
    model = AVModel(cfg).eval()
    face = FaceRenderer(Identity.from_seed(0), cfg.video_codec.size).render(FaceState())
    chunk_s = cfg.media.chunk_seconds
    phonemes = long_phonemes((args.long_chunks + 20) * chunk_s)
    print(f"preset {args.preset}: {sum(p.numel() for p in model.transformer.parameters()) / 1e6:.2f} M transformer params, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    rows = []
    for steps in (1, 4, 8, 50):
        gen = Generator(model, face, options=GenerationOptions(steps=steps))
        n = 6 if steps == 50 else 16
        times = chunk_times(gen, phonemes, n, steps)[2:]  # skip warm-up chunks
        ms = 1000 * float(np.median(times))
        rows.append((steps, ms, ms / 1000 / chunk_s))
    print("\n| steps | ms per chunk (median) | real-time factor (s compute / s output) |")
    print("|---:|---:|---:|")
    for steps, ms, rtf in rows:
        print(f"| {steps} | {ms:.1f} | {rtf:.3f} |")

    gen = Generator(model, face, options=GenerationOptions(steps=4))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        chunk_times(gen, phonemes, 1, 4)
    flops = counter.get_total_flops()
    peak = matmul_peak()
    ms4 = next(ms for s, ms, _ in rows if s == 4)
    achieved = flops / (ms4 / 1000)
    print(f"\nFLOPs per chunk at 4 steps (incl. commit and decode): {flops / 1e9:.3f} GFLOP")
    print(f"measured matmul peak: {peak / 1e9:.1f} GFLOP/s; achieved at 4 steps: {achieved / 1e9:.1f} GFLOP/s "
          f"= {100 * achieved / peak:.1f}% of peak")

    backends = [b for b in args.backends.split(",") if b]
    if len(backends) > 1:
        compare_backends(model, face, phonemes, backends, args.backend_chunks)
        compare_attention(model, backends)

    compare_outputs(model, face, phonemes, backends[-1], args.backend_chunks)

    # Chunk ~10 vs chunk ~N, measured alternately from snapshots so machine drift hits both alike.
    early_gen = Generator(model, face, options=GenerationOptions(steps=1))
    late_gen = Generator(model, face, options=GenerationOptions(steps=1))
    chunk_times(early_gen, phonemes, 10, 1)
    chunk_times(late_gen, phonemes, args.long_chunks, 1)  # advance cheaply; the cache is what matters
    snaps = {"early": (early_gen, early_gen.snapshot()), "late": (late_gen, late_gen.snapshot())}
    measured: dict[str, list[float]] = {"early": [], "late": []}
    for _ in range(args.repeats):
        for key, (gen, snap) in snaps.items():
            gen.restore(snap)
            measured[key] += chunk_times(gen, phonemes, 1, args.long_steps)
    early, late = (float(np.median(measured[k])) for k in ("early", "late"))
    print(f"\nper-chunk time at {args.long_steps} steps, measured alternately {args.repeats}× each: "
          f"chunk 10: {early * 1000:.1f} ms, chunk {args.long_chunks}: {late * 1000:.1f} ms, "
          f"ratio {late / early:.3f}")


def compare_backends(model, face, phonemes, backends: list[str], chunks: int) -> None:
    """ms per chunk at 4 steps for each backend, one chunk of each in turn (same seed, same line)."""
    for b in backends:
        pick_backend(b, torch.device("cpu"))  # a clear error when a backend cannot run here
    gens = {b: Generator(model, face, options=GenerationOptions(steps=4), kernels=kernels_for(b)) for b in backends}
    for gen in gens.values():
        chunk_times(gen, phonemes, 3, 4)  # warm-up (and compilation, for compile)
    times: dict[str, list[float]] = {b: [] for b in backends}
    for _ in range(chunks):
        for b, gen in gens.items():
            times[b] += chunk_times(gen, phonemes, 1, 4)
    base = float(np.median(times[backends[0]]))
    print(f"\nbackends at 4 steps, {chunks} chunks each, interleaved chunk by chunk")
    print(f"\n| backend | ms per chunk (median) | p90 | RTF | {backends[0]} / backend |")
    print("|---|---:|---:|---:|---:|")
    chunk_s = model.cfg.media.chunk_seconds
    for b in backends:
        med, p90 = float(np.median(times[b])), float(np.percentile(times[b], 90))
        print(f"| {b} | {1000 * med:.1f} | {1000 * p90:.1f} | {med / chunk_s:.3f} | {base / med:.2f} |")


def compare_outputs(model, face, phonemes, backend: str, chunks: int) -> None:
    """What a chunk costs with frames and rig, rig only (no video decoder) and frames only, at 4 and 1 steps,
    interleaved chunk by chunk (same seed, same line) on ``backend``."""
    modes = {"frames + rig": (True, True), "rig only (video=False)": (False, True), "frames only (rig=False)": (True, False)}
    print(f"\noutputs ({backend} backend, {chunks} chunks each, interleaved chunk by chunk)")
    print("\n| steps | outputs | ms per chunk (median) | RTF | vs frames + rig |")
    print("|---:|---|---:|---:|---:|")
    chunk_s = model.cfg.media.chunk_seconds
    for steps in (4, 1):
        utt = Utterance.speech(phonemes, model.cfg.media)
        runs = {m: Generator(model, face, options=GenerationOptions(steps=steps), kernels=kernels_for(backend))
                   .run(utt, steps, video=v, rig=r) for m, (v, r) in modes.items()}
        for it in runs.values():
            for _ in range(3):  # warm-up
                next(it)
        times: dict[str, list[float]] = {m: [] for m in modes}
        for _ in range(chunks):
            for m, it in runs.items():
                times[m].append(next(it).compute_seconds)
        base = float(np.median(times["frames + rig"]))
        for m in modes:
            med = float(np.median(times[m]))
            print(f"| {steps} | {m} | {1000 * med:.1f} | {med / chunk_s:.3f} | {med / base:.2f} |")


def compare_attention(model, backends: list[str], reps: int = 200) -> None:
    """The seam's attention calls alone at this preset's chunk-step shapes (batch 1), µs per call, interleaved."""
    cfg = model.cfg
    h, d = cfg.video.heads, cfg.head_dim
    nv, na = cfg.video_tokens_per_chunk, cfg.audio_tokens_per_chunk
    tv = model.transformer.streams["video"].sink_tokens + (cfg.window_chunks + 1) * nv
    ta = cfg.audio_ref_steps + (cfg.window_chunks + 1) * na
    ph = 1 + cfg.max_phonemes
    shapes = [("video self-attention", "ring", nv, tv), ("audio self-attention", "ring", na, ta),
              ("video → audio cross", "attend", nv, ta), ("audio → video cross", "attend", na, tv),
              ("video phonemes", "attend", nv, ph), ("audio phonemes", "attend", na, ph)]
    g = torch.Generator().manual_seed(0)
    print(f"\nattention calls alone (µs per call, median of {reps}, interleaved; {h} heads × {d})")
    print("\n| call | queries | keys | " + " | ".join(backends) + " |")
    print("|---|---:|---:|" + "---:|" * len(backends))
    for name, kind, n, t in shapes:
        q, k, v = (torch.randn(1, n, h, d, generator=g).transpose(1, 2) for _ in range(3))
        kb, vb = torch.randn(1, h, t, d, generator=g), torch.randn(1, h, t, d, generator=g)
        valid = torch.ones(1, t, dtype=torch.bool)
        cis = torch.polar(torch.ones(1, n, d // 2), torch.rand(1, n, d // 2, generator=g) * 6.3)
        calls = {}
        for b in backends:
            kern = kernels_for(b)
            if kind == "ring":
                calls[b] = lambda kern=kern: kern.ring_attention(q, k, v, kb, vb, t - n, cis, valid)
            else:
                calls[b] = lambda kern=kern: kern.attend(q, kb, vb, valid, cis)
        times: dict[str, list[float]] = {b: [] for b in backends}
        with torch.no_grad():
            for _ in range(reps):
                for b, fn in calls.items():
                    start = time.perf_counter()
                    fn()
                    times[b].append(time.perf_counter() - start)
        print(f"| {name} | {n} | {t} | " + " | ".join(f"{1e6 * float(np.median(times[b])):.1f}" for b in backends) + " |")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="tiny", help="model preset (default: tiny)")
    p.add_argument("--threads", type=int, default=0, help="torch threads; 0 = torch's default")
    p.add_argument("--long-chunks", type=int, default=500, help="N for the chunk-10 vs chunk-N comparison")
    p.add_argument("--long-steps", type=int, default=4, help="steps per chunk when timing chunk 10 vs chunk N")
    p.add_argument("--repeats", type=int, default=30, help="alternating measurements of chunk 10 and chunk N")
    p.add_argument("--backends", default="eager,native",
                   help="backends to compare, comma-separated; the first is the baseline (default: eager,native)")
    p.add_argument("--backend-chunks", type=int, default=40, help="chunks per backend in the comparison (default: 40)")
    return p


if __name__ == "__main__":
    main(build_parser().parse_args())
