"""Running a test's processes in a network namespace that has only loopback (Ray, WebRTC: they bind or probe the
host's interface address on their own; there, that can only be 127.0.0.1, so no packet can leave the machine).

``isolated(cmd)`` runs ``cmd`` under ``unshare -n`` (root, or a kernel allowing unprivileged namespaces) with
``lo`` brought up first; ``available()`` says whether this machine permits it (tests skip with one line if not;
CI sets MFR_REQUIRE_NETNS=1, which turns that skip into a failure).
"""
from __future__ import annotations

import fcntl
import os
import shutil
import socket
import struct
import subprocess
import sys

SIOCGIFFLAGS, SIOCSIFFLAGS, SIOCSIFADDR, IFF_UP = 0x8913, 0x8914, 0x8916, 0x1


def loopback_up() -> None:
    """Bring ``lo`` up in this process's network namespace (what ``ip link set lo up`` does)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = struct.unpack("16sH", fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack("16sH", b"lo", 0)))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | IFF_UP))


def add_loopback_address(address: str = "127.0.0.2", label: str = "lo:1") -> None:
    """A second loopback address (``ip addr add 127.0.0.2/8 dev lo``): aiortc's ICE never offers 127.0.0.1, so in a
    loopback-only namespace it needs another address to gather."""
    sockaddr = struct.pack("HH4s8s", socket.AF_INET, 0, socket.inet_aton(address), b"")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s, SIOCSIFADDR, struct.pack("16s16s", label.encode(), sockaddr))


def available() -> str | None:
    """None when loopback-only namespaces work here, else why not (one line)."""
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    r = subprocess.run(["unshare", "-n", sys.executable, "-c", "import tests.netns as n; n.loopback_up()"],
                       capture_output=True, text=True, cwd=_root())
    if r.returncode:
        return f"network namespaces are not permitted here ({(r.stderr.strip().splitlines() or ['?'])[-1][:100]})"
    return None


def isolated(args: list[str], timeout: float | None, env: dict | None = None,
             second_address: bool = False, capture: bool = True) -> subprocess.CompletedProcess:
    """Run ``python args…`` in a new network namespace with only ``lo`` (up; with ``second_address`` also
    127.0.0.2), from the repository root; ``capture`` False lets its output through (benchmarks)."""
    extra = " n.add_loopback_address();" if second_address else ""
    code = f"import runpy, sys, tests.netns as n; n.loopback_up();{extra} sys.argv = sys.argv[1:]; " \
           "runpy.run_module(sys.argv[0], run_name='__main__')"
    return subprocess.run(["unshare", "-n", sys.executable, "-c", code, *args], capture_output=capture, text=True,
                          timeout=timeout, cwd=_root(), env={**os.environ, **(env or {})})


def _root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
