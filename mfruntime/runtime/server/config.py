"""``mf serve``'s settings (:class:`ServeConfig`) and its address policy: loopback unless asked, CURVE beyond it."""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from mfruntime.config import (DEFAULT_BACKEND, DEFAULT_BIND, DEFAULT_DEVICE, DEFAULT_MAX_CHARACTERS, DEFAULT_MODEL,
                              DEFAULT_SEND_HWM, DEFAULT_STEPS, DEFAULT_THREADS, MIN_STEPS)
from mfruntime.runtime.threads import check_threads

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


@dataclass(frozen=True)
class ServeConfig:
    """``mf serve``'s settings; the defaults shared with the CLI come from mfruntime/config.py."""

    bind: str = DEFAULT_BIND  # control socket (ROUTER); "tcp://127.0.0.1:*" picks a free port
    stream: str | None = None  # PUB socket; default: the control port + 1 (or a free port with ":*")
    model: str = DEFAULT_MODEL
    device: str = DEFAULT_DEVICE
    backend: str = DEFAULT_BACKEND
    steps: int = DEFAULT_STEPS
    min_steps: int | None = None  # the floor the steps may drop to when a deadline is near (None: never lowered)
    admission: bool = True  # refuse (busy) a line that could not be kept in real time beside the running ones
    batch: bool = True  # characters speaking at once share one forward per denoising step (engine/batch.py)
    characters: tuple[str, ...] = ("default",)  # made at start with the built-in face
    max_characters: int = DEFAULT_MAX_CHARACTERS
    send_hwm: int = DEFAULT_SEND_HWM  # PUB high-water mark: messages queued per subscriber before ZeroMQ drops for it
    publish_queue: int = 256  # chunks waiting for the publisher thread before the server drops
    allow_remote: bool = False  # binding beyond loopback must be asked for
    seed: int = 0
    threads: int | str = DEFAULT_THREADS  # CPU threads per chunk: a number, or "auto" (the cores other processes leave free)
    prepare_queue: int = 1024  # requests waiting for the preparation thread before the server answers "busy"
    curve_secret: str | None = None  # the server's CURVE key pair (NAME.key_secret from mf keys): encrypt + authenticate
    curve_clients: str | None = None  # folder of the authorised clients' public keys (*.key)

    def __post_init__(self) -> None:
        check_threads(self.threads)
        for addr in (self.bind, self.stream):
            if addr is None:
                continue
            if "://" not in addr:
                raise ValueError(f"address must look like tcp://127.0.0.1:5555 or ipc:///tmp/mf.sock, got {addr!r}")
            u = urlsplit(addr)
            if u.scheme == "tcp" and u.hostname not in (h.strip("[]") for h in LOOPBACK_HOSTS):
                if not self.allow_remote:
                    raise ValueError(f"{addr} is reachable from other machines; pass --allow-remote to do that on "
                                     "purpose (with CURVE keys: docs/RUNTIME.md)")
                if not self.curve_secret:
                    raise ValueError(f"{addr} is reachable from other machines: the server needs CURVE keys there — "
                                     "--curve-secret SERVER.key_secret and --curve-clients DIR (make them with mf keys)")
        if bool(self.curve_secret) != bool(self.curve_clients):
            raise ValueError("CURVE needs both the server's secret key file (--curve-secret) and the folder of "
                             "authorised client keys (--curve-clients)")
        if self.min_steps is not None and not MIN_STEPS <= self.min_steps <= self.steps:
            raise ValueError(f"min_steps must be from {MIN_STEPS} to steps ({self.steps}), got {self.min_steps}")
        if self.max_characters < 1 or self.send_hwm < 1 or self.publish_queue < 1 or self.prepare_queue < 1:
            raise ValueError("max_characters, send_hwm, publish_queue and prepare_queue must be at least 1")


def stream_address(cfg: ServeConfig, control_endpoint: str) -> str:
    """Where the PUB socket binds: ``cfg.stream``, or the bound control port + 1 (a free port with ":*")."""
    if cfg.stream:
        return cfg.stream
    u = urlsplit(cfg.bind)
    if u.scheme != "tcp":
        raise ValueError(f"pass --stream for a {u.scheme} control address")
    host = control_endpoint.rsplit(":", 1)[0]
    if cfg.bind.endswith(":*"):
        return f"{host}:*"
    return f"{host}:{int(control_endpoint.rsplit(':', 1)[1]) + 1}"
