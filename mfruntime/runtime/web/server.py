"""``mf serve --web``: the characters in a browser, over WebRTC (docs/WEB.md).

An HTTP endpoint beside the ZeroMQ sockets serves the page (static/, no build step, nothing fetched from the
internet) and answers its WebRTC offer (``POST /offer``: plain HTTP signalling, one offer → one answer, ICE
candidates gathered before answering). Each browser connection gets, for one character, an Opus audio track and
a VP8 video track made from that character's chunks (tracks.py, playout.py) and a data channel ``control`` for
say / interrupt / set_character, the line started / ended events and the rig stream's frames, each stamped with
the sender clock time of its audio (for the page's 3D preview: ``/head.glb``, head.py; three.js from
``static/vendor/``, vendor.py).

The web layer is a client of the server's own protocol: it sends requests to the control socket and subscribes
to the stream socket on loopback, so it works the same in front of ``mf serve`` and of the Ray gateway.

Security: loopback by default; any other address needs an access token (``--web-token``), which the page sends
with its offer (a wrong or missing one is refused with 403 and a message). Browsers only allow media in a secure
context, which loopback pages are; elsewhere put TLS in front (docs/WEB.md).
"""
from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import json
import logging
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from mfruntime.runtime.web.config import WebConfig

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
MAX_BODY = 256 * 1024  # an offer is a few kB
MAX_PEERS = 32  # browser connections at once
MAX_CHECKS = 100  # self-check reports kept
MAX_UPSCALE = 4  # the offer's "upscale": video frames sent up to 4× their size (each pixel a block)
PAGES = {"/": "index.html", "/index.html": "index.html", "/app.js": "app.js", "/style.css": "style.css",
         "/preview.js": "preview.js"}
TYPES = {".js": "text/javascript; charset=utf-8", ".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8"}


@functools.lru_cache(maxsize=1)
def content_security_policy() -> str:
    """Same-origin everything; the page's one inline script (its import map) allowed by its hash."""
    page = (STATIC / "index.html").read_text()
    hashes = [f"'sha256-{base64.b64encode(hashlib.sha256(m.encode()).digest()).decode()}'"
              for m in re.findall(r'<script type="importmap">(.*?)</script>', page, re.S)]
    return ("default-src 'self'; img-src 'self' data:; media-src 'self' blob:; "
            f"script-src 'self' {' '.join(hashes)}")


@functools.lru_cache(maxsize=1)
def head_file() -> bytes:
    from mfruntime.runtime.web.head import head_glb

    return head_glb()


def static_file(path: str) -> tuple[bytes, str] | None:
    """(body, content type) of a page file, the preview head or a vendored three.js file; None if none."""
    if path in PAGES:
        name = PAGES[path]
        return (STATIC / name).read_bytes(), TYPES.get(name[name.rfind("."):], "application/octet-stream")
    if path == "/head.glb":
        return head_file(), "model/gltf-binary"
    from mfruntime.runtime.web.vendor import DEST, FILES

    if path.startswith("/vendor/three/") and path[len("/vendor/three/"):] in FILES and path.endswith(".js"):
        f = DEST / path[len("/vendor/three/"):]
        if f.is_file():
            return f.read_bytes(), TYPES[".js"]
    return None


