"""Write README.md from nbs/index.ipynb without Quarto (which `nbdev_readme` needs and these machines cannot install).

Markdown cells are copied; code cells become ```python blocks followed by their text output; cells with an nbdev
`#| hide` directive are left out, and `#|` directive lines are stripped. `--check` exits 1 if README.md is stale.

`--execute` first runs the notebook top to bottom in this fresh process (execnb, as `nbdev_test` runs it) and stores the
outputs in it, so the README's output blocks are what the code printed: after a change to the package, refresh both with
`python tools/make_readme.py --execute` and commit nbs/index.ipynb and README.md. A cell shown in the README may print only
to stdout (no warnings on stderr, no display values: tests/test_readme.py compares what a script prints); anything else is
an error.
"""
import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _source(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _text_outputs(cell) -> str:
    texts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            texts.append("".join(output["text"]))
        elif "text/plain" in output.get("data", {}) and "image/png" not in output.get("data", {}):
            texts.append("".join(output["data"]["text/plain"]) + "\n")
    return "".join(texts).rstrip("\n")


def _hidden(lines) -> bool:
    return any(line.strip().replace(" ", "") in ("#|hide", "#|hide_input") for line in lines)


def _skipped(cell) -> bool:
    "nbdev's `#| eval: false` cells are not run (execnb's preproc: True skips the cell)."
    return any(line.strip().replace(" ", "") == "#|eval:false" for line in _source(cell).splitlines())


def execute(notebook_path: Path) -> None:
    "Run the notebook in this process and write its outputs into it (cell ids, sources and metadata kept)."
    from execnb.nbio import read_nb
    from execnb.shell import CaptureShell

    executed = read_nb(notebook_path)
    shell = CaptureShell(path=notebook_path.parent)
    cwd = os.getcwd()
    os.chdir(notebook_path.parent)  # relative paths resolve as under nbdev_test, which runs a notebook in its own folder
    try:
        shell.run_all(executed, exc_stop=True, preproc=_skipped)
    finally:
        os.chdir(cwd)
    notebook = json.loads(notebook_path.read_text(encoding="utf-8"))
    count = 0
    for cell, ran in zip(notebook["cells"], executed.cells, strict=True):
        if cell["cell_type"] != "code":
            continue
        cell["metadata"].pop("execution", None)  # timestamps of an earlier run
        if _skipped(cell):
            cell["outputs"], cell["execution_count"] = [], None
            continue
        count += 1
        outputs = [_normalised(dict(output)) for output in ran.get("outputs", [])]
        if not _hidden(_source(cell).splitlines()):
            for output in outputs:
                if output["output_type"] != "stream" or output["name"] != "stdout":
                    kind = output.get("name", output["output_type"])
                    raise SystemExit(f"cell {cell['id']} of {notebook_path.name} is shown in the README but wrote {kind} output "
                                     f"({''.join(output.get('text', ''))[:200]!r}...): README cells may only print to stdout")
        cell["outputs"], cell["execution_count"] = outputs, count
    notebook_path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _normalised(output: dict) -> dict:
    "nbformat's on-disk form: multi-line strings as lists of lines."
    def lines(text): return text.splitlines(keepends=True) if isinstance(text, str) else list(text)
    output = json.loads(json.dumps(output, default=dict))
    if "text" in output:
        output["text"] = lines(output["text"])
    for mime, value in output.get("data", {}).items():
        if mime.startswith("text/") and isinstance(value, str):
            output["data"][mime] = lines(value)
    return output


def render(notebook_path: Path) -> str:
    notebook = json.loads(notebook_path.read_text(encoding="utf-8"))
    parts = ["<!-- Generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, not this file. -->"]
    for cell in notebook["cells"]:
        source = _source(cell)
        lines = source.splitlines()
        if _hidden(lines):
            continue
        body = "\n".join(line for line in lines if not line.lstrip().startswith("#|")).strip("\n")
        if not body:
            continue
        if cell["cell_type"] == "markdown":
            parts.append(body)
        elif cell["cell_type"] == "code":
            parts.append(f"```python\n{body}\n```")
            output = _text_outputs(cell)
            if output:
                parts.append(f"```\n{output}\n```")
    return "\n\n".join(parts) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if README.md is not what the notebook renders to")
    parser.add_argument("--execute", action="store_true", help="run nbs/index.ipynb first and store its outputs in it")
    args = parser.parse_args()
    if args.execute:
        execute(ROOT / "nbs" / "index.ipynb")
    text = render(ROOT / "nbs" / "index.ipynb")
    readme = ROOT / "README.md"
    if args.check:
        if not readme.exists() or readme.read_text(encoding="utf-8") != text:
            print("README.md is stale: run `python tools/make_readme.py` and commit it.", file=sys.stderr)
            return 1
        print("README.md matches nbs/index.ipynb")
        return 0
    readme.write_text(text, encoding="utf-8")
    print(f"wrote {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
