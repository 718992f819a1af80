"""The experiment runner as a user drives it: the installed `batchbald-nb` command, and Ray on a local instance."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from batchbald_nb.experiments import EXPERIMENTS, run_experiment

CLI = Path(sys.executable).parent / "batchbald-nb"


def _steps(path: Path) -> list[dict]:
    timing = {"train_seconds", "scoring_seconds", "acquisition_seconds", "evaluation_seconds", "max_rss_mib"}
    return [{k: v for k, v in s.items() if k not in timing} for s in json.loads(path.read_text())["steps"]]


def test_cli_is_installed_and_lists_experiments():
    out = subprocess.run([str(CLI), "list"], check=True, capture_output=True, text=True).stdout
    for name in EXPERIMENTS:
        assert name in out


def test_cli_rejects_bad_experiment_before_running(tmp_path):
    result = subprocess.run([str(CLI), "run", "nope", "--out", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2 and "unknown experiment" in result.stderr
    assert not list(tmp_path.iterdir())


def test_cli_runs_and_plots_toy_experiment(tmp_path):
    subprocess.run([str(CLI), "run", "toy", "--out", str(tmp_path), "--seeds", "0", "--variants", "batchbald", "random", "--processes", "2"],
                   check=True, capture_output=True, text=True)
    trial = json.loads((tmp_path / "batchbald" / "trial_0.json").read_text())
    assert trial["finished"] and trial["steps"][-1]["num_labelled"] == 40
    for key in ("config", "environment", "initial_indices", "validation_indices"):
        assert key in trial
    subprocess.run([str(CLI), "plot", str(tmp_path)], check=True, capture_output=True, text=True)
    assert (tmp_path / "curves.png").stat().st_size > 10_000


def test_ray_local_gives_the_same_results_as_running_in_process(tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed: `pip install -e '.[ray]'` (make test installs it)")
    import torch
    experiment = EXPERIMENTS["toy"]
    # Ray workers run with one thread (OMP_NUM_THREADS=1); float sums depend on the thread count, so match it here
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_experiment(experiment, tmp_path / "local", seeds=[1], variants=["batchbald"], progress=False)
    finally:
        torch.set_num_threads(threads)
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    summaries = run_experiment(experiment, tmp_path / "ray", seeds=[1], variants=["batchbald"], ray_address="local")
    assert len(summaries) == 1
    assert _steps(tmp_path / "ray" / "batchbald" / "trial_1.json") == _steps(tmp_path / "local" / "batchbald" / "trial_1.json")
