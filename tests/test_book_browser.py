"""The book, read in a real browser: build it (tools/build_book.py), serve it on 127.0.0.1, load every page in headless Chromium
(Debian's `chromium`) and check what a reader sees, from the rendered DOM:

- math is typeset: MathJax output in every math element, no MathJax errors, no raw `$$` or `\\[` left in the text, no display
  equation cut off;
- every image loaded (figures and the widgets' pictures);
- the widget views rendered on the pages that have widgets, and on the interactive page moving a control changes the picture;
- every link inside the book resolves (page exists, and its #fragment too);
- at 1280 px nothing sticks out of the text column (wide tables and code scroll inside it, printed output wraps), and no page
  scrolls sideways;
- nothing went to the console as an error, no request failed, and no request left 127.0.0.1 (the book reads offline).

Screenshots of a few pages go to _book_screens/. Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe),
so the test needs nothing but the standard library and opens no debugging port. Run it with `make test-book`.
"""
from __future__ import annotations

import functools
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cdp_browser import CHROMIUM, Chromium, page_problems  # noqa: E402  (the DevTools-protocol client, shared with test_lab)

ROOT = Path(__file__).resolve().parent.parent
SCREENS = ROOT / "_book_screens"
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
    // what sticks out of the text column (and is not inside something that scrolls sideways within it)
    overflow: (() => {
      const column = document.querySelector('article.bd-article') || article;
      const right = column.getBoundingClientRect().right;
      const scrolls = e => { for (let p = e.parentElement; p && p !== column; p = p.parentElement) {
        const s = getComputedStyle(p).overflowX;
        if ((s === 'auto' || s === 'scroll' || s === 'hidden') && p.getBoundingClientRect().right <= right + 1) return true; }
        return false; };
      return [...column.querySelectorAll('table, pre, img, .cell_output > *, mjx-container, p, li, h1, h2, h3')]
        .filter(e => e.getBoundingClientRect().width > 0 && e.getBoundingClientRect().right > right + 1 && !scrolls(e))
        .map(e => `${e.tagName} ${Math.round(e.getBoundingClientRect().right - right)} px: ${(e.textContent || e.src || '').slice(0, 50)}`)
        .slice(0, 5);
    })(),
    pageScrollsSideways: document.documentElement.scrollWidth > window.innerWidth + 1,
  };
})()
"""

# The picture each explorer shows right now (only the selected child of every Stack is laid out).
VISIBLE_PICTURES = r"""
[...document.querySelectorAll('.widget-subarea')].map(area =>
  [...area.querySelectorAll('img')].filter(i => i.offsetParent !== null && i.getBoundingClientRect().height > 0)
    .map(i => i.src).join(' '))
"""


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
    chromium = Chromium(width=1280)  # the reading width: everything must fit the text column there
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
        if probe["overflow"]:
            problems.append(f"wider than the text column at {browser.width} px: {probe['overflow']}")
        if probe["pageScrollsSideways"]:
            problems.append(f"the page scrolls sideways at {browser.width} px")
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
