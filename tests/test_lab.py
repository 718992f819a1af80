"""`make lab`, used as a reader would: JupyterLab started by the Makefile's own command (read with `make -n lab`) on 127.0.0.1 with a
token on a free port, nbs/03b_interactive.ipynb opened in headless Chromium (Debian's `chromium`, driven over the DevTools protocol:
tests/cdp_browser.py), the kernel chosen in the dialog JupyterLab shows, Run > Run All Cells from the menu, and then:

- every cell ran, none failed, the kernel is this project's Python, and the widgets rendered (no "Error displaying widget");
- on the first frozen explorer, a click on the "BALD" toggle button and two steps right on its batch-size slider change the picture
  (links between widgets, in the browser);
- on the first **Live only** explorer, two steps right on the batch-size slider make the kernel draw a new picture (widget <-> kernel);
- no request left 127.0.0.1, and nothing failed in the browser's console.

The server runs on a temporary copy of the notebook, with autosave off and its own settings, runtime and workspace folders, so
nothing in the repository or in ~/.jupyter is written (checked). Everything is stopped by the test, and a watchdog stops the server
and the browser after LAB_TEST_TIMEOUT seconds (default 600) whatever happens. Screenshots go to _lab_screens/.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "nbs" / "03b_interactive.ipynb"
SCREENS = ROOT / "_lab_screens"
TOTAL_SECONDS = float(os.environ.get("LAB_TEST_TIMEOUT", "600"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from cdp_browser import CHROMIUM, Chromium, page_problems  # noqa: E402


def _loud_skip(reason: str):
    sys.stderr.write("\n" + "!" * 100 + f"\n!!! JUPYTERLAB TEST SKIPPED: {reason}\n" + "!" * 100 + "\n")
    pytest.skip(reason, allow_module_level=True)


if CHROMIUM is None:
    _loud_skip("no `chromium` on PATH, so `make lab` was NOT checked in a browser: apt-get install -y chromium")
try:
    import jupyterlab  # noqa: F401
    import jupyterlab_widgets  # noqa: F401
except ImportError:
    _loud_skip("JupyterLab is not installed (the `lab` extra), so `make lab` was NOT checked: run `make lab` once, or "
               "pip install -e '.[lab]'")
if shutil.which("make") is None:
    _loud_skip("no `make` on PATH: the test runs the Makefile's own `lab` command")

# Settings a fresh user would have, but: no autosave (the test must not write the notebook it runs), no news prompt, and every cell
# kept in the page (JupyterLab may otherwise leave off-screen cells out of the DOM).
LAB_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}

# The pictures of the output area that holds the n-th widget matching a selector: for each visible <img>, a hash of its bytes.
PICTURES_NEAR = r"""
(async (selector, index) => {
  const control = document.querySelectorAll(selector)[index];
  const area = control && control.closest('.jp-OutputArea');
  if (!area) return null;
  const hashes = [];
  for (const img of area.querySelectorAll('img')) {
    if (img.offsetParent === null || img.getBoundingClientRect().height === 0 || !img.complete || !img.naturalWidth) continue;
    const bytes = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
    let h = 2166136261;
    for (const b of bytes) h = Math.imul(h ^ b, 16777619) >>> 0;
    hashes.push(`${bytes.length}:${h.toString(16)}`);
  }
  return hashes;
})
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lab_command(root_dir: Path, port: int, token: str) -> str:
    """`make lab`'s command line, as make would run it, with the test's folder and options. Only that one command:
    the install stamps are marked old (-o) so make lists nothing else, and anything else it lists fails the test instead of running."""
    extra = f"--no-browser --port={port} --ServerApp.port_retries=0 --IdentityProvider.token={token}"
    result = subprocess.run(["make", "--no-print-directory", "-n", "-s", "-o", ".venv/bin/.installed", "-o", ".venv/bin/.installed-lab",
                             "lab", f"LAB_ARGS={extra}", f"LAB_ROOT={root_dir}"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"make -n lab failed: {result.stderr}"
    commands = [line for line in result.stdout.replace("\\\n", " ").splitlines() if line.strip()]
    assert len(commands) == 1 and commands[0].startswith(".venv/bin/jupyter lab "), \
        f"`make -n lab` should list one command, `.venv/bin/jupyter lab ...`; it lists:\n{result.stdout}"
    return commands[0]


class Lab:
    "A JupyterLab server started by `make lab`'s command on a temporary copy of the notebook; stop() ends it and its kernels."

    def __init__(self):
        self.home = Path(tempfile.mkdtemp(prefix="lab-test-"))
        (self.home / "nbs").mkdir()
        shutil.copy2(NOTEBOOK, self.home / "nbs" / NOTEBOOK.name)
        for name, values in LAB_SETTINGS.items():
            path = self.home / "settings" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, JUPYTER_CONFIG_DIR=str(self.home / "config"), JUPYTER_RUNTIME_DIR=str(self.home / "runtime"),
                   JUPYTERLAB_SETTINGS_DIR=str(self.home / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(self.home / "workspaces"),
                   OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        self.command = lab_command(self.home / "nbs", self.port, self.token)
        self.log = open(self.home / "server.log", "w")
        self.process = subprocess.Popen(["/bin/sh", "-c", "exec " + self.command], cwd=ROOT, env=env, stdout=self.log,
                                        stderr=subprocess.STDOUT, start_new_session=True)

    def api(self, path: str, method: str = "GET", timeout: float = 10):
        request = urllib.request.Request(f"{self.url}{path}", method=method, headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body else None

    def wait_until_up(self, timeout: float = 120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited ({self.process.returncode}):\n{self.server_log()}")
            try:
                return self.api("/api/status", timeout=2)
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(f"JupyterLab did not answer on {self.url} within {timeout} s:\n{self.server_log()}")

    def server_log(self) -> str:
        self.log.flush()
        return (self.home / "server.log").read_text(errors="replace")[-4000:]

    def stop(self):
        if self.process.poll() is None:
            try:
                self.api("/api/shutdown", method="POST", timeout=10)  # shuts the kernels down too
                self.process.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(timeout=10)
        self.log.close()
        shutil.rmtree(self.home, ignore_errors=True)


def widget_area_ready(selector: str, index: int) -> str:
    return f"(() => {{ const c = document.querySelectorAll({json.dumps(selector)})[{index}]; return !!(c && c.closest('.jp-OutputArea')); }})()"


def step_slider_right(browser: Chromium, slider: str, steps: int, what: str) -> tuple[str, str]:
    """Click the handle of the slider a JavaScript expression yields (the handle takes the focus, as with a mouse) and press the right
    arrow key `steps` times; return its readout before and after."""
    readout = f"({slider}).querySelector('.widget-readout').innerText.trim()"
    before = browser.evaluate(readout)
    browser.click(f"({slider}).querySelector('.noUi-handle')", f"the handle of {what}")
    for _ in range(steps):
        browser.key("ArrowRight", "ArrowRight", 39)
    time.sleep(0.3)
    return before, browser.evaluate(readout)


def wait_for_change(browser: Chromium, selector: str, index: int, before: list, timeout: float) -> list:
    deadline = time.time() + timeout
    after = before
    while time.time() < deadline:
        after = browser.evaluate(f"({PICTURES_NEAR})({json.dumps(selector)}, {index})")
        if after and after != before and len(after) == len(before):
            return after
        time.sleep(0.25)
    return after


def test_make_lab_runs_the_interactive_chapter():
    start = time.time()
    notebook_before = hashlib.sha256(NOTEBOOK.read_bytes()).hexdigest()
    lab = Lab()
    browser = None
    watchdog = threading.Timer(TOTAL_SECONDS, lambda: (browser and browser.process.kill(), os.killpg(lab.process.pid, signal.SIGKILL)))
    watchdog.daemon = True
    watchdog.start()
    try:
        status = lab.wait_until_up()
        print(f"JupyterLab up in {time.time() - start:.1f} s ({status}); command: {lab.command}")
        # This environment's JupyterLab, and a kernel that runs in it: a kernelspec naming a bare `python` is started with the
        # server's own interpreter (jupyter_client), anything else must name this interpreter.
        assert Path(sys.prefix).resolve() == (ROOT / ".venv").resolve(), \
            f"make lab runs .venv's JupyterLab, but this test runs in {sys.executable}: run it with .venv/bin/python"
        kernelspecs = lab.api("/api/kernelspecs")
        python = kernelspecs["kernelspecs"][kernelspecs["default"]]["spec"]["argv"][0]
        generic = {"python", f"python{sys.version_info[0]}", f"python{sys.version_info[0]}.{sys.version_info[1]}"}
        assert python in generic or Path(python).resolve() == Path(sys.executable).resolve(), f"the kernel runs {python}"
        browser = Chromium(1400, 1000)
        browser.navigate(f"{lab.url}/lab/tree/{NOTEBOOK.name}?token={lab.token}&reset", timeout=120)
        browser.wait_for("document.querySelectorAll('.jp-Notebook .jp-Cell').length > 0", 120, "the notebook's cells")
        # A notebook without kernel metadata makes JupyterLab ask which kernel: take the one it proposes, as a reader would.
        kernel_name = "document.querySelector('.jp-Toolbar-kernelName')?.innerText.trim() || 'No Kernel'"
        first = browser.wait_for(f"document.querySelector('.jp-Dialog .jp-mod-accept')?.innerText.trim() || "
                                 f"(({kernel_name}) !== 'No Kernel' && 'kernel')", 60, "the kernel dialog or a kernel")
        if first != "kernel":
            assert first == "Select", f"unexpected dialog: {first}"
            browser.click("document.querySelector('.jp-Dialog .jp-mod-accept')", "the dialog's Select button")
        browser.wait_for(f"document.querySelector('.jp-Notebook-ExecutionIndicator')?.dataset.status === 'idle' && "
                         f"({kernel_name}) !== 'No Kernel'", 120, "an idle kernel")
        kernels = lab.api("/api/kernels")
        assert len(kernels) == 1 and kernels[0]["name"] == kernelspecs["default"], kernels
        # Run > Run All Cells, with the mouse.
        browser.click("[...document.querySelectorAll('.lm-MenuBar-itemLabel')].find(e => e.innerText.trim() === 'Run')", "the Run menu")
        browser.wait_for("!!document.querySelector('.lm-Menu')", 10, "the Run menu's items")
        browser.click("[...document.querySelectorAll('.lm-Menu .lm-Menu-itemLabel')].find(e => e.innerText.trim() === 'Run All Cells')",
                      "Run All Cells")
        run_start = time.time()
        code_cells = browser.evaluate("document.querySelectorAll('.jp-CodeCell').length")
        # Started: Run All queues every cell at once ([*]); a notebook committed executed shows numbered prompts before it starts.
        browser.wait_for("[...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].some(e => e.innerText.trim() === '[*]:')",
                         30, "Run All Cells to start")
        # Done: every prompt numbered. Stopped: the kernel idle, nothing queued ([*]) and cells left unrun ([ ]) after some ran:
        # JupyterLab stops Run All at the first error.
        done = browser.wait_for(
            "(() => { const p = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(e => e.innerText.trim());"
            " const idle = document.querySelector('.jp-Notebook-ExecutionIndicator')?.dataset.status === 'idle';"
            " const ran = p.filter(t => /^\\[\\d+\\]:$/.test(t)).length;"
            " if (p.length && ran === p.length && idle) return {ok: true, prompts: p};"
            " if (idle && ran && !p.includes('[*]:') && p.includes('[ ]:')) return {ok: false, prompts: p};"
            " return null; })()",
            TOTAL_SECONDS - (time.time() - start) - 90, "every cell executed")
        stderr = browser.evaluate("[...document.querySelectorAll('.jp-OutputArea-output[data-mime-type=\"application/vnd.jupyter.stderr\"]')]"
                                  ".map(e => e.innerText.slice(0, 600))")
        assert done["ok"], f"Run All Cells stopped: prompts {done['prompts']}\n" + "\n".join(stderr)
        print(f"ran {code_cells} code cells in {time.time() - run_start:.1f} s")
        widget_errors = browser.evaluate("[...document.querySelectorAll('.jp-OutputArea-output')].filter(e => "
                                         "/Error displaying widget|Loading widget\\.\\.\\./.test(e.innerText)).map(e => e.innerText.slice(0, 200))")
        assert not widget_errors, f"widgets did not render: {widget_errors}"

        # Frozen explorer: browser-side links between the controls and the stacks of pictures.
        toggles = ".jp-OutputArea-output .widget-toggle-buttons"
        browser.wait_for(widget_area_ready(toggles, 0), 30, "the first explorer's toggle buttons (no widget views: is the widget "
                         "manager, jupyterlab_widgets, installed and enabled?)")
        before = browser.evaluate(f"({PICTURES_NEAR})({json.dumps(toggles)}, 0)")
        assert before and len(before) == 1, f"the first explorer should show one picture, shows {before}"
        SCREENS.mkdir(exist_ok=True)
        browser.screenshot(SCREENS / "lab_explorer_before.png", 1000)
        browser.click(f"[...document.querySelectorAll({json.dumps(toggles + ' button')})].find(b => b.innerText.trim() === 'BALD')",
                      "the BALD button")
        clicked = wait_for_change(browser, toggles, 0, before, 10)
        assert clicked != before and len(clicked) == 1, f"a click on BALD did not change the picture: {before} -> {clicked}"
        slider = f"document.querySelectorAll({json.dumps(toggles)})[0].closest('.jp-OutputArea').querySelector('.widget-slider, .widget-hslider')"
        value_before, value_after = step_slider_right(browser, slider, 2, "the explorer's batch-size slider")
        moved = wait_for_change(browser, toggles, 0, clicked, 10)
        browser.screenshot(SCREENS / "lab_explorer_after.png", 1000)
        assert value_after != value_before, f"the slider did not move ({value_before!r})"
        assert moved != clicked and len(moved) == 1, f"moving the slider {value_before} -> {value_after} did not change the picture"

        # Live explorer: the slider's new value goes to the kernel, which draws a new picture.
        live = ".jp-OutputArea-output .widget-interact"
        browser.wait_for(widget_area_ready(live, 0), 30, "the live explorer")
        live_before = browser.wait_for(f"({PICTURES_NEAR})({json.dumps(live)}, 0)", 60, "the live explorer's first picture")
        sliders = f"document.querySelectorAll({json.dumps(live)})[0].querySelectorAll('.widget-slider, .widget-hslider')"
        labels = browser.evaluate(f"[...{sliders}].map(s => s.querySelector('.widget-label').innerText.trim())")
        assert "batch_size" in labels, labels
        live_slider = f"{sliders}[{labels.index('batch_size')}]"
        live_value, live_value_after = step_slider_right(browser, live_slider, 2, "the live batch-size slider")
        wait_for_change(browser, live, 0, live_before, 60)  # the kernel answers each key press: wait for the last answer
        browser.wait_for("document.querySelector('.jp-Notebook-ExecutionIndicator')?.dataset.status === 'idle'", 60, "an idle kernel")
        live_after = browser.wait_for(f"({PICTURES_NEAR})({json.dumps(live)}, 0)", 30, "the live explorer's new picture")
        browser.screenshot(SCREENS / "lab_live_after.png", 1000)
        assert live_value_after != live_value, f"the live slider did not move ({live_value!r})"
        assert live_after != live_before, f"the kernel did not redraw the live picture for batch_size {live_value} -> {live_value_after}"

        problems = [p for p in page_problems(browser) if "favicon" not in p]
        assert not problems, "the browser saw problems:\n" + "\n".join(problems)
        print(f"explorers: frozen {before} -> {clicked} -> {moved}; live {live_before} -> {live_after}; "
              f"total {time.time() - start:.1f} s; screenshots in {SCREENS}")
    finally:
        watchdog.cancel()
        if browser is not None:
            browser.close()
        lab.stop()
    assert hashlib.sha256(NOTEBOOK.read_bytes()).hexdigest() == notebook_before, f"{NOTEBOOK} was modified by the test"
