"""The GPU kit (benchmarks/gpu_session.sh and .py) works before a GPU is lent: its dry run goes end to end on the CPU -- the CUDA
tests rehearsed CPU against CPU, a small benchmark, the `toy` trials stopped after their first steps and resumed to the end -- and
leaves the files the device tool can bring back. Its pieces that decide what is kept (pick comparison, collecting results into the
repository, stopping trials) are checked on their own."""
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_session  # noqa: E402

ENV = {**os.environ, "PYTHON": sys.executable, "TQDM_DISABLE": "1"}
ENV.pop("OUT", None)
ENV.pop("DRY_RUN", None)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    "One dry run (about a minute on 2 cores), shared by the checks below."
    folder = tmp_path_factory.mktemp("gpu_dry")
    out, work = folder / "out", folder / "work"
    start = time.monotonic()
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_session.sh"), "--dry-run", "--out", str(out), "--work", str(work)],
                          capture_output=True, text=True, env=ENV, timeout=300)
    seconds = time.monotonic() - start
    print(f"dry run: {seconds:.0f} s")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out, work, json.loads((out / "gpu_session.json").read_text()), seconds


def test_dry_run_leaves_what_the_device_tool_brings_back(dry_run):
    out, _, summary, _ = dry_run
    files = sorted(p.name for p in out.rglob("*") if p.is_file())
    assert files == ["cuda_tests.log", "gpu_batchbald_dryrun.json", "gpu_session.json", "session.log", "toy_results.tar.gz"]
    assert len(files) <= 8 and all(re.fullmatch(r"[A-Za-z0-9._-]+", f) for f in files)  # the tool's limits on what comes back
    assert summary["ok"] and summary["dry_run"] and summary["elapsed_seconds"] < summary["budget_seconds"]


def test_dry_run_rehearses_the_cuda_tests(dry_run):
    out, _, summary, _ = dry_run
    tests = summary["tests"]
    assert tests["ok"] and tests["device"] == "cpu" and tests["passed"] >= 10 and tests["failed"] == tests["error"] == 0
    assert "passed" in (out / "cuda_tests.log").read_text()


def test_dry_run_benchmark_compares_picks(dry_run):
    out, _, summary, _ = dry_run
    bench = json.loads((out / "gpu_batchbald_dryrun.json").read_text())
    assert summary["benchmark"]["ok"]
    assert summary["benchmark"]["cpu_1_thread_seconds"] == next(r["seconds"] for r in bench["rows"] if r["run"] == "cpu 1 thread(s)")
    runs = {r["run"] for r in bench["rows"]}
    assert {"device float64 input on the device", "device float32 input on the CPU", "cpu 1 thread(s)"} <= runs
    device_row = bench["rows"][0]
    assert device_row["warm_up_excluded"] and len(device_row["seconds_all"]) == 3
    assert device_row["seconds"] == sorted(device_row["seconds_all"])[1]  # the median of 3
    assert all(r["agree_exact_steps"] and len(r["indices"]) == bench["b"] for r in bench["rows"])
    assert "vs CPU 1 thread" in bench["table"]  # the text chapter 14 prints


def test_dry_run_bundle_holds_finished_trials_and_no_hidden_files(dry_run):
    out, _, summary, _ = dry_run
    with tarfile.open(out / "toy_results.tar.gz") as tar:
        names = tar.getnames()
        trials = {n: json.load(tar.extractfile(n)) for n in names if n.endswith(".json") and "/trial_" in n}
    assert sorted(trials) == ["results/toy/bald/trial_0.json", "results/toy/batchbald/trial_0.json"]
    assert all(t["finished"] and t["steps"][-1]["num_labelled"] == t["config"]["max_labelled"] for t in trials.values())
    assert "results/toy/experiment.json" in names and any(n.startswith("logs/") for n in names)
    assert not any(part.startswith(".") for n in names for part in n.split("/"))  # no lock or temporary files


def test_interrupted_run_resumes_instead_of_restarting(dry_run):
    "Checked here from the files, not from the script's own verdict: the second pass kept the first's steps, timings and all."
    _, work, summary, _ = dry_run
    assert all(summary["trials"]["checks"].values()), summary["trials"]["checks"]
    first = gpu_session.trial_files(work / "first" / "results" / "toy")
    second = gpu_session.trial_files(work / "second" / "results" / "toy")
    assert sorted(first) == sorted(second) == [("bald", 0), ("batchbald", 0)]
    histories = {key: (json.loads(path.read_text()), json.loads(second[key].read_text())) for key, path in first.items()}
    # the first pass stops once every trial has a step on disk; on a loaded machine one trial may finish before the other starts
    assert any(not before["finished"] for before, _ in histories.values()), "the first pass interrupted no trial"
    for before, after in histories.values():
        assert after["finished"] and after["steps"][: len(before["steps"])] == before["steps"]  # kept, timings included
        if before["finished"]:
            assert after == before  # a trial the first pass finished is not run again
        else:
            assert 1 <= len(before["steps"]) < len(after["steps"])


