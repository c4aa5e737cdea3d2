"""``mf serve``: characters over ZeroMQ — a ROUTER control socket and a PUB stream socket.

Threads: the control loop owns the ROUTER socket and answers every request at once (generation is never
done on it); one worker per character iterates its Session and hands each chunk to the publisher; the
publisher thread owns the PUB socket. ZeroMQ sockets are used by one thread each.

A slow or dead subscriber never stalls generation: PUB drops messages for a subscriber whose queue (send
high-water mark) is full, silently — receivers see the gap in ``seq``. The server additionally drops (and
counts) chunks when its own publish queue is full.
"""
from __future__ import annotations

import io
import logging
import queue
import threading
import time
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

import numpy as np
import zmq

from mfruntime import __version__
from mfruntime.errors import UserFacingError
from mfruntime.runtime.character import default_character, prepare_image
from mfruntime.runtime.protocol import (MAX_SOCKET_MESSAGE_BYTES, PROTOCOL_VERSION, ProtocolError, decode_request,
                                        encode_chunk, encode_reply)
from mfruntime.runtime.session import Chunk, Session

log = logging.getLogger(__name__)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


@dataclass(frozen=True)
class ServeConfig:
    bind: str = "tcp://127.0.0.1:5555"  # control socket (ROUTER); "tcp://127.0.0.1:*" picks a free port
    stream: str | None = None  # PUB socket; default: the control port + 1 (or a free port with ":*")
    model: str = "tiny"
    device: str = "auto"
    backend: str = "auto"
    steps: int = 4
    characters: tuple[str, ...] = ("default",)  # made at start with the built-in face
    max_characters: int = 16
    send_hwm: int = 64  # PUB high-water mark: messages queued per subscriber before ZeroMQ drops for it
    publish_queue: int = 256  # chunks waiting for the publisher thread before the server drops
    allow_remote: bool = False  # binding beyond loopback must be asked for
    seed: int = 0

    def __post_init__(self) -> None:
        for addr in (self.bind, self.stream):
            if addr is None:
                continue
            if "://" not in addr:
                raise ValueError(f"address must look like tcp://127.0.0.1:5555 or ipc:///tmp/mf.sock, got {addr!r}")
            u = urlsplit(addr)
            if u.scheme == "tcp" and u.hostname not in (h.strip("[]") for h in LOOPBACK_HOSTS) and not self.allow_remote:
                raise ValueError(f"{addr} is reachable from other machines; pass --allow-remote to do that on purpose "
                                 "(the protocol has no authentication yet)")
        if self.max_characters < 1 or self.send_hwm < 1 or self.publish_queue < 1:
            raise ValueError("max_characters, send_hwm and publish_queue must be at least 1")


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


