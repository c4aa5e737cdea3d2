"""The native C++ client (cpp_client/, used by the Unreal plugin): built with CMake into build/cpp_client, its protocol
vector, playback and client tests (ctest; the client's against real ZeroMQ sockets on loopback), and a live run against
a real `mf serve` (say, play on the audio clock, interrupt, bad requests, timeouts, a server restart on the same ports),
plus the say_to_wav example writing a WAV and the crowd_players tool of benchmarks/overload.py."""
from __future__ import annotations

import re
import shutil
import subprocess
import threading
import wave

import pytest

from bridge_helpers import ROOT, free_port_pair, require, running_server

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
    """Shared by the tests that leave the server as it is (the live test restarts its own)."""
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


def test_live_client_against_mf_serve(built):
    port = free_port_pair()
    server = running_server(port=port)
    control, stream = server.__enter__()
    proc = subprocess.Popen([str(built / "test_live"), control, stream], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    watchdog = threading.Timer(300, proc.kill)  # a hung test_live fails the test instead of hanging the suite
    watchdog.start()
    lines, restarts = [], 0
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.strip() == "RESTART-SERVER":  # test_live asks for a server restart on the same ports
                server.__exit__(None, None, None)
                server = running_server(port=port)
                server.__enter__()
                restarts += 1
                proc.stdin.write("restarted\n")
                proc.stdin.flush()
        proc.wait(timeout=60)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        server.__exit__(None, None, None)
    out = "".join(lines)
    assert proc.returncode == 0 and restarts == 1, out
    assert re.search(r"^9 passed, 0 failed$", out, re.M), out
    assert "say -> first chunk:" in out, out
    assert "ok   the_client_goes_on_after_the_server_restarts" in out, out
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


def test_crowd_players_play_every_line_to_its_end(built, server):
    """benchmarks/overload.py's tool: one Player per character, pulled in real time, each line played to its end."""
    import json

    control, _ = server
    out = _run([built / "crowd_players", "--control", control, "--characters", "2", "--steps", "1", "--min-steps", "1",
                "--text", "Two at once."], timeout=300)
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["character"] for r in rows] == ["crowd0", "crowd1"]
    for r in rows:
        assert r["taken"] and r["ended"] and not r["interrupted"] and r["chunks"] > 0 and r["lost"] == 0, r


def test_say_to_wav_over_curve(built, tmp_path):
    """A server with CURVE keys: the C++ client with an authorised key pair talks; a stranger's gets no answer."""
    from mfruntime.runtime.security import write_keypair

    public, secret = write_keypair(tmp_path / "server", "server")
    _, studio = write_keypair(tmp_path / "clients", "studio")
    _, stranger = write_keypair(tmp_path / "strangers", "stranger")
    with running_server("--curve-secret", str(secret), "--curve-clients", str(tmp_path / "clients"),
                        keys=(str(public), str(studio))) as (control, _):
        wav = tmp_path / "curve.wav"
        out = _run([built / "say_to_wav", "--control", control, "--text", "Encrypted and authenticated.",
                    "--out", wav, "--server-key", public, "--client-key", studio], timeout=120)
        assert re.search(r"say -> first chunk [\d.]+ ms, [1-9]\d* chunks", out), out
        bad = subprocess.run([str(built / "say_to_wav"), "--control", control, "--text", "Let me in.",
                              "--out", str(tmp_path / "no.wav"), "--server-key", str(public), "--client-key",
                              str(stranger)], capture_output=True, text=True, timeout=120)
        assert bad.returncode == 1 and "no reply to 'ping'" in bad.stderr and "CURVE keys" in bad.stderr, \
            bad.stdout + bad.stderr
    half = subprocess.run([str(built / "say_to_wav"), "--server-key", str(public)], capture_output=True, text=True,
                          timeout=30)
    assert half.returncode == 2 and "both --server-key and --client-key" in half.stderr
