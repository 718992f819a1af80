"""The committed results files are what the book says they are.

Every trial under results/<experiment>/<variant>/trial_<seed>.json must have been written by exactly that named experiment's
config for that variant and seed, must be one consistent history (each step's labelled count is the previous one plus what the
previous step acquired, no point acquired twice, steps numbered in order), and a finished trial must end at `max_labelled`.
Dataset descriptions must not name the machine's folders, so runs made through different paths to the same data compare equal.
"""
import json
from pathlib import Path

import pytest

from batchbald_nb.experiments import EXPERIMENTS, trials_not_from

RESULTS = Path(__file__).resolve().parent.parent / "results"
TRIALS = sorted(RESULTS.glob("*/*/trial_*.json"))


def test_there_are_committed_results():
    assert {p.parent.parent.name for p in TRIALS} >= {"repeated_mnist_cpu", "mnist_cpu", "emnist_cpu", "cinic10_standin"}


@pytest.mark.parametrize("path", TRIALS, ids=lambda p: str(p.relative_to(RESULTS)))
def test_trial_file(path):
    trial = json.loads(path.read_text())
    experiment, variant, seed = EXPERIMENTS[path.parent.parent.name], path.parent.name, trial["config"]["seed"]
    assert path.name == f"trial_{seed}.json"
    assert not trials_not_from(experiment, {variant: [trial]})
    steps = trial["steps"]
    assert [s["step"] for s in steps] == list(range(len(steps)))
    assert steps[0]["num_labelled"] == len(trial["initial_indices"])
    for before, after in zip(steps, steps[1:]):
        assert after["num_labelled"] == before["num_labelled"] + len(before["acquired_indices"]), (before["step"], after["step"])
    acquired = [i for s in steps for i in s["acquired_indices"]]
    assert len(acquired) == len(set(acquired)) and not set(acquired) & set(trial["initial_indices"])
    assert not set(acquired) & set(trial["validation_indices"])
    if trial["finished"]:
        assert steps[-1]["num_labelled"] == trial["config"]["max_labelled"] and not steps[-1]["acquired_indices"]
    for folder in ("/work/", "/home/", "shared/data", "\\"):
        assert folder not in trial["dataset"], f"{path}: the dataset description names a folder ({folder!r})"


def test_no_stray_files_in_results():
    "Half-written (.tmp) and lock files never get committed."
    stray = [p for p in RESULTS.rglob("*") if p.is_file() and p.suffix in (".tmp", ".lock")]
    assert not [p for p in stray if _tracked(p)]


def _tracked(path: Path) -> bool:
    import subprocess
    out = subprocess.run(["git", "ls-files", "--error-unmatch", str(path)], cwd=RESULTS.parent, capture_output=True)
    return out.returncode == 0
