"""Build the online book from the notebooks in nbs/ with jupyter-book 1 (Sphinx), offline.

Quarto (what `nbdev_docs` uses) cannot be installed on these machines, so this script does what nbdev's doc processors do and
hands the result to jupyter-book:

1. **Find the chapters**: every notebook under nbs/ (names starting with `_` or `.` left out): the front matter first
   (`index.ipynb`, then `notation.ipynb`), the rest in filename order.
2. **Execute** each notebook with nbclient, two at a time, in its own folder, storing widget state (so ipywidgets render in the
   book). Cells that `nbdev_test` skips (`#| eval: false`, the `tst_flags` of settings.ini such as `#| slow`, unless passed with
   `--flags`) are not run. Results are cached under the build folder, keyed by the code cells and the package's source, so a
   rebuild after a prose edit executes nothing.
3. **Apply nbdev's directives** to the executed notebook: `#| hide` and `#| include: false` cells are dropped; `#| echo: false`
   hides the input, `#| output: false` the output, `#| code-fold` folds the input; plumbing cells (only imports, asserts and
   settings such as `torch.set_num_threads(1)`: `is_plumbing`) are folded too, and so is a chapter's first code cell when it
   starts with imports (its setup: imports, then loading); `#| export`/`exporti`/`exports` cells stay
   visible (this is a literate book) with a note naming the module; exported functions and classes that no cell documents get a
   `show_doc` as nbdev adds them; `show_doc` inputs are hidden and their output becomes the API entry (a heading with a
   cross-reference target); backticked names of documented symbols (`get_bald_batch`) link to their entry, as nbdev's
   `add_links` does; `#|` lines are stripped. Each page is titled by its first `# ` heading (or a frontmatter raw cell's title).
4. **Write `_toc.yml` and `_config.yml`** and the static files that normally come from CDNs, installed from npm (`book/`):
   MathJax 3, the Jupyter widget HTML manager (`@jupyter-widgets/html-manager`'s `embed-amd.js` and its fonts) and RequireJS,
   so the book reads offline.
5. **Run `jupyter-book build`**. The site is in `_book/_build/html/` (open `index.html`).

Run it with `make book`. Options: `--flags slow` also runs the slow cells; `--no-execute` uses whatever outputs the notebooks
carry; `--only NAME` builds a book of the index and the notebooks whose name contains NAME (quick when writing a chapter);
`--fresh` executes everything again (the cache does not see data files a notebook reads); `--keep-going` exits 0 even when a
notebook fails to execute (its page then says so; by default the book is built and the script exits 1).
"""
from __future__ import annotations

import argparse
import ast
import configparser
import copy
import hashlib
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT / "nbs"
BOOK_NPM = ROOT / "book"
SRC = ROOT / "_book_src"  # the processed notebooks jupyter-book reads (git-ignored)
OUT = ROOT / "_book"  # jupyter-book's output folder: the site is OUT / "_build" / "html" (git-ignored)
EXECUTION_CACHE = ROOT / "_book_cache"  # executed notebooks, keyed by their code and the package (git-ignored)
CACHE_VERSION = "1"  # bump to invalidate every cached execution
ASSET_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp", ".mp4", ".webm", ".bib"}
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def log(message: str) -> None:
    print(f"[build_book] {message}", flush=True)


# ---------------------------------------------------------------------------------------------------------------- chapters
FRONT_MATTER = ("index.ipynb", "notation.ipynb")  # the book's first pages, in this order; the chapters follow by file name


def find_notebooks(only: str | None = None) -> list[Path]:
    "Every notebook under nbs/ in book order: FRONT_MATTER first, then by path; `_`/`.`-prefixed names and checkpoints left out."
    found = [p for p in NBS.rglob("*.ipynb")
             if not any(part.startswith(("_", ".")) for part in p.relative_to(NBS).parts)]
    front = [NBS / name for name in FRONT_MATTER if NBS / name in found]
    rest = sorted((p for p in found if p not in front), key=lambda p: p.relative_to(NBS).as_posix())
    if only:
        front, rest = front[:1], [p for p in front[1:] + rest if only in p.name]
    return front + rest


# -------------------------------------------------------------------------------------------------------------- directives
_DIRECTIVE = re.compile(r"^\s*#\s*\|\s?(.*?)\s*$")


