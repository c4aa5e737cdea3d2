"""Characters on Ray behind the gateway vs one `mf serve`: `python -m benchmarks.cluster [--characters 1 2 4]
[--steps 4]`.

Runs in a network namespace with only loopback (it re-runs itself under ``unshare -n``; root or unprivileged
namespaces needed), with a real Ray cluster on this machine: a head (no CPUs: no characters) and worker nodes
(separate raylet processes). For each setup and character count N, N characters say the same ~3-s line at once
through the protocol; per row: time to first chunk (p50), chunks late (sent after first + 80 ms + k × 160 ms),
wall time for the line vs its audio (worst character), real time or not. Admission is off (every line is
taken): the rows show raw capacity. Setups, side by side in one run:

- ``mf serve``: one server in its own process, no Ray (the baseline);
- ``gateway, 1 node``: the gateway in this process, one Ray worker node with one node server;
- ``gateway, 2 nodes``: a second worker node joins; new characters are spread over both.

Then the gateway's own cost: for the 2-node setup every chunk is also received straight from its node server
(the gateway's CURVE keys), and the delay the gateway hop adds is reported (p50 / p95 / max); and the time to
place a character again after its node is killed. On one machine two nodes share the same cores: expect no
capacity gain here; the point is the overhead. Run it on a quiet machine.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time

import numpy as np

LINE = "Welcome, traveller. The road ahead is long, so rest here by the fire tonight."
STORE = 80 * 1024 * 1024


def measure(control: str, stream: str, n: int, steps: int, tag: str) -> dict:
    """N characters (made if new) say LINE at once; arrival times of their chunks on ``stream``."""
    from mfruntime.runtime.client import Client, Subscriber
    from mfruntime.runtime.server.deadlines import GRACE_SECONDS

    names = [f"{tag}{i}" for i in range(n)]
    with Client(control, timeout=120) as c, Subscriber(stream, names) as sub:
        for i, name in enumerate(names):
            c.request("set_character", character=name, face_seed=i)
            c.request("set_steps", character=name, steps=steps)
        time.sleep(0.5)
        sent, uids = {}, {}
        for name in names:
            sent[name] = time.perf_counter()
            uids[name] = c.request("say", character=name, text=LINE)["utterance"]
        arr: dict[str, list] = {name: [] for name in names}
        ended: set[str] = set()
        deadline = time.monotonic() + 300
        while len(ended) < n and time.monotonic() < deadline:
            try:
                m = sub.recv(1.0)
            except TimeoutError:
                continue
            h = m.header
            if uids.get(h["character"]) != h["utterance"]:
                continue
            if h["samples"]:
                arr[h["character"]].append((h["seq"], time.perf_counter()))
            if h["eou"]:
                ended.add(h["character"])
    cs = 0.16
    ttfc, late, ratio = [], 0, []
    for name, a in arr.items():
        if not a:
            continue
        first = a[0][1]
        ttfc.append(1000 * (first - sent[name]))
        late += sum(first + GRACE_SECONDS + seq * cs - at < 0 for seq, at in a)
        ratio.append((a[-1][1] - sent[name]) / (len(a) * cs))
    return {"ttfc": statistics.median(ttfc) if ttfc else float("nan"), "late": late,
            "ratio": max(ratio) if ratio else float("nan"), "complete": len(ended) == n}


def row(setup: str, n: int, steps: int, r: dict) -> None:
    ok = "yes" if r["late"] == 0 and r["complete"] else "no"
    print(f"| {setup} | {n} | {steps} | {r['ttfc']:.0f} | {r['late']} | {r['ratio']:.2f} | {ok} |", flush=True)


def hop_delay(gw, node, seconds: float = 4.0) -> list[float]:
    """Chunks of the node's characters received straight from the node and through the gateway: the delay the
    gateway adds, ms per chunk (matched by character and seq; utterance ids differ only by the gateway's offset)."""
    import zmq

    from mfruntime.runtime.client import Client, Subscriber
    from mfruntime.runtime.protocol import decode_chunk
    from mfruntime.runtime.security import secure_client

    ctx = zmq.Context.instance()
    direct = ctx.socket(zmq.SUB)
    secure_client(direct, node.key_file, gw.secret_file)
    direct.setsockopt(zmq.SUBSCRIBE, b"")
    direct.connect(node.stream_address)
    via = Subscriber(gw.stream_address)
    time.sleep(0.5)
    got_direct, got_via = {}, {}
    names = sorted(node.placed)
    with Client(gw.control_address, timeout=60) as c:
        for name in names:
            c.request("say", character=name, text=LINE)
    poller = zmq.Poller()
    poller.register(direct, zmq.POLLIN)
    poller.register(via.sock, zmq.POLLIN)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        ev = dict(poller.poll(100))
        now = time.perf_counter()
        if direct in ev:
            h = decode_chunk(direct.recv_multipart()).header
            got_direct.setdefault((h["character"], h["seq"], h["samples"]), now)
        if via.sock in ev:
            h = via.recv().header
            got_via.setdefault((h["character"], h["seq"], h["samples"]), now)
    direct.close(0)
    via.close()
    return [1000 * (got_via[k] - t) for k, t in got_direct.items() if k in got_via and k[2]]


def run(args) -> None:
    from ray.cluster_utils import Cluster

    from mfruntime.runtime.cluster.gateway import Gateway
    from mfruntime.runtime.process import serve_process
    from mfruntime.runtime.server import ServeConfig

    print("| setup | characters | steps | TTFC p50 ms | chunks late | wall / audio (worst) | real time |")
    print("|---|---:|---:|---:|---:|---:|---|")
    # mf serve in its own process: the baseline (the gateway's nodes use the same defaults: auto backend, threads).
    with serve_process("--max-characters", "64", "--no-admission", backend="auto", steps=args.steps,
                       threads="auto") as (control, stream):
        measure(control, stream, 1, args.steps, "warm")
        for n in args.characters:
            row("mf serve", n, args.steps, measure(control, stream, n, args.steps, f"s{n}-"))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "object_store_memory": STORE,
                                                             "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=1, object_store_memory=STORE)]
    cluster.wait_for_nodes()
    cfg = ServeConfig(bind="tcp://127.0.0.1:*", stream="tcp://127.0.0.1:*", characters=(),
                      max_characters=64, admission=False)  # raw capacity: no line refused
    gw = Gateway(cfg, cluster.address).start()
    try:
        measure(gw.control_address, gw.stream_address, 1, args.steps, "warm")
        for n in args.characters:
            row("gateway, 1 node", n, args.steps, measure(gw.control_address, gw.stream_address, n, args.steps, f"a{n}-"))
        workers.append(cluster.add_node(num_cpus=1, object_store_memory=STORE))
        t0 = time.monotonic()
        while len(gw.nodes) < 2 and time.monotonic() - t0 < 300:
            time.sleep(0.2)
        print(f"\nsecond node joined; its node server answered {time.monotonic() - t0:.1f} s after the node started\n")
        print("| setup | characters | steps | TTFC p50 ms | chunks late | wall / audio (worst) | real time |")
        print("|---|---:|---:|---:|---:|---:|---|")
        # new characters go to the node with fewer characters: the second node fills up first
        measure(gw.control_address, gw.stream_address, 1, args.steps, "warm2")
        for n in args.characters:
            row("gateway, 2 nodes", n, args.steps, measure(gw.control_address, gw.stream_address, n, args.steps, f"b{n}-"))
        node = max(gw.nodes.values(), key=lambda nd: len(nd.placed))
        d = hop_delay(gw, node)
        if d:
            print(f"\ngateway hop: {len(d)} chunks, added delay p50 {np.percentile(d, 50):.2f} ms, "
                  f"p95 {np.percentile(d, 95):.2f} ms, max {max(d):.2f} ms")
        import ray

        payload = bytes(4 * 64 * 64 * 3 + 4 * 2560)  # one chunk: 4 frames of 64 px + 160 ms of PCM
        ray.get(node.actor.echo.remote(payload))
        rt = []
        for _ in range(50):
            t = time.perf_counter()
            ray.get(node.actor.echo.remote(payload))
            rt.append(1000 * (time.perf_counter() - t))
        print(f"a Ray actor call with one chunk's bytes ({len(payload)} B) there and back: p50 {np.percentile(rt, 50):.2f} ms, "
              f"p95 {np.percentile(rt, 95):.2f} ms (the alternative to streaming chunks over ZeroMQ)")
        victim = next(w for w in workers if w.node_id == node.node_id)
        moved = len(node.placed)
        cluster.remove_node(victim, allow_graceful=False)
        t0 = time.monotonic()
        while gw.replace_seconds is None and time.monotonic() - t0 < 120:
            time.sleep(0.05)
        print(f"node killed with {moved} characters: found dead and characters placed again in "
              f"{time.monotonic() - t0:.2f} s (the last one placed {gw.replace_seconds} s after its node was found dead)")
    finally:
        gw.close()
        import ray

        ray.shutdown()
        cluster.shutdown()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--characters", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--steps", type=int, default=4)
    args = p.parse_args()
    if os.environ.get("MF_BENCH_NETNS") != "1":  # re-run in a loopback-only namespace (Ray binds the host address)
        from tests import netns

        why = netns.available()
        if why is not None:
            sys.exit(f"benchmarks.cluster needs a loopback-only network namespace: {why}")
        r = netns.isolated(["benchmarks.cluster", *sys.argv[1:]], timeout=None, capture=False,
                           env={"MF_BENCH_NETNS": "1", "RAY_USAGE_STATS_ENABLED": "0"})
        sys.exit(r.returncode)
    threading.current_thread().name = "bench"
    run(args)


if __name__ == "__main__":
    main()
