"""Embed mfruntime in a Python program: a character that speaks text, or lip-syncs given audio, into an mp4.

    python examples/embed.py                                   # the built-in face says a friendly line
    python examples/embed.py --text "Good morning!" --image me.png --out hello.mp4
    python examples/embed.py --drive speech.wav                # lip-sync a recording (wav, mp3, mp4, …)
    python examples/embed.py --interrupt-after 5               # cut the line short after 5 chunks

A Session hands out chunks of 160 ms as they are generated: 4 RGB frames (25 fps) and 2560 samples of
mono float32 PCM (16 kHz). A game engine would show and play each chunk as it arrives; here they are
collected and written to one file at the end.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from mfruntime import Session
from mfruntime.data.media import write_clip


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """The first audio stream of any file FFmpeg reads (wav, mp3, flac, mp4, …) → mono float32 and its rate."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                sys.exit(f"embed.py: {path} has no audio stream")
            stream = container.streams.audio[0]
            rate = stream.rate or stream.codec_context.sample_rate
            # Decode to packed float32 mono at the file's own rate; Session.drive() resamples to 16 kHz itself.
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            parts = []
            for frame in container.decode(stream):
                parts += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
            parts += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]  # flush
    except av.FFmpegError as exc:
        sys.exit(f"embed.py: cannot read audio from {path}: {exc}")
    if not parts:
        sys.exit(f"embed.py: {path} contains no audio samples")
    return np.concatenate(parts).astype(np.float32), int(rate)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--text", default="Hello! I'm your new guide. It's lovely to meet you.", help="what to say")
    p.add_argument("--image", type=Path, help="character image (any RGB picture; centre-cropped and resized)")
    p.add_argument("--drive", type=Path, metavar="WAV_OR_MP4",
                   help="lip-sync this recording instead of speaking --text")
    p.add_argument("--interrupt-after", type=int, metavar="N", help="call session.interrupt() after N chunks")
    p.add_argument("--steps", type=int, default=4, help="denoising steps per chunk (1–4 live, 8–50 quality)")
    p.add_argument("--out", type=Path, default=Path("embed.mp4"), help="output mp4 (default: embed.mp4)")
    args = p.parse_args()
    for name in ("image", "drive"):
        path = getattr(args, name)
        if path is not None and not path.is_file():
            p.error(f"--{name}: no such file: {path}")

    # One Session is one character. Defaults: the bundled tiny model, CUDA if visible else CPU, the best
    # backend for that device. Sessions of the same model share its weights, so many characters are cheap.
    session = Session(steps=args.steps)
    print(f"session: {session.device}, backend {session.backend}, {session.size}×{session.size} px, "
          f"{session.fps} fps, {session.sample_rate} Hz")

    if args.image is not None:
        # A path, a PIL image or an (H, W, 3) uint8 array; applies from the next utterance on.
        session.set_character(args.image)

    if args.drive is not None:
        # Lip-sync: frames are generated to match the audio; each chunk's pcm is the given audio (at 16 kHz).
        pcm, rate = read_audio(args.drive)
        print(f"driving with {args.drive} ({len(pcm) / rate:.2f} s at {rate} Hz)")
        chunks = session.drive(pcm, rate)
    else:
        # Text to speech and face together. Bad input raises here, before any chunk is generated.
        chunks = session.say(args.text)

    frames, pcm = [], []
    for chunk in chunks:  # generation happens inside each next(): keep the consumer quick
        frames.append(chunk.frames)
        pcm.append(chunk.pcm)
        print(f"  chunk {chunk.seq:3d}  pts {chunk.pts:6.2f} s  {1000 * chunk.compute_seconds:6.1f} ms"
              + ("  (last, interrupted)" if chunk.interrupted else "  (last)" if chunk.last else ""))
        # interrupt() may be called from any thread (e.g. when the player talks over the character):
        # at most one more chunk comes out, marked last and interrupted, and the iterator ends.
        # Starting a new say()/drive() also ends the current utterance.
        if args.interrupt_after is not None and len(frames) == args.interrupt_after:
            session.interrupt()

    video = np.concatenate(frames)  # (T, H, W, 3) uint8
    audio = np.concatenate(pcm)  # (S,) float32 in [-1, 1]
    write_clip(args.out, video, audio, session.fps, session.sample_rate)  # H.264 + AAC
    print(f"wrote {args.out}: {len(video)} frames, {len(audio) / session.sample_rate:.2f} s of audio")

    # Timing of this session so far: time to first chunk, real-time factor (compute s per media s;
    # below 1 is faster than real time) and per-chunk compute percentiles.
    st = session.stats()
    print(f"stats: ttfc {st.ttfc_ms:.0f} ms, rtf {st.rtf:.3f}, chunk p50 {st.chunk_ms_p50:.1f} ms, "
          f"p95 {st.chunk_ms_p95:.1f} ms, max {st.chunk_ms_max:.1f} ms ({st.chunks} chunks, {st.steps} steps)")


if __name__ == "__main__":
    try:
        main()
    except ValueError as exc:  # mfruntime reports bad images, text or audio as ValueError with a clear message
        sys.exit(f"embed.py: {exc}")
