"""The native C++ client (cpp_client/, used by the Unreal plugin): built with CMake into build/cpp_client, its protocol
vector and playback tests (ctest), and a live run against a real `mf serve` (say, play on the audio clock, interrupt,
bad requests, timeouts), plus the say_to_wav example writing a WAV."""
from __future__ import annotations

import re
import shutil
import subprocess
import wave

import pytest

from bridge_helpers import ROOT, require, running_server

SOURCE = ROOT / "cpp_client"
BUILD = ROOT / "build" / "cpp_client"
TOOLS = {"cmake": "cmake", "g++": "g++", "/usr/include/zmq.h": "libzmq3-dev", "/usr/include/zmq.hpp": "cppzmq-dev",
         "/usr/include/msgpack.hpp": "libmsgpack-cxx-dev"}


def _run(cmd, timeout=600, **kw):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} exited {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout


@pytest.fixture(scope="module")
def built():
    require(TOOLS)
    generator = "Ninja" if shutil.which("ninja") else "Unix Makefiles"
    cache = BUILD / "CMakeCache.txt"
    if cache.exists() and f"CMAKE_GENERATOR:INTERNAL={generator}" not in cache.read_text(errors="replace"):
        shutil.rmtree(BUILD)  # configured with another generator: CMake cannot switch in place
    _run(["cmake", "-S", SOURCE, "-B", BUILD, "-G", generator, "-DCMAKE_BUILD_TYPE=RelWithDebInfo"])
    out = _run(["cmake", "--build", BUILD, "-j2"])
    assert "warning:" not in out, out  # -Wall -Wextra clean
    return BUILD


@pytest.fixture(scope="module")
def server():
    with running_server() as addresses:
        yield addresses


@pytest.mark.parametrize("name", ["vectors", "player", "client"])
def test_ctest(built, name):
    out = _run(["ctest", "--test-dir", built, "-R", f"^{name}$", "--output-on-failure"], timeout=300)
    assert "100% tests passed" in out, out


def test_vectors_binary_checks_every_vector(built):
    out = _run([built / "test_vectors", ROOT / "tests" / "vectors"])
    vectors = {p.stem for p in (ROOT / "tests" / "vectors").glob("*.json")}
    assert {line.split()[1] for line in out.splitlines() if line.startswith("ok   vector_")} == \
        {f"vector_{v}" for v in vectors}, out
    assert re.search(r"^\d+ passed, 0 failed$", out, re.M), out


def test_live_client_against_mf_serve(built, server):
    control, stream = server
    out = _run([built / "test_live", control, stream], timeout=180)
    assert re.search(r"^6 passed, 0 failed$", out, re.M), out
    assert "say -> first chunk:" in out, out
    print(out)


def test_say_to_wav_example(built, server, tmp_path):
    control, _ = server
    wav = tmp_path / "say.wav"
    out = _run([built / "say_to_wav", "--control", control, "--text", "The C plus plus example speaks.",
                "--out", wav], timeout=120)
    m = re.search(r"say -> first chunk ([\d.]+) ms, (\d+) chunks, (\d+) samples", out)
    assert m, out
    chunks, samples = int(m.group(2)), int(m.group(3))
    with wave.open(str(wav)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        assert w.getnframes() == samples == chunks * 2560 > 0
        pcm = w.readframes(w.getnframes())
    assert any(pcm), "the WAV is silent"
