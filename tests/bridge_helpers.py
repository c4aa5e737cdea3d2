"""Shared by the engine-bridge tests (C# and C++ clients): a real ``mf serve`` process on free loopback ports, and
the rule for missing toolchains (skip with one line naming the Debian packages; fail in CI)."""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mfruntime.runtime.client import Client

ROOT = Path(__file__).resolve().parent.parent
#: CI sets this: a missing bridge toolchain is then a failure, not a skip.
REQUIRE_ENV = "MFR_REQUIRE_BRIDGES"


def require(tools: dict[str, str]) -> None:
    """``tools`` maps an executable or header path to the Debian package that provides it. Skips (one line) when one
    is missing, or fails when ``MFR_REQUIRE_BRIDGES=1``."""
    missing = sorted({pkg for what, pkg in tools.items()
                      if not (Path(what).exists() if what.startswith("/") else shutil.which(what))})
    if missing:
        msg = f"bridge toolchain missing: apt-get install {' '.join(missing)}"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(msg + f" ({REQUIRE_ENV}=1)")
        pytest.skip(msg)


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
def running_server(*extra: str, port: int | None = None):
    """Start ``mf serve`` (bundled model, eager backend, 2 steps) on loopback; yields (control, stream) addresses.
    Stops it with SIGTERM afterwards (kills it if it hangs)."""
    port = port or free_port_pair()
    control, stream = f"tcp://127.0.0.1:{port}", f"tcp://127.0.0.1:{port + 1}"
    cmd = [sys.executable, "-m", "mfruntime.cli", "serve", "--bind", control, "--stream", stream,
           "--backend", "eager", "--device", "cpu", "--steps", "2", "--threads", "1", "-q", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        if not line.startswith("mf serve: control"):
            proc.wait(timeout=30)
            raise RuntimeError(f"mf serve did not start: {line!r} {proc.stderr.read()}")
        with Client(control, timeout=30) as c:
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