# ------------------------------------------------------------------------------------------------------------------- the pieces
def test_compare_picks():
    assert gpu_session.compare_picks([1, 2, 3], [1, 2, 4], exact=2) == {"agree_exact_steps": True, "agree_all": False,
                                                                      "first_difference_step": 3}
    assert not gpu_session.compare_picks([1, 2, 3], [2, 1, 3], exact=2)["agree_exact_steps"]
    assert not gpu_session.compare_picks([1, 2, 3], [1], exact=2)["agree_exact_steps"]  # a short batch does not agree
    assert gpu_session.compare_picks([1, 2, 3], [1, 2, 3], exact=3)["first_difference_step"] is None
    assert gpu_session.exact_steps(10, 10, 10_000) == 5 and gpu_session.exact_steps(47, 5, 10_000) == 3


def _trial(path: Path, acquired: list[list[int]], finished: bool = False, config=None) -> Path:
    steps = [{"step": i, "num_labelled": 2 + 2 * i, "acquired_indices": a, "test_accuracy": 0.5, "train_seconds": 1.0}
             for i, a in enumerate(acquired)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"config": config or {"seed": 0}, "steps": steps, "finished": finished}))
    return path


def _bundle(folder: Path, device_results: Path) -> Path:
    with tarfile.open(folder / "exp_results.tar.gz", "w:gz") as tar:
        tar.add(device_results, arcname="results/exp")
    return folder


def test_collect_extends_but_never_replaces_or_shortens(tmp_path):
    repo, device = tmp_path / "repo", tmp_path / "device" / "exp"
    _trial(repo / "results" / "exp" / "a" / "trial_0.json", [[1, 2]])  # the device continued it: written
    _trial(repo / "results" / "exp" / "b" / "trial_0.json", [[1, 2], [3, 4]])  # the device's is shorter: kept
    _trial(repo / "results" / "exp" / "c" / "trial_0.json", [[5, 6]])  # another history: refused
    _trial(repo / "results" / "exp" / "d" / "trial_0.json", [[1, 2]], config={"seed": 1})  # another config: refused
    _trial(device / "a" / "trial_0.json", [[1, 2], [3, 4], []], finished=True)
    _trial(device / "b" / "trial_0.json", [[1, 2]])
    _trial(device / "c" / "trial_0.json", [[1, 2], [3, 4]])
    _trial(device / "d" / "trial_0.json", [[1, 2], [3, 4]])
    _trial(device / "e" / "trial_0.json", [[7, 8]])  # new: written
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "x_cuda.json").write_text("{}")
    before = {p: p.read_text() for p in (repo / "results").rglob("*.json")}
    done = gpu_session.collect(_bundle(tmp_path / "files", device), repo, log=lambda message: None)
    assert done["trials_written"] == ["results/exp/a/trial_0.json", "results/exp/e/trial_0.json"]
    assert done["trials_kept"] == ["results/exp/b/trial_0.json"]
    assert done["trials_refused"] == ["results/exp/c/trial_0.json", "results/exp/d/trial_0.json"]
    assert done["benchmarks"] == ["benchmarks/results/x_cuda.json"]
    for name in ("b", "c", "d"):
        path = repo / "results" / "exp" / name / "trial_0.json"
        assert path.read_text() == before[path]
    assert json.loads((repo / "results" / "exp" / "a" / "trial_0.json").read_text())["finished"]
    assert not [p for p in repo.rglob(".*")]  # no temporary files left behind


def test_stop_ends_a_trial_and_its_children(tmp_path):
    child = subprocess.Popen(["bash", "-c", "sleep 60 & wait"], start_new_session=True)
    start = time.monotonic()
    gpu_session.stop({("v", 0): child}, log=lambda message: None, why="test")
    assert child.returncode == -signal.SIGTERM and time.monotonic() - start < 5
    for _ in range(50):  # the whole group goes, the backgrounded sleep too (reaped by init a moment later)
        try:
            os.killpg(child.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("a process of the stopped trial's group is still running")


def test_bad_invocations_fail_with_one_line(tmp_path):
    script = str(ROOT / "benchmarks" / "gpu_session.py")
    no_out = subprocess.run([sys.executable, script, "run"], capture_output=True, text=True, env=ENV)
    assert no_out.returncode == 2 and len(no_out.stderr.strip().splitlines()) == 1 and "--out" in no_out.stderr
    no_data = subprocess.run([sys.executable, script, "prepare", "--data-root", str(tmp_path)], capture_output=True, text=True, env=ENV)
    assert no_data.returncode == 2 and len(no_data.stderr.strip().splitlines()) == 1 and "MNIST" in no_data.stderr
    assert not list(tmp_path.iterdir())
    missing = subprocess.run([sys.executable, script, "collect", str(tmp_path / "nope")], capture_output=True, text=True, env=ENV)
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1


def test_cuda_tests_skip_loudly_without_cuda(monkeypatch):
    import test_cuda  # tests/ is on the path under pytest

    monkeypatch.setattr(test_cuda, "RUNNABLE", test_cuda.RUNNABLE)  # restored afterwards
    if test_cuda.DEVICE == "cuda" and not torch.cuda.is_available():
        assert not test_cuda.RUNNABLE
    monkeypatch.setattr(test_cuda, "RUNNABLE", False)
    with pytest.raises(pytest.skip.Exception, match="CUDA not available: GPU tests skipped — run benchmarks/gpu_session.sh on a GPU "
                                                    "machine"):
        test_cuda.require_device()
    monkeypatch.setattr(test_cuda, "RUNNABLE", True)
    test_cuda.require_device()  # no skip where the device can run
