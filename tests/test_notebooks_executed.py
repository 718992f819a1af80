"""Every page of the book is committed executed, so a reader sees its figures and tables on GitHub or in Jupyter without running it.

The pages are the notebooks tools/build_book.py puts in the book (`find_notebooks`: every notebook under nbs/ except `_`- and
`.`-prefixed names). A page must carry at least one code cell output, unless every code cell of it is plumbing: nbdev directives
only (`#| default_exp`, `#| hide` imports of show_doc), imports, `#| export`/`#| exporti` definitions, or `#| eval: false` cells.
Such a page has nothing to show; none exists today, and the test prints any it exempts. On a page that carries outputs, every cell
that prints or plots (a top-level call of print, display, show_doc or plt.show, not one inside a function it defines) must carry its
own: a page executed and then extended is missing what the new cells show. A page must also not carry an error output: a committed
traceback is what a reader would see instead of the chapter.

To fix a failure, execute the notebook in place (from the repository root):
`.venv/bin/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=600 nbs/NAME.ipynb`,
check that no cell started a long run (rerun cells are guarded by `RERUN = False` and `#| eval: false`), and commit it.
"""
from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from build_book import find_notebooks, flag, source_of, split_directives  # noqa: E402  (the book's own rules)

PAGES = find_notebooks()


def is_plumbing(cell: dict) -> bool:
    "A code cell that shows nothing by design: directives only, imports only, exported definitions, or not executed."
    directives, code = split_directives(source_of(cell))
    if flag(directives, "eval") == "false" or not code.strip():
        return True
    try:
        body = ast.parse(code).body
    except SyntaxError:  # cell magics: treat as real code
        return False
    if all(isinstance(node, (ast.Import, ast.ImportFrom)) for node in body):
        return True
    definitions = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign, ast.AnnAssign)
    return bool({"export", "exporti"} & directives.keys()) and all(isinstance(node, definitions) for node in body)


SHOWING_CALLS = {"print", "display", "show_doc", "show"}  # show: plt.show() and fig.show()


def prints_or_plots(cell: dict) -> bool:
    "A code cell that calls print/display/show_doc/show when it runs: at top level or in a loop, branch or with block, not in a def."
    directives, code = split_directives(source_of(cell))
    if flag(directives, "eval") == "false":
        return False
    try:
        body = ast.parse(code).body
    except SyntaxError:
        return False
    compound = (ast.If, ast.For, ast.While, ast.With, ast.Try)
    while body:
        node = body.pop()
        if isinstance(node, compound):
            body += node.body + getattr(node, "orelse", []) + getattr(node, "finalbody", [])
        elif not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for sub in ast.walk(node):
                if isinstance(sub, ast.Call) and getattr(sub.func, "id", getattr(sub.func, "attr", None)) in SHOWING_CALLS:
                    return True
    return False


def code_cells(path: Path) -> list[dict]:
    return [cell for cell in json.loads(path.read_text(encoding="utf-8"))["cells"] if cell["cell_type"] == "code"]


def test_pages_found():
    names = [p.name for p in PAGES]
    assert names[:2] == ["index.ipynb", "notation.ipynb"] and "00_entropy.ipynb" in names and len(names) >= 10, names


def test_every_page_carries_outputs():
    missing, exempt = [], []
    for path in PAGES:
        cells = code_cells(path)
        if any(cell.get("outputs") for cell in cells):
            continue
        if all(is_plumbing(cell) for cell in cells):
            exempt.append(path.name)
        else:
            real = sum(not is_plumbing(cell) for cell in cells)
            missing.append(f"{path.relative_to(ROOT)} ({real} code cells that are not plumbing, no output)")
    print(f"{len(PAGES)} pages; exempt (every code cell is plumbing): {exempt or 'none'}")
    assert not missing, (f"{len(missing)} of {len(PAGES)} book pages are committed without outputs, so a reader sees no figures "
                         f"(execute them: see this file's docstring):\n" + "\n".join(missing))


def test_executed_pages_are_complete():
    "A page with outputs has them in every cell that prints or plots."
    partial = []
    for path in PAGES:
        cells = code_cells(path)
        if any(cell.get("outputs") for cell in cells):
            silent = [index + 1 for index, cell in enumerate(cells) if prints_or_plots(cell) and not cell.get("outputs")]
            if silent:
                partial.append(f"{path.relative_to(ROOT)}: code cells {silent} print or plot but carry no output")
    assert not partial, "pages executed only in part (execute them again: see this file's docstring):\n" + "\n".join(partial)


def test_no_page_carries_an_error():
    errors = []
    for path in PAGES:
        for index, cell in enumerate(code_cells(path)):
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    errors.append(f"{path.relative_to(ROOT)}, code cell {index + 1}: {output.get('ename')}: {output.get('evalue', '')[:200]}")
    assert not errors, "committed tracebacks:\n" + "\n".join(errors)


@pytest.mark.parametrize("source, plumbing", [
    ("#| default_exp entropy", True),
    ("#| hide\nfrom nbdev.showdoc import show_doc", True),
    ("#| export\nimport math\n\ndef f(x):\n    return x", True),
    ("#| export\nTILE = 4\n\nclass A:\n    pass", True),
    ("#| eval: false\nRERUN = False\nif RERUN:\n    run()", True),
    ("import torch\nfrom pathlib import Path", True),
    ("show_doc(f)", False),
    ("print(1)", False),
    ("x = 1\nx", False),
    ("#| export\ndef f(x):\n    return x\nf(1)", False),
    ("%%time\nx = 1", False),
])
def test_plumbing_rule(source, plumbing):
    assert is_plumbing({"cell_type": "code", "source": source}) == plumbing


@pytest.mark.parametrize("source, shows", [
    ("print(1)", True),
    ("for i in range(3):\n    if i:\n        print(i)", True),
    ("fig, ax = plt.subplots()\nax.plot([1])\nplt.show()", True),
    ("display(Markdown(table))", True),
    ("with tempfile.TemporaryDirectory() as tmp:\n    x = f(tmp)\nprint(x)", True),
    ("def f():\n    print(1)", False),
    ("x = 1\nassert x == 1", False),
    ("#| eval: false\nprint(run())", False),
])
def test_prints_or_plots_rule(source, shows):
    assert prints_or_plots({"cell_type": "code", "source": source}) == shows
