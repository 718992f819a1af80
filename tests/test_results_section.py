"""The README's results section (nbs/index.ipynb, "What the experiments show") is generated from results/ and checked.

`make test` runs the notebook, whose hidden cell fails when the section is stale; here: the section is current, the tool
that rewrites it notices a stale one, and the table and the closing sentence change when the results do (so the check can fail).
"""
import importlib.util
import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _tool():
    spec = importlib.util.spec_from_file_location("results_section", ROOT / "tools" / "results_section.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _copy_repo_part(tmp_path: Path) -> Path:
    "tmp/nbs/index.ipynb beside tmp/results (a copy, so a test may change it)."
    (tmp_path / "nbs").mkdir()
    shutil.copy(ROOT / "nbs" / "index.ipynb", tmp_path / "nbs" / "index.ipynb")
    shutil.copytree(ROOT / "results", tmp_path / "results")
    return tmp_path / "nbs" / "index.ipynb"


def test_section_is_current():
    assert _tool().main(["--check"]) == 0


def test_stale_section_is_noticed_and_rewritten(tmp_path, monkeypatch, capsys):
    tool = _tool()
    notebook_path = _copy_repo_part(tmp_path)
    notebook = json.loads(notebook_path.read_text())
    cell = next(c for c in notebook["cells"] if c.get("id") == tool.MARKDOWN_ID)
    current = "".join(cell["source"])
    cell["source"] = [current.replace("6 / 6 / 6", "7 / 6 / 6", 1)]
    notebook_path.write_text(json.dumps(notebook))
    monkeypatch.setattr(tool, "NOTEBOOK", notebook_path)
    assert tool.main(["--check"]) == 1
    assert tool.main([]) == 0 and tool.main(["--check"]) == 0
    rewritten = json.loads(notebook_path.read_text())
    assert "".join(next(c for c in rewritten["cells"] if c.get("id") == tool.MARKDOWN_ID)["source"]) == current


def test_section_follows_the_results(tmp_path):
    "Lower BatchBALD's last accuracy in every Repeated MNIST trial below BALD's: the row and the p < 0.05 sentence change."
    tool = _tool()
    notebook_path = _copy_repo_part(tmp_path)
    before = tool.texts(notebook_path)[1]
    assert "of BALD in Repeated MNIST" in before  # what the committed results say
    for path in (tmp_path / "results" / "repeated_mnist_cpu" / "batchbald").glob("trial_*.json"):
        trial = json.loads(path.read_text())
        trial["steps"][-1]["test_accuracy"] = 0.0
        path.write_text(json.dumps(trial))
    after = tool.texts(notebook_path)[1]
    assert after != before and "of BALD in Repeated MNIST" not in after and "ahead in 0 of 6 seeds" in after
