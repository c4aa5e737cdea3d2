"""One Ray node's ``mf serve``: a :class:`NodeServer` actor (made by nodes.py) runs an ordinary
:class:`~mfruntime.runtime.server.Server` on the node's own address, with CURVE so that only the gateway that
started it can talk to it (its public key is the only authorised client)."""
from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path

from mfruntime.runtime.security import write_keypair

log = logging.getLogger(__name__)


def _normal_priority() -> int:
    """Ray starts its worker processes at a low CPU priority (nice 15): behind any other busy process a node
    server then makes chunks many times slower than real time (measured here: 1.6 s for a 160-ms chunk beside
    two busy processes, vs 0.1 s at nice 0). A character is real-time work: back to nice 0 where permitted
    (root, or CAP_SYS_NICE); the niceness it runs at is returned (and reported by load())."""
    now = os.nice(0)
    if now > 0:
        try:
            now = os.nice(-now)
        except PermissionError:
            log.warning("the node server runs at nice %d (Ray's worker priority) and may not raise it: its chunks "
                        "fall behind whenever other work is busy on the node; run the Ray node as root or with "
                        "CAP_SYS_NICE", now)
    return now


class NodeServer:
    """The body of the Ray actor: start the node's server; report its addresses, its key and its load."""

    def __init__(self, serve: dict, gateway_key: str, host: str) -> None:
        """serve: ServeConfig fields (model, backend, steps, …); gateway_key: the text of the gateway's public key
        file; host: the address to bind (the node's Ray address)."""
        from mfruntime.runtime.server import Server, ServeConfig

        self.niceness = _normal_priority()

        self._dir = Path(tempfile.mkdtemp(prefix="mf-node-"))
        clients = self._dir / "clients"
        clients.mkdir()
        (clients / "gateway.key").write_text(gateway_key)
        public, secret = write_keypair(self._dir, "node")
        self.public_key = public.read_text()
        host = f"[{host}]" if ":" in host else host
        cfg = dataclasses.replace(ServeConfig(), **serve, bind=f"tcp://{host}:*", stream=f"tcp://{host}:*", characters=(),
                                  allow_remote=True, curve_secret=str(secret), curve_clients=str(clients))
        self.server = Server(cfg)
        self._bound = threading.Event()
        self._served = threading.Event()

    def serve(self) -> None:
        """Serve until stop(), generating on this call's thread (nodes.py calls it once, right after creating the
        actor; it returns when the server stops). As ``mf serve`` does on its main thread: torch's CPU thread
        pool is fastest in the thread that keeps using it."""
        try:
            self.server.serve_forever(on_ready=lambda _s: self._bound.set())
        finally:
            self._served.set()

    def addresses(self) -> dict:
        if not self._bound.wait(120):
            raise RuntimeError("the node server did not bind its sockets within 120 s")
        return {"control": self.server.control_address, "stream": self.server.stream_address,
                "key": self.public_key}

    def load(self) -> dict:
        """Characters here and how many are generating (a line running or queued, or listening with the model)."""
        chars = list(self.server.characters.values())
        return {"characters": len(chars), "generating": sum(c.generating for c in chars), "nice": self.niceness}

    def echo(self, data: bytes) -> bytes:
        """Returns ``data``: benchmarks/cluster.py times a Ray call's round trip with a chunk-sized payload against
        the ZeroMQ hop the chunks take."""
        return data

    def stop(self) -> None:
        self.server.stop()  # serve() ends the running lines and closes the server
        self._served.wait(30)
        shutil.rmtree(self._dir, ignore_errors=True)
