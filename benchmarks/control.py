"""Control latency of `mf serve` while it works: `python -m benchmarks.runtime --control [--repeats 3]`.

A server (bundled tiny model, eager, 4 steps, in this process with its engine in a background thread) gets
``--lines`` say requests with new sentences — never spoken before, so each needs eSpeak NG — sent at once
over one DEALER socket, for characters that then generate. Meanwhile a second DEALER pings every 5 ms.
Reported per round and pooled: the time from sending each say to its reply, and every ping's round trip
while the says are answered and the characters speak (until the last line ends or 20 s pass).
"""
from __future__ import annotations

import statistics
import threading
import time

import numpy as np
import zmq

from mfruntime.runtime.protocol import decode_reply, encode_request

WORDS = ("amber", "bright", "copper", "distant", "early", "frozen", "golden", "hidden", "idle", "jolly", "kind",
         "little", "mellow", "narrow", "open", "proud", "quiet", "rapid", "silver", "tender")


def new_lines(n: int, round_no: int) -> list[str]:
    """Sentences this process has not spoken (so none is in the eSpeak timing cache)."""
    return [f"The {WORDS[i % len(WORDS)]} lantern number {round_no * 100 + i} glows by the {WORDS[(i * 7) % len(WORDS)]} gate."
            for i in range(n)]


def _pinger(address: str, stop: threading.Event, out: list[float]) -> None:
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(address)
    try:
        while not stop.is_set():
            t0 = time.perf_counter()
            sock.send(encode_request("ping", id=1))
            if not sock.poll(5000):
                out.append(float("inf"))
                return
            decode_reply(sock.recv())
            out.append(time.perf_counter() - t0)
            time.sleep(0.005)
    finally:
        sock.close(0)


def one_round(server, lines: int, round_no: int, characters: list[str]) -> dict:
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(server.control_address)
    pings: list[float] = []
    stop = threading.Event()
    pinger = threading.Thread(target=_pinger, args=(server.control_address, stop, pings))
    pinger.start()
    time.sleep(0.1)
    sent = {}
    for i, text in enumerate(new_lines(lines, round_no)):
        sent[i] = time.perf_counter()
        sock.send(encode_request("say", id=i, character=characters[i % len(characters)], text=text))
    replies = {}
    while len(replies) < lines and sock.poll(10_000):
        r = decode_reply(sock.recv())
        replies[r["id"]] = time.perf_counter() - sent[r["id"]]
        if r["status"] != "ok":
            raise RuntimeError(f"say failed: {r.get('error')}")
    deadline = time.perf_counter() + 20
    while time.perf_counter() < deadline and any(c.speaking for c in server.characters.values()):
        time.sleep(0.05)
    stop.set()
    pinger.join()
    sock.close(0)
    return {"say_ms": [1000 * replies[i] for i in sorted(replies)], "ping_ms": [1000 * p for p in pings]}


def run(repeats: int, lines: int = 20, n_characters: int = 4) -> dict:
    from mfruntime.runtime.server import ServeConfig, Server

    characters = [f"npc{i}" for i in range(n_characters)]
    # admission off: this measures control replies under load, so lines must be taken even when they fall behind
    cfg = ServeConfig(bind="tcp://127.0.0.1:*", stream="tcp://127.0.0.1:*", backend="eager", characters=tuple(characters),
                      admission=False)
    rounds = []
    with Server(cfg) as server:
        one_round(server, 2, 99, characters)  # warm-up: each path once
        for r in range(repeats):
            rounds.append(one_round(server, lines, r, characters))
            print(f"  round {r + 1}: say reply p99 {np.percentile(rounds[-1]['say_ms'], 99):.1f} ms, "
                  f"ping p99 {np.percentile(rounds[-1]['ping_ms'], 99):.1f} ms", flush=True)
    say = [x for r in rounds for x in r["say_ms"]]
    ping = [x for r in rounds for x in r["ping_ms"]]
    return {"lines": lines, "characters": n_characters, "rounds": repeats,
            "say_ms_p50": statistics.median(say), "say_ms_p99": float(np.percentile(say, 99)), "say_ms_max": max(say),
            "ping_ms_p50": statistics.median(ping), "ping_ms_p99": float(np.percentile(ping, 99)),
            "ping_ms_max": max(ping), "pings": len(ping)}


def print_result(r: dict) -> None:
    print(f"\nControl latency: {r['lines']} new lines requested at once for {r['characters']} characters, "
          f"{r['rounds']} round(s); pings every 5 ms meanwhile ({r['pings']} in all)")
    print("\n| what | p50 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|")
    print(f"| say reply | {r['say_ms_p50']:.1f} | {r['say_ms_p99']:.1f} | {r['say_ms_max']:.1f} |")
    print(f"| ping round trip | {r['ping_ms_p50']:.1f} | {r['ping_ms_p99']:.1f} | {r['ping_ms_max']:.1f} |")
