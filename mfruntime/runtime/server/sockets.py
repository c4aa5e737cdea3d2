"""``mf serve``'s sockets and threads: the :class:`Server`.

Threads: the control loop owns the ROUTER socket and answers requests at once through the op handlers
(handlers.py); nothing slow runs on it. The preparation thread makes eSpeak NG's phoneme timing, resamples
driving audio and answers deferred requests (``set_character``). The engine runs the scheduler (scheduler.py)
and hands chunks to the publisher thread, which owns the PUB socket. ZeroMQ sockets are used by one thread
each. ``serve_forever`` runs the engine in the calling thread: on CPU, PyTorch's OpenMP pool is much faster in
the thread that first used it (measured here: 60 ms per chunk there, 100 ms in another thread), so
``mf serve`` generates on its main thread; ``start`` runs everything in background threads (for tests and
embedding).

A slow or dead subscriber never stalls generation: PUB drops messages for a subscriber whose queue (send
high-water mark) is full, silently — receivers see the gap in ``seq``. The server additionally drops (and
counts) chunks when its own publish queue is full.
"""
from __future__ import annotations

import logging
import queue
import threading
import time

import zmq

from mfruntime.errors import UserFacingError
from mfruntime.runtime.protocol import (MAX_SOCKET_MESSAGE_BYTES, ProtocolError, decode_request, encode_chunk,
                                        encode_reply)
from mfruntime.runtime.security import CurveServer
from mfruntime.runtime.server.config import ServeConfig, stream_address
from mfruntime.runtime.server.handlers import Deferred, Handlers
from mfruntime.runtime.server.scheduler import Scheduler
from mfruntime.runtime.session import Chunk, PendingUtterance, Session

log = logging.getLogger(__name__)


class Server:
    """Run with :meth:`serve_forever` (blocks) or :meth:`start` (background thread) and :meth:`close`."""

    def __init__(self, cfg: ServeConfig = ServeConfig()) -> None:
        self.cfg = cfg
        self.counters = {"requests": 0, "errors": 0, "published": 0, "dropped": 0}
        self._count_lock = threading.Lock()
        self._out: queue.Queue = queue.Queue(maxsize=cfg.publish_queue)
        self._stop = threading.Event()
        self._engine_done = threading.Event()
        self._ready = threading.Event()
        self._prepare: queue.Queue = queue.Queue(maxsize=cfg.prepare_queue)  # PendingUtterance | Deferred | None
        self.scheduler = Scheduler(self._new_session, cfg.max_characters, admission=cfg.admission,
                                   batch=cfg.batch)
        self.handlers = Handlers(cfg, self.scheduler, self._prepare, self._info)
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
            self.scheduler.add(cid)

    def _new_session(self) -> Session:
        cfg = self.cfg
        s = Session(cfg.model, cfg.device, cfg.steps, cfg.backend, seed=cfg.seed, threads=cfg.threads)
        if cfg.min_steps is not None:
            s.min_steps = cfg.min_steps
        return s

    @property
    def characters(self):
        """Character id → :class:`~mfruntime.runtime.server.scheduler.Character`."""
        return self.scheduler.characters

    def local_client_keys(self) -> tuple[str, str] | None:
        """(server key file, client secret key file) for a client inside this process when the sockets use CURVE
        (``mf serve --web``), else None."""
        return None if self._curve is None else self._curve.local_client()

    def _info(self) -> dict:
        return {"stream": self.stream_address, "counters": dict(self.counters), "started": self.started}

    def _enqueue(self, cid: str, chunk: Chunk) -> None:
        h, w = self.characters[cid].session.frame_size if cid in self.characters else (0, 0)
        parts = encode_chunk(cid, chunk.utterance, chunk.seq, chunk.pts, chunk.frames, chunk.pcm, chunk.fps,
                             chunk.sample_rate, chunk.last, chunk.interrupted, rig=chunk.rig, size=(w, h),
                             steps=chunk.steps)
        try:
            self._out.put_nowait(parts)
        except queue.Full:
            self._count("dropped")

    def _count(self, name: str) -> None:
        with self._count_lock:
            self.counters[name] += 1

    def _reply_to(self, payload: bytes | None) -> bytes | Deferred:
        """A request → its encoded reply, or a _Deferred the preparation thread will answer."""
        self._count("requests")
        rid = None
        try:
            if payload is None:
                raise ProtocolError("a request is one message frame (after the empty delimiter for REQ sockets); "
                                    "this message had several: send one msgpack map per request")
            req = decode_request(payload)
            rid = req.get("id")
            out = self.handlers.handle(req)
            if isinstance(out, Deferred):
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
                    self.scheduler.work.set()
                    continue
                try:
                    reply = encode_reply(item.rid, **item.fn())
                except Exception as exc:  # noqa: BLE001 — every deferred request gets a reply
                    reply = self._error_reply(item.rid, exc)
                finally:
                    self.handlers.deferrals.done(item.cid)
                self.scheduler.work.set()
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
        """The scheduler's engine loop until stop(); then it ends what is running."""
        try:
            self.scheduler.run(self._stop, self._enqueue)
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
            pub.bind(stream_address(self.cfg, self.control_address))
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
                envelope, body = split_envelope(frames)
                reply = self._reply_to(body)
                if isinstance(reply, Deferred):
                    reply.envelope = envelope
                    try:
                        self._prepare.put_nowait(reply)
                        continue
                    except queue.Full:
                        self.handlers.deferrals.done(reply.cid)
                        reply = self._error_reply(reply.rid, self.handlers.busy())
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


def split_envelope(frames: list[bytes]) -> tuple[list[bytes], bytes | None]:
    """ROUTER frames → (reply envelope, request body). A DEALER sends one frame, a REQ socket an empty delimiter
    and one frame; anything else has no single request in it (body None: answered with an error)."""
    if len(frames) == 2:
        return frames[:1], frames[1]
    if len(frames) == 3 and frames[1] == b"":
        return frames[:2], frames[2]
    return frames[:1], None
