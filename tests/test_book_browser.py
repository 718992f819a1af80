"""The book, read in a real browser: build it (tools/build_book.py), serve it on 127.0.0.1, load every page in headless Chromium
(Debian's `chromium`) and check what a reader sees, from the rendered DOM:

- math is typeset: MathJax output in every math element, no MathJax errors, no raw `$$` or `\\[` left in the text, no display
  equation cut off;
- every image loaded (figures and the widgets' pictures);
- the widget views rendered on the pages that have widgets, and on the interactive page moving a control changes the picture;
- every link inside the book resolves (page exists, and its #fragment too);
- nothing went to the console as an error, no request failed, and no request left 127.0.0.1 (the book reads offline).

Screenshots of a few pages go to _book_screens/. Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe),
so the test needs nothing but the standard library and opens no debugging port. Run it with `make test-book`.
"""
from __future__ import annotations

import base64
import fcntl
import functools
import http.server
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCREENS = ROOT / "_book_screens"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic", "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio"]
INTERACTIVE_PAGE = "03b_interactive.html"
SCREENSHOTS = {"index.html": 1600, "01_joint_entropy.html": 2400, "03_acquisition.html": 2000, INTERACTIVE_PAGE: 3200}


def _loud_skip(reason: str):
    banner = "\n" + "!" * 100 + f"\n!!! BOOK BROWSER TEST SKIPPED: {reason}\n" + "!" * 100 + "\n"
    sys.stderr.write(banner)
    pytest.skip(reason, allow_module_level=True)


if CHROMIUM is None:
    _loud_skip("no `chromium` on PATH, so the book was NOT checked in a browser: apt-get install -y chromium")
try:
    import jupyter_book  # noqa: F401
except ImportError:
    _loud_skip("jupyter-book is not installed (the `book` extra), so the book was NOT built or checked: run `make test-book`")


# ------------------------------------------------------------------------------------------------ DevTools protocol client
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


# ------------------------------------------------------------------------------------------------------------ what we read
WAIT_AND_PROBE = r"""
(async () => {
  const sleep = ms => new Promise(r => setTimeout(r, ms));
  const deadline = Date.now() + 45000;
  const viewScripts = document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').length;
  const mathSource = document.querySelectorAll('.math, span.math, div.math').length;
  // MathJax has typeset the page, the widget manager has rendered every view, and every image has settled.
  while (Date.now() < deadline) {
    const mathDone = !mathSource || (window.MathJax && MathJax.startup && MathJax.startup.promise &&
                                     document.querySelectorAll('mjx-container').length > 0);
    const widgetsDone = !viewScripts || document.querySelectorAll('.widget-subarea > *').length >= viewScripts;
    const imagesDone = [...document.images].every(i => i.complete);
    if (mathDone && widgetsDone && imagesDone) break;
    await sleep(100);
  }
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  await sleep(300);
  const article = document.querySelector('main') || document.body;
  const text = [...article.querySelectorAll('p, li, td, th, h1, h2, h3, h4, blockquote, dd, dt, .math')]
    .filter(e => !e.closest('pre, code, .highlight, mjx-container, script, .cell_output'))
    .map(e => e.innerText).join('\n');
  return {
    title: document.title,
    mathSource,
    mathjax: document.querySelectorAll('mjx-container').length,
    untypeset: [...document.querySelectorAll('span.math, div.math')].filter(e => !e.querySelector('mjx-container'))
                 .map(e => e.textContent.slice(0, 80)).slice(0, 5),
    clippedMath: [...document.querySelectorAll('div.math')].filter(e => { const c = e.querySelector('mjx-container');
                   return c && c.getBoundingClientRect().left < e.getBoundingClientRect().left - 1; })
                   .map(e => e.textContent.slice(0, 60)).slice(0, 5),
    mathErrors: [...document.querySelectorAll('mjx-merror, [data-mjx-error]')].map(e => e.getAttribute('data-mjx-error') || e.textContent),
    rawMath: (text.match(/\$\$|\\\[|\\\]|\\\(|\\\)|(^|[^\\])\$[^$\s][^$]*\$/g) || []).slice(0, 5),
    images: [...document.images].map(i => ({src: i.currentSrc.slice(0, 120), ok: i.complete && i.naturalWidth > 0})),
    viewScripts,
    widgetViews: document.querySelectorAll('.widget-subarea > *').length,
    widgetErrors: [...document.querySelectorAll('.widget-subarea')].filter(e => /Error|error displaying/.test(e.innerText))
                     .map(e => e.innerText.slice(0, 200)),
    sliders: document.querySelectorAll('.widget-slider, .widget-hslider').length,
    toggleButtons: document.querySelectorAll('.widget-toggle-buttons').length,
    links: [...document.querySelectorAll('a[href]')].map(a => a.href),
  };
})()
"""

