"""Screenshots of the web page while the character speaks, for docs/WEB.md: a real `mf serve` with the page, headless
Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: no extra package), in a
loopback-only network namespace.

    python -m tests.web_screenshot docs/img/web-page.png [docs/img/web-obs.png [docs/img/web-preview.png]]

(root, or unprivileged user namespaces; it re-runs itself under ``unshare -n``.)
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time


class DevTools:
    """The DevTools protocol over Chromium's pipe: NUL-terminated JSON messages on fds 3 (to it) and 4 (from it)."""

    def __init__(self, browser: str, flags: list[str]) -> None:
        to_r, self.to_w = os.pipe()
        self.from_r, from_w = os.pipe()
        self.profile = tempfile.mkdtemp(prefix="mf-chromium-")

        def fds():  # in the child: the pipe ends as fds 3 and 4 (via high copies, so neither clobbers the other)
            a, b = os.dup(to_r) + 100, os.dup(from_w) + 100
            os.dup2(to_r, a)
            os.dup2(from_w, b)
            os.dup2(a, 3)
            os.dup2(b, 4)
        self.proc = subprocess.Popen([browser, *flags, "--remote-debugging-pipe", f"--user-data-dir={self.profile}",
                                      "about:blank"], close_fds=False, preexec_fn=fds,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_r)
        os.close(from_w)
        self.buf, self.ids, self.session = b"", 0, None

    def call(self, method: str, params: dict | None = None, session: bool = True) -> dict:
        self.ids += 1
        msg = {"id": self.ids, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self.to_w, json.dumps(msg).encode() + b"\0")
        while True:
            while b"\0" not in self.buf:
                chunk = os.read(self.from_r, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed its DevTools pipe")
                self.buf += chunk
            raw, self.buf = self.buf.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self.ids:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def open(self, url: str) -> None:
        target = self.call("Target.createTarget", {"url": url}, session=False)["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True}, session=False)["sessionId"]

    def js(self, expression: str):
        return self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})["result"].get("value")

    def screenshot(self, path: str) -> None:
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


def wait_js(dt: DevTools, expression: str, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not dt.js(expression):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


def main(page_png: str, obs_png: str | None, preview_png: str | None = None) -> None:
    from mfruntime.runtime.server import ServeConfig, Server
    from mfruntime.runtime.web.config import WebConfig
    from mfruntime.runtime.web.server import WebServer
    from tests.web_scenario import CHROMIUM_FLAGS, chromium

    server = Server(ServeConfig(bind="tcp://127.0.0.1:*", stream="tcp://127.0.0.1:*")).start()
    web = WebServer(WebConfig("http://127.0.0.1:0"), server.control_address, server.stream_address).start()
    flags = [f for f in CHROMIUM_FLAGS if not f.startswith("--window-size")] + ["--window-size=820,620"]
    try:
        for url, out in ((f"{web.address}/?scale=5", page_png), (f"{web.address}/?obs=1&bg=00b140&scale=5", obs_png),
                         (f"{web.address}/?scale=5&preview=1", preview_png)):
            if out is None:
                continue
            dt = DevTools(chromium(), flags)
            try:
                dt.open(url)
                wait_js(dt, "document.getElementById('face').readyState >= 2", 30, "the page's media")
                if "obs=1" not in url:
                    dt.js("document.getElementById('text').value = 'Good evening, and welcome to the show.';"
                          "document.getElementById('say').click()")
                    wait_js(dt, "document.getElementById('status').textContent.includes('speaking')", 30, "the line")
                else:  # the line is said from elsewhere: here, straight to the server
                    from mfruntime.runtime.client import Client

                    with Client(server.control_address) as c:
                        c.request("say", character="default", text="Good evening, and welcome to the show.")
                    time.sleep(0.8)
                if "preview=1" in url:  # the 3D head with its mouth open
                    wait_js(dt, "window.mfPreview && window.mfPreview.info().jawOpen > 0.45", 30, "an open mouth")
                else:
                    time.sleep(0.9)  # mid-line
                dt.screenshot(out)
                print(f"wrote {out}")
            finally:
                dt.close()
    finally:
        web.close()
        server.close()


if __name__ == "__main__":
    if os.environ.get("MF_NETNS") != "1":
        from tests import netns

        why = netns.available()
        if why is not None:
            sys.exit(f"web_screenshot needs a loopback-only network namespace: {why}")
        r = netns.isolated(["tests.web_screenshot", *sys.argv[1:]], timeout=300, env={"MF_NETNS": "1"},
                           second_address=True)
        sys.stdout.write(r.stdout)
        sys.stderr.write(r.stderr[-2000:] if r.returncode else "")
        sys.exit(r.returncode)
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None, sys.argv[3] if len(sys.argv) > 3 else None)
