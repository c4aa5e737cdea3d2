"""``mf serve`` as a child process on free loopback ports: for tests, benchmarks and tools that drive clients in
other languages (the Unity bridge's C# core, the C++ client) against a real server."""
from __future__ import annotations

import contextlib
import socket
import subprocess
import sys

from mfruntime.runtime.client import Client


def free_port_pair() -> int:
    """A free loopback port whose successor is free too (control, stream)."""
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            if port >= 65535:
                continue
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return port
    raise RuntimeError("no free pair of loopback ports")


@contextlib.contextmanager
def serve_process(*extra: str, port: int | None = None, backend: str = "eager", steps: int = 2,
                  threads: str = "1", timeout: float = 60.0, keys: tuple[str, str] | None = None):
    """Start ``mf serve`` (bundled model) on loopback and wait until it answers ``ping``; yields the (control, stream)
    addresses. ``keys``: (the server's public key file, an authorised client's secret key file) for the readiness
    ping of a server started with CURVE. Stops it with SIGTERM afterwards (kills it if it does not stop in 30 s)."""
    port = port or free_port_pair()
    control, stream = f"tcp://127.0.0.1:{port}", f"tcp://127.0.0.1:{port + 1}"
    cmd = [sys.executable, "-m", "mfruntime.cli", "serve", "--bind", control, "--stream", stream,
           "--backend", backend, "--device", "cpu", "--steps", str(steps), "--threads", threads, "-q", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        if not line.startswith("mf serve: control"):
            proc.wait(timeout=30)
            raise RuntimeError(f"mf serve did not start: {line!r} {proc.stderr.read()}")
        server_key, client_key = keys or (None, None)
        with Client(control, timeout=timeout, server_key=server_key, client_key=client_key) as c:
            c.request("ping")
        yield control, stream
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            pipe.close()
