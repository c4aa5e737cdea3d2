"""Speed of the runtime on this machine: `python -m benchmarks.runtime [--repeats 3] [--json out.json]`.

Three parts, measured in one run so the numbers are side by side:

1. Session per backend (``eager``, ``native`` and ``compile``) on the CPU with the bundled tiny model at 4 steps.
   Each backend's Session is made (model load; ``compile`` also wraps the block sublayers in
   torch.compile) and warmed up with one short utterance, which for ``compile`` is when compilation
   happens ("warm-up s"; torch's on-disk compile cache makes later runs of this script faster: run with
   ``TORCHINDUCTOR_CACHE_DIR=$(mktemp -d)`` for a cold compile). Then a fixed ~3-s sentence is spoken
   ``--repeats`` times per backend, the backends interleaved (eager, native, compile, eager, …) so machine noise
   hits both alike. Per utterance: TTFC = wall time from calling ``say()`` to receiving the first chunk
   (eSpeak's phoneme timing of the sentence is cached by then, so this is the model's share), and
   RTF = Σ compute_seconds / media seconds (0.16 s per chunk; below 1 is faster than real time).
   Chunk ms p50/p95 pool every measured chunk of a backend.

2. ZeroMQ loopback transport of ``mf serve`` stream messages (protocol.encode_chunk → PUB → SUB →
   protocol.decode_chunk) at 64, 128 and 256 px: 4 random frames and 2560 float32 samples per message
   (one 160-ms chunk at 25 fps and 16 kHz). PUB and SUB are in this process, the receiver in its own
   thread, so sender and receiver share one GIL (a receiver in another process would not). Latency: one
   message in flight at a time, from just before encoding to just after decoding (the send time travels
   in the header's pts). Throughput: ``--messages`` messages sent as fast as possible, with high-water
   marks high enough that nothing drops (checked: every seq must arrive), in ``--rounds`` rounds of
   which the median is reported. "Real-time characters" = messages/s ÷ 6.25: how many characters'
   streams the transport alone could carry at real time.

3. End to end through ``mf serve`` (in this process, eager, the engine on the main thread as ``mf serve``
   runs it): a say request over the control socket until the first chunk arrives on a SUB socket, and
   until the line's end; next to part 1's eager TTFC (the difference is what the wire and the server add).

4. With ``--contention N`` (instead of 1–3): every thread setting, idle and with N busy processes, side by
   side (benchmarks/contention.py).

5. With ``--control`` (instead of 1–3): ``ping`` and ``say`` reply times of ``mf serve`` while 20 new lines
   are requested at once (benchmarks/control.py).
"""
from __future__ import annotations

import argparse
import json
import platform
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import zmq

from mfruntime.runtime.protocol import decode_chunk, encode_chunk

SENTENCE = "Welcome back, traveller. The road north is open."  # ≈ 3.2 s of speech, 21 chunks
WARM_UP = "Warm up."
CHUNK_SECONDS = 0.16
CHUNKS_PER_SECOND = 1 / CHUNK_SECONDS  # 6.25: one character at real time
SIZES = (64, 128, 256)
FPS, SAMPLE_RATE, FRAMES, SAMPLES = 25, 16_000, 4, 2560
TOPIC = "bench"
# utterance ids in the transport messages tell the receiver which phase a message belongs to
HELLO, LATENCY, THROUGHPUT = 0, 1, 2


# --- 1. Session per backend -------------------------------------------------------------------------
def time_utterance(session, text: str) -> dict:
    """Speak ``text`` once; TTFC, RTF and the chunk compute times."""
    start = time.perf_counter()
    chunks = session.say(text)
    first = next(chunks)
    ttfc = time.perf_counter() - start
    every = [first, *chunks]
    compute = [c.compute_seconds for c in every]
    return {"ttfc_s": ttfc, "rtf": sum(compute) / (len(every) * CHUNK_SECONDS), "chunk_s": compute,
            "chunks": len(every)}


def bench_sessions(backends: list[str], repeats: int) -> dict[str, dict]:
    from mfruntime import Session

    sessions, out = {}, {}
    for backend in backends:
        t0 = time.perf_counter()
        s = Session(model="tiny", device="cpu", backend=backend, steps=4)
        load = time.perf_counter() - t0
        t0 = time.perf_counter()
        list(s.say(WARM_UP))
        warm = time.perf_counter() - t0
        s.say(SENTENCE)  # looks the sentence up in eSpeak (cached per process); the unused iterator generates nothing
        sessions[backend] = s
        out[backend] = {"load_s": load, "warm_up_s": warm, "runs": []}
        print(f"  {backend}: load {load:.2f} s, warm-up {warm:.2f} s", flush=True)
    for r in range(repeats):
        for backend in backends:
            out[backend]["runs"].append(time_utterance(sessions[backend], SENTENCE))
        print(f"  repeat {r + 1}/{repeats} done", flush=True)
    for res in out.values():
        ms = 1000 * np.array([t for run in res["runs"] for t in run["chunk_s"]])
        res.update(ttfc_ms=1000 * float(np.median([run["ttfc_s"] for run in res["runs"]])),
                   rtf=float(np.median([run["rtf"] for run in res["runs"]])),
                   chunk_ms_p50=float(np.percentile(ms, 50)), chunk_ms_p95=float(np.percentile(ms, 95)),
                   chunks=int(ms.size))
    return out


