"""Headless Chromium driven through the DevTools protocol over a pipe (stdlib only).

``render(html_path, png_path)`` opens a page in Debian's ``chromium`` (no network,
a throw-away profile), and returns every ``figure.figure``'s id, title and boxes
(the figure, its caption, each ``<svg>`` in it) in CSS pixels, after saving a
screenshot of the whole page at device scale 1, so boxes are pixel boxes of the PNG.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BINARY = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
)
BOXES = """JSON.stringify([...document.querySelectorAll('figure.figure')].map(f => {
  const box = e => { const r = e.getBoundingClientRect();
    return [r.x + scrollX, r.y + scrollY, r.width, r.height]; };
  const caption = f.querySelector('figcaption');
  return {id: f.id, title: caption.textContent, box: box(f), caption: box(caption),
          svgs: [...f.querySelectorAll('svg')].map(box)};
}))"""
TRAMPOLINE = (
    "import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); "
    "os.execv(sys.argv[3], sys.argv[3:])"
)
SIZE = (
    "JSON.stringify([document.documentElement.scrollWidth, document.documentElement.scrollHeight])"
)


class Browser:
    """One Chromium process; ``call`` sends a DevTools command and waits for its answer."""

    def __init__(self, width: int = 1400, height: int = 1000):
        self.profile = tempfile.mkdtemp(prefix="leanfit-chromium-")
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()
        # the DevTools pipe is fds 3 (commands in) and 4 (answers out) of the browser: a
        # small exec trampoline puts the pipe's ends there (no preexec_fn in a threaded process)
        browser = [
            BINARY,
            *FLAGS,
            f"--user-data-dir={self.profile}",
            f"--window-size={width},{height}",
        ]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", TRAMPOLINE, str(to_chrome_r), str(from_chrome_w), *browser],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(to_chrome_r, from_chrome_w),
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.next_id, self.buffer, self.events = 0, b"", []
        self.width, self.height = width, height

    def call(self, method: str, session: str | None = None, timeout: float = 30, **params):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self.to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = self._read()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)
        raise TimeoutError(method)

    def wait_event(self, method: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = next((e for e in self.events if e.get("method") == method), None)
            if found is not None:
                self.events.remove(found)
                return found
            self.events.append(self._read())
        raise TimeoutError(method)

    def _read(self) -> dict:
        while b"\0" not in self.buffer:
            chunk = os.read(self.from_chrome, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(raw)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        os.close(self.to_chrome)
        os.close(self.from_chrome)
        shutil.rmtree(self.profile, ignore_errors=True)


def render(html: Path, png: Path) -> list[dict]:
    """Open ``html``, save a full-page screenshot to ``png``, return the figures' boxes."""
    browser = Browser()
    try:
        target = browser.call("Target.createTarget", url="about:blank")["targetId"]
        session = browser.call("Target.attachToTarget", targetId=target, flatten=True)
        sid = session["sessionId"]
        browser.call("Page.enable", sid)
        metrics = {"width": browser.width, "height": browser.height, "deviceScaleFactor": 1}
        browser.call("Emulation.setDeviceMetricsOverride", sid, mobile=False, **metrics)
        browser.call("Page.navigate", sid, url=Path(html).resolve().as_uri())
        browser.wait_event("Page.loadEventFired")
        width, height = _evaluate(browser, sid, SIZE)
        clip = {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}
        shot = browser.call(
            "Page.captureScreenshot", sid, format="png", captureBeyondViewport=True, clip=clip
        )
        import base64

        Path(png).write_bytes(base64.b64decode(shot["data"]))
        return _evaluate(browser, sid, BOXES)
    finally:
        browser.close()


def _evaluate(browser: Browser, session: str, expression: str):
    result = browser.call("Runtime.evaluate", session, expression=expression, returnByValue=True)
    return json.loads(result["result"]["value"])
