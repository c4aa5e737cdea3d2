"""Shared by the engine-bridge tests (C# and C++ clients): a real ``mf serve`` process on free loopback ports, and
the rule for missing toolchains (skip with one line naming the Debian packages; fail in CI)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# A real `mf serve` (bundled model, eager backend, 2 steps, 1 thread) on free loopback ports, for the tests.
from mfruntime.runtime.process import free_port_pair  # noqa: F401 (re-exported for the tests)
from mfruntime.runtime.process import serve_process as running_server  # noqa: F401

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
