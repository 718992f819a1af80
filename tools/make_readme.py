"""Write README.md from nbs/index.ipynb without Quarto (which `nbdev_readme` needs and these machines cannot install).

Markdown cells are copied; code cells become ```python blocks followed by their text output; cells with an nbdev
`#| hide` directive are left out, and `#|` directive lines are stripped. `--check` exits 1 if README.md is stale.
"""
import argparse
import json
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


def render(notebook_path: Path) -> str:
    notebook = json.loads(notebook_path.read_text(encoding="utf-8"))
    parts = ["<!-- Generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, not this file. -->"]
    for cell in notebook["cells"]:
        source = _source(cell)
        lines = source.splitlines()
        if any(line.strip().replace(" ", "") in ("#|hide", "#|hide_input") for line in lines):
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
    args = parser.parse_args()
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
