"""The gateway of ``mf serve --ray``: one ``mf serve`` address for characters that run on many Ray nodes.

Clients see the protocol of docs/PROTOCOL.md unchanged: a ROUTER control socket and a PUB stream socket,
bound with the same address policy and CURVE options as ``mf serve``. Behind them:

* **Placement.** A new character goes to the node with the fewest characters, then the fewest generating
  (nodes.py reports each node's load). Every request of a character goes to its node over a DEALER socket
  (request ids rewritten, replies matched back); every node's chunks come in on a SUB socket and are
  republished. Gateway↔node links use CURVE keys made at start (node.py).
* **Saturation.** A ``say``/``drive`` that its node refuses as ``busy`` is tried once on another node that
  generates fewer characters: the character moves (its running utterance, if any, ends with an end marker)
  and the line plays there. Only when no node can take it does the client get ``busy``.
* **Failover.** A node whose server stops answering (its actor died, the node died) is dropped. Each of its
  characters' running utterance ends with an end marker (``eou`` + ``interrupted``, empty parts: what clients
  already handle for a superseded line), pending requests get an error saying to retry, and the character is
  placed again on another node from what the gateway kept (its ``set_character`` request and its
  ``set_steps`` / ``set_outputs`` / ``idle`` settings). The next ``say`` works.
* **One stream per character.** A character's utterance ids and stream clock run on across nodes: the gateway
  adds, per character, the ids and samples it had reached before the move to what the new node sends, so a
  client never sees ids or ``pts`` go backwards.
"""
from __future__ import annotations

import itertools
import logging
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import msgpack
import numpy as np
import zmq

from mfruntime.config import DEFAULT_MEDIA
from mfruntime.errors import UserFacingError
from mfruntime.runtime.cluster import nodes as ray_nodes
from mfruntime.runtime.protocol import (MAX_SOCKET_MESSAGE_BYTES, PROTOCOL_VERSION, ProtocolError, decode_request,
                                        encode_chunk, encode_reply)
from mfruntime.runtime.security import CurveServer, secure_client, write_keypair
from mfruntime.runtime.server.config import ServeConfig, stream_address
from mfruntime.runtime.server.sockets import split_envelope

log = logging.getLogger(__name__)

#: ServeConfig fields the node servers take from the gateway's settings (the rest are the gateway's own).
NODE_FIELDS = ("model", "device", "backend", "steps", "min_steps", "admission", "batch", "max_characters", "send_hwm",
               "seed", "threads")
HEALTH_SECONDS = 0.5  # how often each node's load is asked for
DEAD_AFTER = 10.0  # a node whose load call is unanswered this long is taken as dead
DISCOVER_SECONDS = 2.0  # how often the cluster is checked for new nodes
NODE_RCVHWM = 1000  # chunks queued from one node before ZeroMQ drops (the clients see a seq gap)
SETTINGS = ("set_steps", "set_outputs", "idle")  # kept per character and replayed when it moves


@dataclass(eq=False)
class Node:
    """A node server the gateway is connected to."""

    node_id: str
    actor: Any
    dealer: zmq.Socket
    sub: zmq.Socket
    health: ray_nodes.Health
    stream_address: str = ""  # the node server's PUB socket (CURVE: key_file, and the gateway's secret key)
    key_file: Path | None = None
    placed: set[str] = field(default_factory=set)  # characters the gateway put here

    @property
    def generating(self) -> int:
        return int(self.health.load.get("generating", 0))


