"""``mf serve``: characters over ZeroMQ — a ROUTER control socket and a PUB stream socket.

Threads: the control loop owns the ROUTER socket and answers requests at once; nothing slow runs on it.
``say``/``drive`` are checked and given their utterance id there (the reply goes out at once), while the
preparation thread makes eSpeak NG's phoneme timing or resamples the audio; ``set_character`` (image
decoding, a new Session) runs wholly on the preparation thread, which sends its reply when done, and a
``say``/``drive`` for a character that is still being set up waits behind it, in order. The engine
generates for every character, one chunk per speaking character in turn
(round robin, so characters share the machine fairly), and hands chunks to the publisher thread, which
owns the PUB socket. ZeroMQ sockets are used by one thread each. ``serve_forever`` runs the engine in
the calling thread: on CPU, PyTorch's OpenMP pool is much faster in the thread that first used it
(measured here: 60 ms per chunk there, 100 ms in another thread), so ``mf serve`` generates on its main
thread; ``start`` runs everything in background threads (for tests and embedding).

A slow or dead subscriber never stalls generation: PUB drops messages for a subscriber whose queue (send
high-water mark) is full, silently — receivers see the gap in ``seq``. The server additionally drops (and
counts) chunks when its own publish queue is full.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

import numpy as np
import zmq

from mfruntime import __version__
from mfruntime.config import DEFAULT_STEPS
from mfruntime.errors import UserFacingError
from mfruntime.runtime.character import default_character
from mfruntime.rig import CONTROLS, RIG_VERSION
from mfruntime.runtime.protocol import (MAX_SOCKET_MESSAGE_BYTES, PROTOCOL_VERSION, ProtocolError, decode_request,
                                        encode_chunk, encode_reply)
from mfruntime.runtime.security import CurveServer
from mfruntime.runtime.session import Chunk, PendingUtterance, Session
from mfruntime.runtime.threads import check_threads

log = logging.getLogger(__name__)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


@dataclass(frozen=True)
class ServeConfig:
    bind: str = "tcp://127.0.0.1:5555"  # control socket (ROUTER); "tcp://127.0.0.1:*" picks a free port
    stream: str | None = None  # PUB socket; default: the control port + 1 (or a free port with ":*")
    model: str = "tiny"
    device: str = "auto"
    backend: str = "auto"
    steps: int = DEFAULT_STEPS
    characters: tuple[str, ...] = ("default",)  # made at start with the built-in face
    max_characters: int = 16
    send_hwm: int = 64  # PUB high-water mark: messages queued per subscriber before ZeroMQ drops for it
    publish_queue: int = 256  # chunks waiting for the publisher thread before the server drops
    allow_remote: bool = False  # binding beyond loopback must be asked for
    seed: int = 0
    threads: int | str = "auto"  # CPU threads per chunk: a number, or "auto" (the cores other processes leave free)
    prepare_queue: int = 1024  # requests waiting for the preparation thread before the server answers "busy"
    curve_secret: str | None = None  # the server's CURVE key pair (NAME.key_secret from mf keys): encrypt + authenticate
    curve_clients: str | None = None  # folder of the authorised clients' public keys (*.key)

    def __post_init__(self) -> None:
        check_threads(self.threads)
        for addr in (self.bind, self.stream):
            if addr is None:
                continue
            if "://" not in addr:
                raise ValueError(f"address must look like tcp://127.0.0.1:5555 or ipc:///tmp/mf.sock, got {addr!r}")
            u = urlsplit(addr)
            if u.scheme == "tcp" and u.hostname not in (h.strip("[]") for h in LOOPBACK_HOSTS):
                if not self.allow_remote:
                    raise ValueError(f"{addr} is reachable from other machines; pass --allow-remote to do that on "
                                     "purpose (with CURVE keys: docs/RUNTIME.md)")
                if not self.curve_secret:
                    raise ValueError(f"{addr} is reachable from other machines: the server needs CURVE keys there — "
                                     "--curve-secret SERVER.key_secret and --curve-clients DIR (make them with mf keys)")
        if bool(self.curve_secret) != bool(self.curve_clients):
            raise ValueError("CURVE needs both the server's secret key file (--curve-secret) and the folder of "
                             "authorised client keys (--curve-clients)")
        if self.max_characters < 1 or self.send_hwm < 1 or self.publish_queue < 1 or self.prepare_queue < 1:
            raise ValueError("max_characters, send_hwm, publish_queue and prepare_queue must be at least 1")


def _stream_address(cfg: ServeConfig, control_endpoint: str) -> str:
    if cfg.stream:
        return cfg.stream
    u = urlsplit(cfg.bind)
    if u.scheme != "tcp":
        raise ValueError(f"pass --stream for a {u.scheme} control address")
    host = control_endpoint.rsplit(":", 1)[0]
    if cfg.bind.endswith(":*"):
        return f"{host}:*"
    return f"{host}:{int(control_endpoint.rsplit(':', 1)[1]) + 1}"


class _Deferred:
    """A request answered by the preparation thread: ``fn()`` gives the reply fields (or raises)."""

    def __init__(self, fn, cid: str) -> None:
        self.fn, self.cid = fn, cid
        self.envelope: list[bytes] = []
        self.rid = None


class Character:
    """One character: its Session and its queue of utterances, advanced a chunk at a time by the engine."""

    def __init__(self, cid: str, session: Session) -> None:
        self.cid, self.session = cid, session
        self.jobs: deque[PendingUtterance] = deque()  # waiting utterances, in order; appended on request
        self.current: tuple | None = None  # (utterance id, chunk iterator, idle) being generated
        self.seq = 0  # next chunk of the current utterance
        self.ended = True  # the current utterance's end (eou) has been published
        self.listen = False  # op idle: stream idle chunks (the character listening) whenever nothing is queued
        # Taking an utterance id and queueing it is one step (say on the control thread, idle on the engine's), so
        # an idle utterance can never supersede a line that is being queued.
        self.lock = threading.Lock()

    @property
    def speaking(self) -> bool:
        return self.current is not None or bool(self.jobs)

    @property
    def idle(self) -> bool:
        """The utterance being generated is an idle one (the character listening)."""
        return self.current is not None and self.current[2]

    def submit(self, reserve) -> PendingUtterance:
        """Queue an utterance: ``reserve()`` (Session.reserve_say/reserve_drive: checked, id taken) is called with
        the character's lock held."""
        with self.lock:
            pending = reserve()
            self.jobs.append(pending)
        return pending

    def _start_idle(self) -> None:
        """Listening and nothing queued: queue an idle utterance (paced here, by step())."""
        with self.lock:
            if not self.jobs and self.current is None:
                self.jobs.append(self.session.reserve_idle(paced=False))

    def step(self, publish) -> bool:
        """Generate and publish this character's next chunk; False when it has nothing to do (yet)."""
        if self.current is None and self.listen and not self.jobs:
            self._start_idle()
        if self.current is None:
            if not self.jobs or not self.jobs[0].ready.is_set():
                return False  # nothing queued, or its phoneme timing is still being made
            pending = self.jobs.popleft()
            self.seq, self.ended = 0, False
            try:
                self.current = (pending.uid, pending.chunks(), pending.idle)
            except Exception:  # e.g. eSpeak failed: end the utterance for receivers below
                log.exception("character %s: utterance %d could not be prepared", self.cid, pending.uid)
                self.current = (pending.uid, iter(()), False)
        uid, chunks, idle = self.current
        if idle and not self.session.interrupted and self.session.utterance == uid \
                and time.perf_counter() < self.session.idle_due:
            return False  # listening: the next idle chunk is not due yet (made in real time, never far ahead)
        try:
            chunk = next(chunks, None)
        except Exception:  # a failing utterance must not take the character (or the server) down
            log.exception("character %s: utterance %d failed", self.cid, uid)
            chunk = None
        if chunk is not None:
            publish(self.cid, chunk)
            self.seq, self.ended = chunk.seq + 1, chunk.last
            if not chunk.last:
                return True
        elif not self.ended:  # superseded by a newer utterance, or failed: still close it for receivers
            s = self.session
            h, w = s.frame_size
            frames = np.zeros((0, h, w, 3), np.uint8) if s.outputs["video"] else None  # the header's video as its chunks'
            publish(self.cid, Chunk(utterance=uid, seq=self.seq, pts=s.clock, frames=frames, pcm=np.zeros(0, np.float32),
                                    sample_rate=s.sample_rate, fps=s.fps, last=True, interrupted=True))
            self.ended = True
        self.current = None
        return True

    def finish(self, publish) -> None:
        """At shutdown: drop queued utterances and end the running one (interrupt: one more chunk)."""
        self.listen = False
        self.jobs.clear()
        self.session.interrupt()
        while self.current is not None:
            self.step(publish)


