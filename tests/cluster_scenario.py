"""A real Ray cluster (a head and two worker nodes, as separate processes), ``mf serve --ray``'s gateway, and a
client: two characters on two nodes speak, the first one's node is killed mid-line. Run by test_cluster.py
inside a network namespace that has only loopback (Ray binds the host's address otherwise), and by
benchmarks/cluster.py. Writes what it saw as JSON.

    python -m tests.cluster_scenario OUT.json
"""
from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

TEXT = "The harbour lights came on one by one while the ferry waited at the pier for the last travellers."
STORE = 80 * 1024 * 1024  # object store per node: the gateway moves no large objects through Ray


def _collect(sub, want: dict, timeout: float, on_chunk=None) -> dict:
    """Chunks per character until each character in ``want`` has an end-of-utterance for its utterance id."""
    got: dict[str, list] = {c: [] for c in want}
    done: set[str] = set()
    deadline = time.monotonic() + timeout
    while len(done) < len(want) and time.monotonic() < deadline:
        try:
            ch = sub.recv(timeout=1.0)
        except TimeoutError:
            continue
        h = ch.header
        c = h["character"]
        if c not in want or h["utterance"] != want[c]:
            continue
        got[c].append({k: h[k] for k in ("utterance", "seq", "pts", "frames", "samples", "eou", "interrupted")})
        if on_chunk is not None:
            on_chunk(c, h)
        if h["eou"]:
            done.add(c)
    return got


def main(out_path: str) -> None:
    from ray.cluster_utils import Cluster

    from mfruntime.runtime.client import Client, ServerError, Subscriber
    from mfruntime.runtime.cluster.gateway import Gateway
    from mfruntime.runtime.server import ServeConfig

    result: dict = {}
    t0 = time.monotonic()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "object_store_memory": STORE,
                                                             "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=1, object_store_memory=STORE) for _ in range(2)]
    cluster.wait_for_nodes()
    result["cluster_start_s"] = round(time.monotonic() - t0, 1)
    cfg = ServeConfig(bind="tcp://127.0.0.1:*", stream="tcp://127.0.0.1:*", characters=("a", "b"), steps=1,
                      threads=1)
    t1 = time.monotonic()
    gw = Gateway(cfg, cluster.address).start()
    try:
        client = Client(gw.control_address, timeout=60)
        sub = Subscriber(gw.stream_address)
        deadline = time.monotonic() + 120
        while True:  # the two start-up characters are made on their nodes
            try:
                client.request("state", character="a")
                client.request("state", character="b")
                break
            except ServerError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        result["gateway_start_s"] = round(time.monotonic() - t1, 1)
        stats = client.request("stats")
        nodes = stats["gateway"]["nodes"]
        result["placement"] = {nid[:12]: chars for nid, chars in
                               ((n, v["characters"]) for n, v in nodes.items())}
        node_of = {c: nid for nid, v in nodes.items() for c in v["characters"]}
        time.sleep(0.5)  # the subscription is in place
        # a's line is three times as long: the server makes speech faster than real time, and the kill (a's third
        # chunk) must land while a still has lines to make, even when the machine is busy and the kill is slow.
        ua = client.request("say", character="a", text=" ".join([TEXT] * 3))["utterance"]
        ub = client.request("say", character="b", text=TEXT)["utterance"]
        killed = {}

        def kill_when(c, h):  # a's third chunk: kill a's node mid-line
            if c == "a" and h["seq"] == 2 and not killed:
                victim = next(w for w in workers if w.node_id == node_of["a"])
                killed["at"] = time.monotonic()
                cluster.remove_node(victim, allow_graceful=False)
            if c == "a" and h["eou"] and killed:
                killed["marker"] = time.monotonic()
        got = _collect(sub, {"a": ua, "b": ub}, timeout=240, on_chunk=kill_when)
        if "marker" in killed:
            result["marker_after_kill_s"] = round(killed["marker"] - killed["at"], 2)
        result["first"] = {"a": got["a"], "b": got["b"], "utterances": [ua, ub], "killed": bool(killed)}
        # The next say for a works (retried while a is being placed again).
        t_re = time.monotonic()
        while True:
            try:
                ua2 = client.request("say", character="a", text="Welcome back.")["utterance"]
                break
            except ServerError as exc:
                result.setdefault("retries", []).append(str(exc)[:120])
                if time.monotonic() - t_re > 120:
                    raise
                time.sleep(0.2)
        first_chunk = {}
        again = _collect(sub, {"a": ua2}, timeout=120,
                         on_chunk=lambda c, h: first_chunk.setdefault("t", time.monotonic()))
        result["again"] = {"a": again["a"], "utterance": ua2}
        if killed and first_chunk:
            result["replace_to_first_chunk_s"] = round(first_chunk["t"] - killed["at"], 2)
        stats = client.request("stats")
        result["replace_s"] = stats["gateway"]["replace_s"]
        result["after"] = {"nodes": {nid[:12]: v["characters"] for nid, v in stats["gateway"]["nodes"].items()},
                           "failovers": stats["gateway"]["failovers"], "characters": sorted(stats["characters"])}
        client.close()
        sub.close()
    except Exception as exc:  # reported in the JSON, so the test shows what went wrong and what was seen before
        import traceback

        result["error"] = "".join(traceback.format_exception(exc))[-3000:]
    finally:
        gw.close()
        import ray

        ray.shutdown()
        cluster.shutdown()
        with open(out_path, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