@dataclass(eq=False)
class Placed:
    """A character of the gateway: where it runs and how its stream continues across nodes."""

    cid: str
    setup: dict  # its set_character request (image or face_seed, voice), replayed on a new node
    node: Node | None = None
    settings: dict[str, dict] = field(default_factory=dict)  # op → the last accepted request of SETTINGS
    ready: bool = False  # set_character (and the settings) done on ``node``
    waiting: list[Callable[[], None]] = field(default_factory=list)  # requests held until it is ready
    utt_offset: int = 0  # added to the node's utterance ids
    k_offset: int = 0  # samples added to the node's stream clock
    last_utt: int = 0  # the newest utterance id clients were told about (gateway ids)
    seen_utt: int = 0  # the newest utterance id seen on the stream
    open_utt: int | None = None  # an utterance started and not yet ended (gateway id)
    next_seq: int = 0  # the seq of the open utterance's next chunk
    k_end: int = 0  # the stream clock (samples) where its next chunk starts
    width: int = 0
    height: int = 0
    fps: int = DEFAULT_MEDIA.fps
    sample_rate: int = DEFAULT_MEDIA.sample_rate
    video: bool = True  # its chunks carry frames (set_outputs)
    lost_at: float | None = None  # when its node was found dead (until it is placed again)


@dataclass
class Pending:
    """A request sent to a node, waiting for its reply."""

    node: Node
    envelope: list[bytes] | None  # the client's, or None for the gateway's own requests
    rid: Any
    on_reply: Callable[[dict], dict | None]  # node reply → the client's reply (None: nothing to send)


