"""The Unity bridge's engine-free C# core (unity_bridge/Runtime/Core), compiled with mono's mcs and run here: the
protocol vectors, the playback core, and a live round trip against a real `mf serve` (say, play on the audio clock,
interrupt, bad requests, a server restart), plus the console sample writing a WAV."""
from __future__ import annotations

import subprocess
import wave

import pytest

from bridge_helpers import ROOT, free_port_pair, require, running_server

BRIDGE = ROOT / "unity_bridge"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    require({"mcs": "mono-devel", "mono": "mono-devel"})
    out = tmp_path_factory.mktemp("csharp")
    core = out / "Mfruntime.Core.dll"
    mcs = ["mcs", "-langversion:7.2", "-warnaserror+", "-nologo"]

    def compile_(args):
        r = subprocess.run(mcs + args, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr

    compile_(["-target:library", f"-out:{core}", *map(str, sorted((BRIDGE / "Runtime" / "Core").glob("*.cs")))])
    compile_([f"-out:{out / 'MfruntimeTests.exe'}", f"-r:{core}", "-r:System.Core.dll",
              *map(str, sorted((BRIDGE / "Tests~").glob("*.cs")))])
    for sample in ("SayToWav", "PlayLoop"):
        compile_([f"-out:{out / (sample + '.exe')}", f"-r:{core}", str(BRIDGE / "Samples~" / "Console" / f"{sample}.cs")])
    return out


def _run(built, *args, timeout=120):
    r = subprocess.run(["mono", str(built / "MfruntimeTests.exe"), *args], capture_output=True, text=True,
                       timeout=timeout, cwd=built)
    assert r.returncode == 0 and " 0 failed" in r.stdout, r.stdout + r.stderr
    return r.stdout


def test_every_protocol_vector_through_the_csharp_decoder(built):
    out = _run(built, "vectors", str(ROOT / "tests" / "vectors"))
    assert "4 passed, 0 failed" in out


def test_csharp_playback_core(built):
    out = _run(built, "player")
    assert "14 passed, 0 failed" in out  # playback and media
    assert "8 passed, 0 failed" in out  # rig frames on the audio clock, the rig name map, smoothing and the head-pose signs


def test_csharp_client_live_against_mf_serve(built):
    port = free_port_pair()
    server = running_server(port=port)
    control, stream = server.__enter__()
    proc = subprocess.Popen(["mono", str(built / "MfruntimeTests.exe"), "live", control, stream], cwd=built,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.strip() == "RESTART-SERVER":  # the C# test asks for a server restart on the same ports
                server.__exit__(None, None, None)
                server = running_server(port=port)
                server.__enter__()
                proc.stdin.write("restarted\n")
                proc.stdin.flush()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        server.__exit__(None, None, None)
    out = "".join(lines)
    assert proc.returncode == 0 and "4 passed, 0 failed" in out, out
    assert "2 passed, 0 failed" in out, out  # the rig stream, rig-only mode and idle, live
    assert "say -> first chunk:" in out


def test_console_samples_write_a_wav_and_play_on_the_audio_clock(built, tmp_path):
    wav = tmp_path / "line.wav"
    with running_server() as (control, _):
        r = subprocess.run(["mono", str(built / "SayToWav.exe"), "Hello from the console sample.", str(wav), control],
                           capture_output=True, text=True, timeout=180)
        loop = subprocess.run(["mono", str(built / "PlayLoop.exe"), "Played in real time.", control],
                              capture_output=True, text=True, timeout=180)
        empty = subprocess.run(["mono", str(built / "SayToWav.exe"), "", str(wav), control],
                               capture_output=True, text=True, timeout=60)
    assert loop.returncode == 0, loop.stdout + loop.stderr
    events = [line for line in loop.stdout.splitlines() if "Utterance" in line]
    assert [e.split(": ")[1] for e in events] == ["UtteranceStarted 2", "UtteranceEnded 2"], loop.stdout  # line 2
    shown = int(loop.stdout.split("frames shown: ")[1].split(";")[0])
    assert shown >= 10 and "underruns 0" in loop.stdout, loop.stdout
    assert empty.returncode == 1 and "needs some text" in empty.stderr, empty.stdout + empty.stderr
    assert r.returncode == 0, r.stdout + r.stderr
    assert "time to first chunk:" in r.stdout
    with wave.open(str(wav)) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2
        assert w.getnframes() > 0 and w.getnframes() % 2560 == 0  # whole 160-ms chunks
    bad = subprocess.run(["mono", str(built / "SayToWav.exe"), "Hello.", str(wav), "tcp://127.0.0.1:1"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "not connected" in bad.stderr


def test_csharp_transport_refuses_a_curve_server_with_a_clear_error(built, tmp_path):
    from mfruntime.runtime.security import write_keypair

    public, secret = write_keypair(tmp_path / "server", "server")
    _, studio = write_keypair(tmp_path / "clients", "studio")
    with running_server("--curve-secret", str(secret), "--curve-clients", str(tmp_path / "clients"),
                        keys=(str(public), str(studio))) as (control, _):
        r = subprocess.run(["mono", str(built / "SayToWav.exe"), "Hello.", str(tmp_path / "x.wav"), control],
                           capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "CURVE" in r.stderr and "NULL only" in r.stderr, r.stdout + r.stderr


def test_unity_package_has_a_meta_file_with_a_unique_guid_for_everything_unity_imports():
    """Unity ignores files without .meta in a package installed from git (read-only); folders ending in ~ are not
    imported (Samples~, Documentation~, Tests~)."""
    import re

    guids, missing, orphans = {}, [], []
    for path in sorted(BRIDGE.rglob("*")):
        rel = path.relative_to(BRIDGE)
        if any(part.endswith("~") for part in rel.parts):
            continue
        if path.suffix == ".meta":
            if not path.with_suffix("").exists():
                orphans.append(str(rel))
            continue
        meta = path.with_name(path.name + ".meta")
        if not meta.exists():
            missing.append(str(rel))
            continue
        m = re.search(r"^guid: ([0-9a-f]{32})$", meta.read_text(), re.M)
        assert m, f"{meta} has no guid"
        assert m.group(1) not in guids, f"{rel} and {guids.get(m.group(1))} share a guid"
        guids[m.group(1)] = rel
    assert not missing, f"no .meta for {missing}"
    assert not orphans, f".meta without its file: {orphans}"
    assert len(guids) >= 15
