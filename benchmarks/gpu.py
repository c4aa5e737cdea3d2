"""Backends on a CUDA GPU: `python -m benchmarks.gpu [--presets tiny,small] [--chunks 30]` (or benchmarks/gpu.sh).

Needs a CUDA GPU and a CUDA build of PyTorch; the native CUDA kernels need the package built with
``MFR_CUDA=1 make setup`` (benchmarks/gpu.sh does both checks), the ``tensorrt`` backend the
``torch-tensorrt`` package. Backends that cannot run are listed with the reason and left out.

1. Kernels: the native CUDA kernels against the PyTorch reference on random shapes of every preset's
   heads, float32 / float16 / bfloat16 (max abs error ≤ 1e-4 fp32, ≤ 2e-2 fp16/bf16).
2. Equivalence: every backend against eager over ``--chunks`` chunks of one line, same seed: frames
   within ``--frame-tol`` levels, PCM within ``--pcm-tol``.
3. Speed: ms per chunk at 4 steps per backend, one chunk of each in turn; ``tiny`` with the bundled
   weights, other presets untrained (cost does not depend on the values).
Exit code 1 when any check fails.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from benchmarks.model import long_phonemes
from mfruntime.config import preset
from mfruntime.data.render import FaceRenderer, FaceState, Identity
from mfruntime.engine import native
from mfruntime.engine.backends import kernels_for, why_unavailable
from mfruntime.engine.generator import GenerationOptions, Generator
from mfruntime.engine.kernels import reference_attend, reference_ring_attention, reference_ring_write
from mfruntime.model.av import AVModel
from mfruntime.model.bundle import load_model

TOLERANCE = {torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 2e-2}


def check_kernels(dev: torch.device, presets: list[str]) -> bool:
    ok = True
    print("\n| kernel | heads × dim | dtype | max abs error | ok |\n|---|---|---|---:|---|")
    g = torch.Generator().manual_seed(0)
    for name in presets:
        cfg = preset(name)
        h, d, n = cfg.video.heads, cfg.head_dim, cfg.video_tokens_per_chunk
        t = 16 + cfg.window_chunks * n + n
        for dtype, tol in TOLERANCE.items():
            def rnd(*shape):
                return torch.randn(*shape, generator=g).to(dev, dtype)
            q, k, v = (rnd(1, n, h, d).transpose(1, 2) for _ in range(3))
            kb, vb = rnd(1, h, t, d), rnd(1, h, t, d)
            valid = (torch.rand(1, t, generator=g) > 0.3).to(dev)
            valid[:, -n:] = True
            cis = torch.polar(torch.ones(1, n, d // 2), torch.rand(1, n, d // 2, generator=g) * 6.3).to(dev)
            with torch.no_grad():
                k1, v1, k2, v2 = kb.clone(), vb.clone(), kb.clone(), vb.clone()
                want = reference_ring_attention(q.float(), k.float(), v.float(), k1.float(), v1.float(), t - n, cis, valid)[0]
                got = native.ring_attention(q, k, v, k2, v2, t - n, cis, valid)[0]
                errors = {"ring_attention": (got.float() - want).abs().max().item()}
                errors["attend"] = (native.attend(q, kb, vb, valid, cis).float()
                                    - reference_attend(q.float(), kb.float(), vb.float(), valid, cis)).abs().max().item()
                k3, v3, k4, v4 = kb.clone(), vb.clone(), kb.clone(), vb.clone()
                native.ring_write(k3, v3, k, v, 5, 16, cfg.window_chunks)
                reference_ring_write(k4, v4, k, v, 5, 16, cfg.window_chunks)
                errors["ring_write"] = max((k3.float() - k4.float()).abs().max().item(),
                                           (v3.float() - v4.float()).abs().max().item())
            for kernel, err in errors.items():
                good = err <= tol
                ok &= good
                print(f"| {kernel} | {h} × {d} | {str(dtype).split('.')[-1]} | {err:.2e} | {'yes' if good else 'NO'} |")
    return ok


def model_for(name: str, dev: torch.device) -> AVModel:
    if name == "tiny":
        return load_model("tiny", dev)
    torch.manual_seed(0)
    return AVModel(preset(name)).eval().to(dev)


def compare(name: str, dev: torch.device, backends: list[str], args) -> bool:
    model = model_for(name, dev)
    face = FaceRenderer(Identity.from_seed(0), model.cfg.video_codec.size).render(FaceState())
    phonemes = long_phonemes((args.chunks + 10) * model.cfg.media.chunk_seconds)
    gens = {b: Generator(model, face, options=GenerationOptions(steps=4, seed=1), kernels=kernels_for(b))
            for b in backends}
    chunks: dict[str, list] = {b: [] for b in backends}
    times: dict[str, list[float]] = {b: [] for b in backends}
    streams = {b: gen.generate(phonemes, n_chunks=args.chunks) for b, gen in gens.items()}
    for _ in range(args.chunks):
        for b in backends:  # one chunk of each in turn
            torch.cuda.synchronize(dev)
            start = time.perf_counter()
            c = next(streams[b])
            torch.cuda.synchronize(dev)
            times[b].append(time.perf_counter() - start)
            chunks[b].append(c)
    ok = True
    chunk_s = model.cfg.media.chunk_seconds
    print(f"\n{name}: {args.chunks} chunks at 4 steps, backends interleaved chunk by chunk (first 3 chunks left "
          "out of the times: warm-up and compilation)")
    print("\n| backend | ms per chunk (median) | RTF | max frame diff vs eager | max PCM diff vs eager | ok |")
    print("|---|---:|---:|---:|---:|---|")
    for b in backends:
        fd = max(int(np.abs(x.frames.astype(int) - y.frames.astype(int)).max()) for x, y in zip(chunks["eager"], chunks[b]))
        pd = max(float(np.abs(x.pcm - y.pcm).max()) for x, y in zip(chunks["eager"], chunks[b]))
        good = fd <= args.frame_tol and pd <= args.pcm_tol
        ok &= good
        med = float(np.median(times[b][3:]))
        print(f"| {b} | {1000 * med:.1f} | {med / chunk_s:.3f} | {fd} | {pd:.2e} | {'yes' if good else 'NO'} |")
    return ok


def main(args: argparse.Namespace) -> int:
    if not torch.cuda.is_available():
        print("benchmarks.gpu: no CUDA GPU visible to PyTorch (torch.cuda.is_available() is False); "
              "run it on a GPU machine with a CUDA build of PyTorch", file=sys.stderr)
        return 2
    dev = torch.device("cuda")
    presets = [p for p in args.presets.split(",") if p]
    print(f"{torch.cuda.get_device_name(dev)}, torch {torch.__version__}")
    backends = ["eager"]
    for b in ("native", "compile", "tensorrt"):
        reason = why_unavailable(b, dev)
        if reason:
            print(f"- {b}: left out ({reason})")
        else:
            backends.append(b)
    ok = True
    if "native" in backends:
        ok &= check_kernels(dev, presets)
    for name in presets:
        ok &= compare(name, dev, backends, args)
    print("\nall checks passed" if ok else "\nSOME CHECKS FAILED")
    return 0 if ok else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default="tiny,small", help="presets to run, comma-separated (default: tiny,small)")
    p.add_argument("--chunks", type=int, default=30, help="chunks per backend and preset (default: 30)")
    p.add_argument("--frame-tol", type=int, default=2, help="largest frame difference accepted, in levels (default: 2)")
    p.add_argument("--pcm-tol", type=float, default=2e-3, help="largest PCM difference accepted (default: 2e-3)")
    return p


if __name__ == "__main__":
    sys.exit(main(build_parser().parse_args()))