class Gateway:
    """Run with :meth:`serve_forever` (blocks) or :meth:`start` / :meth:`close`."""

    def __init__(self, cfg: ServeConfig, ray_address: str, start_timeout: float = 300.0) -> None:
        self.cfg = cfg
        ray_nodes.connect(ray_address)
        self._ctx = zmq.Context()
        self._curve = CurveServer(self._ctx, cfg.curve_secret, cfg.curve_clients) if cfg.curve_secret else None
        self._dir = Path(tempfile.mkdtemp(prefix="mf-gateway-"))
        _, self.secret_file = write_keypair(self._dir, "gateway")  # the gateway's key pair for its node links
        self._gateway_key = (self._dir / "gateway.key").read_text()
        self._serve = {f: getattr(cfg, f) for f in NODE_FIELDS}
        self.nodes: dict[str, Node] = {}
        self.characters: dict[str, Placed] = {}
        self._starting: dict[str, ray_nodes.Starting] = {}
        self._gone: set[str] = set()  # nodes that died (a node that comes back joins Ray under a new id)
        self._pending: dict[int, Pending] = {}
        self._ids = itertools.count(1)
        self._poller = zmq.Poller()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.control_address = self.stream_address = ""
        self.counters = {"requests": 0, "errors": 0, "published": 0, "moved": 0, "failovers": 0}
        self.started = time.time()
        self.replace_seconds: float | None = None  # the latest failover: node found dead → character placed again
        self._last_discover = 0.0
        self._wait_for_nodes(start_timeout)
        for cid in cfg.characters:  # like mf serve: made at start with the built-in face
            self._create(cid, {"face_seed": 0}, {"op": "set_character", "character": cid, "face_seed": 0})

    # --- nodes ----------------------------------------------------------------------------------
    def _wait_for_nodes(self, timeout: float) -> None:
        """Start a node server on every usable node and wait until they answer (or fail)."""
        self._discover(time.monotonic())
        if not self._starting:
            raise UserFacingError("the Ray cluster has no node with a CPU to run characters on: add a worker node "
                                  "(ray start --address …) or give the head CPUs")
        deadline = time.monotonic() + timeout
        while self._starting and time.monotonic() < deadline:
            self._collect_started(block=1.0)
        if not self.nodes:
            raise UserFacingError(f"no node server came up within {timeout:g} s (see the Ray logs: ray logs)")

    def _discover(self, now: float) -> None:
        self._last_discover = now
        for node_id, (host, cpus) in ray_nodes.usable_nodes().items():
            if node_id not in self.nodes and node_id not in self._starting and node_id not in self._gone:
                log.info("starting a node server on Ray node %s (%s, %d CPUs)", node_id[:12], host, cpus)
                self._starting[node_id] = ray_nodes.start_node_server(node_id, host, cpus, self._serve,
                                                                      self._gateway_key)

    def _collect_started(self, block: float = 0.0) -> None:
        import ray

        refs = [s.ready for s in self._starting.values()]
        done, _ = ray.wait(refs, num_returns=len(refs), timeout=block)
        for st in [s for s in self._starting.values() if s.ready in done]:
            del self._starting[st.node_id]
            try:
                addr = ray.get(st.ready)
            except Exception as exc:  # the node died while starting, the model did not load, …
                log.error("the node server on %s did not start: %s", st.node_id[:12], exc)
                self._gone.add(st.node_id)
                continue
            self._connect(st, addr)

    def _connect(self, st: ray_nodes.Starting, addr: dict) -> None:
        key = self._dir / f"node-{st.node_id[:16]}.key"
        key.write_text(addr["key"])
        socks = []
        for kind, where in ((zmq.DEALER, addr["control"]), (zmq.SUB, addr["stream"])):
            s = self._ctx.socket(kind)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.MAXMSGSIZE, MAX_SOCKET_MESSAGE_BYTES)
            secure_client(s, key, self.secret_file)
            if kind == zmq.SUB:
                s.setsockopt(zmq.SUBSCRIBE, b"")
                s.setsockopt(zmq.RCVHWM, NODE_RCVHWM)  # bounded: a stalled loop drops chunks, never memory
            s.connect(where)
            socks.append(s)
        node = Node(st.node_id, st.actor, socks[0], socks[1], ray_nodes.Health(st.actor, DEAD_AFTER), addr["stream"], key)
        self.nodes[st.node_id] = node
        for s in socks:
            self._poller.register(s, zmq.POLLIN)
        log.info("node %s serves characters (control %s, stream %s)", st.node_id[:12], addr["control"], addr["stream"])
        for p in self.characters.values():  # characters left without a node (every node had died)
            if p.node is None:
                self._place(p, node)

    def _watch(self, now: float) -> None:
        """Health checks, node arrivals and finished starts; called from the loop."""
        for node in list(self.nodes.values()):
            if not node.health.check(now):
                self._node_died(node)
        if self._starting:
            self._collect_started()
        if now - self._last_discover > DISCOVER_SECONDS:
            try:
                self._discover(now)
            except Exception as exc:  # Ray's control service restarting, …: try again later
                log.warning("could not list the Ray nodes: %s", exc)

    def _node_died(self, node: Node) -> None:
        import ray

        log.warning("node %s is gone: placing its %d characters again", node.node_id[:12], len(node.placed))
        self.counters["failovers"] += 1
        del self.nodes[node.node_id]
        self._gone.add(node.node_id)
        for s in (node.dealer, node.sub):
            self._poller.unregister(s)
            s.close(0)
        try:
            ray.kill(node.actor)
        except Exception:  # already gone
            pass
        lost = [self.characters[cid] for cid in sorted(node.placed) if cid in self.characters]
        for p in lost:  # detached first: nothing below may send to the dead node
            self._end_open(p)
            p.node, p.ready, p.lost_at = None, False, time.monotonic()
        node.placed.clear()
        for gid, pend in list(self._pending.items()):
            if pend.node is node:  # its reply will not come: answer it as an error (a stats gather goes on)
                del self._pending[gid]
                self._answer(pend, {"status": "error", "error": NODE_LOST})
        for p in lost:
            target = self._choose()
            if target is not None and p.node is None:
                self._place(p, target)

    def _choose(self, exclude: Node | None = None) -> Node | None:
        """The node for a character: fewest characters placed, then fewest generating."""
        live = [n for n in self.nodes.values() if n is not exclude]
        return min(live, key=lambda n: (len(n.placed), n.generating, n.node_id)) if live else None

    # --- characters -----------------------------------------------------------------------------
    def _place(self, p: Placed, node: Node, then: Callable[[], None] | None = None, _tried: bool = False) -> None:
        """Make ``p`` on ``node`` from what the gateway kept: set_character, its state, its settings; then the
        held requests. Its utterance ids and clock continue from where they were."""
        if p.node is not None:
            p.node.placed.discard(p.cid)
        p.node, p.ready = node, False
        node.placed.add(p.cid)
        p.utt_offset, p.k_offset, p.next_seq = p.last_utt, p.k_end, 0
        tried = _tried
        if then is not None:
            p.waiting.insert(0, then)
        steps = [dict(p.setup, op="set_character", character=p.cid), {"op": "state", "character": p.cid},
                 *(dict(p.settings[op], op=op, character=p.cid) for op in SETTINGS if op in p.settings)]

        def next_step(i: int) -> None:
            if p.node is not node:
                return  # moved again (or its node died) meanwhile
            if i == len(steps):
                p.ready = True
                if p.lost_at is not None:
                    self.replace_seconds = round(time.monotonic() - p.lost_at, 3)
                    p.lost_at = None
                held, p.waiting = p.waiting, []
                for fn in held:
                    fn()
                return

            def done(reply: dict) -> None:
                if p.node is not node:
                    return
                op = steps[i]["op"]
                if reply.get("status") != "ok":
                    log.error("placing %s on node %s: %s failed: %s", p.cid, node.node_id[:12], op, reply.get("error"))
                    if op == "set_character":  # not made there (full, …): another node, once; else no node
                        node.placed.discard(p.cid)
                        p.node = None
                        other = self._choose(exclude=node) if not tried else None
                        if other is not None:
                            self._place(p, other, _tried=True)
                        else:
                            held, p.waiting = p.waiting, []
                            for fn in held:  # answered: no node for it now
                                fn()
                        return
                elif op == "state":
                    p.fps, p.sample_rate = reply["fps"], reply["sample_rate"]
                    p.width, p.height = reply["width"], reply["height"]
                    # The node's ids and clock (a node it ran on before continues its own) → the gateway's.
                    p.utt_offset = p.last_utt - reply["utterance"]
                    p.k_offset = p.k_end - round(reply["clock"] * reply["sample_rate"])
                next_step(i + 1)
            self._forward(node, steps[i], lambda r: done(r))
        next_step(0)

    def _end_open(self, p: Placed) -> None:
        """End the character's running utterance for its clients: an empty end marker (docs/PROTOCOL.md)."""
        if p.open_utt is None:
            return
        frames = np.zeros((0, p.height, p.width, 3), np.uint8) if p.video else None  # the header's video as its chunks'
        self._publish(encode_chunk(p.cid, p.open_utt, p.next_seq, p.k_end / p.sample_rate, frames,
                                   np.zeros(0, np.float32), p.fps, p.sample_rate, eou=True, interrupted=True,
                                   size=(p.width, p.height)))
        p.open_utt = None

    def _move(self, p: Placed, target: Node, then: Callable[[], None]) -> None:
        """Move a character to ``target`` (its node is saturated): end its running utterance, leave the old node
        quiet (no idle lines there), place it on ``target``, then ``then``."""
        old = p.node
        self._end_open(p)
        if old is not None:
            for req in ({"op": "idle", "character": p.cid, "on": False}, {"op": "interrupt", "character": p.cid}):
                self._forward(old, req, lambda r: None)
        self.counters["moved"] += 1
        log.info("moving %s to node %s (its node is saturated)", p.cid, target.node_id[:12])
        self._place(p, target, then)

    # --- requests -------------------------------------------------------------------------------
    def _forward(self, node: Node, req: dict, on_reply: Callable[[dict], dict | None],
                 envelope: list[bytes] | None = None, rid: Any = None) -> None:
        pend = Pending(node, envelope, rid, on_reply)  # type: ignore[arg-type]
        if node is None or self.nodes.get(node.node_id) is not node:  # its node is gone (or it has none now)
            self._answer(pend, {"status": "error", "error": NODE_LOST})
            return
        gid = next(self._ids)
        body = {k: v for k, v in req.items() if k != "id"}
        body.update(v=PROTOCOL_VERSION, id=gid)
        try:  # never block the loop on a node that stopped reading (its queue is full)
            node.dealer.send(msgpack.packb(body, use_bin_type=True), flags=zmq.NOBLOCK)
        except zmq.ZMQError:
            self._answer(pend, {"status": "error", "error": "the node running this character is not taking requests "
                                                            "(overloaded or unreachable); try again shortly"})
            return
        self._pending[gid] = pend

    def _answer(self, pend: Pending, reply: dict) -> None:
        """Run a pending request's reply callback and send its result to the client, if it has one."""
        out = pend.on_reply(reply)
        if out is not None and pend.envelope is not None:
            if out.get("status") != "ok":
                self.counters["errors"] += 1
            self._send(pend.envelope, encode_reply(pend.rid, out.get("status", "error"), out.get("error"), **_fields(out)))

    def _node_reply(self, node: Node, payload: bytes) -> None:
        try:
            reply = msgpack.unpackb(payload, raw=False)
            p = self._pending.pop(reply["id"])
        except Exception:  # a late reply to a request of a node already dropped, or garbage
            return
        self._answer(p, reply)

    def _client(self, envelope: list[bytes], body: bytes | None) -> None:
        self.counters["requests"] += 1
        rid = None
        try:
            if body is None:
                raise ProtocolError("a request is one message frame (after the empty delimiter for REQ sockets); "
                                    "this message had several: send one msgpack map per request")
            req = decode_request(body)
            rid = req.get("id")
            getattr(self, f"_op_{req['op']}")(envelope, rid, req)
        except (ValueError, UserFacingError) as exc:
            if isinstance(exc, ProtocolError) and rid is None:
                rid = exc.request_id
            self.counters["errors"] += 1
            self._send(envelope, encode_reply(rid, "error", str(exc)))
        except Exception as exc:  # never let one request stop the gateway
            log.error("request failed", exc_info=exc)
            self.counters["errors"] += 1
            self._send(envelope, encode_reply(rid, "error", f"internal error: {type(exc).__name__}: {exc}"))

    def _character(self, cid: str) -> Placed:
        if cid not in self.characters:
            raise ValueError(f"no character {cid!r} (characters: {', '.join(self.characters)}); "
                             "make it with set_character")
        return self.characters[cid]

    def _when_ready(self, p: Placed, fn: Callable[[], None]) -> None:
        """Run ``fn`` (which forwards a request) now, or once the character is placed."""
        if p.ready and p.node is not None:
            fn()
        elif p.node is None and not self.nodes:
            raise ValueError("no Ray node is running characters right now (all are down); try again when one is back")
        else:
            p.waiting.append(fn)

    def _op_ping(self, envelope, rid, req) -> None:
        node = next(iter(self.nodes.values()), None)
        if node is None:
            raise ValueError("no Ray node is running characters right now; try again when one is back")
        self._forward(node, req, lambda r: {**r, "characters": list(self.characters), "stream": self.stream_address},
                      envelope, rid)

    def _op_set_character(self, envelope, rid, req) -> None:
        if ("image" in req) == ("face_seed" in req):
            raise ProtocolError("set_character needs exactly one of 'image' (a picture) or 'face_seed' "
                                "(a built-in face)" + (", not both" if "image" in req else ""))
        cid = req["character"]
        setup = {k: v for k, v in req.items() if k in ("image", "width", "height", "face_seed", "voice", "renderer", "size")}
        p = self.characters.get(cid)
        if p is None:
            self._create(cid, setup, req, envelope, rid)
            return

        def update(r: dict) -> dict:
            if r.get("status") == "ok":
                if "image" in req or "face_seed" in req:
                    for k in ("image", "width", "height", "face_seed", "renderer", "size"):
                        p.setup.pop(k, None)
                p.setup.update(setup)
                p.width, p.height = r.get("width", p.width), r.get("height", p.height)  # a portrait's size differs
            return r
        self._when_ready(p, lambda: self._forward(p.node, req, update, envelope, rid))  # type: ignore[arg-type]

    def _create(self, cid: str, setup: dict, req: dict, envelope=None, rid=None) -> None:
        """A new character: on the least loaded node; requests for it wait until it is made there."""
        node = self._choose()  # max_characters is per node: a full node answers with its error
        if node is None:
            raise ValueError("no Ray node is running characters right now; try again when one is back")
        p = self.characters[cid] = Placed(cid, setup, node=node)
        node.placed.add(cid)

        def made(r: dict) -> dict:
            if r.get("status") == "ok":
                p.width, p.height, p.ready = r["width"], r["height"], True
                self._forward(node, {"op": "state", "character": cid}, lambda s: _media(p, s))
            else:
                log.error("character %s could not be made: %s", cid, r.get("error"))
                if self.characters.get(cid) is p:  # not made: forget it
                    del self.characters[cid]
                    node.placed.discard(cid)
            held, p.waiting = p.waiting, []
            for fn in held:  # (not made: the node answers them, no such character)
                fn()
            return r
        self._forward(node, req, made, envelope, rid)

    def _op_say(self, envelope, rid, req, moved: bool = False) -> None:
        p = self._character(req["character"])

        def started(r: dict) -> dict | None:
            if r.get("status") == "ok":  # (a line still running there ends with the node's own end marker)
                uid = r["utterance"] + p.utt_offset
                p.last_utt = max(p.last_utt, uid)
                if uid > p.seen_utt:  # no chunk of it yet (they may come before this reply)
                    p.open_utt, p.next_seq = uid, 0
                return {**r, "utterance": uid}
            if not moved and str(r.get("error", "")).startswith("busy"):
                target = self._less_busy(p)
                if target is not None:  # its node is saturated: the line plays on another
                    self._move(p, target, lambda: self._op_say(envelope, rid, req, moved=True))
                    return None
            return r
        self._when_ready(p, lambda: self._forward(p.node, req, started, envelope, rid))  # type: ignore[arg-type]

    _op_drive = _op_say

    def _less_busy(self, p: Placed) -> Node | None:
        here = p.node.generating if p.node is not None else 0
        other = min((n for n in self.nodes.values() if n is not p.node), key=lambda n: n.generating, default=None)
        return other if other is not None and other.generating < here else None

    def _op_interrupt(self, envelope, rid, req) -> None:
        p = self._character(req["character"])
        self._when_ready(p, lambda: self._forward(  # type: ignore[arg-type]
            p.node, req, lambda r: _shift(r, "utterance", p.utt_offset), envelope, rid))

    def _setting(self, envelope, rid, req) -> None:
        p = self._character(req["character"])

        def kept(r: dict) -> dict:
            if r.get("status") == "ok":
                kept_now = {k: v for k, v in req.items() if k not in ("v", "id", "op", "character")}
                p.settings.setdefault(req["op"], {}).update(kept_now)  # merged, as the node applies them
            return r
        self._when_ready(p, lambda: self._forward(p.node, req, kept, envelope, rid))  # type: ignore[arg-type]

    _op_set_steps = _op_set_outputs = _op_idle = _setting

    def _op_state(self, envelope, rid, req) -> None:
        p = self._character(req["character"])

        def shifted(r: dict) -> dict:
            if r.get("status") == "ok":
                r = dict(r, utterance=r["utterance"] + p.utt_offset if r["utterance"] else p.last_utt,
                         clock=(round(r["clock"] * r["sample_rate"]) + p.k_offset) / r["sample_rate"])
            return r
        self._when_ready(p, lambda: self._forward(p.node, req, shifted, envelope, rid))  # type: ignore[arg-type]

    def _op_stats(self, envelope, rid, req) -> None:
        """Every node's stats, merged: counters summed, characters joined, plus the gateway's own section."""
        if "character" in req:
            p = self._character(req["character"])
            targets = [p.node] if p.node is not None else []
        else:
            targets = list(self.nodes.values())
        merged: dict = {"server": {}, "characters": {}}
        left = {id(n) for n in targets}

        def gather(node: Node):
            def got(r: dict) -> dict | None:
                left.discard(id(node))
                if r.get("status") == "ok":
                    for k, v in r["server"].items():
                        if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "uptime_s":
                            merged["server"][k] = merged["server"].get(k, 0) + v
                        elif k == "batches":
                            b = merged["server"].setdefault("batches", {})
                            for size, n in v.items():
                                b[size] = b.get(size, 0) + n
                        elif k == "batched":
                            merged["server"][k] = v
                    merged["characters"].update({c: s for c, s in r["characters"].items() if c in node.placed})
                if left:
                    return None
                merged["server"]["uptime_s"] = round(time.time() - self.started, 3)
                merged["gateway"] = {**self.counters, "replace_s": self.replace_seconds, "nodes": {n.node_id: {"characters": sorted(n.placed),
                                                                             "generating": n.generating}
                                                                  for n in self.nodes.values()}}
                return {"status": "ok", **merged}
            return got
        if not targets:
            self._send(envelope, encode_reply(rid, **merged, gateway={**self.counters, "replace_s": self.replace_seconds, "nodes": {}}))
            return
        for node in targets:
            self._forward(node, req, gather(node), envelope, rid)

    # --- stream ---------------------------------------------------------------------------------
    def _node_chunk(self, node: Node, parts: list[bytes]) -> None:
        """A chunk from a node: shift its utterance id and clock to the character's, then republish it."""
        if len(parts) != 5:
            return
        try:
            header = msgpack.unpackb(parts[1], raw=False)
            p = self.characters.get(header["character"])
        except Exception:
            return
        if p is None or p.node is not node:
            return  # a character that moved away from this node
        sr = header["sample_rate"]
        k = round(header["pts"] * sr) + p.k_offset
        header["utterance"] += p.utt_offset
        header["pts"] = k / sr  # one float64 division: clients recover k exactly (docs/PROTOCOL.md)
        uid = header["utterance"]
        p.fps, p.sample_rate, p.width, p.height = header["fps"], sr, header["width"], header["height"]
        p.video = header["video"]
        p.last_utt, p.seen_utt = max(p.last_utt, uid), max(p.seen_utt, uid)
        p.k_end = k + header["samples"]
        if p.open_utt is None or uid >= p.open_utt:  # chunks of an older, superseded line do not count
            p.open_utt, p.next_seq = (None, 0) if header["eou"] else (uid, header["seq"] + 1)
        parts[1] = msgpack.packb(header, use_bin_type=True)
        self._publish(parts)

    # --- sockets and loop -----------------------------------------------------------------------
    def _send(self, envelope: list[bytes], payload: bytes) -> None:
        try:
            self._router.send_multipart([*envelope, payload], flags=zmq.NOBLOCK)
        except zmq.ZMQError:
            pass  # the client vanished

    def _publish(self, parts: list[bytes]) -> None:
        try:
            self._pub.send_multipart(parts, flags=zmq.NOBLOCK)
            self.counters["published"] += 1
        except zmq.ZMQError:
            pass

    def _bind(self) -> None:
        self._router = self._ctx.socket(zmq.ROUTER)
        self._pub = self._ctx.socket(zmq.PUB)
        for s in (self._router, self._pub):
            if self._curve is not None:
                self._curve.secure(s)
            s.setsockopt(zmq.LINGER, 0)
        self._router.setsockopt(zmq.MAXMSGSIZE, MAX_SOCKET_MESSAGE_BYTES)
        self._pub.setsockopt(zmq.SNDHWM, self.cfg.send_hwm)
        try:
            self._router.bind(self.cfg.bind)
            self.control_address = self._router.getsockopt_string(zmq.LAST_ENDPOINT)
            self._pub.bind(stream_address(self.cfg, self.control_address))
        except (zmq.ZMQError, ValueError) as exc:
            self._router.close(0)
            self._pub.close(0)
            raise UserFacingError(f"cannot bind {self.cfg.bind}: {exc}") from exc
        self.stream_address = self._pub.getsockopt_string(zmq.LAST_ENDPOINT)
        self._poller.register(self._router, zmq.POLLIN)

    def _loop(self) -> None:
        last_watch = 0.0
        try:
            while not self._stop.is_set():
                events = dict(self._poller.poll(50))
                try:
                    self._round(events)
                    now = time.monotonic()
                    if now - last_watch > HEALTH_SECONDS:
                        last_watch = now
                        self._watch(now)
                except Exception:  # a bug must not take every character's stream down: log it and go on
                    log.exception("gateway loop")
        finally:
            self._shutdown()

    def _round(self, events: dict) -> None:
        """Everything that came in: client requests, node chunks, node replies."""
        if self._router in events:
            while True:
                try:
                    frames = self._router.recv_multipart(flags=zmq.NOBLOCK)
                except zmq.Again:
                    break
                if len(frames) >= 2:
                    self._client(*split_envelope(frames))
        for node in list(self.nodes.values()):
            if node.sub in events:
                while node.node_id in self.nodes:
                    try:
                        self._node_chunk(node, node.sub.recv_multipart(flags=zmq.NOBLOCK))
                    except zmq.Again:
                        break
            if node.dealer in events:
                while node.node_id in self.nodes:
                    try:
                        self._node_reply(node, node.dealer.recv(flags=zmq.NOBLOCK))
                    except zmq.Again:
                        break

    def _shutdown(self) -> None:
        import ray

        for p in self.characters.values():
            self._end_open(p)
        stops = []
        for node in self.nodes.values():
            try:
                stops.append(node.actor.stop.remote())  # its server's end markers, its key files removed
            except Exception:
                pass
        if stops:
            ray.wait(stops, num_returns=len(stops), timeout=10)
        for node in self.nodes.values():
            try:
                ray.kill(node.actor)
            except Exception:
                pass
            node.dealer.close(0)
            node.sub.close(0)
        self.nodes.clear()
        self._router.close(0)
        self._pub.close(linger=500)  # let the end markers leave

    def local_client_keys(self) -> tuple[str, str] | None:
        """As Server.local_client_keys: keys for a client inside this process (``--web``) when CURVE is on."""
        return None if self._curve is None else self._curve.local_client()

    def serve_forever(self, on_ready=None) -> None:
        """Bind and serve until stop(); on_ready(gateway) once bound."""
        self._bind()
        if on_ready is not None:
            on_ready(self)
        try:
            self._loop()
        finally:
            self._close_context()

    def start(self) -> "Gateway":
        """Bind, then serve in a background thread; stop with close()."""
        self._bind()
        self._thread = threading.Thread(target=self._loop, name="mf-gateway", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
            self._thread = None
        self._close_context()

    def _close_context(self) -> None:
        if self._curve is not None:
            self._curve.stop()
            self._curve = None
        if not self._ctx.closed:
            self._ctx.term()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> "Gateway":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


NODE_LOST = ("the node running this character went down; it is being placed on another node: send the request "
             "again")


def _fields(reply: dict) -> dict:
    """A reply's op fields (without the envelope keys encode_reply writes)."""
    return {k: v for k, v in reply.items() if k not in ("v", "id", "status", "error")}


def _shift(reply: dict, key: str, offset: int) -> dict:
    if reply.get("status") == "ok" and reply.get(key) is not None:
        reply = dict(reply, **{key: reply[key] + offset})
    return reply


def _media(p: Placed, reply: dict) -> None:
    if reply.get("status") == "ok":
        p.fps, p.sample_rate = reply["fps"], reply["sample_rate"]