def source_of(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def split_directives(source: str) -> tuple[dict[str, list[str]], str]:
    """nbdev's leading `#|` lines of a code cell, as nbdev keys them (`export`, `hide`, `eval:`, `echo:` ...), and the rest.

    Like nbdev, only the comment lines before the first line of code count; blank lines between them are allowed."""
    directives: dict[str, list[str]] = {}
    lines = source.splitlines()
    body_start = 0
    while body_start < len(lines) and (not lines[body_start].strip() or _DIRECTIVE.match(lines[body_start])):
        match = _DIRECTIVE.match(lines[body_start])
        if match and match.group(1).split():
            words = match.group(1).split()
            directives[words[0]] = words[1:]
        body_start += 1
    return directives, "\n".join(lines[body_start:]).strip("\n")


def flag(directives: dict, name: str) -> str | None:
    "The value of a Quarto-style `name: value` directive (lower-cased), or None."
    values = directives.get(name + ":")
    return " ".join(values).strip().strip("'\"").lower() if values is not None else None


_SETTING_CALLS = {"set_num_threads", "filterwarnings", "simplefilter", "manual_seed", "seed", "use", "set_printoptions"}


def is_plumbing(code: str) -> bool:
    """Whether a code cell is plumbing a reader can skip: every statement an import, an `assert` (a guard of the build, whose
    failure would stop it) or a settings call (`torch.set_num_threads(1)`, `warnings.filterwarnings(...)`, a seed). Such cells
    are folded in the book (the reader opens them with a click); a cell that computes or shows anything is not."""
    try:
        tree = ast.parse(code)
    except SyntaxError:  # IPython magics and the like: leave it as it is
        return False

    def setting(node) -> bool:
        if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)):
            return False
        func = node.value.func
        return (func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)) in _SETTING_CALLS

    return bool(tree.body) and all(isinstance(n, (ast.Import, ast.ImportFrom, ast.Assert)) or setting(n) for n in tree.body)


def starts_with_imports(code: str) -> bool:
    "Whether a code cell's first statement is an import: a chapter's setup cell (imports, then loading its data) when it comes first."
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return False
    return bool(tree.body) and isinstance(tree.body[0], (ast.Import, ast.ImportFrom))


def tst_flags() -> set[str]:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "settings.ini")
    return set(parser.get("DEFAULT", "tst_flags", fallback="").split())


def skipped_in_execution(directives: dict, skip_flags: set[str]) -> bool:
    "What nbdev_test leaves unexecuted: `#| eval: false`, and cells carrying one of the skipped test flags."
    return flag(directives, "eval") == "false" or bool(skip_flags & directives.keys())


# --------------------------------------------------------------------------------------------------------------- show_doc
_SHOW_DOC_CALL = re.compile(r"^show_doc\((.+?)(?:,.*)?\)\s*$")


def documented_names(cells) -> set[str]:
    "Names given to `show_doc(...)` anywhere in the notebook."
    names = set()
    for cell in cells:
        if cell["cell_type"] == "code":
            for line in split_directives(source_of(cell))[1].splitlines():
                match = _SHOW_DOC_CALL.match(line.strip())
                if match:
                    names.add(match.group(1).strip())
    return names


def public_definitions(code: str) -> list[str]:
    "Top-level functions and classes a cell defines that nbdev would document (not `_private`, but `__dunder__` yes)."
    try:
        tree = ast.parse(code)
    except SyntaxError:  # cell magics and the like
        return []
    return [node.name for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and (not node.name.startswith("_") or node.name.startswith("__"))]


def add_show_docs(notebook: dict) -> None:
    "nbdev's `add_show_docs`: a `show_doc(name)` cell after each exported cell for each definition no cell documents yet."
    cells = notebook["cells"]
    shown = documented_names(cells)
    wanted = False
    for index in reversed(range(len(cells))):
        cell = cells[index]
        if cell["cell_type"] != "code":
            continue
        directives, code = split_directives(source_of(cell))
        if not ({"export", "exports", "exec_doc"} & directives.keys()) or "hide" in directives:
            continue
        if flag(directives, "include") == "false":
            continue
        for name in reversed(public_definitions(code)):
            if name not in shown:
                cells.insert(index + 1, new_code_cell(f"show_doc({name})", added_show_doc=True))
                wanted = True
    if wanted or shown:  # make sure show_doc is importable whatever the notebook imports
        cells.insert(0, new_code_cell("#| hide\nfrom nbdev.showdoc import show_doc", added_show_doc=True))