class Server:
    """Run with :meth:`serve_forever` (blocks) or :meth:`start` (background thread) and :meth:`close`."""

    def __init__(self, cfg: ServeConfig = ServeConfig()) -> None:
        self.cfg = cfg
        self.characters: dict[str, Character] = {}
        self.counters = {"requests": 0, "errors": 0, "published": 0, "dropped": 0}
        self._count_lock = threading.Lock()
        self._out: queue.Queue = queue.Queue(maxsize=cfg.publish_queue)
        self._stop = threading.Event()
        self._work = threading.Event()  # set when an utterance is queued: wakes the engine
        self._engine_done = threading.Event()
        self._ready = threading.Event()
        self._prepare: queue.Queue = queue.Queue(maxsize=cfg.prepare_queue)  # PendingUtterance | _Deferred | None
        self._deferred: Counter = Counter()  # character id → its requests waiting on the preparation thread
        self._deferred_lock = threading.Lock()
        self._replies_address = f"inproc://mf-replies-{id(self):x}"
        self._failed: BaseException | None = None
        self._ctx = zmq.Context()
        self._curve: CurveServer | None = None
        if cfg.curve_secret:  # key problems fail here, before any model loads or socket binds
            self._curve = CurveServer(self._ctx, cfg.curve_secret, cfg.curve_clients)
        self._threads: list[threading.Thread] = []
        self.control_address = self.stream_address = ""
        self.started = time.time()
        # Load the model (and fail on a bad model/backend) before any socket is bound.
        for cid in cfg.characters:
            self._add_character(cid, None, None, None)

    # --- characters ----------------------------------------------------------------------------
    def _add_character(self, cid: str, image, face_seed: int | None, voice: str | None) -> Character:
        if len(self.characters) >= self.cfg.max_characters:
            raise ValueError(f"the server already runs {self.cfg.max_characters} characters (--max-characters)")
        session = Session(self.cfg.model, self.cfg.device, self.cfg.steps, self.cfg.backend, seed=self.cfg.seed,
                          threads=self.cfg.threads)
        if image is None and face_seed is not None:
            image = default_character(session.size, face_seed)
        if image is not None:
            session.set_character(image)
        if voice is not None:
            session.set_voice(voice)
        ch = Character(cid, session)
        self.characters[cid] = ch
        log.info("character %s ready (%s, %d steps)", cid, session.backend, session.steps)
        return ch

    def _character(self, req: dict) -> Character:
        cid = req["character"]
        if cid not in self.characters:
            raise ValueError(f"no character {cid!r} (characters: {', '.join(self.characters)}); "
                             "make it with set_character")
        return self.characters[cid]

    def _enqueue(self, cid: str, chunk: Chunk) -> None:
        h, w = self.characters[cid].session.frame_size if cid in self.characters else (0, 0)
        parts = encode_chunk(cid, chunk.utterance, chunk.seq, chunk.pts, chunk.frames, chunk.pcm, chunk.fps,
                             chunk.sample_rate, chunk.last, chunk.interrupted, rig=chunk.rig, size=(w, h))
        try:
            self._out.put_nowait(parts)
        except queue.Full:
            self._count("dropped")

    def _count(self, name: str) -> None:
        with self._count_lock:
            self.counters[name] += 1

    # --- requests ------------------------------------------------------------------------------
    def handle(self, req: dict) -> dict:
        """One checked request → reply fields (raises ValueError/UserFacingError for an error reply)."""
        op = req["op"]
        if op == "ping":
            return {"server": f"mfruntime {__version__}", "protocol": PROTOCOL_VERSION,
                    "characters": list(self.characters), "stream": self.stream_address,
                    "rig": {"version": RIG_VERSION, "controls": list(CONTROLS)}}
        if op == "set_character":
            if ("image" in req) == ("face_seed" in req):
                raise ProtocolError("set_character needs exactly one of 'image' (a picture) or 'face_seed' "
                                    "(a built-in face)" + (", not both" if "image" in req else ""))
            cid = req["character"]
            with self._deferred_lock:
                if cid not in self.characters and not self._deferred[cid]:
                    creating = sum(1 for c, n in self._deferred.items() if n and c not in self.characters)
                    if len(self.characters) + creating >= self.cfg.max_characters:
                        raise ValueError(f"the server already runs {self.cfg.max_characters} characters "
                                         "(--max-characters)")
            return self._defer(cid, lambda: self._set_character(req))
        if op == "stats":
            chars = [self._character(req)] if "character" in req else list(self.characters.values())
            per = {}
            for ch in chars:
                st = asdict(ch.session.stats())
                st.pop("chunk_ms")
                per[ch.cid] = st
            return {"server": {**self.counters, "uptime_s": round(time.time() - self.started, 3)}, "characters": per}
        if op in ("say", "drive"):
            cid = req["character"]
            with self._deferred_lock:
                behind = self._deferred[cid] > 0
            if behind:  # the character is still being set up: keep the order of its requests
                return self._defer(cid, lambda: self._start_utterance(req, on_preparer=True))
            return self._start_utterance(req)
        ch = self._character(req)
        s = ch.session
        if op == "idle":
            ch.listen = req["on"]
            if not ch.listen and ch.idle:
                s.interrupt()  # stop listening now (an idle utterance ends within a chunk)
            self._work.set()
            return {"idle": ch.listen}
        if op == "interrupt":
            s.interrupt()
            return {"utterance": s.utterance if ch.speaking else None}
        if op == "set_steps":
            s.steps = req["steps"]
            return {"steps": s.steps}
        if op == "set_outputs":
            s.set_outputs(video=req.get("video"), rig=req.get("rig"))
            return s.outputs
        if op == "state":
            return {"utterance": s.utterance, "speaking": ch.speaking, "idle": ch.listen, "idling": ch.idle, "next_seq": ch.seq if ch.current is not None else 0,
                    "clock": s.clock,
                    "width": s.size, "height": s.size, "fps": s.fps, "sample_rate": s.sample_rate, "steps": s.steps,
                    **s.outputs, "has_rig": s.has_rig}
        raise ProtocolError(f"unknown op {op!r}")  # decode_request lets only known ops through

    def _set_character(self, req: dict) -> dict:
        """set_character, on the preparation thread: decode the image, make or update the character."""
        image = None
        if "image" in req:
            image = _decode_image(req["image"], req.get("width"), req.get("height"))
        cid = req["character"]
        if cid in self.characters:
            ch = self.characters[cid]
            if image is None and "face_seed" in req:
                image = default_character(ch.session.size, req["face_seed"])
            if image is not None:
                ch.session.set_character(image)
            if "voice" in req:
                ch.session.set_voice(req["voice"])
        else:
            ch = self._add_character(cid, image, req.get("face_seed"), req.get("voice"))
        return {"character": cid, "width": ch.session.size, "height": ch.session.size}

    def _busy(self) -> ValueError:
        return ValueError(f"the server is busy: {self.cfg.prepare_queue} requests are waiting to be prepared; "
                          "try again shortly")

    def _defer(self, cid: str, fn) -> _Deferred:
        with self._deferred_lock:
            self._deferred[cid] += 1
        return _Deferred(fn, cid)

    def _start_utterance(self, req: dict, on_preparer: bool = False) -> dict:
        """say/drive: the checks and the utterance id now, the slow preparation on the preparation thread (at once
        when this already runs there)."""
        ch = self._character(req)
        s = ch.session
        if not on_preparer and self._prepare.full():
            raise self._busy()
        if req["op"] == "say":
            pending = ch.submit(lambda: s.reserve_say(req["text"], req.get("voice"), req.get("steps")))
        else:
            if len(req["pcm"]) % 4:
                raise ProtocolError("drive: pcm must be float32 little-endian samples (a multiple of 4 bytes)")
            pcm = np.frombuffer(req["pcm"], "<f4").astype(np.float32)
            pending = ch.submit(lambda: s.reserve_drive(pcm, req["sample_rate"], req.get("steps")))
        if on_preparer:
            pending.prepare()
        else:  # only the control thread adds to the queue, and it checked for room above
            self._prepare.put_nowait(pending)
        self._work.set()
        return {"utterance": pending.uid}

    def _reply_to(self, payload: bytes | None) -> bytes | _Deferred:
        """A request → its encoded reply, or a _Deferred the preparation thread will answer."""
        self._count("requests")
        rid = None
        try:
            if payload is None:
                raise ProtocolError("a request is one message frame (after the empty delimiter for REQ sockets); "
                                    "this message had several: send one msgpack map per request")
            req = decode_request(payload)
            rid = req.get("id")
            out = self.handle(req)
            if isinstance(out, _Deferred):
                out.rid = rid
                return out
            return encode_reply(rid, **out)
        except Exception as exc:  # never let one request stop the server
            return self._error_reply(rid, exc)

    def _error_reply(self, rid, exc: Exception) -> bytes:
        self._count("errors")
        if isinstance(exc, (ValueError, UserFacingError)):  # ProtocolError is a ValueError
            if isinstance(exc, ProtocolError) and rid is None:
                rid = exc.request_id
            return encode_reply(rid, "error", str(exc))
        log.error("request failed", exc_info=exc)
        return encode_reply(rid, "error", f"internal error: {type(exc).__name__}: {exc}")

    def _preparer(self) -> None:
        """The preparation thread: eSpeak timing and resampling of utterances, and the deferred requests, in the
        order they came; deferred replies go back to the control loop over an inproc socket."""
        push = self._ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 0)
        push.connect(self._replies_address)
        try:
            while True:
                item = self._prepare.get()
                if item is None:
                    return
                if isinstance(item, PendingUtterance):
                    item.prepare()
                    self._work.set()
                    continue
                try:
                    reply = encode_reply(item.rid, **item.fn())
                except Exception as exc:  # noqa: BLE001 — every deferred request gets a reply
                    reply = self._error_reply(item.rid, exc)
                finally:
                    with self._deferred_lock:
                        self._deferred[item.cid] -= 1
                        if self._deferred[item.cid] <= 0:
                            del self._deferred[item.cid]
                self._work.set()
                push.send_multipart([*item.envelope, reply])
        finally:
            push.close(0)

    # --- threads -------------------------------------------------------------------------------
    def _publisher(self, pub: zmq.Socket) -> None:
        while True:
            parts = self._out.get()
            if parts is None:
                return
            try:
                pub.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
                self._count("published")
            except zmq.Again:
                self._count("dropped")
            except zmq.ZMQError:
                return  # socket closed on shutdown

    def _engine(self) -> None:
        """Round robin over the speaking characters, one chunk each, until stop(); then end what is running."""
        try:
            while not self._stop.is_set():
                self._work.clear()
                busy = False
                for ch in list(self.characters.values()):
                    busy |= ch.step(self._enqueue)
                if not busy:
                    self._work.wait(0.1)
            for ch in list(self.characters.values()):
                ch.finish(self._enqueue)
        finally:
            self._engine_done.set()

    def _control(self) -> None:
        """Bind both sockets, start the publisher, answer requests until stop(); then shut the sockets down."""
        router = pub = None
        try:
            router = self._ctx.socket(zmq.ROUTER)
            if self._curve is not None:
                self._curve.secure(router)
            router.setsockopt(zmq.LINGER, 0)
            router.setsockopt(zmq.MAXMSGSIZE, MAX_SOCKET_MESSAGE_BYTES)
            router.bind(self.cfg.bind)
            self.control_address = router.getsockopt_string(zmq.LAST_ENDPOINT)
            pub = self._ctx.socket(zmq.PUB)
            if self._curve is not None:
                self._curve.secure(pub)
            pub.setsockopt(zmq.LINGER, 0)
            pub.setsockopt(zmq.SNDHWM, self.cfg.send_hwm)
            pub.bind(_stream_address(self.cfg, self.control_address))
            self.stream_address = pub.getsockopt_string(zmq.LAST_ENDPOINT)
        except (zmq.ZMQError, ValueError) as exc:
            self._failed = exc
            self._stop.set()
            self._ready.set()
            for sock in (router, pub):
                if sock is not None:
                    sock.close(0)
            return
        replies = self._ctx.socket(zmq.PULL)  # deferred replies from the preparation thread
        replies.setsockopt(zmq.LINGER, 0)
        replies.bind(self._replies_address)
        publisher = threading.Thread(target=self._publisher, args=(pub,), name="mf-publisher", daemon=True)
        publisher.start()
        preparer = threading.Thread(target=self._preparer, name="mf-prepare", daemon=True)
        preparer.start()
        self._ready.set()
        log.info("serving control on %s, stream on %s", self.control_address, self.stream_address)
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(replies, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                events = dict(poller.poll(100))
                if replies in events:
                    self._forward_replies(replies, router)
                if router not in events:
                    continue
                frames = router.recv_multipart()
                if len(frames) < 2:
                    continue
                envelope, body = _split_envelope(frames)
                reply = self._reply_to(body)
                if isinstance(reply, _Deferred):
                    reply.envelope = envelope
                    try:
                        self._prepare.put_nowait(reply)
                        continue
                    except queue.Full:
                        with self._deferred_lock:
                            self._deferred[reply.cid] -= 1
                        reply = self._error_reply(reply.rid, self._busy())
                try:
                    router.send_multipart([*envelope, reply], flags=zmq.NOBLOCK)
                except zmq.ZMQError:
                    pass  # the client vanished
        finally:
            try:
                self._prepare.put(None, timeout=30)  # after what is queued: deferred requests still get replies
            except queue.Full:
                log.warning("preparation queue full at shutdown")
            preparer.join(timeout=30)
            self._forward_replies(replies, router)
            replies.close(0)
            router.close(0)
            self._engine_done.wait(30)  # the engine publishes the running utterances' ends first
            try:  # the stop marker goes behind the last chunks, so they are sent
                self._out.put(None, timeout=5)
            except queue.Full:  # the publisher is gone: nothing more can be sent
                while not self._out.empty():
                    self._out.get_nowait()
                self._out.put(None)
            publisher.join(timeout=5)
            pub.close(linger=500)  # let the last chunks (utterance ends) leave

    @staticmethod
    def _forward_replies(replies: zmq.Socket, router: zmq.Socket) -> None:
        while True:
            try:
                frames = replies.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                router.send_multipart(frames, flags=zmq.NOBLOCK)
            except zmq.ZMQError:
                pass  # the client vanished

    def _start_control(self) -> None:
        t = threading.Thread(target=self._control, name="mf-control", daemon=True)
        t.start()
        self._threads.append(t)
        self._ready.wait(30)
        if self._failed is not None:
            if self._curve is not None:
                self._curve.stop()
                self._curve = None
            self._ctx.term()
            raise UserFacingError(f"cannot bind {self.cfg.bind}: {self._failed}")

    def serve_forever(self, on_ready=None) -> None:
        """Serve until stop(): the engine runs in this thread (see the module doc), control in the background.

        on_ready: called once the sockets are bound (e.g. to print the addresses)."""
        self._start_control()
        if on_ready is not None:
            on_ready(self)
        try:
            self._engine()
        finally:
            self.close()

    def start(self) -> "Server":
        """Serve in background threads; returns once the sockets are bound. Stop with close()."""
        self._start_control()
        t = threading.Thread(target=self._engine, name="mf-engine", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self) -> None:
        """Ask the control loop to end (safe from signal handlers and other threads); close() waits for it."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until stop() was called (or ``timeout`` passes); True when stopping."""
        return self._stop.wait(timeout)

    def close(self) -> None:
        """Stop and wait for the threads; safe to call more than once."""
        self._stop.set()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=30)
        self._threads.clear()
        if self._curve is not None:
            self._curve.stop()
            self._curve = None
        if not self._ctx.closed:
            self._ctx.term()

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def _split_envelope(frames: list[bytes]) -> tuple[list[bytes], bytes | None]:
    """ROUTER frames → (reply envelope, request body). A DEALER sends one frame, a REQ socket an empty delimiter
    and one frame; anything else has no single request in it (body None: answered with an error)."""
    if len(frames) == 2:
        return frames[:1], frames[1]
    if len(frames) == 3 and frames[1] == b"":
        return frames[:2], frames[2]
    return frames[:1], None


def _decode_image(data: bytes, width: int | None, height: int | None) -> np.ndarray:
    """Raw RGB bytes (with width and height) or an encoded image file (PNG, JPEG, …)."""
    if width is not None or height is not None:
        if width is None or height is None:
            raise ProtocolError("set_character: raw RGB images need both width and height")
        for name, value in (("width", width), ("height", height)):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 8192:
                raise ProtocolError(f"set_character: {name} must be a whole number of pixels from 1 to 8192, got {value!r}")
        if len(data) != width * height * 3:
            raise ProtocolError(f"set_character: {len(data)} bytes is not {width}×{height}×3 RGB")
        return np.frombuffer(data, np.uint8).reshape(height, width, 3)
    from mfruntime.runtime.character import decode_image_bytes

    try:
        return decode_image_bytes(data, "set_character: image")
    except ValueError as exc:
        hint = " (raw RGB needs width and height)" if "not a readable" in str(exc) else ""
        raise ProtocolError(f"{exc}{hint}") from exc
