"""A crowd beyond capacity, heard by real players: `python -m benchmarks.overload [--characters 16] [--steps 4]
[--min-steps 1] [--backend auto]`.

One `mf serve` (its own process, admission and deadline-aware steps on, as shipped) gets N say requests at once,
one per character, from the C++ client's ``crowd_players`` (cpp_client/examples: one ``mfruntime::Player`` per
character, pulled in 10-ms blocks in real time as an engine's audio thread does). Each player counts underruns
(playback ran dry mid-line), late and lost chunks. At the same time a Python subscriber times every chunk and
replays it through the same playback rule (starts when the first chunk is in, the clock holds when the buffer
runs dry: one underrun) — the Python side's count. The server's `stats` give the steps the chunks got.

The bar (issue 22): lines beyond capacity are refused ``busy`` (with the capacity), and every line taken plays
with 0 underruns. Build the C++ client first (`make test` does, into build/cpp_client). Run on a quiet machine.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import threading
import time
from pathlib import Path

from mfruntime.runtime.process import serve_process

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "build" / "cpp_client" / "crowd_players"
CHUNK = 0.16


def python_underruns(arrivals: list[tuple[int, float]]) -> int:
    """The playback rule on arrival times: chunk k plays after chunk k-1 ends, or when it arrives if later (an
    underrun: the buffer ran dry mid-line and the clock held)."""
    arrivals = sorted(arrivals)
    under, end = 0, None
    for _seq, at in arrivals:
        if end is None:
            end = at + CHUNK
            continue
        if at > end:
            under += 1
        end = max(at, end) + CHUNK
    return under


def listen(stream: str, stop: threading.Event, out: dict) -> None:
    from mfruntime.runtime.client import Subscriber

    with Subscriber(stream) as sub:
        out[("", 0)] = []  # subscribed
        while not stop.is_set():
            try:
                m = sub.recv(0.2)
            except TimeoutError:
                continue
            h = m.header
            if h["character"].startswith("crowd") and h["samples"]:
                out.setdefault((h["character"], h["utterance"]), []).append((h["seq"], time.perf_counter()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--characters", type=int, default=16)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--min-steps", type=int, default=1)
    p.add_argument("--backend", default="auto")
    args = p.parse_args()
    if not TOOL.exists():
        raise SystemExit(f"{TOOL} is missing: build the C++ client (make test, or cmake -S cpp_client -B build/cpp_client "
                         "&& cmake --build build/cpp_client)")
    with serve_process("--max-characters", str(args.characters + 1), backend=args.backend, steps=args.steps,
                       threads="auto") as (control, stream):
        from mfruntime.runtime.client import Client

        warm = subprocess.run([str(TOOL), "--control", control, "--characters", "1", "--steps", str(args.steps),
                               "--min-steps", str(args.min_steps)], capture_output=True, text=True, timeout=300)
        assert warm.returncode == 0, warm.stderr  # warm-up: one line, so the cost model has measurements
        seen: dict = {}
        stop = threading.Event()
        t = threading.Thread(target=listen, args=(stream, stop, seen), daemon=True)
        t.start()
        while ("", 0) not in seen:
            time.sleep(0.05)
        time.sleep(0.3)
        with Client(control, timeout=60) as c:
            before = c.request("stats")["characters"]
        r = subprocess.run([str(TOOL), "--control", control, "--characters", str(args.characters), "--steps",
                            str(args.steps), "--min-steps", str(args.min_steps)], capture_output=True, text=True,
                           timeout=600)
        stop.set()
        t.join()
        with Client(control, timeout=60) as c:
            stats = c.request("stats")["characters"]
    if r.returncode:
        raise SystemExit(f"crowd_players failed:\n{r.stderr}")
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    print(f"{args.characters} characters say a line at once; steps {args.steps}, min_steps {args.min_steps}, "
          f"backend {args.backend}; C++ players pulled in real time, Python playback rule on arrival times\n")
    print("| character | line | C++ underruns | C++ late / lost chunks | Python underruns | chunks | steps used |")
    print("|---|---|---:|---:|---:|---:|---|")
    taken = refused = cpp_total = py_total = 0
    used_all: dict[int, int] = {}
    for row in rows:
        cid = row["character"]
        if not row["taken"]:
            refused += 1
            print(f"| {cid} | refused: {row['refused'][:70]}… | | | | | |")
            continue
        taken += 1
        arrivals = next((v for (c, _u), v in seen.items() if c == cid), [])
        py = python_underruns(arrivals)
        used = {int(k): v - before.get(cid, {}).get("steps_used", {}).get(k, 0)
                for k, v in stats.get(cid, {}).get("steps_used", {}).items()}
        for k, v in used.items():
            used_all[k] = used_all.get(k, 0) + v
        cpp_total += row["underruns"]
        py_total += py
        print(f"| {cid} | taken{' (cut)' if row['interrupted'] else ''} | {row['underruns']} | "
              f"{row['late_chunks']} / {row['lost']} | {py} | {len(arrivals)} | "
              f"{', '.join(f'{k}: {v}' for k, v in sorted(used.items(), reverse=True) if v)} |")
    print(f"\ntaken {taken}, refused busy {refused}; underruns: C++ players {cpp_total}, Python {py_total}; "
          f"chunks per step count {dict(sorted(used_all.items(), reverse=True))}")


if __name__ == "__main__":
    main()
