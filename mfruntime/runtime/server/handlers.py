"""Requests: one handler per op of the protocol's table (``protocol.OPS``), each a checked request → reply fields.

Nothing slow runs here (the control thread calls it): ``say``/``drive`` take their utterance id and leave the
eSpeak timing or resampling to the preparation thread; ``set_character`` (image decoding, a new Session) is
*deferred* — answered by the preparation thread when done — and later requests for a character that is still
being set up wait behind it, in order (:class:`Deferrals`).
"""
from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from dataclasses import asdict
from typing import Callable

import numpy as np

from mfruntime import __version__
from mfruntime.rig import CONTROLS, RIG_VERSION
from mfruntime.runtime.character import decode_image_bytes, decode_raw_rgb, default_character
from mfruntime.config import DEFAULT_RENDERER
from mfruntime.runtime.protocol import OPS, PROTOCOL_VERSION, ProtocolError
from mfruntime.runtime.server.config import ServeConfig
from mfruntime.runtime.server.scheduler import Character, Scheduler


class Deferred:
    """A request answered by the preparation thread: ``fn()`` gives the reply fields (or raises)."""

    def __init__(self, fn: Callable[[], dict], cid: str) -> None:
        self.fn, self.cid = fn, cid
        self.envelope: list[bytes] = []
        self.rid = None


class Deferrals:
    """How many requests of each character wait on the preparation thread (its later requests keep their order)."""

    def __init__(self) -> None:
        self._waiting: Counter = Counter()
        self.lock = threading.Lock()

    def add(self, cid: str, fn: Callable[[], dict]) -> Deferred:
        with self.lock:
            self._waiting[cid] += 1
        return Deferred(fn, cid)

    def done(self, cid: str) -> None:
        with self.lock:
            self._waiting[cid] -= 1
            if self._waiting[cid] <= 0:
                del self._waiting[cid]

    def waiting(self, cid: str) -> int:
        """Requests of ``cid`` still on the preparation thread; call with ``lock`` held to act on the answer."""
        return self._waiting[cid]

    def creating(self, known) -> int:
        """Characters being made (deferred, not yet in ``known``); call with ``lock`` held."""
        return sum(1 for c, n in self._waiting.items() if n and c not in known)


