"""One browser connection: its RTCPeerConnection, its character's tracks and its ``control`` data channel.

Data channel messages are JSON objects (docs/WEB.md):

* page → server: ``{"id": 1, "op": "say", "text": "…"}``, ``{"id": 2, "op": "interrupt"}``,
  ``{"id": 3, "op": "set_character", "face_seed": 7}`` — each answered ``{"id": …, "status": "ok", …}`` (the
  server's reply fields) or ``{"id": …, "status": "error", "error": "…"}``;
* server → page: ``{"event": "started" | "ended", "utterance": n, "interrupted": bool}`` when the line's audio
  starts and ends in this connection's playout.

``interrupt`` cuts this connection's playout at once (silence and a still face within 20 ms), then asks the
server to stop generating.
"""
from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field

from aiortc import RTCPeerConnection, RTCSessionDescription

from mfruntime.runtime.web.playout import Playout
from mfruntime.runtime.web.tracks import Pacer, PlayoutAudioTrack, PlayoutVideoTrack

log = logging.getLogger(__name__)

MAX_MESSAGE = 8192  # bytes of one data channel message
OPS = ("say", "interrupt", "set_character")


@dataclass(eq=False)
class Peer:
    character: str
    playout: Playout
    channel: object | None = None
    tasks: list = field(default_factory=list)


async def open_peer(web, character: str, state: dict, sdp: str):
    """A connection for ``character`` answering the browser's offer: (pc, answer)."""
    pc = RTCPeerConnection()
    peer = Peer(character, Playout(sample_rate=state["sample_rate"], fps=state["fps"]))
    pc.peer = peer  # type: ignore[attr-defined]
    pacer = Pacer()
    pc.addTrack(PlayoutAudioTrack(peer.playout, pacer))
    pc.addTrack(PlayoutVideoTrack(peer.playout, pacer, (state["width"], state["height"])))

    @pc.on("datachannel")
    def on_channel(channel) -> None:
        peer.channel = channel

        @channel.on("message")
        def on_message(message) -> None:
            peer.tasks.append(asyncio.ensure_future(_handle(web, peer, channel, message)))

    @pc.on("connectionstatechange")
    async def on_state() -> None:
        log.info("web: %s connection %s", character, pc.connectionState)
        if pc.connectionState in ("failed", "closed"):
            web.forget(pc)
            for t in peer.tasks:
                t.cancel()
            await pc.close()

    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())  # aiortc gathers its candidates before this returns
    except Exception:
        await pc.close()  # a bad offer leaves nothing behind
        raise
    peer.tasks.append(asyncio.ensure_future(_pump_events(peer)))
    return pc, pc.localDescription


async def _pump_events(peer: Peer) -> None:
    """The playout's line events → the data channel, every 20 ms."""
    while True:
        await asyncio.sleep(0.02)
        events = peer.playout.events()
        ch = peer.channel
        if events and ch is not None and getattr(ch, "readyState", "") == "open":
            for e in events:
                ch.send(json.dumps(e))


async def _handle(web, peer: Peer, channel, message) -> None:
    rid = None
    try:
        if not isinstance(message, str) or len(message) > MAX_MESSAGE:
            raise ValueError(f"a control message is a JSON object of at most {MAX_MESSAGE} bytes")
        msg = json.loads(message)
        if not isinstance(msg, dict):
            raise ValueError("a control message is a JSON object")
        rid, op = msg.get("id"), msg.get("op")
        if op not in OPS:
            raise ValueError(f"unknown op {op!r}: the page can send {', '.join(OPS)}")
        fields: dict = {"character": peer.character}
        if op == "say":
            fields["text"] = msg.get("text")
        elif op == "set_character":
            fields["face_seed"] = msg.get("face_seed")
        else:
            peer.playout.cut()  # silent now; the server stops generating below
        loop = asyncio.get_running_loop()
        reply = await loop.run_in_executor(None, lambda: web.request(op, **fields))
        out = {k: v for k, v in reply.items() if k not in ("v", "id")}
    except Exception as exc:  # bad message or the server's error: back to the page, the connection goes on
        out = {"status": "error", "error": str(exc)}
    if getattr(channel, "readyState", "") == "open":
        channel.send(json.dumps({"id": rid, **out}))
