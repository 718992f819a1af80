"""The README's code, run as a user runs it: every ```python block, in order, in one fresh Python process outside the
repository, must print exactly the output block the README shows after it (and nothing where it shows none).

The README is generated from nbs/index.ipynb (tools/make_readme.py); `python tools/make_readme.py --execute` refreshes the
notebook's outputs and the README together. tests/test_wheel.py runs the same check against the built wheel.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MARK = "\x1eREADME block {}\x1e"  # a line no README code prints, written before each block's output

_FENCE = re.compile(r"^```([A-Za-z]*)\n(.*?)^```$", flags=re.S | re.M)


def readme_examples(text: str) -> list[tuple[str, str]]:
    """(code, expected output) for each ```python block of `text`, in order; the expected output is the bare ``` block that
    directly follows the code block (only blank lines between), or '' if none does."""
    fences = list(_FENCE.finditer(text))
    examples = []
    for i, fence in enumerate(fences):
        if fence.group(1) != "python":
            continue
        following = fences[i + 1] if i + 1 < len(fences) else None
        shown = ""
        if following is not None and following.group(1) == "" and not text[fence.end():following.start()].strip():
            shown = following.group(2).rstrip("\n")
        examples.append((fence.group(2), shown))
    return examples


def run_examples(python: str, examples: list[tuple[str, str]], cwd: Path) -> list[str]:
    """Run the examples' code in order in one fresh `python` process (one namespace, as a user pastes them into a script)
    from `cwd`; returns what each block printed to stdout. Fails if the process fails or writes to stderr."""
    script = "import sys\nnamespace = {'__name__': '__main__'}\n"
    for i, (code, _) in enumerate(examples):
        script += f"print({MARK.format(i)!r}, flush=True)\nexec(compile({code!r}, 'README block {i + 1}', 'exec'), namespace)\n"
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    done = subprocess.run([python, "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"the README's code failed under {python}:\n{done.stderr[-4000:]}"
    assert done.stderr == "", f"the README's code wrote to stderr, which the README does not show:\n{done.stderr[-4000:]}"
    printed = done.stdout.split("\n")
    starts = [printed.index(MARK.format(i)) for i in range(len(examples))] + [len(printed)]
    return ["\n".join(printed[start + 1:end]).rstrip("\n") for start, end in zip(starts, starts[1:])]


def assert_readme_runs(python: str, cwd: Path) -> None:
    examples = readme_examples((ROOT / "README.md").read_text(encoding="utf-8"))
    assert examples and any(shown for _, shown in examples), "README.md has no python example with output"
    for i, ((code, shown), printed) in enumerate(zip(examples, run_examples(python, examples, cwd))):
        assert printed == shown, (f"README block {i + 1} prints something else than the README shows "
                                  f"(refresh with `python tools/make_readme.py --execute`):\n{code}\n"
                                  f"--- README shows:\n{shown}\n--- it prints:\n{printed}")


def test_readme_examples_print_what_the_readme_shows(tmp_path):
    assert_readme_runs(sys.executable, tmp_path)


def test_readme_examples_parsed():
    "The parser pairs each code block with the output block right after it, and with nothing across prose."
    text = "intro\n\n```python\nprint(1)\n```\n\n```\n1\n```\n\nprose\n\n```python\nx = 2\n```\n\ntext\n\n```\nnot output\n```\n"
    assert readme_examples(text) == [("print(1)\n", "1"), ("x = 2\n", "")]


def test_a_wrong_readme_output_fails(tmp_path):
    "The comparison can fail: a block whose shown output differs from what it prints is reported."
    examples = [("print('a')\n", "a"), ("print(40 + 2)\n", "41")]
    assert run_examples(sys.executable, examples, tmp_path) == ["a", "42"]


def _make_readme():
    import importlib.util
    spec = importlib.util.spec_from_file_location("make_readme", ROOT / "tools" / "make_readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _notebook(path: Path, *sources: str) -> Path:
    cells = [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {}, "outputs": [], "source": source}
             for i, source in enumerate(sources)]
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


def test_make_readme_execute_puts_what_ran_in_the_readme(tmp_path):
    "`--execute`: the README's output block is what the cell printed; hidden cells run but are not shown."
    make_readme = _make_readme()
    notebook = _notebook(tmp_path / "index.ipynb", "x = 6 * 7\nprint(x)", "#| hide\nassert x == 42\nprint('hidden')")
    make_readme.execute(notebook)
    assert json.loads(notebook.read_text())["cells"][1]["outputs"][0]["text"] == ["hidden\n"]
    assert make_readme.render(notebook).endswith("```python\nx = 6 * 7\nprint(x)\n```\n\n```\n42\n```\n")


@pytest.mark.parametrize("source", ["import sys\nprint('careful', file=sys.stderr)", "6 * 7"])
def test_make_readme_execute_refuses_output_a_script_would_not_print(tmp_path, source):
    "A shown cell that writes to stderr, or displays a value, would make the README show what a script does not print."
    with pytest.raises(SystemExit, match="README cells may only print to stdout"):
        _make_readme().execute(_notebook(tmp_path / "index.ipynb", source))
