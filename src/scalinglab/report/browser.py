"""Open a page in headless Chromium and record what it did: a screenshot, console errors,
every network request, and each <img>'s decoded size.

Used by the report's browser test and by `scalinglab report --screenshot`. Chromium is
driven with the Chrome DevTools Protocol over `--remote-debugging-pipe` (the transport
Puppeteer uses with `pipe: true`): Chromium reads JSON commands, each ended by a NUL byte,
from its fd 3 and writes replies and events to its fd 4. No websocket, no open port, no
extra Python package: only the `chromium` binary (Debian packages chromium +
chromium-driver, `scripts/install_system_deps.sh --browser`).

What is recorded and why it is trustworthy:
- requests: `Network.requestWillBeSent` for every URL the page asks for, data: URIs
  included, so "no network" is checked by the browser itself, not by parsing HTML;
- errors: `Runtime.consoleAPICalled` (error/assert), `Runtime.exceptionThrown`, and
  `Log.entryAdded` at level error (failed loads, Content-Security-Policy refusals);
- images: `naturalWidth/naturalHeight` after `img.decode()`, and each image's box on the
  page so a caller can inspect those pixels of the screenshot.

Not covered: this is one page load at one viewport width; it does not test printing or
interaction.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scalinglab.errors import UserError

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--disable-default-apps",
    "--hide-scrollbars",
    "--mute-audio",
    "--remote-debugging-pipe",
]

IMAGES_JS = """(async () => {
  const imgs = [...document.images];
  await Promise.all(imgs.map(i => i.decode().catch(() => null)));
  return {height: Math.ceil(document.documentElement.scrollHeight),
          images: imgs.map(i => { const r = i.getBoundingClientRect();
            return {complete: i.complete, naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight,
                    x: r.left + window.scrollX, y: r.top + window.scrollY, width: r.width, height: r.height,
                    alt: i.alt}; })};
})()"""


def find_chromium() -> str | None:
    for c in CHROMIUM_CANDIDATES:
        if os.access(c, os.X_OK):
            return c
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class PageVisit:
    url: str
    requests: list[str] = field(default_factory=list)  # every URL requested, in order
    errors: list[str] = field(default_factory=list)  # console errors, exceptions, failed loads
    images: list[dict] = field(default_factory=list)  # per <img>: natural size and page box (CSS px)
    height: int = 0  # page height in CSS px
    screenshot: bytes = b""  # full-page PNG at `width` CSS px, device scale 1

    @property
    def network_requests(self) -> list[str]:
        """Requests other than the page itself and inline data: URIs."""
        return [u for u in self.requests if u != self.url and not u.startswith("data:")]


class _Pipe:
    """CDP over two pipes: write NUL-terminated JSON to Chromium's fd 3, read from its fd 4."""

    def __init__(self, proc: subprocess.Popen, to_chrome: int, from_chrome: int):
        self.proc, self.w, self.r = proc, to_chrome, from_chrome
        self.buf, self.next_id, self.events = b"", 0, []

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 20.0) -> dict:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.w, json.dumps(msg).encode() + b"\0")
        while True:
            m = self._read(timeout)
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error'].get('message')}")
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, method: str, timeout: float = 20.0) -> dict:
        for i, e in enumerate(self.events):
            if e.get("method") == method:
                return self.events.pop(i)
        while True:
            m = self._read(timeout)
            if m.get("method") == method:
                return m
            self.events.append(m)

    def _read(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.r], [], [], left)[0]:
                raise TimeoutError(f"no reply from Chromium within {timeout:.0f} s")
            chunk = os.read(self.r, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium exited (code {self.proc.poll()})")
            self.buf += chunk
        raw, self.buf = self.buf.split(b"\0", 1)
        return json.loads(raw)


def _launch(chromium: str, user_dir: str, width: int, height: int) -> tuple[subprocess.Popen, _Pipe]:
    to_r, to_w = os.pipe()  # we write commands -> Chromium reads them on fd 3
    from_r, from_w = os.pipe()  # Chromium writes replies on fd 4 -> we read

    def child_fds() -> None:  # runs in the child between fork and exec
        a = fcntl.fcntl(to_r, fcntl.F_DUPFD, 10)
        b = fcntl.fcntl(from_w, fcntl.F_DUPFD, 10)
        os.dup2(a, 3)
        os.dup2(b, 4)

    cmd = [chromium, *FLAGS, f"--user-data-dir={user_dir}", f"--window-size={width},{height}", "about:blank"]
    # close_fds=False is safe: Python's own fds are non-inheritable (PEP 446); only the two
    # dup2'd ones (inheritable by default) cross exec.
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=child_fds,
        close_fds=False,
        start_new_session=True,
    )
    os.close(to_r)
    os.close(from_w)
    return proc, _Pipe(proc, to_w, from_r)


def visit(
    page: str | Path, width: int = 1280, height: int = 800, chromium: str | None = None, timeout: float = 30.0
) -> PageVisit:
    """Load a local HTML file in a fresh headless Chromium profile and record the visit."""
    chromium = chromium or find_chromium()
    if not chromium:
        raise UserError("headless Chromium not found (install it: scripts/install_system_deps.sh --browser)")
    url = Path(page).resolve().as_uri()
    out = PageVisit(url=url)
    with tempfile.TemporaryDirectory(prefix="scalinglab-chromium-") as user_dir:
        proc, cdp = _launch(chromium, user_dir, width, height)
        try:
            target = cdp.send("Target.createTarget", {"url": "about:blank"}, timeout=timeout)["targetId"]
            s = cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                cdp.send(f"{domain}.enable", session=s)
            cdp.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                session=s,
            )
            cdp.events.clear()
            cdp.send("Page.navigate", {"url": url}, session=s)
            cdp.wait_event("Page.loadEventFired", timeout=timeout)
            info = cdp.send(
                "Runtime.evaluate", {"expression": IMAGES_JS, "awaitPromise": True, "returnByValue": True}, session=s
            )["result"]["value"]
            out.images, out.height = info["images"], int(info["height"])
            shot = cdp.send(
                "Page.captureScreenshot",
                {
                    "format": "png",
                    "captureBeyondViewport": True,
                    "clip": {"x": 0, "y": 0, "width": width, "height": out.height, "scale": 1},
                },
                session=s,
                timeout=timeout,
            )
            out.screenshot = base64.b64decode(shot["data"])
            time.sleep(0.2)  # let late console/log events arrive before we read them
            cdp.send("Runtime.evaluate", {"expression": "1"}, session=s)
            _collect(cdp.events, out)
            try:
                cdp.send("Browser.close", timeout=5)
            except (RuntimeError, TimeoutError):
                pass
        finally:
            os.close(cdp.w)
            os.close(cdp.r)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                # Its own session (start_new_session): this kills Chromium's helpers and nothing else.
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return out


def _collect(events: list[dict], out: PageVisit) -> None:
    for e in events:
        m, p = e.get("method"), e.get("params", {})
        if m == "Network.requestWillBeSent":
            out.requests.append(p["request"]["url"])
        elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.errors.append(
                "console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            )
        elif m == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            out.errors.append("exception: " + str(d.get("exception", {}).get("description") or d.get("text")))
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            ent = p["entry"]
            out.errors.append(f"log ({ent.get('source')}): {ent.get('text')} {ent.get('url', '')}".strip())
