"""`mf serve` as a process: it starts, answers, and stops cleanly on SIGTERM."""
import signal
import subprocess
import sys
import time

from mfruntime.runtime.client import Client


def test_mf_serve_process_answers_and_stops_on_sigterm(tmp_path):
    import socket

    with socket.socket() as s:  # a free port pair is likely right after this one
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "mfruntime.cli", "serve", "--bind", f"tcp://127.0.0.1:{port}",
                             "--stream", "tcp://127.0.0.1:*", "--backend", "eager", "--device", "cpu", "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("mf serve: control"), (line, proc.stderr.read() if proc.poll() is not None else "")
        with Client(f"tcp://127.0.0.1:{port}", timeout=30) as c:
            assert c.request("ping")["characters"] == ["default"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert "stopped" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    t = time.time()
    bad = subprocess.run([sys.executable, "-m", "mfruntime.cli", "serve", "--bind", "tcp://0.0.0.0:5999"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--allow-remote" in bad.stderr and time.time() - t < 120