class WebServer:
    """The HTTP endpoint, the WebRTC connections (an asyncio loop thread) and the link to the server's sockets."""

    def __init__(self, cfg: WebConfig, control: str, stream: str, keys: tuple[str, str] | None = None) -> None:
        """``keys``: (server key file, client secret key file) when the server's sockets use CURVE."""
        from mfruntime.runtime.client import Client

        self.cfg, self.control, self.stream = cfg, control, stream
        self._keys = {"server_key": keys[0], "client_key": keys[1]} if keys else {}
        self._client = Client(control, timeout=30, **self._keys)
        self.stream_messages = 0  # stream messages received (for the page's playouts)
        self._client_lock = threading.Lock()
        self._peers: dict[object, object] = {}  # RTCPeerConnection → Peer (connection.py)
        self._peers_lock = threading.Lock()
        self._opening = 0  # offers being answered (they count against MAX_PEERS)
        self._stop = threading.Event()
        self.checks: list[dict] = []  # self-check reports posted by pages (?check)
        self.loop = asyncio.new_event_loop()
        self._threads: list[threading.Thread] = []
        host, port = cfg.host_port
        self.http = ThreadingHTTPServer((host, port), _handler(self))
        self.http.daemon_threads = True
        self.address = f"http://{host}:{self.http.server_address[1]}"

    # --- the server's protocol ------------------------------------------------------------------
    def request(self, op: str, **fields) -> dict:
        """One request to the server (blocking: call from a worker thread)."""
        with self._client_lock:
            return self._client.request(op, **fields)

    def _listen(self) -> None:
        """The stream socket → every connected browser's playout of that character."""
        from mfruntime.runtime.client import Subscriber

        with Subscriber(self.stream, **self._keys) as sub:
            while not self._stop.is_set():
                try:
                    m = sub.recv(0.2)
                except TimeoutError:
                    continue
                except Exception as exc:  # a bad message: the server's stream is checked, keep going
                    log.warning("web: stream message rejected: %s", exc)
                    continue
                h = m.header
                self.stream_messages += 1
                with self._peers_lock:
                    peers = [p for p in self._peers.values() if p.character == h["character"]]  # type: ignore[attr-defined]
                for p in peers:
                    p.playout.push(h["utterance"], h["seq"], m.pcm, m.frames, h["eou"], h["interrupted"],  # type: ignore[attr-defined]
                                   rig=m.rig)

    # --- WebRTC -------------------------------------------------------------------------------
    async def offer(self, body: dict) -> tuple[int, dict]:
        from mfruntime.runtime.web.connection import open_peer

        token = self.cfg.token
        if token and not hmac.compare_digest(str(body.get("token", "")), token):
            return 403, {"error": "wrong or missing access token: open the page with ?token=… as given to mf serve "
                                  "--web-token"}
        for key in ("sdp", "type"):
            if not isinstance(body.get(key), str):
                return 400, {"error": f"the offer needs {key!r} (a string)"}
        if body["type"] != "offer":
            return 400, {"error": f"expected an SDP offer, got type {body['type']!r}"}
        character = body.get("character", "default")
        if not isinstance(character, str):
            return 400, {"error": "character must be a string"}
        upscale = body.get("upscale", 1)
        if not isinstance(upscale, int) or isinstance(upscale, bool) or not 1 <= upscale <= MAX_UPSCALE:
            return 400, {"error": f"upscale must be a whole number from 1 to {MAX_UPSCALE}, got {upscale!r:.20}"}
        with self._peers_lock:  # a slot is taken now, so offers at once cannot pass the limit together
            if len(self._peers) + self._opening >= MAX_PEERS:
                return 503, {"error": f"{MAX_PEERS} browsers are connected already; try again later"}
            self._opening += 1
        try:
            try:
                state = await asyncio.get_running_loop().run_in_executor(
                    None, lambda: self.request("state", character=character))
            except Exception as exc:
                return 404, {"error": str(exc)}
            try:
                pc, answer = await open_peer(self, character, state, body["sdp"], upscale)
            except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:  # an SDP aiortc cannot take
                return 400, {"error": "the offer's SDP could not be read: send the browser's own RTCPeerConnection "
                                      f"offer, unchanged ({type(exc).__name__}: {str(exc)[:120]})"}
            with self._peers_lock:
                self._peers[pc] = pc.peer  # type: ignore[attr-defined]
        finally:
            with self._peers_lock:
                self._opening -= 1
        log.debug("web: offer candidates %s; answer candidates %s", _candidates(body["sdp"]), _candidates(answer.sdp))
        from mfruntime.rig import CONTROLS
        from mfruntime.runtime.web.vendor import installed

        return 200, {"sdp": answer.sdp, "type": answer.type, "character": character, "width": state["width"],
                     "height": state["height"], "fps": state["fps"], "upscale": upscale, "rig": bool(state.get("rig")),
                     "rig_controls": list(CONTROLS), "preview": installed()}

    def forget(self, pc) -> None:
        with self._peers_lock:
            self._peers.pop(pc, None)

    @property
    def peers(self) -> list:
        with self._peers_lock:
            return list(self._peers.values())

    # --- life ---------------------------------------------------------------------------------
    def start(self) -> "WebServer":
        for target, name in ((self.loop.run_forever, "mf-web-rtc"), (self._listen, "mf-web-stream"),
                             (self.http.serve_forever, "mf-web-http")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        log.info("web page on %s", self.address)
        return self

    def close(self) -> None:
        self._stop.set()
        self.http.shutdown()
        self.http.server_close()

        async def close_all():
            for pc in list(self._peers):
                await pc.close()  # type: ignore[attr-defined]
        if self.loop.is_running():
            asyncio.run_coroutine_threadsafe(close_all(), self.loop).result(timeout=10)
            self.loop.call_soon_threadsafe(self.loop.stop)
        for t in self._threads:
            t.join(timeout=10)
        self._client.close()

    def __enter__(self) -> "WebServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def _handler(web: WebServer):
    class Handler(BaseHTTPRequestHandler):
        server_version = "mfruntime-web"

        def log_message(self, fmt, *args):  # to logging, not stderr
            log.debug("web: " + fmt, *args)

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Security-Policy", content_security_policy())
            self.end_headers()
            self.wfile.write(body)

        def _json(self, code: int, obj: dict) -> None:
            self._send(code, json.dumps(obj).encode(), "application/json")

        def do_GET(self):  # noqa: N802
            path = urlsplit(self.path).path
            if path == "/health":
                return self._json(200, {"ok": True, "peers": len(web.peers)})
            found = static_file(path)
            if found is None:
                if path.startswith("/vendor/"):
                    return self._json(404, {"error": "three.js is not installed for the 3D preview: run python -m "
                                                     "mfruntime.runtime.web.vendor on the server"})
                return self._json(404, {"error": f"no page {path}: open / (the character page)"})
            self._send(200, *found)

        def do_POST(self):  # noqa: N802
            path = urlsplit(self.path).path
            try:
                n = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                n = -1
            if not 0 < n <= MAX_BODY:
                return self._json(413 if n > MAX_BODY else 400, {"error": f"the body must be 1 to {MAX_BODY} bytes of JSON"})
            try:
                body = json.loads(self.rfile.read(n))
                if not isinstance(body, dict):
                    raise ValueError("not an object")
            except ValueError as exc:
                return self._json(400, {"error": f"the body is not a JSON object ({exc})"})
            if path == "/offer":
                fut = asyncio.run_coroutine_threadsafe(web.offer(body), web.loop)
                try:
                    code, reply = fut.result(timeout=30)
                except Exception as exc:  # never a hung request
                    log.exception("web: offer failed")
                    code, reply = 500, {"error": f"the offer failed: {type(exc).__name__}: {exc}"}
                return self._json(code, reply)
            if path == "/check":  # a page's self-check report: logged (and kept, the last MAX_CHECKS) for whoever runs it
                body["token_ok"] = not web.cfg.token or hmac.compare_digest(str(body.pop("token", "")), web.cfg.token)
                web.checks.append(body)
                del web.checks[:-MAX_CHECKS]
                log.info("web: page self-check: %s", json.dumps(body.get("result", body))[:400])
                return self._json(200, {"ok": True})
            return self._json(404, {"error": f"no endpoint {path}"})

    return Handler


def _candidates(sdp: str) -> list[str]:
    """The ICE candidates of an SDP (for the debug log: why a browser cannot connect)."""
    return [line.split(" ", 4)[4] if line.count(" ") >= 4 else line for line in sdp.splitlines() if line.startswith("a=candidate")]
