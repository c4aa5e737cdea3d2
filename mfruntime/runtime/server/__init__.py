"""``mf serve``: characters over ZeroMQ — a ROUTER control socket and a PUB stream socket (docs/PROTOCOL.md).

In parts: ``config`` (ServeConfig, address policy), ``scheduler`` (characters and the engine loop),
``handlers`` (one handler per protocol op), ``sockets`` (the Server: sockets and threads). ``ServeConfig``
imports nothing heavy (the CLI reads its defaults); ``Server`` loads on first use.
"""
from mfruntime.runtime.server.config import LOOPBACK_HOSTS, ServeConfig

__all__ = ["LOOPBACK_HOSTS", "ServeConfig", "Server"]


def __getattr__(name: str):
    if name == "Server":
        from mfruntime.runtime.server.sockets import Server

        return Server
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