class Character:
    """One character: its Session and the worker thread that runs its utterances."""

    def __init__(self, cid: str, session: Session, publish) -> None:
        self.cid, self.session, self._publish = cid, session, publish
        self.jobs: queue.Queue = queue.Queue()
        self.speaking = False
        self.seq = 0  # next chunk of the current utterance
        self.thread = threading.Thread(target=self._work, name=f"mf-character-{cid}", daemon=True)
        self.thread.start()

    def submit(self, chunks) -> int:
        """Queue an utterance (an iterator from Session.say/drive, already validated); returns its id."""
        uid = self.session.utterance
        self.jobs.put((uid, chunks))
        return uid

    def _work(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            uid, chunks = job
            self.speaking, self.seq, ended = True, 0, False
            try:
                for chunk in chunks:
                    self._publish(self.cid, chunk)
                    self.seq, ended = chunk.seq + 1, chunk.last
            except Exception:  # a failing utterance must not take the character down
                log.exception("character %s: utterance %d failed", self.cid, uid)
            if not ended:  # superseded by a newer utterance, or failed: still close it for receivers
                s = self.session
                self._publish(self.cid, Chunk(utterance=uid, seq=self.seq, pts=s.clock,
                                              frames=np.zeros((0, s.size, s.size, 3), np.uint8),
                                              pcm=np.zeros(0, np.float32), sample_rate=s.sample_rate, fps=s.fps,
                                              last=True, interrupted=True))
            self.speaking = self.jobs.qsize() > 0

    def stop(self) -> None:
        self.session.interrupt()
        self.jobs.put(None)


class Server:
    """Run with :meth:`serve_forever` (blocks) or :meth:`start` (background thread) and :meth:`close`."""

    def __init__(self, cfg: ServeConfig = ServeConfig()) -> None:
        self.cfg = cfg
        self.characters: dict[str, Character] = {}
        self.counters = {"requests": 0, "errors": 0, "published": 0, "dropped": 0}
        self._count_lock = threading.Lock()
        self._out: queue.Queue = queue.Queue(maxsize=cfg.publish_queue)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._ctx = zmq.Context()
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
        session = Session(self.cfg.model, self.cfg.device, self.cfg.steps, self.cfg.backend, seed=self.cfg.seed)
        if image is None and face_seed is not None:
            image = default_character(session.size, face_seed)
        if image is not None:
            session.set_character(image)
        if voice is not None:
            session.set_voice(voice)
        ch = Character(cid, session, self._enqueue)
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
        parts = encode_chunk(cid, chunk.utterance, chunk.seq, chunk.pts, chunk.frames, chunk.pcm, chunk.fps,
                             chunk.sample_rate, chunk.last, chunk.interrupted)
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
                    "characters": list(self.characters), "stream": self.stream_address}
        if op == "set_character":
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
        if op == "stats":
            chars = [self._character(req)] if "character" in req else list(self.characters.values())
            per = {}
            for ch in chars:
                st = asdict(ch.session.stats())
                st.pop("chunk_ms")
                per[ch.cid] = st
            return {"server": {**self.counters, "uptime_s": round(time.time() - self.started, 3)}, "characters": per}
        ch = self._character(req)
        s = ch.session
        if op == "say":
            return {"utterance": ch.submit(s.say(req["text"], req.get("voice"), req.get("steps")))}
        if op == "drive":
            if len(req["pcm"]) % 4:
                raise ProtocolError("drive: pcm must be float32 little-endian samples (a multiple of 4 bytes)")
            pcm = np.frombuffer(req["pcm"], "<f4").astype(np.float32)
            return {"utterance": ch.submit(s.drive(pcm, req["sample_rate"], req.get("steps")))}
        if op == "interrupt":
            s.interrupt()
            return {"utterance": s.utterance if ch.speaking else None}
        if op == "set_steps":
            s.steps = req["steps"]
            return {"steps": s.steps}
        if op == "state":
            return {"utterance": s.utterance, "speaking": ch.speaking, "next_seq": ch.seq, "clock": s.clock,
                    "width": s.size, "height": s.size, "fps": s.fps, "sample_rate": s.sample_rate, "steps": s.steps}
        raise ProtocolError(f"unknown op {op!r}")  # decode_request lets only known ops through

    def _reply_to(self, payload: bytes) -> bytes:
        self._count("requests")
        rid = None
        try:
            req = decode_request(payload)
            rid = req.get("id")
            return encode_reply(rid, **self.handle(req))
        except (ProtocolError, ValueError, UserFacingError) as exc:
            self._count("errors")
            if isinstance(exc, ProtocolError) and rid is None:
                rid = exc.request_id
            return encode_reply(rid, "error", str(exc))
        except Exception as exc:  # never let one request stop the server
            self._count("errors")
            log.exception("request failed")
            return encode_reply(rid, "error", f"internal error: {type(exc).__name__}: {exc}")

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

    def serve_forever(self) -> None:
        router = pub = None
        try:
            router = self._ctx.socket(zmq.ROUTER)
            router.setsockopt(zmq.LINGER, 0)
            router.setsockopt(zmq.MAXMSGSIZE, MAX_SOCKET_MESSAGE_BYTES)
            router.bind(self.cfg.bind)
            self.control_address = router.getsockopt_string(zmq.LAST_ENDPOINT)
            pub = self._ctx.socket(zmq.PUB)
            pub.setsockopt(zmq.LINGER, 0)
            pub.setsockopt(zmq.SNDHWM, self.cfg.send_hwm)
            pub.bind(_stream_address(self.cfg, self.control_address))
            self.stream_address = pub.getsockopt_string(zmq.LAST_ENDPOINT)
        except (zmq.ZMQError, ValueError) as exc:
            self._failed = exc
            self._ready.set()
            for s in (router, pub):
                if s is not None:
                    s.close(0)
            raise UserFacingError(f"cannot bind {self.cfg.bind}: {exc}") from exc
        publisher = threading.Thread(target=self._publisher, args=(pub,), name="mf-publisher", daemon=True)
        publisher.start()
        self._ready.set()
        log.info("serving control on %s, stream on %s", self.control_address, self.stream_address)
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                if not poller.poll(100):
                    continue
                frames = router.recv_multipart()
                if len(frames) < 2:
                    continue
                reply = self._reply_to(frames[-1])
                try:
                    router.send_multipart([*frames[:-1], reply], flags=zmq.NOBLOCK)
                except zmq.ZMQError:
                    pass  # the client vanished
        finally:
            for ch in self.characters.values():
                ch.stop()
            for ch in self.characters.values():
                ch.thread.join(timeout=5)
            try:  # behind the last chunks (the interrupted utterances' ends), so they go out first
                self._out.put(None, timeout=5)
            except queue.Full:  # the publisher is gone: nothing more can be sent
                while not self._out.empty():
                    self._out.get_nowait()
                self._out.put(None)
            publisher.join(timeout=5)
            router.close(0)
            pub.close(linger=500)  # let the last chunks (utterance ends) leave

    def start(self) -> "Server":
        """Serve in a background thread; returns once the sockets are bound."""
        t = threading.Thread(target=self._run_quietly, name="mf-control", daemon=True)
        t.start()
        self._threads.append(t)
        self._ready.wait(30)
        if self._failed is not None:
            for ch in self.characters.values():
                ch.stop()
            self._ctx.term()
            raise UserFacingError(f"cannot bind {self.cfg.bind}: {self._failed}")
        return self

    def _run_quietly(self) -> None:
        try:
            self.serve_forever()
        except UserFacingError:
            pass  # reported by start()

    def stop(self) -> None:
        """Ask the control loop to end (safe from signal handlers and other threads); close() waits for it."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until stop() was called (or ``timeout`` passes); True when stopping."""
        return self._stop.wait(timeout)

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)
        self._ctx.term()

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def _decode_image(data: bytes, width: int | None, height: int | None) -> np.ndarray:
    """Raw RGB bytes (with width and height) or an encoded image file (PNG, JPEG, …)."""
    if width is not None or height is not None:
        if width is None or height is None or width < 1 or height < 1:
            raise ProtocolError("set_character: raw RGB images need both width and height")
        if len(data) != width * height * 3:
            raise ProtocolError(f"set_character: {len(data)} bytes is not {width}×{height}×3 RGB")
        return np.frombuffer(data, np.uint8).reshape(height, width, 3)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > 64_000_000:
                raise ProtocolError(f"set_character: image is {im.width}×{im.height}, too large")
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise ProtocolError(f"set_character: image bytes are neither raw RGB (give width and height) "
                            f"nor a readable image file ({exc})") from exc
