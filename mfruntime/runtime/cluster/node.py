"""One Ray node's ``mf serve``: a :class:`NodeServer` actor (made by nodes.py) runs an ordinary
:class:`~mfruntime.runtime.server.Server` on the node's own address, with CURVE so that only the gateway that
started it can talk to it (its public key is the only authorised client)."""
from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

from mfruntime.runtime.security import write_keypair


class NodeServer:
    """The body of the Ray actor: start the node's server; report its addresses, its key and its load."""

    def __init__(self, serve: dict, gateway_key: str, host: str) -> None:
        """serve: ServeConfig fields (model, backend, steps, …); gateway_key: the text of the gateway's public key
        file; host: the address to bind (the node's Ray address)."""
        from mfruntime.runtime.server import Server, ServeConfig

        self._dir = Path(tempfile.mkdtemp(prefix="mf-node-"))
        clients = self._dir / "clients"
        clients.mkdir()
        (clients / "gateway.key").write_text(gateway_key)
        public, secret = write_keypair(self._dir, "node")
        self.public_key = public.read_text()
        host = f"[{host}]" if ":" in host else host
        cfg = dataclasses.replace(ServeConfig(), **serve, bind=f"tcp://{host}:*", stream=f"tcp://{host}:*", characters=(),
                                  allow_remote=True, curve_secret=str(secret), curve_clients=str(clients))
        self.server = Server(cfg).start()

    def addresses(self) -> dict:
        return {"control": self.server.control_address, "stream": self.server.stream_address,
                "key": self.public_key}

    def load(self) -> dict:
        """Characters here and how many are generating (a line running or queued, or listening with the model)."""
        chars = list(self.server.characters.values())
        return {"characters": len(chars), "generating": sum(c.generating for c in chars)}

    def echo(self, data: bytes) -> bytes:
        """Returns ``data``: benchmarks/cluster.py times a Ray call's round trip with a chunk-sized payload against
        the ZeroMQ hop the chunks take."""
        return data

    def stop(self) -> None:
        self.server.close()
        shutil.rmtree(self._dir, ignore_errors=True)
