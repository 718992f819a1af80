"""Headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe): nothing but the standard library, and no
debugging port opened. Shared by the browser tests (tests/test_lab.py; tests/test_book_browser.py holds the same class and can import it
from here). `page_problems` collects, from the events so far, what a reader would call broken: console errors, uncaught exceptions,
failed requests, HTTP errors and any request that left 127.0.0.1.
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic", "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio"]


class Chromium:
    "Headless Chromium driven over the DevTools protocol on a pipe: JSON messages separated by NUL bytes, fd 3 in and fd 4 out."

    def __init__(self, width: int = 1440, height: int = 900):
        to_chrome_r, to_chrome_w = os.pipe()
        from_chrome_r, from_chrome_w = os.pipe()
        # Chromium reads fd 3 and writes fd 4; move the child's ends out of the way first so dup2 cannot clobber one with the other.
        high_r, high_w = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 100), fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 100)

        def child_fds():
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self.profile = tempfile.mkdtemp(prefix="book-chromium-")
        self.process = subprocess.Popen(
            [CHROMIUM, *CHROMIUM_FLAGS, "--remote-debugging-pipe", f"--user-data-dir={self.profile}",
             f"--window-size={width},{height}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=child_fds, close_fds=False)
        for fd in (to_chrome_r, from_chrome_w, high_r, high_w):
            os.close(fd)
        self.writer = os.fdopen(to_chrome_w, "wb", buffering=0)
        self.reader = os.fdopen(from_chrome_r, "rb", buffering=0)
        self.replies: dict[int, queue.Queue] = {}
        self.events: list[dict] = []
        self.next_id = 0
        self.lock = threading.Lock()
        self.stderr_lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self.stderr_lines.extend(l.decode(errors="replace") for l in self.process.stderr),
                         daemon=True).start()
        self.width, self.height = width, height
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session=True)
        self.send("Emulation.setDeviceMetricsOverride", session=True, width=width, height=height, deviceScaleFactor=1, mobile=False)

    def _read(self):
        buffer = b""
        while True:
            chunk = self.reader.read(1 << 16)
            if not chunk:
                return
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                if "id" in message:
                    self.replies.setdefault(message["id"], queue.Queue()).put(message)
                else:
                    with self.lock:
                        self.events.append(message)

    def send(self, method: str, session: bool = False, timeout: float = 60, **params):
        with self.lock:
            self.next_id += 1
            message_id = self.next_id
            self.replies.setdefault(message_id, queue.Queue())
        message = {"id": message_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        self.writer.write(json.dumps(message).encode() + b"\0")
        reply = self.replies[message_id].get(timeout=timeout)
        del self.replies[message_id]
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def take_events(self) -> list[dict]:
        with self.lock:
            events, self.events = self.events, []
        return events

    def evaluate(self, expression: str, timeout: float = 60):
        "Evaluate JavaScript in the page (awaiting a promise), returning its JSON value."
        result = self.send("Runtime.evaluate", session=True, timeout=timeout + 5, expression=expression, awaitPromise=True,
                           returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"JavaScript failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def navigate(self, url: str, timeout: float = 60):
        self.take_events()
        self.send("Page.navigate", session=True, url=url)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if any(e.get("method") == "Page.loadEventFired" for e in self.events):
                return
            time.sleep(0.05)
        raise TimeoutError(f"{url} did not finish loading in {timeout} s")

    def key(self, key: str, code: str, key_code: int):
        for kind in ("keyDown", "keyUp"):
            self.send("Input.dispatchKeyEvent", session=True, type=kind, key=key, code=code, windowsVirtualKeyCode=key_code)

    def wait_for(self, expression: str, timeout: float, what: str, interval: float = 0.25):
        "Poll a JavaScript expression until it is truthy; return its value, or raise TimeoutError naming `what`."
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(interval)
        raise TimeoutError(f"{what}: not seen within {timeout:.0f} s")

    def click_at(self, x: float, y: float):
        "A real left click (mouse moved there, pressed, released) at page coordinates x, y of the window."
        self.send("Input.dispatchMouseEvent", session=True, type="mouseMoved", x=x, y=y)
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", session=True, type=kind, x=x, y=y, button="left", buttons=1, clickCount=1)

    def click(self, element_expression: str, what: str):
        "Scroll the element a JavaScript expression yields into view and click its centre, as a user would."
        box = self.evaluate(f"(() => {{ const e = {element_expression}; if (!e) return null; e.scrollIntoView({{block: 'center'}});"
                            " const r = e.getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2]; })()")
        if box is None:
            raise RuntimeError(f"{what}: no such element on the page")
        self.click_at(*box)

    def screenshot(self, path: Path, max_height: int, selector: str | None = None, index: int = 0):
        "The page from its top, up to max_height pixels tall; or the index-th element matching selector (with a margin)."
        if selector:
            box = self.evaluate(f"(() => {{ const e = document.querySelectorAll({json.dumps(selector)})[{index}];"
                                " e.scrollIntoView({block: 'start'}); const r = e.getBoundingClientRect();"
                                " return [r.left + scrollX, r.top + scrollY, r.width, r.height]; })()")
            clip = {"x": max(0, box[0] - 16), "y": max(0, box[1] - 16), "width": box[2] + 32, "height": min(max_height, box[3] + 32)}
            clip["height"] = min(clip["height"], self.height)  # the element is scrolled to the top of the window
            data = self.send("Page.captureScreenshot", session=True, format="png", clip=dict(clip, scale=1))["data"]
        else:  # a window that tall (capturing beyond the viewport would leave sticky sidebars where the viewport ended)
            height = min(max_height, int(self.evaluate("document.documentElement.scrollHeight")))
            self.send("Emulation.setDeviceMetricsOverride", session=True, width=self.width, height=height, deviceScaleFactor=1,
                      mobile=False)
            self.evaluate("window.scrollTo(0, 0); new Promise(r => setTimeout(r, 300))")
            data = self.send("Page.captureScreenshot", session=True, format="png")["data"]
            self.send("Emulation.setDeviceMetricsOverride", session=True, width=self.width, height=self.height,
                      deviceScaleFactor=1, mobile=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))

    def close(self):
        try:
            self.send("Browser.close", timeout=10)
        except Exception:
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


def page_problems(chromium: Chromium) -> list[str]:
    "Console errors, uncaught exceptions, failed requests and requests that left 127.0.0.1, from the events so far."
    problems = []
    for event in chromium.take_events():
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            problems.append(f"uncaught exception: {details.get('exception', {}).get('description') or details.get('text')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            problems.append("console.error: " + " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"]))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            problems.append(f"console error: {params['entry']['text']} {params['entry'].get('url', '')}")
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            problems.append(f"request failed: {params.get('errorText')} ({params.get('type')})")
        elif method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            if not re.match(r"^(https?://127\.0\.0\.1[:/]|data:|blob:|about:)", url):
                problems.append(f"request left the machine: {url}")
        elif method == "Network.responseReceived" and params["response"]["status"] >= 400:
            problems.append(f"HTTP {params['response']['status']}: {params['response']['url']}")
    return problems
