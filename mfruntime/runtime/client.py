"""A small Python client for ``mf serve``: control requests and a stream subscriber."""
from __future__ import annotations

import itertools
from typing import Iterator

import zmq

from mfruntime.config import DEFAULT_BIND, DEFAULT_STREAM
from mfruntime.runtime.protocol import ProtocolError, StreamChunk, decode_chunk, decode_reply, encode_request


def _maybe_secure(sock: zmq.Socket, server_key: str | None, client_key: str | None) -> None:
    if server_key is None and client_key is None:
        return
    if server_key is None or client_key is None:
        raise ValueError("CURVE needs both server_key (the server's public .key file) and client_key "
                         "(this client's .key_secret file)")
    from mfruntime.runtime.security import secure_client

    secure_client(sock, server_key, client_key)


class ServerError(RuntimeError):
    """The server answered a request with status "error"; the message is its error text."""


class Client:
    """Control requests over a DEALER socket. ``request`` waits for the matching reply (by id)."""

    def __init__(self, address: str = DEFAULT_BIND, timeout: float = 10.0,
                 context: zmq.Context | None = None, server_key: str | None = None, client_key: str | None = None) -> None:
        """server_key/client_key: for a server with CURVE — its public key file and this client's secret key file."""
        self.ctx = context or zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        _maybe_secure(self.sock, server_key, client_key)
        self.sock.connect(address)
        self.timeout = timeout
        self._ids = itertools.count(1)

    def request(self, op: str, **fields) -> dict:
        """Send one request; return the reply map, or raise ServerError / TimeoutError."""
        rid = next(self._ids)
        self.sock.send(encode_request(op, id=rid, **fields))
        return self.wait(rid)

    def wait(self, rid: int) -> dict:
        while True:
            if not self.sock.poll(int(self.timeout * 1000)):
                raise TimeoutError(f"no reply from the server within {self.timeout:g} s (is `mf serve` running?)")
            reply = decode_reply(self.sock.recv())
            if reply.get("id") != rid:
                continue  # a late reply to an earlier, timed-out request
            if reply["status"] != "ok":
                raise ServerError(reply.get("error", "unknown error"))
            return reply

    def close(self) -> None:
        self.sock.close(0)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Subscriber:
    """Stream messages of some characters (all with ``characters=None``), decoded and checked."""

    def __init__(self, address: str = DEFAULT_STREAM, characters: list[str] | None = None,
                 rcvhwm: int = 1000, context: zmq.Context | None = None, server_key: str | None = None,
                 client_key: str | None = None) -> None:
        self.ctx = context or zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        _maybe_secure(self.sock, server_key, client_key)
        self.sock.setsockopt(zmq.RCVHWM, rcvhwm)
        for c in characters or [""]:
            self.sock.setsockopt(zmq.SUBSCRIBE, c.encode())
        self.sock.connect(address)
        self.characters = set(characters or [])

    def recv(self, timeout: float | None = None) -> StreamChunk:
        """The next message; TimeoutError when none arrives in ``timeout`` seconds."""
        while True:
            if timeout is not None and not self.sock.poll(int(timeout * 1000)):
                raise TimeoutError(f"no stream message within {timeout:g} s")
            chunk = decode_chunk(self.sock.recv_multipart())
            # Topics filter by prefix: "npc1" would also match "npc10".
            if not self.characters or chunk.header["character"] in self.characters:
                return chunk

    def utterance(self, utterance: int | None = None, timeout: float = 30.0) -> Iterator[StreamChunk]:
        """Messages of one utterance up to and including its end (``eou``).

        utterance: the id from the say/drive reply; messages of other utterances (e.g. the end marker of
        a line your request cut short) are skipped. None: whichever utterance the next message belongs to.
        """
        while True:
            chunk = self.recv(timeout)
            uid = chunk.header["utterance"]
            if utterance is None:
                utterance = uid
            if uid < utterance:
                continue  # an older line still finishing
            if uid > utterance:
                raise ProtocolError(f"utterance {utterance} ended without its end-of-utterance message "
                                    f"(now receiving utterance {uid}): messages were dropped")
            yield chunk
            if chunk.header["eou"]:
                return

    def close(self) -> None:
        self.sock.close(0)

    def __enter__(self) -> "Subscriber":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
