"""One browser connection: its RTCPeerConnection, its character's tracks and its ``control`` data channel.

Data channel messages are JSON objects (docs/WEB.md):

* page → server: ``{"id": 1, "op": "say", "text": "…"}``, ``{"id": 2, "op": "interrupt"}``,
  ``{"id": 3, "op": "set_character", "face_seed": 7}`` — each answered ``{"id": …, "status": "ok", …}`` (the
  server's reply fields) or ``{"id": …, "status": "error", "error": "…"}``;
* server → page: ``{"event": "started" | "ended", "utterance": n, "interrupted": bool}`` when the line's audio
  starts and ends in this connection's playout; ``{"event": "rig", "frames": [[t, [v, …]], …]}`` with the rig
  frames that became due, each with ``t``, the sender-clock time (Unix ms) at which its audio was sent — the
  clock of the RTCP sender reports, so the page finds, from the audio track's ``estimatedPlayoutTimestamp``,
  which rig frame goes with the sound it is playing (the values are named by ``rig_controls`` of the offer's
  answer).

``interrupt`` cuts this connection's playout at once (silence and a still face within 20 ms), then asks the
server to stop generating.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from mfruntime.runtime.web.playout import Playout
from mfruntime.runtime.web.tracks import Pacer, PlayoutAudioTrack, PlayoutVideoTrack

log = logging.getLogger(__name__)

MAX_MESSAGE = 8192  # bytes of one data channel message
OPS = ("say", "interrupt", "set_character")


@dataclass(eq=False)
class Peer:
    character: str
    playout: Playout
    pacer: Pacer = field(default_factory=Pacer)
    channel: object | None = None
    tasks: list = field(default_factory=list)

    def sent_at_ms(self, position: int) -> float | None:
        """Wall-clock time (Unix ms) at which the audio at playout ``position`` is (or was) sent; None before the
        tracks started."""
        t0 = self.pacer.t0
        if t0 is None:
            return None
        return 1000.0 * (t0 + position / self.playout.sample_rate + time.time() - time.monotonic())


async def open_peer(web, character: str, state: dict, sdp: str, upscale: int = 1):
    """A connection for ``character`` answering the browser's offer: (pc, answer). ``upscale``: the video frames
    are sent that many times larger (each pixel a block), for small faces."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # host candidates only: no STUN server is ever asked
    peer = Peer(character, Playout(sample_rate=state["sample_rate"], fps=state["fps"]))
    pc.peer = peer  # type: ignore[attr-defined]
    pc.addTrack(PlayoutAudioTrack(peer.playout, peer.pacer))
    pc.addTrack(PlayoutVideoTrack(peer.playout, peer.pacer, (state["width"], state["height"]), upscale))

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
    """The playout's line events and the rig frames that fell due → the data channel, every 20 ms."""
    while True:
        await asyncio.sleep(0.02)
        events = peer.playout.events()
        rig = peer.playout.rig_due(peer.playout.position)
        ch = peer.channel
        if ch is None or getattr(ch, "readyState", "") != "open":
            continue
        for e in events:
            ch.send(json.dumps(e))
        frames = [[round(t, 1), [round(float(v), 4) for v in row]] for pos, row in rig
                  if (t := peer.sent_at_ms(pos)) is not None]
        if frames:
            ch.send(json.dumps({"event": "rig", "frames": frames}))


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