# --- 2. ZeroMQ loopback --------------------------------------------------------------------------------
class Receiver(threading.Thread):
    """Owns the SUB socket; decodes every message and records (seq, latency, receive time) per phase."""

    def __init__(self, ctx: zmq.Context, endpoint: str, hwm: int) -> None:
        super().__init__(name="bench-receiver", daemon=True)
        self.ctx, self.endpoint, self.hwm = ctx, endpoint, hwm
        self.records: dict[int, list[tuple[int, float, float]]] = defaultdict(list)
        self.cv = threading.Condition()
        self.ready, self.stop = threading.Event(), threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        sub = self.ctx.socket(zmq.SUB)
        try:
            sub.setsockopt(zmq.LINGER, 0)
            sub.setsockopt(zmq.RCVHWM, self.hwm)
            sub.setsockopt(zmq.SUBSCRIBE, TOPIC.encode())
            sub.connect(self.endpoint)
            self.ready.set()
            while not self.stop.is_set():
                if not sub.poll(100):
                    continue
                chunk = decode_chunk(sub.recv_multipart())
                now = time.perf_counter()
                h = chunk.header
                with self.cv:
                    self.records[h["utterance"]].append((h["seq"], now - h["pts"], now))
                    self.cv.notify_all()
        except BaseException as exc:  # reported by the sender's wait
            self.error = exc
            with self.cv:
                self.cv.notify_all()
        finally:
            sub.close(0)

    def wait_for(self, phase: int, n: int, timeout: float) -> bool:
        with self.cv:
            ok = self.cv.wait_for(lambda: self.error is not None or len(self.records[phase]) >= n, timeout)
        if self.error is not None:
            raise RuntimeError(f"receiver failed: {self.error!r}") from self.error
        return ok


def bench_transport(size: int, latency_messages: int, messages: int, n_rounds: int = 3, warm: int = 50) -> dict:
    rng = np.random.default_rng(size)
    frames = rng.integers(0, 256, (FRAMES, size, size, 3), dtype=np.uint8)
    pcm = rng.uniform(-1, 1, SAMPLES).astype(np.float32)

    def encode(phase: int, seq: int, pts: float) -> list[bytes]:
        return encode_chunk(TOPIC, phase, seq, pts, frames, pcm, FPS, SAMPLE_RATE, eou=False)

    hwm = max(10_000, messages + 100)
    msg_bytes = sum(len(p) for p in encode(0, 0, 0.0))
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.setsockopt(zmq.SNDHWM, hwm)
    pub.bind("tcp://127.0.0.1:*")
    rx = Receiver(ctx, pub.getsockopt_string(zmq.LAST_ENDPOINT), hwm)
    rx.start()
    try:
        rx.ready.wait(5)
        time.sleep(0.3)  # slow joiner: the subscription has to reach the PUB socket …
        for i in range(500):  # … and we make sure it did before measuring
            pub.send_multipart(encode(HELLO, i, time.perf_counter()))
            if rx.wait_for(HELLO, 1, 0.02):
                break
        else:
            raise RuntimeError("the SUB socket never received a message over loopback")

        # latency: one message in flight; the receiver's record releases the next send
        for i in range(warm + latency_messages):
            pub.send_multipart(encode(LATENCY, i, time.perf_counter()))
            if not rx.wait_for(LATENCY, i + 1, 5.0):
                raise RuntimeError(f"latency message {i} at {size} px did not arrive within 5 s")
        lat_us = 1e6 * np.array([lat for _, lat, _ in rx.records[LATENCY][warm:]])

        # throughput: all messages back to back, ``rounds`` times; time from the first send to the last
        # decoded message of a round; the median round is reported
        rounds = []
        for r in range(n_rounds):
            phase = THROUGHPUT + r
            start = time.perf_counter()
            for i in range(messages):
                pub.send_multipart(encode(phase, i, time.perf_counter()))
            complete = rx.wait_for(phase, messages, 60.0)
            got = list(rx.records[phase])
            seqs = [s for s, _, _ in got]
            gaps = sum(1 for a, b in zip([-1, *seqs], seqs) if b != a + 1)
            gaps += int(bool(seqs) and seqs[-1] != messages - 1)  # lost at the end
            elapsed = (got[-1][2] if got else time.perf_counter()) - start
            rounds.append({"msgs_per_s": len(got) / elapsed, "received": len(got), "gaps": gaps, "complete": complete})
    finally:
        rx.stop.set()
        rx.join(5)
        pub.close(0)
        ctx.term()
    rate = float(np.median([r["msgs_per_s"] for r in rounds]))
    return {"size": size, "message_bytes": msg_bytes, "latency_us_p50": float(np.percentile(lat_us, 50)),
            "latency_us_p99": float(np.percentile(lat_us, 99)), "latency_messages": latency_messages,
            "messages": messages, "rounds": n_rounds, "received": [r["received"] for r in rounds],
            "gaps": sum(r["gaps"] for r in rounds), "complete": all(r["complete"] for r in rounds),
            "msgs_per_s": rate, "msgs_per_s_rounds": [r["msgs_per_s"] for r in rounds],
            "mb_per_s": rate * msg_bytes / 1e6, "realtime_characters": rate / CHUNKS_PER_SECOND}