def new_code_cell(source: str, **book_metadata) -> dict:
    return {"cell_type": "code", "execution_count": None, "id": "book-" + hashlib.sha1(source.encode()).hexdigest()[:12],
            "metadata": {"book": book_metadata} if book_metadata else {}, "outputs": [], "source": source}


# -------------------------------------------------------------------------------------------------------------- execution
def package_digest() -> str:
    "A hash of the package's source: executed outputs depend on it."
    digest = hashlib.sha256()
    for path in sorted((ROOT / "batchbald_nb").rglob("*.py")):
        digest.update(path.relative_to(ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def execution_key(notebook: dict, skip_flags: set[str], package: str) -> str:
    "What the outputs of a notebook depend on: its code cells (and which of them run), the package, the cache version."
    digest = hashlib.sha256(f"{CACHE_VERSION}\n{package}\n{sorted(skip_flags)}\n".encode())
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            digest.update(source_of(cell).encode() + b"\0")
    return digest.hexdigest()[:20]


def execute_notebook(args: tuple[dict, str, str, int, int]) -> tuple[dict, float]:
    "Execute one notebook in `cwd` with nbclient (a fresh python3 kernel), storing widget state; returns it and the seconds taken."
    notebook_dict, cwd, name, timeout, threads = args
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.reads(json.dumps(notebook_dict), as_version=4)
    start = time.time()
    client = NotebookClient(notebook, kernel_name="python3", timeout=timeout, allow_errors=False, store_widget_state=True,
                            resources={"metadata": {"path": cwd}})
    env = dict(os.environ, IN_BOOK_BUILD="1", MPLBACKEND="module://matplotlib_inline.backend_inline")
    env.setdefault("OMP_NUM_THREADS", str(threads))  # notebooks run side by side: one core each, not all of them each
    try:
        client.execute(env=env)
    except Exception as error:  # re-raised as text: nbclient's exceptions don't pickle reliably
        raise RuntimeError(f"{name} failed to execute:\n{error}") from None
    return json.loads(nbformat.writes(notebook)), time.time() - start


def execute_all(notebooks: dict[Path, dict], skip_flags: set[str], workers: int, timeout: int) -> tuple[dict[Path, dict], list[str]]:
    """Execute every notebook whose code changed since its last run (cached in _book_cache/), `workers` at a time.
    A notebook that fails keeps its unexecuted cells and is marked failed (metadata book_failed); the failures are returned."""
    EXECUTION_CACHE.mkdir(exist_ok=True)
    package = package_digest()
    executed, jobs, failures = {}, {}, []
    for path, notebook in notebooks.items():
        stem = path.relative_to(NBS).as_posix().replace("/", "__").removesuffix(".ipynb")
        cached = EXECUTION_CACHE / f"{stem}.{execution_key(notebook, skip_flags, package)}.ipynb"
        if cached.exists():
            executed[path] = json.loads(cached.read_text(encoding="utf-8"))
        else:
            jobs[path] = cached
    if jobs:
        log(f"executing {len(jobs)} notebook(s) with {workers} worker(s): {', '.join(p.name for p in jobs)}")
        threads = max(1, (os.cpu_count() or 1) // max(1, workers))
        # spawn, not fork: forking while the executor's threads hold locks can leave a worker hung forever
        with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {path: pool.submit(execute_notebook, (for_execution(notebooks[path], skip_flags), str(path.parent),
                                                            path.name, timeout, threads)) for path in jobs}
            for path, future in futures.items():
                try:
                    result, seconds = future.result()
                except Exception as error:  # collect them all: the caller fails after building what it can
                    failures.append(str(error))
                    executed[path] = copy.deepcopy(notebooks[path])
                    executed[path].setdefault("metadata", {})["book_failed"] = _ANSI.sub("", str(error))[-3000:]
                    log(f"  {path.name}: FAILED")
                    continue
                log(f"  {path.name}: {seconds:.1f} s")
                for old in EXECUTION_CACHE.glob(jobs[path].name.split(".")[0] + ".*.ipynb"):
                    old.unlink()
                jobs[path].write_text(json.dumps(result, indent=1), encoding="utf-8")
                executed[path] = result
    else:
        log("all notebooks cached: nothing to execute")
    return executed, failures


def for_execution(notebook: dict, skip_flags: set[str]) -> dict:
    "A copy in which the cells nbdev_test skips are tagged for nbclient to skip."
    notebook = copy.deepcopy(notebook)
    notebook.setdefault("metadata", {})["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for cell in notebook["cells"]:
        cell.setdefault("metadata", {})
        if cell["cell_type"] == "code" and skipped_in_execution(split_directives(source_of(cell))[0], skip_flags):
            cell["metadata"]["tags"] = cell["metadata"].get("tags", []) + ["skip-execution"]
    return notebook


# -------------------------------------------------------------------------------------------------------------- rendering
def module_of(notebook: dict) -> str | None:
    "The module a notebook exports to (`#| default_exp acquisition` -> batchbald_nb.acquisition), or None."
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            directives, _ = split_directives(source_of(cell))
            if directives.get("default_exp"):
                return f"{settings().get('lib_name', 'batchbald_nb')}.{directives['default_exp'][0]}"
    return None


def api_label(name: str) -> str:
    "The cross-reference target of a documented name (MyST labels are case-insensitive; keep them readable)."
    return "api-" + re.sub(r"[^0-9a-zA-Z]+", "-", name).strip("-").lower()


_SOURCE_LINK = re.compile(r"^\[source\]\((\S+?)\)\{[^}]*\}\s*$", re.MULTILINE)


def show_doc_markdown(markdown: str, name: str) -> str:
    """nbdev's show_doc markdown, made MyST: a cross-reference target on its heading, its Quarto-attributed `[source]` link
    as plain HTML, and its leading `---` rule dropped (a section may not start with a transition; CSS draws the rule)."""
    lines = markdown.strip("\n").splitlines()
    while lines and lines[0].strip() in ("---", ""):
        lines.pop(0)
    text = "\n".join(lines)
    source = _SOURCE_LINK.search(text)
    text = _SOURCE_LINK.sub("", text).strip("\n")
    text = re.sub(r"```python\n\s*\n", "```python\n", text)  # no blank lines at the top or bottom of the signature block
    text = re.sub(r"\n\s*\n```", "\n```", text)
    heading = re.search(r"^(#{2,6}) (.+)$", text, re.MULTILINE)
    if heading:  # `__call__` in a heading is a name, not bold
        text = text[: heading.start(2)] + heading.group(2).replace("_", "\\_") + text[heading.end(2):]
        heading = re.search(r"^(#{2,6}) (.+)$", text, re.MULTILINE)
    link = f'<a class="nbdev-source-link" href="{source.group(1)}">source</a>\n\n' if source else ""
    if heading:
        text = text[: heading.end()] + "\n\n" + link + text[heading.end():].lstrip("\n")
        text = text[: heading.start()] + f"({api_label(name)})=\n" + text[heading.start():]
    else:
        text = f"({api_label(name)})=\n#### {name}\n\n" + link + text
    return text


def markdown_output(cell) -> str | None:
    for output in cell.get("outputs", []):
        data = output.get("data", {})
        if "text/markdown" in data:
            return source_of({"source": data["text/markdown"]})
    return None


_INLINE_CODE = re.compile(r"(?<![`\[\w])`([A-Za-z_][\w.]*)(\(\))?`(?![`\]\w(])")
_FENCE = re.compile(r"^\s*(```|~~~)")
_CALLOUT = re.compile(r"^(\s*:::+)\s*\{\.callout-(note|tip|warning|important|caution)[^}]*\}\s*$", re.MULTILINE)


def linkify(markdown: str, api: dict[str, str]) -> str:
    "nbdev's `add_links`: a backticked documented name becomes a link to its API entry (not in code blocks or headings)."
    lines, fenced = [], False
    for line in markdown.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced and not line.lstrip().startswith("#"):
            line = _INLINE_CODE.sub(lambda m: link_for(m, api), line)
        lines.append(line)
    return "\n".join(lines)


def link_for(match: re.Match, api: dict[str, str]) -> str:
    name = match.group(1)
    candidates = [name, name.rsplit(".", 1)[-1]]
    for candidate in candidates:
        if candidate in api:
            return f"[{match.group(0)}](#{api[candidate]})"
    return match.group(0)


def quarto_to_myst(markdown: str) -> str:
    "Quarto callouts (`::: {.callout-note}`) become MyST admonitions (`:::{note}`)."
    return _CALLOUT.sub(lambda m: f"{m.group(1)}{{{m.group(2)}}}", markdown)


def title_cells(notebook: dict, path: Path) -> list[dict]:
    """Title the page by its first `# ` heading, as nbdev does; a frontmatter raw cell's title/description (or the file name)
    give one when the notebook has none."""
    cells = notebook["cells"]
    frontmatter = {}
    if cells and cells[0]["cell_type"] == "raw" and source_of(cells[0]).lstrip().startswith("---"):
        for line in source_of(cells.pop(0)).splitlines():
            key, _, value = line.partition(":")
            if value.strip():
                frontmatter[key.strip()] = value.strip().strip("'\"")
    has_title = any(c["cell_type"] == "markdown" and re.search(r"^# \S", source_of(c), re.MULTILINE) for c in cells)
    if has_title:
        return cells
    title = frontmatter.get("title") or re.sub(r"^\d+[a-z]?_", "", path.stem).replace("_", " ").capitalize()
    text = f"# {title}" + (f"\n\n> {frontmatter['description']}" if frontmatter.get("description") else "")
    return [{"cell_type": "markdown", "metadata": {}, "source": text}] + cells


def render_notebook(executed: dict, path: Path, api: dict[str, str], modules: dict[str, str]) -> dict:
    "The notebook jupyter-book reads: nbdev's directives applied to the executed notebook (see the module docstring)."
    notebook = copy.deepcopy(executed)
    notebook["cells"] = title_cells(notebook, path)
    module = module_of(notebook)
    cells, labelled, setup_seen = [], False, False
    for cell in notebook["cells"]:
        metadata = {k: v for k, v in cell.get("metadata", {}).items() if k in ("tags",)}
        tags = [t for t in metadata.get("tags", []) if t != "skip-execution"]
        if cell["cell_type"] == "markdown":
            text = source_of(cell)
            if re.match(r"^#+\s+.*\s+-\s*$", text.strip()) and "\n" not in text.strip():  # nbdev's rm_header_dash
                continue
            text = linkify(quarto_to_myst(text), api)
            if module and not labelled and re.search(r"^# \S", text, re.MULTILINE):  # the chapter is the module's target
                text = re.sub(r"^# \S", lambda m: f"({api_label(module)})=\n" + m.group(0), text, count=1, flags=re.MULTILINE)
                labelled = True
            cells.append({"cell_type": "markdown", "metadata": {}, "source": text})
            continue
        if cell["cell_type"] == "raw":
            continue
        directives, code = split_directives(source_of(cell))
        if "hide" in directives or flag(directives, "include") == "false":
            continue
        code = "\n".join(line for line in code.splitlines() if not re.search(r"#\|\s*hide_line\s*$", line))
        show_doc = _SHOW_DOC_CALL.match(code.strip()) if "\n" not in code.strip() else None
        markdown = markdown_output(cell)
        if show_doc and markdown is not None:  # nbdev's clean_show_doc: the output is the documentation
            cells.append({"cell_type": "markdown", "metadata": {},
                          "source": linkify(show_doc_markdown(markdown, show_doc.group(1).strip()), api)})
            continue
        if not code.strip() and not cell.get("outputs"):
            continue  # e.g. a cell that held only `#| default_exp`
        if flag(directives, "echo") == "false" or "hide_input" in directives:
            tags.append("remove-input")
        if flag(directives, "output") == "false" or "hide_output" in directives:
            tags.append("remove-output")
        if flag(directives, "code-fold") in ("true", "show"):
            tags.append("hide-input" if flag(directives, "code-fold") == "true" else "nbdev-code-fold-show")
        elif "remove-input" not in tags and not ({"export", "exporti", "exports"} & directives.keys()) and (
                is_plumbing(code) or (not setup_seen and starts_with_imports(code))):
            tags.append("hide-input")  # plumbing, or the chapter's setup cell (imports and loading): folded, a click away
        if not ({"export", "exporti", "exports"} & directives.keys()):
            setup_seen = True
        if {"export", "exporti", "exports"} & directives.keys() and module:
            tags.append("nbdev-export")
            tags.append(modules[module])
        outputs = [strip_ansi(o) for o in cell.get("outputs", [])]
        cells.append({"cell_type": "code", "execution_count": cell.get("execution_count"),
                      "metadata": {"tags": tags} if tags else {}, "outputs": outputs, "source": code})
    for i, cell in enumerate(cells):
        cell["id"] = f"cell-{i}"
    if executed.get("metadata", {}).get("book_failed"):  # say so at the top of the page, under the title
        error = executed["metadata"]["book_failed"].replace("```", "'''")
        cells.insert(1, {"cell_type": "markdown", "metadata": {}, "source":
                         f":::{{error}}\nThis chapter failed to execute when the book was built, so its outputs are missing.\n\n"
                         f"```text\n{error}\n```\n:::"})
    notebook["cells"] = cells
    notebook["nbformat"], notebook["nbformat_minor"] = 4, 5
    metadata = notebook.get("metadata", {})
    notebook["metadata"] = {k: metadata[k] for k in ("kernelspec", "language_info", "widgets") if k in metadata}
    return notebook


_ANSI = re.compile(r"\x1B(?:[@-Z\\-_]|\[[0-?]*[ -/]*[@-~])")


def strip_ansi(output: dict) -> dict:
    if output.get("output_type") == "stream":
        output = dict(output, text=_ANSI.sub("", source_of({"source": output["text"]})))
    return output


def collect_api(executed: dict[Path, dict]) -> dict[str, str]:
    "Every name some notebook documents with show_doc, mapped to its cross-reference target (first documentation wins)."
    api: dict[str, str] = {}
    for notebook in executed.values():
        module = module_of(notebook)
        if module:  # `batchbald_nb.entropy` links to its chapter
            api.setdefault(module, api_label(module))
        for name in sorted(documented_names(notebook["cells"])):
            api.setdefault(name, api_label(name))
            if module:
                api.setdefault(f"{module}.{name}", api_label(name))
    return api


# ------------------------------------------------------------------------------------------------------------ static files
def npm_install() -> Path:
    "Install book/'s npm packages (MathJax, the widget manager, RequireJS) unless book/node_modules is current."
    modules = BOOK_NPM / "node_modules"
    stamp = modules / ".installed-from-lock"
    lock = (BOOK_NPM / "package-lock.json").read_bytes()
    if not stamp.exists() or stamp.read_bytes() != lock:
        npm = shutil.which("npm")
        if not npm:
            raise SystemExit("[build_book] npm is needed to install MathJax and the widget manager (apt-get install npm)")
        log("npm ci (book/package-lock.json)")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"], cwd=BOOK_NPM, check=True)
        stamp.write_bytes(lock)
    return modules


def copy_tree(source: Path, target: Path, keep=lambda p: True) -> None:
    for path in source.rglob("*"):
        if path.is_file() and keep(path):
            write_if_changed(target / path.relative_to(source), path.read_bytes())


def static_files(static: Path, modules: dict[str, str]) -> None:
    "MathJax 3 (es5, CHTML output), the widget HTML manager and RequireJS from book/node_modules, and the book's CSS."
    node_modules = npm_install()
    mathjax = node_modules / "mathjax" / "es5"
    keep_mathjax = lambda p: (p.parent != mathjax or p.name in ("tex-chtml.js", "core.js", "startup.js", "loader.js")) and \
        "svg" not in p.relative_to(mathjax).parts[:2] and not p.name.startswith("tex-svg")
    copy_tree(mathjax, static / "mathjax", keep_mathjax)
    manager = node_modules / "@jupyter-widgets" / "html-manager" / "dist"
    copy_tree(manager, static / "widgets",
              lambda p: p.name == "embed-amd.js" or p.suffix in (".woff", ".woff2"))  # browsers that read the rest want woff
    write_if_changed(static / "require.min.js", (node_modules / "requirejs" / "require.js").read_bytes())
    for name in ("widgets-setup.js", "favicon.svg"):
        write_if_changed(static / name, (BOOK_NPM / name).read_bytes())
    write_if_changed(SRC / "_ext" / "sphinx_book_fixes.py", (BOOK_NPM / "sphinx_book_fixes.py").read_bytes())
    css = (BOOK_NPM / "book.css").read_text(encoding="utf-8")
    for module, tag in sorted(modules.items()):
        css += f'\n.cell.tag_{tag} > .cell_input::before {{ content: "exported to {module}"; }}'
    write_if_changed(static / "book.css", css.encode())


def write_if_changed(path: Path, data: bytes) -> None:
    "Write only when different, so Sphinx's incremental build sees unchanged pages as unchanged."
    if path.exists() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def settings() -> dict[str, str]:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "settings.ini")
    return dict(parser["DEFAULT"])


def book_config(config: dict[str, str]) -> str:
    "_config.yml: no execution (done above), MyST math, local MathJax and widget manager, no launch buttons or CDNs."
    yml = {
        "title": config.get("title", "batchbald_nb"),
        "author": config.get("author", ""),
        "copyright": config.get("copyright", ""),
        "only_build_toc_files": True,
        "exclude_patterns": ["_build", "**.ipynb_checkpoints"],
        "execute": {"execute_notebooks": "off"},
        "parse": {"myst_enable_extensions": ["amsmath", "dollarmath", "colon_fence", "deflist", "html_image", "substitution"],
                  "myst_dmath_double_inline": True},
        "html": {"use_repository_button": bool(config.get("git_url")), "home_page_in_navbar": True,
                 "use_multitoc_numbering": False,
                 "extra_footer": "Built from the notebooks in <code>nbs/</code> by <code>make book</code>. "
                                 "Run them in Jupyter for the live widgets."},
        "repository": {"url": config.get("git_url", ""), "path_to_book": "nbs", "branch": config.get("branch", "main")},
        "launch_buttons": {"thebe": False, "binderhub_url": "", "jupyterhub_url": "", "colab_url": ""},
        "sphinx": {"recursive_update": True, "local_extensions": {"sphinx_book_fixes": "_ext"}, "config": {
            "html_static_path": ["assets"],
            "html_copy_source": False,
            "html_theme_options": {"show_toc_level": 2, "use_download_button": False},
            "html_context": {"default_mode": "light"},  # unset, the theme logs a console error on a reader's first visit
            "html_favicon": "assets/favicon.svg",
            "mathjax_path": "mathjax/tex-chtml.js",
            "nb_ipywidgets_js": {"require.min.js": {}, "widgets-setup.js": {},
                                 "widgets/embed-amd.js": {"data-jupyter-widgets-cdn": "_static/widgets/"}},
            "nb_render_markdown_format": "myst",
            "nb_merge_streams": True,
            "html_css_files": ["book.css"],
            "html_show_sourcelink": False,
            "html_last_updated_fmt": None,
            "suppress_warnings": ["myst.header", "mystnb.unknown_mime_type"],
        }},
    }
    return json.dumps(yml, indent=1) + "\n"  # JSON is YAML


def table_of_contents(pages: list[str]) -> str:
    root, chapters = pages[0], pages[1:]
    lines = ["format: jb-book", f"root: {root}"]
    if chapters:
        lines += ["chapters:"] + [f"- file: {page}" for page in chapters]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------------------------- main
def build(args) -> Path:
    start = time.time()
    paths = find_notebooks(args.only)
    if not paths or paths[0].name != "index.ipynb":
        raise SystemExit("[build_book] nbs/index.ipynb is missing: it is the book's first page")
    log(f"{len(paths)} chapters: {', '.join(p.relative_to(NBS).as_posix() for p in paths)}")
    notebooks = {}
    for path in paths:
        notebook = json.loads(path.read_text(encoding="utf-8"))
        add_show_docs(notebook)
        notebooks[path] = notebook
    skip_flags = tst_flags() - set(args.flags.split())
    failures = []
    if args.no_execute:
        executed = notebooks
    else:
        if args.fresh and EXECUTION_CACHE.exists():
            shutil.rmtree(EXECUTION_CACHE)
        executed, failures = execute_all(notebooks, skip_flags, args.workers, args.timeout)
    t_executed = time.time()
    api = collect_api(executed)
    modules = {m: "export-" + re.sub(r"[^0-9a-zA-Z]+", "-", m) for m in filter(None, map(module_of, executed.values()))}
    wanted = set()
    pages = []
    for path in paths:
        relative = path.relative_to(NBS)
        rendered = render_notebook(executed[path], path, api, modules)
        write_if_changed(SRC / relative, (json.dumps(rendered, indent=1) + "\n").encode())
        wanted.add(SRC / relative)
        pages.append(relative.with_suffix("").as_posix())
    for asset in NBS.rglob("*"):  # figures and the like that markdown cells refer to
        if asset.is_file() and asset.suffix.lower() in ASSET_SUFFIXES and not any(
                part.startswith((".", "_")) for part in asset.relative_to(NBS).parts):
            write_if_changed(SRC / asset.relative_to(NBS), asset.read_bytes())
            wanted.add(SRC / asset.relative_to(NBS))
    for stale in SRC.rglob("*.ipynb"):  # a chapter that was removed or renamed
        if stale not in wanted and "_build" not in stale.parts:
            stale.unlink()
    if (SRC / "_static").exists():  # jupyter-book would add every script in it to every page
        shutil.rmtree(SRC / "_static")
    static_files(SRC / "assets", modules)  # served as _static/ (html_static_path)
    write_if_changed(SRC / "_config.yml", book_config(settings()).encode())
    write_if_changed(SRC / "_toc.yml", table_of_contents(pages).encode())
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    if not jupyter_book.exists():
        raise SystemExit("[build_book] jupyter-book is not installed: pip install -e '.[book]' (or run `make book`)")
    log("jupyter-book build")
    command = [str(jupyter_book), "build", str(SRC), "--path-output", str(OUT), "--builder", "html"]
    if args.all:
        command.append("--all")
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    (OUT).mkdir(exist_ok=True)
    (OUT / "build.log").write_text(result.stdout + result.stderr, encoding="utf-8")
    warnings = [l for l in (result.stdout + result.stderr).splitlines() if "WARNING" in l or "ERROR" in l]
    for line in warnings:
        log(line)
    if result.returncode != 0:
        print(result.stdout[-5000:], result.stderr[-5000:], file=sys.stderr)
        raise SystemExit(f"[build_book] jupyter-book build failed (exit {result.returncode}); full log in {OUT / 'build.log'}")
    html = OUT / "_build" / "html"
    copy_tree(SRC / "assets", html / "_static")  # Sphinx skips copying static files when no page changed
    size = sum(p.stat().st_size for p in html.rglob("*") if p.is_file())
    log(f"built {len(pages)} pages in {time.time() - start:.0f} s (execution {t_executed - start:.0f} s), "
        f"{len(warnings)} warning(s), site {size / 2**20:.1f} MiB: {html / 'index.html'}")
    if failures:
        message = f"[build_book] {len(failures)} notebook(s) failed to execute:\n\n" + "\n\n".join(failures)
        if not args.keep_going:
            raise SystemExit(message + "\n\n[build_book] the book was built without their outputs; exit 1 (--keep-going: exit 0)")
        log(message)
    return html


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="notebooks executed at once (default 2)")
    parser.add_argument("--timeout", type=int, default=1200, help="seconds one cell may run (default 1200)")
    parser.add_argument("--flags", default="", help="test flags whose cells run anyway, as in nbdev_test --flags (e.g. slow)")
    parser.add_argument("--no-execute", action="store_true", help="do not execute: use the outputs saved in the notebooks")
    parser.add_argument("--only", help="only the index and the notebooks whose file name contains this")
    parser.add_argument("--all", action="store_true", help="rebuild every page (jupyter-book build --all)")
    parser.add_argument("--fresh", action="store_true", help="execute every notebook again, ignoring _book_cache/")
    parser.add_argument("--keep-going", action="store_true",
                        help="exit 0 even if notebooks failed to execute (their pages say so); default: build, then exit 1")
    build(parser.parse_args())


if __name__ == "__main__":
    main()
