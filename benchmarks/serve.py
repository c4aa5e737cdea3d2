"""Many characters at once on one `mf serve`: `python -m benchmarks.serve [--characters 1 2 4 8 16] [--steps 4 1]
[--backend auto] [--modes one-by-one batched deadline]`.

For each character count N and step count S, a server (bundled model, in this process, its engine on the main
thread's pool as `mf serve` runs it) gets N say requests at once, one per character, for the same ~3-s line,
and a subscriber receives every chunk. Each row is one mode:

- ``one-by-one``: every chunk at S steps (``min_steps`` = S), admission off, each character's chunk made on its
  own in turn — what the server did before batching (``mf serve --no-batch``);
- ``batched``: the same, but the characters speaking at once share one forward per denoising step (the default);
- ``deadline``: batched, target S, ``min_steps`` 1, admission on — chunks lose steps when their stream would fall
  behind, and lines that cannot be kept are refused (``busy``).

Per row: lines taken, time to first chunk (p50 / p95 over characters), chunks late (sent after the client needs
them: its first chunk + 80 ms prebuffer + k × 160 ms), the worst margin, the wall time for the line vs its audio
length, the steps the chunks got, and whether every taken line stayed real time. Run it on a quiet machine.
"""
from __future__ import annotations

import argparse
import statistics
import threading
import time

import numpy as np

from mfruntime.runtime.server.deadlines import GRACE_SECONDS

MODES = ("one-by-one", "batched", "deadline")
LINE = "Welcome, traveller. The road ahead is long, so rest here by the fire tonight."


def _collect(sub, uids: dict[str, int], out: dict, stop: threading.Event) -> None:
    """Chunk arrival times per character until every line ended (or stop)."""
    ended = set()
    while not stop.is_set() and len(ended) < len(uids):
        try:
            m = sub.recv(0.5)
        except TimeoutError:
            continue
        cid = m.header["character"]
        if uids.get(cid) != m.header["utterance"]:
            continue
        if m.header["samples"]:
            out.setdefault(cid, []).append((m.header["seq"], time.perf_counter()))
        if m.header["eou"]:
            ended.add(cid)


def one_run(server, n: int, steps: int, mode: str) -> dict:
    from mfruntime.runtime.client import Client, ServerError, Subscriber

    names = [f"npc{i}" for i in range(n)]
    with Client(server.control_address, timeout=60) as c, Subscriber(server.stream_address, names) as sub:
        for name in names:
            c.request("set_character", character=name, face_seed=names.index(name))
            c.request("set_steps", character=name, steps=steps, min_steps=1 if mode == "deadline" else steps)
        time.sleep(0.3)  # the subscription reaches the publisher
        server.scheduler.admission = mode == "deadline"
        server.scheduler.batch = mode != "one-by-one"  # between lines: no chunk is in flight
        for ch in server.characters.values():
            ch.session.batched_jobs = server.scheduler.batch
        before = c.request("stats")["characters"]
        uids, sent, busy = {}, {}, 0
        for name in names:
            sent[name] = time.perf_counter()
            try:
                uids[name] = c.request("say", character=name, text=LINE)["utterance"]
            except ServerError as exc:
                if not str(exc).startswith("busy"):
                    raise
                busy += 1
        arrivals: dict = {}
        stop = threading.Event()
        t = threading.Thread(target=_collect, args=(sub, uids, arrivals, stop))
        t.start()
        t.join(timeout=120)
        stop.set()
        t.join()
        stats = c.request("stats")["characters"]
    ttfc, late, worst, ratio, used = [], 0, [], [], {}
    cs = server.characters[names[0]].session.cfg.media.chunk_seconds
    for name, arr in arrivals.items():
        arr.sort()
        first = arr[0][1]
        ttfc.append(1000 * (first - sent[name]))
        margins = [first + GRACE_SECONDS + seq * cs - at for seq, at in arr]
        late += sum(m < 0 for m in margins)
        worst.append(min(margins))
        ratio.append((arr[-1][1] - sent[name]) / (len(arr) * cs))
        for k, v in stats[name]["steps_used"].items():
            used[int(k)] = used.get(int(k), 0) + v - before[name]["steps_used"].get(k, 0)
    return {"taken": len(uids), "busy": busy, "ttfc": ttfc, "late": late, "worst_ms": 1000 * min(worst) if worst else None,
            "ratio": max(ratio) if ratio else None, "used": used}


def main(args: argparse.Namespace) -> None:
    from mfruntime.runtime.server import ServeConfig, Server

    cfg = ServeConfig(bind="tcp://127.0.0.1:*", stream="tcp://127.0.0.1:*", backend=args.backend, send_hwm=10_000,
                      max_characters=max(args.characters) + 1)
    server = Server(cfg)
    engine = threading.Thread(target=server.serve_forever, daemon=True)  # noqa: the engine's pool, warm after line 1
    engine.start()
    while not server.stream_address:
        time.sleep(0.05)
    try:
        one_run(server, 1, max(args.steps), "batched")  # warm-up
        print(f"backend {server.characters['default'].session.backend}; line of "
              f"{len(LINE)} characters; chunks are late when sent after first + {1000 * GRACE_SECONDS:.0f} ms + k x 160 ms\n")
        print("| characters | steps | mode | taken / busy | TTFC p50 / p95 ms | chunks late | worst margin ms | "
              "wall / audio (worst) | chunks per step count | real time |")
        print("|---:|---:|---|---:|---:|---:|---:|---:|---|---|")
        for n in args.characters:
            for steps in args.steps:
                for mode in args.modes:
                    r = one_run(server, n, steps, mode)
                    t = r["ttfc"]
                    p95 = float(np.percentile(t, 95)) if t else float("nan")
                    ok = "yes" if r["late"] == 0 and r["taken"] else "no"
                    used = ", ".join(f"{k}: {v}" for k, v in sorted(r["used"].items(), reverse=True))
                    print(f"| {n} | {steps} | {mode} | {r['taken']} / {r['busy']} | "
                          f"{statistics.median(t) if t else float('nan'):.0f} / {p95:.0f} | {r['late']} | "
                          f"{r['worst_ms'] if r['worst_ms'] is not None else float('nan'):+.0f} | "
                          f"{r['ratio'] if r['ratio'] is not None else float('nan'):.2f} | {used} | {ok} |", flush=True)
    finally:
        server.stop()
        engine.join(timeout=60)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--characters", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    p.add_argument("--steps", type=int, nargs="+", default=[4, 1])
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--backend", default="auto")
    return p


if __name__ == "__main__":
    main(build_parser().parse_args())
