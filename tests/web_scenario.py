"""`mf serve --web` in a real headless Chromium: the page's own self-check (?check=1&preview=1: connect, a line
with speech energy and ~25 fps frames, silence after, the A/V offset from the browser's track timing, the 3D rig
preview — the head's morph targets on the audio clock, its head pose — interrupt, reconnect) and the token rules.
The preview's mouth-to-sound lag is compared with the same lag on the server's own chunks of that line. Run by test_web.py inside a loopback-only network namespace with 127.0.0.2 added (aiortc's
ICE does not offer 127.0.0.1). Writes what it saw as JSON.

    python -m tests.web_scenario OUT.json
"""
from __future__ import annotations

import json
import shutil
import threading
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--allow-loopback-in-peer-connection",
                  "--autoplay-policy=no-user-gesture-required", "--no-first-run", "--disable-extensions",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--mute-audio", "--window-size=900,700", "--disable-features=WebRtcHideLocalIpsWithMdns",
                  "--enable-unsafe-swiftshader", "--use-angle=swiftshader"]  # WebGL on the CPU, for the 3D preview


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def post(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def run_page(browser: str, url: str, web, timeout: float = 180) -> dict | None:
    """Open ``url`` in headless Chromium until the page posts its self-check (or ``timeout``)."""
    before = len(web.checks)  # (the list keeps the last MAX_CHECKS: plenty for a test)
    profile = tempfile.mkdtemp(prefix="mf-chromium-")
    proc = subprocess.Popen([browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", url],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + timeout
        while len(web.checks) == before and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        return web.checks[-1]["result"] if len(web.checks) > before else None
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)


def best_lag(chunks: list, pad: float = 0.2) -> dict:
    """The lag (ms) that best lines up one line's ``jawOpen`` with its sound, on the server's own chunks: as the
    page's bestLag (app.js) — a 10-ms grid, the jaw held per frame, the RMS per 10 ms, the lag in ±300 ms with the
    highest correlation of jaw(t) with level(t + lag)."""
    import numpy as np

    from mfruntime.rig import CONTROLS

    t0 = chunks[0]["pts"] - pad
    t1 = chunks[-1]["pts"] + len(chunks[-1]["pcm"]) / chunks[-1]["sample_rate"] + pad
    n = int(round((t1 - t0) / 0.01))
    jaw, level = np.zeros(n), np.zeros(n)
    for c in chunks:
        sr, fps = c["sample_rate"], c["fps"]
        for i, row in enumerate(c["rig"]):
            k = int(round((c["pts"] + i / fps - t0) / 0.01))
            jaw[max(k, 0):] = row[CONTROLS.index("jawOpen")]
        hop = sr // 100
        for j in range(len(c["pcm"]) // hop):
            k = int(round((c["pts"] + j * hop / sr - t0) / 0.01))
            if 0 <= k < n:
                level[k] = float(np.sqrt(np.mean(c["pcm"][j * hop:(j + 1) * hop] ** 2)))
    # after the line: the jaw rests
    best = None
    for lag in range(-30, 31):
        i = np.arange(n)
        ok = (i + lag >= 0) & (i + lag < n)
        r = np.corrcoef(jaw[ok], level[(i + lag)[ok]])[0, 1]
        if best is None or r > best["r"]:
            best = {"lag_ms": lag * 10, "r": float(r)}
    return best


def main(out_path: str) -> None:
    from mfruntime.runtime.server import ServeConfig, Server
    from mfruntime.runtime.web.config import WebConfig
    from mfruntime.runtime.web.server import WebServer

    import logging

    logging.basicConfig(level=logging.DEBUG if "-v" in sys.argv else logging.INFO, format="%(asctime)s %(name)s %(message)s")
    result: dict = {}
    browser = chromium()
    server = Server(ServeConfig(bind="tcp://127.0.0.1:*", stream="tcp://127.0.0.1:*", steps=2, threads=1)).start()
    web = WebServer(WebConfig("http://127.0.0.1:0", token="s3cret"), server.control_address, server.stream_address).start()
    try:
        result["wrong_token"] = post(f"{web.address}/offer", {"sdp": "x", "type": "offer", "token": "nope"})
        result["no_token"] = post(f"{web.address}/offer", {"sdp": "x", "type": "offer"})
        result["bad_body"] = post(f"{web.address}/offer", {"token": "s3cret", "type": "offer"})
        result["bad_sdp"] = post(f"{web.address}/offer", {"token": "s3cret", "type": "offer", "sdp": "v=0\r\ngarbage"})
        result["bad_upscale"] = post(f"{web.address}/offer", {"token": "s3cret", "type": "offer", "sdp": "x",
                                                              "upscale": 9})
        from mfruntime.runtime.client import Subscriber

        chunks: list = []
        stop = threading.Event()

        def listen():
            with Subscriber(server.stream_address) as sub:
                while not stop.is_set():
                    try:
                        m = sub.recv(0.2)
                    except TimeoutError:
                        continue
                    if m.rig is not None:
                        chunks.append({**m.header, "pcm": m.pcm, "rig": m.rig})
        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        from mfruntime.runtime.web.vendor import installed

        result["preview_installed"] = installed()  # without three.js the page is checked without its 3D preview
        preview = "&preview=1" if result["preview_installed"] else ""
        result["page"] = run_page(browser, f"{web.address}/?check=1{preview}&token=s3cret", web)
        stop.set()
        listener.join(5)
        preview = (result["page"] or {}).get("preview")
        if preview:
            line = [c for c in chunks if c["utterance"] == preview["utterance"] and c["samples"]]
            result["server_lag"] = best_lag(line) if line else None
        result["page_wrong_token"] = run_page(browser, f"{web.address}/?check=1&token=nope", web, timeout=60)
        result["peers_left"] = len(web.peers)
    except Exception as exc:
        import traceback

        result["error"] = "".join(traceback.format_exception(exc))[-3000:]
    finally:
        web.close()
        server.close()
        with open(out_path, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
