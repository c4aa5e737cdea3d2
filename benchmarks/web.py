"""The browser path beside the ZeroMQ path: `python -m benchmarks.web [--lines 5] [--steps 4] [--upscale 1 4]`.

1. **Server cost per chunk** (this process, real chunks of the bundled model): what the WebRTC path spends on one
   160-ms chunk — the playout, eight 20-ms Opus frames and four VP8 frames with aiortc's own encoders, the frames
   sent at their size or enlarged in blocks (``--upscale``: the page asks for 4, so a 64-px face travels as 256
   px) — against what the ZeroMQ path spends (``encode_chunk``: the five-part message). Mean over the chunks of
   ``--lines`` lines.
2. **Say → first sound**: from the request to the first chunk on a ZeroMQ subscriber (time to first chunk), and
   from a say on the page to the first audible sample in a real headless Chromium (the page's ``?check=1``
   report, run in a loopback-only network namespace as tests/test_web.py does; needs root or unprivileged
   namespaces and Chromium).

Run it on a quiet machine.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

LINE = "Welcome, traveller. The road ahead is long, so rest here by the fire tonight."


def server_costs(lines: int, steps: int, upscales: list[int]) -> dict:
    from aiortc.codecs.opus import OpusEncoder
    from aiortc.codecs.vpx import Vp8Encoder

    from mfruntime import Session
    from mfruntime.runtime.protocol import encode_chunk
    from mfruntime.runtime.web.playout import Playout
    from mfruntime.runtime.web.tracks import upscaled

    s = Session(steps=steps)
    chunks = [c for _ in range(lines) for c in s.say(LINE)]
    zmq_t, web_t = [], {k: [] for k in upscales}
    for c in chunks:
        t = time.perf_counter()
        encode_chunk("default", c.utterance, c.seq, c.pts, c.frames, c.pcm, c.fps, c.sample_rate, c.last, rig=c.rig)
        zmq_t.append(time.perf_counter() - t)
    for k in upscales:  # each its own encoders and playout, over the same chunks
        opus, vp8, play = OpusEncoder(), Vp8Encoder(), Playout(sample_rate=s.sample_rate, fps=s.fps, prebuffer=0)
        pos = 0
        for c in chunks:
            t = time.perf_counter()
            play.push(c.utterance, c.seq, c.pcm, c.frames, c.last, False, arrived=play.position)
            for _ in range(len(c.pcm) // 320):
                pcm = play.audio(320)
                f = av.AudioFrame.from_ndarray((pcm * 32767).astype(np.int16)[None], format="s16", layout="mono")
                f.sample_rate, f.pts, f.time_base = s.sample_rate, pos, Fraction(1, s.sample_rate)
                opus.encode(f)
                pos += 320
            for i in range(len(c.frames)):
                rgb = play.frame(pos - len(c.pcm) + i * 640)
                f = av.VideoFrame.from_ndarray(upscaled(rgb, k), format="rgb24")
                f.pts, f.time_base = (pos - len(c.pcm) + i * 640) * 90000 // s.sample_rate, Fraction(1, 90000)
                vp8.encode(f)
            web_t[k].append(time.perf_counter() - t)
    return {"chunks": len(chunks), "zmq_ms": 1000 * statistics.mean(zmq_t),
            "web_ms": {k: 1000 * statistics.mean(v) for k, v in web_t.items()}, "ttfc_ms": s.stats().ttfc_ms_mean}


def zmq_first_chunk(lines: int, steps: int) -> list[float]:
    from benchmarks.bridges import python_ttfc
    from mfruntime.runtime.process import serve_process

    with serve_process(backend="auto", steps=steps, threads="auto") as (control, stream):
        out = [python_ttfc(control, stream, LINE) for _ in range(lines + 1)]
    return out[1:]  # the first line warms up


def page_first_sound() -> dict | None:
    from tests import netns
    from tests.web_scenario import chromium

    if chromium() is None or netns.available() is not None:
        return None
    out = Path(tempfile.mkdtemp()) / "seen.json"
    netns.isolated(["tests.web_scenario", str(out)], timeout=600, second_address=True)
    if not out.exists():
        return None
    page = json.loads(out.read_text()).get("page") or {}
    return page if page.get("ok") else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lines", type=int, default=5)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--upscale", type=int, nargs="+", default=[1, 4], choices=range(1, 5),
                   help="video sent at its size (1) or enlarged in blocks (the page asks for 4)")
    args = p.parse_args()
    c = server_costs(args.lines, args.steps, args.upscale)
    z = zmq_first_chunk(args.lines, args.steps)
    page = page_first_sound()
    print(f"{c['chunks']} chunks of the bundled model, {args.steps} steps\n")
    print("| path | server cost per 160-ms chunk | say → first chunk / first sound |")
    print("|---|---:|---:|")
    print(f"| ZeroMQ (`encode_chunk`) | {c['zmq_ms']:.3f} ms | first chunk on a subscriber: p50 {statistics.median(z):.0f} ms "
          f"over {len(z)} lines |")
    sound = f"first audible sample in Chromium: {page['line']['say_to_first_sound_ms']} ms (one line, 2 steps, one thread)" \
        if page else "not measured (no Chromium or no network namespace here)"
    for k, ms in c["web_ms"].items():
        size = f"{64 * k} px" if k > 1 else "its 64 px"
        print(f"| WebRTC (playout + 8 Opus + 4 VP8 frames at {size}) | {ms:.3f} ms | {sound} |")
    if page:
        print(f"\npage report: A/V offset median {page['av_offset_ms']['median']} ms, {page['line']['fps']:.1f} fps, "
              f"interrupt → silence {page['interrupt']['sound_stopped_ms']} ms")


if __name__ == "__main__":
    main()
