"""The runtime: :class:`Session` (embed in Python) and ``mf serve`` (ZeroMQ streaming to game engines)."""
from mfruntime.runtime.session import Chunk, Session, SessionStats

__all__ = ["Chunk", "Session", "SessionStats"]
