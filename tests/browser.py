"""Render an HTML file in headless Chromium and report what a reader would see.

Drives Chromium over the DevTools protocol on a pipe (``--remote-debugging-pipe``: commands on fd 3,
replies on fd 4, messages separated by NUL), so that nothing but the standard library is needed and no
port is opened. Returns the full-page screenshot, the state of the DOM after the load event (images and
whether they decoded), console messages, page errors and every network request the page tried.

    >>> result = render("card.html")          # doctest: +SKIP
    >>> result.screenshot_size, result.errors  # doctest: +SKIP
    ((1280, 5210), [])
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import struct
import subprocess
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

__all__ = ["Rendered", "chromium_path", "render", "require_chromium"]

# Networking features off: the page must not need them, and tests must not reach out.
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--disable-domain-reliability", "--no-default-browser-check",
    "--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,AutofillServerCommunication",
    "--metrics-recording-only", "--mute-audio", "--hide-scrollbars", "--disable-dev-shm-usage",
    "--remote-debugging-pipe",
)

# What the page looks like to a script after load: every <img>, its decoded size, and a few landmarks.
_DOM_STATE = """JSON.stringify({
  title: document.title,
  images: Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete,
      naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight,
      width: i.getBoundingClientRect().width, height: i.getBoundingClientRect().height,
      textPx: i.dataset.textPx ? parseFloat(i.dataset.textPx) : null})),
  overflowing: Array.from(document.querySelectorAll('main *')).filter(e => {
      const r = e.getBoundingClientRect();
      return r.width > 0 && (r.right > window.innerWidth + 0.5 || r.left < -0.5) && !e.closest('figure:target');
    }).slice(0, 20).map(e => e.tagName.toLowerCase() + (e.className ? '.' + e.className : '') + ': '
      + (e.textContent || '').trim().slice(0, 60)),
  scrollers: Array.from(document.querySelectorAll('main *')).filter(e => e.scrollWidth > e.clientWidth + 1
      && ['auto', 'scroll'].includes(getComputedStyle(e).overflowX)).map(e => e.tagName.toLowerCase()
      + (e.className ? '.' + e.className : '')),
  smallestText: Math.min(...Array.from(document.querySelectorAll('main *')).filter(e =>
      Array.from(e.childNodes).some(n => n.nodeType === 3 && n.textContent.trim()) && e.getClientRects().length)
      .map(e => parseFloat(getComputedStyle(e).fontSize))),
  headings: Array.from(document.querySelectorAll('h1,h2,h3')).map(h => h.textContent.trim()),
  tables: document.querySelectorAll('table').length,
  scripts: document.scripts.length,
  text: document.body.innerText,
  bodyWidth: document.documentElement.scrollWidth,
  viewportWidth: window.innerWidth,
  background: getComputedStyle(document.body).backgroundColor
})"""


@dataclass
class Rendered:
    """What Chromium made of a page."""

    screenshot: bytes  # PNG of the whole page
    screenshot_size: tuple[int, int]  # (width, height) in pixels
    dom: dict[str, Any]  # see _DOM_STATE
    console: list[dict[str, Any]] = field(default_factory=list)  # {"level", "text"} of console calls and log entries
    errors: list[str] = field(default_factory=list)  # uncaught exceptions and error-level messages
    requests: list[str] = field(default_factory=list)  # URLs the page requested (the page itself included)


def chromium_path() -> str | None:
    """The Chromium binary, or None. FILTERDB_CHROMIUM overrides the search."""
    override = os.environ.get("FILTERDB_CHROMIUM")
    if override:
        return override
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def require_chromium() -> str:
    """The Chromium binary; skips the test when it is missing, fails in CI (env CI set)."""
    path = chromium_path()
    if path is None:
        reason = "headless Chromium is not installed: run scripts/install-chromium.sh (Debian package 'chromium')"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


class _Pipe:
    """One DevTools connection over the pipe pair of a Chromium process."""

    def __init__(self, proc: subprocess.Popen[bytes], write_fd: int, read_fd: int) -> None:
        self.proc, self.write_fd, self.read_fd = proc, write_fd, read_fd
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None,
             timeout: float = 30.0) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        wanted = self.next_id
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline, what=method)
            if reply.get("id") == wanted:
                if "error" in reply:
                    raise RuntimeError(f"DevTools {method} failed: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, *, timeout: float = 30.0) -> dict[str, Any]:
        for event in self.events:
            if event.get("method") == method:
                return event
        deadline = time.monotonic() + timeout
        while True:
            event = self._read(deadline, what=method)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def _read(self, deadline: float, *, what: str) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"Chromium did not answer {what} in time")
            ready, _, _ = select.select([self.read_fd], [], [], left)
            if ready:
                chunk = os.read(self.read_fd, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"Chromium closed the DevTools pipe (exit code {self.proc.poll()})")
                self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)


def render(path: str | os.PathLike[str], *, width: int = 1280, height: int = 900, dark: bool = False,
           timeout: float = 60.0) -> Rendered:
    """Open ``path`` in headless Chromium, wait for the load event, and collect what it shows."""
    binary = require_chromium()
    url = Path(path).resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="filterdb-chromium-") as profile:
        to_chrome_r, to_chrome_w = os.pipe()
        from_chrome_r, from_chrome_w = os.pipe()

        def child_fds() -> None:  # Chromium reads commands on fd 3 and writes replies on fd 4
            high_r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)  # out of the way of 3 and 4 first
            high_w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        log = open(Path(profile) / "stderr.log", "wb")  # noqa: SIM115 - closed in the finally below
        proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
            # preexec_fn is unsafe with threads; the tests that call this are single-threaded
            pass_fds=(3, 4, to_chrome_r, from_chrome_w), preexec_fn=child_fds,  # noqa: PLW1509
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        pipe = _Pipe(proc, to_chrome_w, from_chrome_r)
        try:
            return _drive(pipe, url, width, height, dark, timeout)
        except (RuntimeError, TimeoutError) as e:
            log.flush()
            tail = (Path(profile) / "stderr.log").read_bytes()[-3000:].decode(errors="replace")
            raise RuntimeError(f"{e}; Chromium's stderr ends with:\n{tail}") from e
        finally:
            try:
                pipe.send("Browser.close", timeout=5)
            except Exception:  # noqa: BLE001, S110 - Chromium is already gone: nothing to close
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            os.close(to_chrome_w)
            os.close(from_chrome_r)
            log.close()


def _drive(pipe: _Pipe, url: str, width: int, height: int, dark: bool, timeout: float) -> Rendered:
    target = pipe.send("Target.createTarget", {"url": "about:blank"}, timeout=timeout)["targetId"]
    session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        pipe.send(f"{domain}.enable", session=session)
    pipe.send("Emulation.setDeviceMetricsOverride",
              {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=session)
    pipe.send("Emulation.setEmulatedMedia",
              {"features": [{"name": "prefers-color-scheme", "value": "dark" if dark else "light"}]}, session=session)
    pipe.events.clear()
    pipe.send("Page.navigate", {"url": url}, session=session, timeout=timeout)
    pipe.wait_for("Page.loadEventFired", timeout=timeout)
    state = pipe.send("Runtime.evaluate", {"expression": _DOM_STATE, "returnByValue": True,
                                            "awaitPromise": True}, session=session)
    dom = json.loads(state["result"]["value"])
    metrics = pipe.send("Page.getLayoutMetrics", session=session)
    size = metrics.get("cssContentSize") or metrics["contentSize"]
    shot = pipe.send("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
    }, session=session, timeout=timeout)
    import base64

    png = base64.b64decode(shot["data"])
    console, errors, requests = [], [], []
    for event in pipe.events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            console.append({"level": params.get("type"), "text": text})
            if params.get("type") in ("error", "assert"):
                errors.append(f"console.{params.get('type')}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            errors.append(f"exception: {details.get('exception', {}).get('description') or details.get('text')}")
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            console.append({"level": entry.get("level"), "text": entry.get("text")})
            if entry.get("level") == "error":
                errors.append(f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}".strip())
        elif method == "Network.requestWillBeSent":
            requests.append(params.get("request", {}).get("url", ""))
        elif method == "Network.loadingFailed":
            errors.append(f"network: {params.get('errorText')} {params.get('blockedReason', '')}".strip())
    return Rendered(screenshot=png, screenshot_size=png_size(png), dom=dom, console=console, errors=errors,
                    requests=requests)


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    return struct.unpack(">II", data[16:24])


def png_distinct_rows(data: bytes, sample: int = 64) -> int:
    """How many of ``sample`` evenly spaced rows of an 8-bit RGB(A) PNG differ from the first row: a crude
    measure that the screenshot is not blank. Decodes with zlib only (filter type 0 rows compare raw)."""
    _, height = png_size(data)
    chunks, pos = [], 8
    while pos < len(data):
        length = struct.unpack(">I", data[pos:pos + 4])[0]
        kind = data[pos + 4:pos + 8]
        if kind == b"IDAT":
            chunks.append(data[pos + 8:pos + 8 + length])
        pos += 12 + length
    raw = zlib.decompress(b"".join(chunks))
    stride = len(raw) // height
    rows = {raw[i * stride + 1:(i + 1) * stride] for i in range(0, height, max(1, height // sample))}
    return len(rows) - 1


def assert_report_renders(path: Path, *, dark: bool = False) -> Rendered:
    """A report page (zoo report, demo) renders in Chromium: no errors, a long page of decoded figures that fit
    the viewport, no script, no request outside the file."""
    import re

    text = path.read_text(encoding="utf-8")
    n_images = len(re.findall(r"<img ", text))
    result = render(path, dark=dark)
    assert result.errors == [], result.errors
    width, height = result.screenshot_size
    assert width == 1280 and height >= 3000  # a long page of figures
    assert png_distinct_rows(result.screenshot) >= 30
    images = result.dom["images"]
    assert len(images) == n_images > 0
    for image in images:
        assert image["complete"] and image["naturalWidth"] > 0 and image["naturalHeight"] > 0, image["alt"]
        assert 0 < image["width"] <= 1280
    assert result.dom["bodyWidth"] <= result.dom["viewportWidth"]
    assert result.dom["scripts"] == 0
    assert [u for u in result.requests if not u.startswith(("file://", "data:"))] == []
    return result
