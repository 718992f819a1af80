"""Rewrite the README's results section ("What the experiments show", a markdown cell of nbs/index.ipynb) from results/.

The hidden code cell after it defines `results_section()` and fails `make test` when the section differs from what the
committed results give (new finished trials change it). This script runs that cell's definitions, writes the markdown cell,
and with `--check` only reports whether it is current. Then `python tools/make_readme.py --execute` refreshes README.md.
"""
import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "nbs" / "index.ipynb"
MARKDOWN_ID, CODE_ID, CHECK = "b7a1c0de", "b7a1c0df", "# The check:"


def texts(notebook_path: Path = None) -> tuple[str, str]:
    "(the section as the notebook has it, the section `results_section()` gives from the results beside the notebook)."
    notebook_path = notebook_path or NOTEBOOK
    cells = {cell.get("id"): cell for cell in json.loads(notebook_path.read_text(encoding="utf-8"))["cells"]}
    if MARKDOWN_ID not in cells or CODE_ID not in cells:
        sys.exit(f"{notebook_path}: no cells with ids {MARKDOWN_ID} (the section) and {CODE_ID} (its check)")
    code = "".join(cells[CODE_ID]["source"])
    if CHECK not in code:
        sys.exit(f"{notebook_path}: cell {CODE_ID} has no '{CHECK}' line separating the definitions from the check")
    namespace, cwd = {}, os.getcwd()
    os.chdir(notebook_path.parent)  # the cell reads ../results, as it does when the notebook runs
    try:
        exec(compile(code.split(CHECK)[0], f"{notebook_path.name} cell {CODE_ID}", "exec"), namespace)
        return "".join(cells[MARKDOWN_ID]["source"]), namespace["results_section"]()
    finally:
        os.chdir(cwd)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the section is stale, write nothing")
    args = parser.parse_args(argv)
    current, text = texts(NOTEBOOK)
    if current == text:
        print("the results section is current")
        return 0
    if args.check:
        print("the results section is stale: run python tools/results_section.py, then python tools/make_readme.py --execute")
        return 1
    notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    lines = text.split("\n")
    next(c for c in notebook["cells"] if c.get("id") == MARKDOWN_ID)["source"] = [line + "\n" for line in lines[:-1]] + [lines[-1]]
    NOTEBOOK.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"rewrote the results section of {NOTEBOOK}:\n\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