# --- report ----------------------------------------------------------------------------------------
# --- 3. End to end through mf serve ----------------------------------------------------------------
def bench_server(repeats: int) -> dict:
    """TTFC and wall time of a whole line through ``mf serve`` (say request → chunks on a subscriber).

    The server runs as ``mf serve`` does: the engine on this (main) thread via serve_forever, while the
    client runs in a background thread and stops the server when done."""
    from mfruntime.runtime.client import Client, Subscriber
    from mfruntime.runtime.server import ServeConfig, Server

    runs: list[dict] = []
    failure: list[BaseException] = []

    def client(srv: Server) -> None:
        try:
            with Client(srv.control_address) as ctl, Subscriber(srv.stream_address, ["default"]) as sub:
                time.sleep(0.3)  # slow joiner
                for text in (WARM_UP, SENTENCE):  # warm-up, and the sentence's eSpeak timing into the cache
                    list(sub.utterance(ctl.request("say", character="default", text=text)["utterance"]))
                for _ in range(repeats):
                    start = time.perf_counter()
                    it = sub.utterance(ctl.request("say", character="default", text=SENTENCE)["utterance"])
                    next(it)
                    first = time.perf_counter() - start
                    n = 1 + sum(1 for _ in it)
                    runs.append({"ttfc_s": first, "wall_s": time.perf_counter() - start, "chunks": n})
        except BaseException as exc:  # reported after the server stopped
            failure.append(exc)
        finally:
            srv.stop()

    server = Server(ServeConfig(bind="tcp://127.0.0.1:*", device="cpu", backend="eager"))
    server.serve_forever(on_ready=lambda srv: threading.Thread(target=client, args=(srv,), daemon=True).start())
    if failure:
        raise failure[0]
    return {"server_ttfc_ms": 1000 * float(np.median([r["ttfc_s"] for r in runs])),
            "server_line_s": float(np.median([r["wall_s"] for r in runs])),
            "chunks": runs[0]["chunks"], "media_s": runs[0]["chunks"] * CHUNK_SECONDS}


def print_server(r: dict, repeats: int, session_ttfc_ms: float | None) -> None:
    print(f"\nEnd to end through mf serve (eager, 4 steps, loopback, engine on the main thread as in `mf serve`), "
          f"\"{SENTENCE}\" × {repeats}")
    print("\n| path | TTFC ms (median) | whole line s (median) | media s |")
    print("|---|---:|---:|---:|")
    if session_ttfc_ms is not None:
        print(f"| Session.say in process (eager row above) | {session_ttfc_ms:.1f} | | {r['media_s']:.2f} |")
    print(f"| say request → first chunk on a SUB socket | {r['server_ttfc_ms']:.1f} | {r['server_line_s']:.2f} | "
          f"{r['media_s']:.2f} |")