# The picture each explorer shows right now (only the selected child of every Stack is laid out).
VISIBLE_PICTURES = r"""
[...document.querySelectorAll('.widget-subarea')].map(area =>
  [...area.querySelectorAll('img')].filter(i => i.offsetParent !== null && i.getBoundingClientRect().height > 0)
    .map(i => i.src).join(' '))
"""


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


# ---------------------------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def site() -> Path:
    "Build the book (executing the notebooks whose code changed since the last build) and return the HTML folder."
    start = time.time()
    extra = os.environ.get("BOOK_BUILD_ARGS", "").split()  # e.g. --keep-going while someone's chapter is broken
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "build_book.py"), *extra], cwd=ROOT, capture_output=True,
                            text=True)
    print(result.stdout[-3000:])
    assert result.returncode == 0, f"tools/build_book.py failed:\n{result.stdout[-5000:]}\n{result.stderr[-5000:]}"
    print(f"book built in {time.time() - start:.0f} s")
    return ROOT / "_book" / "_build" / "html"


@pytest.fixture(scope="module")
def server(site):
    "The site on http://127.0.0.1:<free port>/, in a thread."
    handler = functools.partial(QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser():
    chromium = Chromium()
    yield chromium
    chromium.close()


def book_pages(site: Path) -> list[str]:
    "The chapters in book order (from _toc.yml), as HTML file names."
    toc = (ROOT / "_book_src" / "_toc.yml").read_text()
    return [name + ".html" for name in re.findall(r"^(?:root|- file): (\S+)$", toc, re.MULTILINE)]


# ------------------------------------------------------------------------------------------------------------------- tests
def test_book_in_chromium(site, server, browser):
    start = time.time()
    pages = book_pages(site)
    assert pages[0] == "index.html" and len(pages) >= 2, pages
    assert INTERACTIVE_PAGE in pages, f"{INTERACTIVE_PAGE} is not in the book: {pages}"
    failures, fetched, report = [], {}, []
    for page in pages:
        url = urllib.parse.urljoin(server, page)
        browser.navigate(url)
        probe = browser.evaluate(WAIT_AND_PROBE, timeout=60)
        problems = page_problems(browser)
        html = (site / page).read_text(encoding="utf-8")
        has_math = 'class="math' in html
        if has_math and probe["mathjax"] == 0:
            problems.append(f"math not typeset: {probe['mathSource']} math elements, no MathJax output")
        if probe["untypeset"]:
            problems.append(f"math left untypeset: {probe['untypeset']}")
        if probe["clippedMath"]:
            problems.append(f"display math cut off on the left (wider than the page, not scrollable): {probe['clippedMath']}")
        if probe["mathErrors"]:
            problems.append(f"MathJax errors: {probe['mathErrors'][:5]}")
        if probe["rawMath"]:
            problems.append(f"raw TeX left in the text: {probe['rawMath']}")
        broken = [i["src"] for i in probe["images"] if not i["ok"]]
        if broken:
            problems.append(f"{len(broken)} image(s) did not load: {broken[:5]}")
        if probe["viewScripts"] and probe["widgetViews"] < probe["viewScripts"]:
            problems.append(f"only {probe['widgetViews']} of {probe['viewScripts']} widget views rendered")
        if probe["widgetErrors"]:
            problems.append(f"widget errors: {probe['widgetErrors']}")
        problems += broken_links(probe["links"], server, fetched)
        report.append(f"{page}: {probe['mathjax']} formulas, {len(probe['images'])} images, {probe['widgetViews']} widget views, "
                      f"{len(probe['links'])} links")
        if page == INTERACTIVE_PAGE:
            problems += check_interactive(browser, probe)
        if page in SCREENSHOTS:
            browser.evaluate("window.scrollTo(0, 0)")
            browser.screenshot(SCREENS / page.replace(".html", ".png"), SCREENSHOTS[page])
        failures += [f"{page}: {p}" for p in problems]
    print("\n".join(report))
    print(f"{len(pages)} pages checked in Chromium in {time.time() - start:.1f} s; screenshots in {SCREENS}")
    assert not failures, "\n".join(failures)


def check_interactive(browser: Chromium, probe: dict) -> list[str]:
    "The explorers rendered, and moving a control (keyboard on a slider, a click on a toggle button) changes the picture."
    problems = []
    if probe["viewScripts"] < 2 or probe["sliders"] < 2 or probe["toggleButtons"] < 1:
        return [f"expected two explorers with sliders and buttons, found {probe['viewScripts']} views, "
                f"{probe['sliders']} sliders, {probe['toggleButtons']} toggle buttons"]
    before = browser.evaluate(VISIBLE_PICTURES)
    for index in range(len(before)):
        browser.screenshot(SCREENS / f"03b_explorer{index + 1}.png", 1200, ".widget-subarea", index)
    shown = [p for p in before if p]
    if len(shown) < 2 or any(len(p.split()) != 1 for p in shown):
        return [f"each explorer should show exactly one picture, shows {[len(p.split()) for p in before]}"]
    # A click on a toggle button (the method "BALD" if there is one), then two steps right on every slider's handle.
    browser.evaluate("([...document.querySelectorAll('.widget-toggle-buttons button')].find(b => b.innerText.trim() === 'BALD')"
                     " || document.querySelector('.widget-toggle-buttons button')).click()")
    handles = browser.evaluate("document.querySelectorAll('.widget-slider .noUi-handle, .widget-hslider .noUi-handle').length")
    for index in range(handles):
        browser.evaluate(f"document.querySelectorAll('.widget-slider .noUi-handle, .widget-hslider .noUi-handle')[{index}].focus()")
        for _ in range(2):
            browser.key("ArrowRight", "ArrowRight", 39)
    time.sleep(0.5)
    after = browser.evaluate(VISIBLE_PICTURES)
    changed = [b != a for b, a in zip(before, after) if b]
    if not all(changed):
        problems.append(f"moving the controls did not change the picture of explorer(s) {[i for i, c in enumerate(changed) if not c]}")
    if any(len(p.split()) != 1 for p in after if p):
        problems.append("after moving the controls an explorer shows no picture or several")
    for index in range(len(after)):
        browser.screenshot(SCREENS / f"03b_explorer{index + 1}_moved.png", 1200, ".widget-subarea", index)
    return problems + page_problems(browser)


def broken_links(links: list[str], server: str, fetched: dict) -> list[str]:
    "Links into the book that don't resolve: the page is missing, or has no element with the #fragment's id."
    problems = []
    for link in links:
        if not link.startswith(server):
            continue  # the repository's pages and the like: not part of the offline book
        page, _, fragment = link.partition("#")
        if page not in fetched:
            try:
                with urllib.request.urlopen(page, timeout=10) as response:
                    fetched[page] = response.read().decode("utf-8", errors="replace")
            except urllib.error.HTTPError as error:
                fetched[page] = error
        body = fetched[page]
        if isinstance(body, Exception):
            problems.append(f"link to {link}: {body}")
        elif fragment and page.endswith((".html", "/")) and not re.search(
                rf'\b(id|name)="{re.escape(urllib.parse.unquote(fragment))}"', body):
            problems.append(f"link to {link}: no element with id {fragment!r}")
    return sorted(set(problems))
