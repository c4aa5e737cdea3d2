"""Real time under a busy CPU: `python -m benchmarks.runtime --contention N [--repeats 3]`.

The same ~3-s line (benchmarks.runtime.SENTENCE, bundled tiny model, eager, 4 steps) is spoken with each
thread setting, once with the machine otherwise idle and once with N other processes each spinning one
core (``while True: pass``, the stand-in for a game engine), side by side in one run. Every (setting, load)
pair runs in a fresh Python process, so PyTorch's thread pool and OpenMP state start clean and environment
settings such as ``OMP_WAIT_POLICY`` can be tried; the pairs are interleaved round by round (setting A idle,
A busy, B idle, B busy, …, then the next round) so machine noise hits all alike.

Per process: the Session is made and warmed up with one short line while the machine is idle, then the
busy processes start (for the loaded runs), then the line is spoken ``--repeats`` times. RTF = compute
seconds per second of media (below 1 is faster than real time); "busy/idle" is the ratio of the two RTFs.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

#: (label, Session threads setting, extra environment) measured by default
SETTINGS = (
    ("2 threads (the old default)", 2, {}),
    ("1 thread", 1, {}),
    ("2 threads, OMP_WAIT_POLICY=passive", 2, {"OMP_WAIT_POLICY": "PASSIVE"}),
    ("auto (new default)", "auto", {}),
)
SPIN = "while True: pass"


def worker(setting: str, busy: int, repeats: int) -> None:
    """Run in the child process: print one JSON line with the per-utterance RTFs and chunk times."""
    from benchmarks.runtime import SENTENCE, WARM_UP, time_utterance
    from mfruntime import Session

    threads = setting if setting == "auto" else int(setting)
    s = Session(model="tiny", device="cpu", backend="eager", steps=4, threads=threads)
    list(s.say(WARM_UP))
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(busy)]
    try:
        if spinners:
            time.sleep(0.5)  # let them take their cores
        runs = [time_utterance(s, SENTENCE) for _ in range(repeats)]
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    chunk_ms = [1000 * t for r in runs for t in r["chunk_s"]]
    print(json.dumps({"rtf": [r["rtf"] for r in runs], "ttfc_ms": [1000 * r["ttfc_s"] for r in runs],
                      "chunk_ms_p50": statistics.median(chunk_ms), "chunk_ms_max": max(chunk_ms),
                      "threads": s.stats().threads}))


def _run_child(setting, busy: int, repeats: int, env_extra: dict) -> dict:
    env = {**os.environ, **env_extra}
    cmd = [sys.executable, "-m", "benchmarks.contention", "--worker", str(setting), str(busy), str(repeats)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"contention worker {setting} busy={busy} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(busy: int, repeats: int, rounds: int = 1, settings=SETTINGS) -> list[dict]:
    """Every setting idle and with ``busy`` spinning processes, interleaved; one row per setting."""
    pooled = {label: {"idle": [], "busy": []} for label, _, _ in settings}
    for rnd in range(rounds):
        for label, setting, env in settings:
            for load, n in (("idle", 0), ("busy", busy)):
                r = _run_child(setting, n, repeats, env)
                pooled[label][load].append(r)
                print(f"  round {rnd + 1}: {label}, {load}: RTF {statistics.median(r['rtf']):.2f} "
                      f"({r['threads']} threads at the end)", flush=True)
    rows = []
    for label, _, _ in settings:
        idle, loaded = pooled[label]["idle"], pooled[label]["busy"]
        rtf_idle = statistics.median([x for r in idle for x in r["rtf"]])
        rtf_busy = statistics.median([x for r in loaded for x in r["rtf"]])
        rows.append({"setting": label, "rtf_idle": rtf_idle, "rtf_busy": rtf_busy, "ratio": rtf_busy / rtf_idle,
                     "chunk_ms_p50_idle": statistics.median([r["chunk_ms_p50"] for r in idle]),
                     "chunk_ms_p50_busy": statistics.median([r["chunk_ms_p50"] for r in loaded]),
                     "chunk_ms_max_busy": max(r["chunk_ms_max"] for r in loaded),
                     "threads_idle": idle[-1]["threads"], "threads_busy": loaded[-1]["threads"]})
    return rows


def print_rows(rows: list[dict], busy: int, repeats: int, rounds: int) -> None:
    print(f"\nContention: the same line idle and with {busy} busy process(es), {repeats} utterances × {rounds} "
          f"round(s) per cell, medians (eager, 4 steps, {os.cpu_count()} CPUs)")
    print("\n| setting | idle RTF | busy RTF | busy/idle | chunk p50 ms idle | chunk p50 ms busy | chunk max ms busy "
          "| threads idle / busy |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['setting']} | {r['rtf_idle']:.2f} | {r['rtf_busy']:.2f} | {r['ratio']:.2f} | "
              f"{r['chunk_ms_p50_idle']:.0f} | {r['chunk_ms_p50_busy']:.0f} | {r['chunk_ms_max_busy']:.0f} | "
              f"{r['threads_idle']} / {r['threads_busy']} |")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit("run it as: python -m benchmarks.runtime --contention N")