def print_sessions(res: dict[str, dict], repeats: int) -> None:
    print(f"\nSession, tiny model on CPU, 4 steps, \"{SENTENCE}\" "
          f"({res[next(iter(res))]['runs'][0]['chunks']} chunks) × {repeats}, backends interleaved")
    print("\n| backend | load s | warm-up s | TTFC ms (median) | RTF (median) | chunk ms p50 | chunk ms p95 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for backend, r in res.items():
        print(f"| {backend} | {r['load_s']:.2f} | {r['warm_up_s']:.2f} | {r['ttfc_ms']:.1f} | {r['rtf']:.3f} | "
              f"{r['chunk_ms_p50']:.1f} | {r['chunk_ms_p95']:.1f} |")
    e = res.get("eager")
    for backend, c in res.items():
        if e is not None and backend != "eager":
            print(f"\n{backend} / eager: RTF {c['rtf'] / e['rtf']:.3f}, TTFC {c['ttfc_ms'] / e['ttfc_ms']:.3f}, "
                  f"chunk p50 {c['chunk_ms_p50'] / e['chunk_ms_p50']:.3f} (below 1: {backend} is faster)")


def print_transport(rows: list[dict], args: argparse.Namespace) -> None:
    print(f"\nZeroMQ loopback (PUB → SUB, tcp://127.0.0.1), 4 frames + 2560 samples per message; latency over "
          f"{args.latency_messages} messages one at a time, throughput: median of {args.rounds} rounds of "
          f"{args.messages} back to back")
    print("\n| size px | message bytes | latency p50 µs | latency p99 µs | msgs/s | MB/s | real-time characters |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['size']} | {r['message_bytes']:,} | {r['latency_us_p50']:.0f} | {r['latency_us_p99']:.0f} | "
              f"{r['msgs_per_s']:,.0f} | {r['mb_per_s']:,.0f} | {r['realtime_characters']:,.0f} |")
    for r in rows:
        if not r["complete"] or r["gaps"]:
            print(f"WARNING: {r['size']} px: {r['received']} of {r['messages']} messages arrived per round, "
                  f"{r['gaps']} gaps in seq")


def main(args: argparse.Namespace) -> None:
    if args.contention:  # part 4 on its own: see benchmarks/contention.py
        from benchmarks import contention

        print(f"contention, {args.contention} busy process(es):", flush=True)
        rows = contention.run(args.contention, args.repeats, args.rounds_contention)
        contention.print_rows(rows, args.contention, args.repeats, args.rounds_contention)
        if args.json:
            Path(args.json).write_text(json.dumps({"contention": rows}, indent=2) + "\n")
            print(f"\nwrote {args.json}")
        return
    if args.control:  # part 5 on its own: see benchmarks/control.py
        from benchmarks import control

        print("control latency:", flush=True)
        res = control.run(args.repeats)
        control.print_result(res)
        if args.json:
            Path(args.json).write_text(json.dumps({"control": res}, indent=2) + "\n")
            print(f"\nwrote {args.json}")
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), pyzmq {zmq.__version__} "
          f"(libzmq {zmq.zmq_version()}), Python {platform.python_version()}, {platform.machine()}", flush=True)
    result: dict = {"torch": torch.__version__, "threads": torch.get_num_threads(), "pyzmq": zmq.__version__,
                    "libzmq": zmq.zmq_version(), "repeats": args.repeats}
    if not args.skip_session:
        backends = ["eager", "native"] if args.skip_compile else ["eager", "native", "compile"]
        print("session:", flush=True)
        sessions = bench_sessions(backends, args.repeats)
        result["sessions"] = {b: {k: v for k, v in r.items() if k != "runs"} | {
            "ttfc_ms_runs": [1000 * run["ttfc_s"] for run in r["runs"]], "rtf_runs": [run["rtf"] for run in r["runs"]]}
            for b, r in sessions.items()}
    if not args.skip_server:
        print("server:", flush=True)
        result["server"] = bench_server(args.repeats)
    print("transport:", flush=True)
    rows = []
    for size in args.sizes:
        rows.append(bench_transport(size, args.latency_messages, args.messages, args.rounds))
        print(f"  {size} px done", flush=True)
    result["transport"] = rows
    if not args.skip_session:
        print_sessions(sessions, args.repeats)
    if not args.skip_server:
        print_server(result["server"], args.repeats,
                     None if args.skip_session else result["sessions"]["eager"]["ttfc_ms"])
    print_transport(rows, args)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nwrote {args.json}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3, help="utterances per backend, interleaved (default: 3)")
    p.add_argument("--skip-compile", action="store_true", help="leave the compile backend out (eager and native only)")
    p.add_argument("--skip-session", action="store_true", help="measure the transport only")
    p.add_argument("--skip-server", action="store_true", help="skip the end-to-end run through mf serve")
    p.add_argument("--messages", type=int, default=2000, help="messages per size for throughput (default: 2000)")
    p.add_argument("--rounds", type=int, default=3, help="throughput rounds per size, median reported (default: 3)")
    p.add_argument("--latency-messages", type=int, default=500, help="messages per size for latency (default: 500)")
    p.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="frame sizes in px (default: 64 128 256)")
    p.add_argument("--threads", type=int, default=0, help="torch threads; 0 = torch's default")
    p.add_argument("--contention", type=int, default=0, metavar="N",
                   help="instead of the parts above: each thread setting idle and with N busy processes "
                        "(benchmarks/contention.py)")
    p.add_argument("--control", action="store_true",
                   help="instead of the parts above: mf serve's request latency while it works (benchmarks/control.py)")
    p.add_argument("--rounds-contention", type=int, default=2, help="rounds of the contention comparison (default: 2)")
    p.add_argument("--json", metavar="PATH", help="also write the numbers to this JSON file")
    return p


if __name__ == "__main__":
    main(build_parser().parse_args())
