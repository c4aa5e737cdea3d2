"""A client of `mf serve`: subscribe to a character's stream, optionally make it speak, save or play what arrives.

    mf serve &                                                  # control on :5555, stream on :5556
    python examples/receiver.py --say "Hello from the server!"  # → receiver.mp4
    python examples/receiver.py --utterances 3                  # wait for 3 lines someone else triggers
    python examples/receiver.py --say "Hi!" --play              # play the voice live (needs sounddevice)

Each stream message is one 160-ms chunk: a msgpack header (utterance, seq, pts, sizes, eou, …), RGB frames
and float32 PCM (docs/PROTOCOL.md). The server never waits for slow subscribers: a message ZeroMQ could not
queue is dropped, which shows up here as a gap in ``seq``. An utterance ends with a message whose header has
``eou`` set (it may carry no frames or samples, e.g. after an interrupt).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from mfruntime.runtime.client import Client, ServerError, Subscriber

SLOW_JOINER_S = 0.3  # a new SUB socket misses what is published before its subscription reaches the server
PLAY_HINT = "live playback needs sounddevice and PortAudio: pip install sounddevice && apt-get install libportaudio2"


class Player:
    """Plays PCM chunks as they arrive. sounddevice is imported here so that --out works without it."""

    def __init__(self) -> None:
        try:
            import sounddevice  # raises OSError when the PortAudio library is missing
        except (ImportError, OSError):
            sys.exit(PLAY_HINT)
        self.sd, self.stream = sounddevice, None

    def play(self, pcm: np.ndarray, sample_rate: int) -> None:
        if self.stream is None:  # opened on the first chunk, when the sample rate is known
            try:
                self.stream = self.sd.OutputStream(samplerate=sample_rate, channels=1, dtype="float32")
                self.stream.start()
            except self.sd.PortAudioError as exc:
                sys.exit(f"cannot open an audio output device: {exc}")
        if pcm.size:
            # Blocks while the device buffer is full, so playback runs at real time; chunks that arrive
            # meanwhile wait in the SUB socket's queue. Starting right at the first chunk keeps latency
            # low but may stutter if the server generates slower than real time.
            self.stream.write(pcm.reshape(-1, 1))

    def close(self) -> None:
        if self.stream is not None:
            self.stream.stop()  # waits for the buffered audio to finish
            self.stream.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--control", default="tcp://127.0.0.1:5555", help="control (ROUTER) address of mf serve")
    p.add_argument("--stream", default="tcp://127.0.0.1:5556", help="stream (PUB) address of mf serve")
    p.add_argument("--character", default="default", help="character id to follow (default: default)")
    p.add_argument("--say", metavar="TEXT", help="ask the character to say this (before each utterance)")
    p.add_argument("--utterances", type=int, default=1, help="utterances to receive before exiting (default: 1)")
    p.add_argument("--out", type=Path, default=Path("receiver.mp4"), help="mp4 to write (default: receiver.mp4)")
    p.add_argument("--play", action="store_true", help="play the audio live instead of writing --out")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a stream message (default: 30)")
    args = p.parse_args()
    if args.utterances < 1:
        p.error("--utterances must be at least 1")

    player = Player() if args.play else None  # fail fast, before anything is requested
    sub = Subscriber(args.stream, [args.character])
    client = Client(args.control) if args.say is not None else None
    if client is not None:
        time.sleep(SLOW_JOINER_S)

    frames: list[np.ndarray] = []
    pcm: list[np.ndarray] = []
    fps = sample_rate = None
    chunks = samples = gaps = interrupted = 0
    done = 0
    started = time.perf_counter()
    try:
        while done < args.utterances:
            first_wanted = 0  # utterance ids below this are leftovers of earlier lines
            if client is not None:
                try:
                    reply = client.request("say", character=args.character, text=args.say)
                except TimeoutError:
                    sys.exit(f"no reply on {args.control} within {client.timeout:g} s: is `mf serve` running there?")
                first_wanted = reply["utterance"]
                print(f"say → utterance {first_wanted}")
            expected = None  # (utterance, seq) of the next chunk
            while True:  # like sub.utterance(uid), but reporting gaps instead of stopping at them
                try:
                    chunk = sub.recv(args.timeout)
                except TimeoutError:
                    sys.exit(f"no stream message on {args.stream} within {args.timeout:g} s: is `mf serve` running "
                             f"and does it have a character {args.character!r}?")
                h = chunk.header
                if h["utterance"] < first_wanted:
                    continue
                if expected is not None and h["utterance"] != expected[0]:
                    print(f"  utterance {expected[0]} ended without its end-of-utterance message (lost)")
                    gaps += 1
                    done += 1
                    expected = None
                if expected is None:
                    if h["seq"] and first_wanted:
                        print(f"  gap: utterance {h['utterance']} starts at seq {h['seq']} ({h['seq']} chunks lost)")
                        gaps += h["seq"]
                    elif h["seq"]:
                        print(f"  joined utterance {h['utterance']} at seq {h['seq']}")
                elif h["seq"] != expected[1]:
                    lost = h["seq"] - expected[1]
                    print(f"  gap: seq {expected[1]} → {h['seq']} in utterance {h['utterance']} ({lost} chunks lost)")
                    gaps += max(lost, 0)
                expected = (h["utterance"], h["seq"] + 1)
                fps, sample_rate = h["fps"], h["sample_rate"]
                chunks += 1
                samples += h["samples"]
                if h["frames"] or h["samples"]:
                    if player is not None:
                        player.play(chunk.pcm, sample_rate)
                    else:
                        frames.append(chunk.frames)
                        pcm.append(chunk.pcm)
                print(f"  utterance {h['utterance']} seq {h['seq']:3d} pts {h['pts']:6.2f} s "
                      f"{h['frames']} frames {h['samples']} samples"
                      + (" eou" if h["eou"] else "") + (" interrupted" if h["interrupted"] else ""), flush=True)
                if h["eou"]:
                    interrupted += h["interrupted"]
                    done += 1
                    break
    except ServerError as exc:
        sys.exit(f"the server refused the request: {exc}")
    except KeyboardInterrupt:
        print("stopped; keeping what arrived")
    finally:
        sub.close()
        if client is not None:
            client.close()
        if player is not None:
            player.close()

    seconds = samples / sample_rate if sample_rate else 0.0
    print(f"received {done} utterance(s), {chunks} chunks, {seconds:.2f} s of media in "
          f"{time.perf_counter() - started:.2f} s; {gaps} chunks lost (gaps in seq), {interrupted} interrupted")
    if player is None:
        if not frames:
            print("nothing to write: no frames arrived")
            return
        from mfruntime.data.media import write_clip

        video, audio = np.concatenate(frames), np.concatenate(pcm)
        write_clip(args.out, video, audio, fps, sample_rate)
        print(f"wrote {args.out}: {len(video)} frames at {fps} fps, {len(audio) / sample_rate:.2f} s of audio")


if __name__ == "__main__":
    main()
