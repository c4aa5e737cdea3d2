"""Long-stream soak of `mf serve`: `python -m benchmarks.soak --minutes N [--backend auto] [--json out.json]`.

A real server (in this process, engine in a background thread, bundled tiny model, 4 steps, the backend
``auto`` picks unless ``--backend`` says otherwise) streams
one character without pause: say after say of new random sentences, about a third of them interrupted
part-way, and a new face every fifth line (``set_character``). A subscriber on the stream socket checks
every utterance: its chunks' ``seq`` must run 0, 1, 2, … with no gap or repeat, ``pts`` must rise, and it
must end with exactly one end-of-utterance message. Every minute it prints the process's resident memory
(RSS), the lines and chunks of that minute, lost/duplicated chunks so far and the chunk compute time.
RSS growth is measured after the warm-up: from the first minute that ends with the eSpeak timing cache
full (``SPEECH_CACHE`` lines spoken; every line here is new, so the cache fills, then stays that size).
"""
from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import numpy as np

from mfruntime.data.text import random_text
from mfruntime.runtime.client import Client, Subscriber
from mfruntime.runtime.server import ServeConfig, Server
from mfruntime.runtime.session import SPEECH_CACHE


def rss_mb() -> float:
    """Resident set size of this process in MB (Linux /proc; elsewhere the peak from getrusage)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class StreamChecker(threading.Thread):
    """Receives the character's stream and checks every utterance's sequence."""

    def __init__(self, sub: Subscriber) -> None:
        super().__init__(daemon=True)
        self.sub = sub
        self.stop = threading.Event()
        self.utterance, self.next_seq = None, 0  # the utterance being received and the seq expected next
        self.ended: dict[int, int] = {}  # utterance → eou messages seen (kept small: see wait_end)
        self.lost = self.duplicated = self.chunks = self.bad_pts = self.extra_ends = 0
        self.last_pts = -1.0
        self.lock = threading.Lock()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                m = self.sub.recv(timeout=0.2)
            except TimeoutError:
                continue
            h = m.header
            with self.lock:
                if h["utterance"] != self.utterance:
                    self.utterance, self.next_seq = h["utterance"], 0
                if h["seq"] < self.next_seq:
                    self.duplicated += 1
                else:
                    self.lost += h["seq"] - self.next_seq
                    self.next_seq = h["seq"] + 1
                if m.frames.shape[0]:
                    self.chunks += 1
                    if h["pts"] <= self.last_pts:
                        self.bad_pts += 1
                    self.last_pts = h["pts"]
                if h["eou"]:
                    self.ended[h["utterance"]] = self.ended.get(h["utterance"], 0) + 1
                    if self.ended[h["utterance"]] > 1:
                        self.extra_ends += 1

    def wait_end(self, uid: int, timeout: float = 60.0) -> bool:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            with self.lock:
                if self.ended.get(uid):
                    for old in [u for u in self.ended if u < uid - 8]:  # a repeated end would come soon after
                        del self.ended[old]
                    return True
            time.sleep(0.01)
        return False


def run(minutes: float, seed: int = 0, report=print, max_lines: int | None = None, backend: str = "auto") -> dict:
    """Stream for ``minutes`` (or until ``max_lines`` lines have been spoken); the numbers as a dict."""
    rng = np.random.default_rng(seed)
    cfg = ServeConfig(bind="tcp://127.0.0.1:*", stream="tcp://127.0.0.1:*", backend=backend, send_hwm=1000)
    rows, unended, lines = [], 0, 0
    with Server(cfg) as server, Client(server.control_address, timeout=30) as ctl, \
            Subscriber(server.stream_address, ["default"], rcvhwm=10_000) as sub:
        checker = StreamChecker(sub)
        checker.start()
        time.sleep(0.5)  # slow joiner
        session = server.characters["default"].session
        start = time.perf_counter()
        next_report, minute_lines, minute_chunks0 = start + 60, 0, 0
        while time.perf_counter() - start < minutes * 60 and (max_lines is None or lines < max_lines):
            if lines % 5 == 4:
                ctl.request("set_character", character="default", face_seed=int(rng.integers(1_000_000)))
            uid = ctl.request("say", character="default", text=random_text(rng, 1))["utterance"]
            if rng.random() < 0.33:
                time.sleep(float(rng.uniform(0.1, 0.6)))
                ctl.request("interrupt", character="default")
            if not checker.wait_end(uid):
                unended += 1
            lines += 1
            minute_lines += 1
            now = time.perf_counter()
            if now >= next_report:
                ms = session.stats().chunk_ms
                with checker.lock:
                    row = {"minute": len(rows) + 1, "rss_mb": rss_mb(), "lines": minute_lines,
                           "warm": lines >= SPEECH_CACHE,
                           "chunks": checker.chunks - minute_chunks0, "lost": checker.lost,
                           "duplicated": checker.duplicated, "unended": unended,
                           "chunk_ms_p50": float(np.percentile(ms, 50)), "chunk_ms_p95": float(np.percentile(ms, 95))}
                    minute_chunks0 = checker.chunks
                rows.append(row)
                report(f"| {row['minute']} | {row['rss_mb']:.1f} | {row['lines']} | {row['chunks']} | {row['lost']} | "
                       f"{row['duplicated']} | {row['unended']} | {row['chunk_ms_p50']:.0f} | {row['chunk_ms_p95']:.0f} |")
                next_report += 60
                minute_lines = 0
        checker.stop.set()
        checker.join()
        ends_ok = checker.extra_ends == 0
    warm_rows = [r for r in rows if r["warm"]]
    warm = warm_rows[0]["rss_mb"] if warm_rows else float("nan")  # nan: the run ended before the warm-up did
    end = rows[-1]["rss_mb"] if rows else rss_mb()
    return {"minutes": minutes, "lines": lines, "chunks": checker.chunks, "lost": checker.lost,
            "duplicated": checker.duplicated, "unended": unended, "bad_pts": checker.bad_pts,
            "one_eou_each": ends_ok, "warm_minute": warm_rows[0]["minute"] if warm_rows else None,
            "rss_mb_after_warmup": warm, "rss_mb_end": end, "rss_growth_mb": end - warm,
            "rows": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10, help="how long to stream (default: 10)")
    p.add_argument("--seed", type=int, default=0, help="sentence and interrupt choices (default: 0)")
    p.add_argument("--json", metavar="PATH", help="also write the numbers to this JSON file")
    p.add_argument("--backend", default="auto", help="chunk-step backend of the server (default: auto; docs/RUNTIME.md)")
    args = p.parse_args()
    print(f"soak: {args.minutes:g} min of continuous speech through mf serve (one character, backend {args.backend})\n")
    print("| minute | RSS MB | lines | chunks | lost (total) | duplicated (total) | unended (total) | chunk ms p50 | p95 |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    r = run(args.minutes, args.seed, backend=args.backend)
    print(f"\n{r['lines']} lines, {r['chunks']} chunks; lost {r['lost']}, duplicated {r['duplicated']}, "
          f"unended {r['unended']}, pts out of order {r['bad_pts']}, one end per utterance: {r['one_eou_each']}; "
          f"RSS {r['rss_mb_after_warmup']:.1f} MB after the warm-up (minute {r['warm_minute']}) → {r['rss_mb_end']:.1f} MB "
          f"({r['rss_growth_mb']:+.1f} MB)")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