class Handlers:
    """The ops of protocol version 3. ``handle(req)`` → reply fields, or a :class:`Deferred`."""

    def __init__(self, cfg: ServeConfig, scheduler: Scheduler, prepare: queue.Queue, info: Callable[[], dict]) -> None:
        """prepare: the preparation thread's queue; info: the server's {"stream": address, "counters": {...},
        "started": time.time()} when asked."""
        self.cfg, self.scheduler, self.prepare, self.info = cfg, scheduler, prepare, info
        self.deferrals = Deferrals()
        self.table: dict[str, Callable[[dict], dict | Deferred]] = {
            "ping": self.ping, "say": self.utterance, "drive": self.utterance, "idle": self.idle,
            "interrupt": self.interrupt, "set_character": self.set_character, "set_steps": self.set_steps,
            "set_outputs": self.set_outputs, "stats": self.stats, "state": self.state,
        }
        assert set(self.table) == set(OPS), "every op of the protocol has one handler"

    def handle(self, req: dict) -> dict | Deferred:
        """One checked request (protocol.decode_request) → reply fields; ValueError/UserFacingError → error reply."""
        return self.table[req["op"]](req)

    def busy(self) -> ValueError:
        return ValueError(f"the server is busy: {self.cfg.prepare_queue} requests are waiting to be prepared; "
                          "try again shortly")

    # --- ops -------------------------------------------------------------------------------------
    def ping(self, req: dict) -> dict:
        return {"server": f"mfruntime {__version__}", "protocol": PROTOCOL_VERSION,
                "characters": list(self.scheduler.characters), "stream": self.info()["stream"],
                "rig": {"version": RIG_VERSION, "controls": list(CONTROLS)}}

    def set_character(self, req: dict) -> Deferred:
        if ("image" in req) == ("face_seed" in req):
            raise ProtocolError("set_character needs exactly one of 'image' (a picture) or 'face_seed' "
                                "(a built-in face)" + (", not both" if "image" in req else ""))
        cid = req["character"]
        known = self.scheduler.characters
        with self.deferrals.lock:
            if cid not in known and not self.deferrals.waiting(cid):
                self.scheduler.check_room(self.deferrals.creating(known))
        return self.deferrals.add(cid, lambda: self._set_character(req))

    def _set_character(self, req: dict) -> dict:
        """set_character, on the preparation thread: decode the image, make or update the character, draw it
        with the renderer asked for (default "auto", as Session.set_character chooses)."""
        image = None
        if "image" in req:
            image = decode_image(req["image"], req.get("width"), req.get("height"))
        elif "renderer" in req or "size" in req:
            raise ProtocolError("set_character: 'renderer' and 'size' go with an 'image' (a built-in face is the "
                                "model's own)")
        look = {"renderer": req.get("renderer", DEFAULT_RENDERER), "size": req.get("size")}
        cid = req["character"]
        if cid in self.scheduler.characters:
            ch = self.scheduler.characters[cid]
            if image is None and "face_seed" in req:
                image = default_character(ch.session.size, req["face_seed"])
            if "voice" in req:
                ch.session.check_voice(req["voice"])  # a refused request changes nothing: the voice is checked first
            if image is not None:
                ch.session.set_character(image, **look)
            if "voice" in req:
                ch.session.set_voice(req["voice"])
        else:
            ch = self.scheduler.add(cid, image, req.get("face_seed"), req.get("voice"), **look)
        h, w = ch.session.frame_size
        return {"character": cid, "width": w, "height": h, "renderer": ch.session.renderer}

    def stats(self, req: dict) -> dict:
        chars = [self.scheduler.get(req["character"])] if "character" in req else list(self.scheduler.characters.values())
        per = {}
        for ch in chars:
            st = asdict(ch.session.stats())
            st.pop("chunk_ms")
            st["steps_used"] = {str(k): v for k, v in st["steps_used"].items()}  # msgpack map keys are strings
            p = ch.pacing
            st.update(margin_ms=None if p.margin is None else round(1000 * p.margin, 1), chunks_late=p.late,
                      chunks_sent=p.sent, steps_now=p.steps or ch.session.steps)
            per[ch.cid] = st
        info = self.info()
        batches = {str(k): v for k, v in sorted(self.scheduler.batches.items())}  # rows → batches run
        return {"server": {**info["counters"], "uptime_s": round(time.time() - info["started"], 3),
                           "batched": self.scheduler.batch, "batches": batches}, "characters": per}

    def utterance(self, req: dict) -> dict | Deferred:
        """say / drive."""
        cid = req["character"]
        with self.deferrals.lock:
            behind = self.deferrals.waiting(cid) > 0
        if behind:  # the character is still being set up: keep the order of its requests
            return self.deferrals.add(cid, lambda: self.start_utterance(req, on_preparer=True))
        return self.start_utterance(req)

    def start_utterance(self, req: dict, on_preparer: bool = False) -> dict:
        """say/drive: the checks and the utterance id now, the slow preparation on the preparation thread (at once
        when this already runs there)."""
        ch = self.scheduler.get(req["character"])
        s = ch.session
        if not on_preparer and self.prepare.full():
            raise self.busy()
        self.scheduler.admit(ch.cid)  # busy when it could not be kept in real time (deadlines.py)
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
            self.prepare.put_nowait(pending)
        self.scheduler.work.set()
        return {"utterance": pending.uid}

    def _character(self, req: dict) -> Character:
        return self.scheduler.get(req["character"])

    def idle(self, req: dict) -> dict:
        ch = self._character(req)
        ch.listen = req["on"]
        if not ch.listen and ch.idle:
            ch.session.interrupt()  # stop listening now (an idle utterance ends within a chunk)
        self.scheduler.work.set()
        return {"idle": ch.listen}

    def interrupt(self, req: dict) -> dict:
        ch = self._character(req)
        ch.session.interrupt()
        return {"utterance": ch.session.utterance if ch.speaking else None}

    def set_steps(self, req: dict) -> dict:
        s = self._character(req).session
        s.steps = req["steps"]
        if "min_steps" in req:
            s.min_steps = req["min_steps"]
        return {"steps": s.steps, "min_steps": s.min_steps}

    def set_outputs(self, req: dict) -> dict:
        s = self._character(req).session
        s.set_outputs(video=req.get("video"), rig=req.get("rig"))
        return s.outputs

    def state(self, req: dict) -> dict:
        ch = self._character(req)
        s = ch.session
        h, w = s.frame_size
        return {"utterance": s.utterance, "speaking": ch.speaking, "idle": ch.listen, "idling": ch.idle,
                "next_seq": ch.seq if ch.current is not None else 0, "clock": s.clock, "width": w, "height": h,
                "fps": s.fps, "sample_rate": s.sample_rate, "steps": s.steps, **s.outputs, "has_rig": s.has_rig}


def decode_image(data: bytes, width: int | None, height: int | None) -> np.ndarray:
    """set_character's image: raw RGB bytes (with width and height) or an encoded image file (PNG, JPEG, …)."""
    try:
        if width is not None or height is not None:
            if width is None or height is None:
                raise ProtocolError("set_character: raw RGB images need both width and height")
            return decode_raw_rgb(data, width, height, "set_character: image")
        return decode_image_bytes(data, "set_character: image")
    except ProtocolError:
        raise
    except ValueError as exc:
        hint = " (raw RGB needs width and height)" if "not a readable" in str(exc) else ""
        raise ProtocolError(f"{exc}{hint}") from exc
