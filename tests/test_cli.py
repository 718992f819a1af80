"""The `batchbald-nb` command line fails cleanly and loses nothing.

Every bad input of `run` and `plot` must end with a non-zero exit status and exactly one line on stderr,
`batchbald-nb: error: <what is wrong and what was expected>`, no traceback, and no file written, changed or left behind.
argparse's own errors keep argparse's format. The cases marked "console script" run the installed `batchbald-nb` in a
subprocess; the others call `main` in this process (the same code, without a second of torch import per case).
All data is made here: the `toy` experiment (no dataset), and CINIC-10 "downloads" from addresses that fail on this machine.
"""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import batchbald_nb.data
from batchbald_nb.active_learning import trial_lock
from batchbald_nb.experiments import main

CLI = Path(sys.executable).parent / "batchbald-nb"
PREFIX = "batchbald-nb: error: "


def snapshot(root: Path) -> dict:
    "Every file and folder under `root` with its bytes: what a failed command must leave exactly as it was."
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def console(*argv, cwd=None) -> tuple[int, str]:
    "Exit status and stderr of the installed console script."
    result = subprocess.run([str(CLI), *map(str, argv)], capture_output=True, text=True, cwd=cwd)
    return result.returncode, result.stderr


def in_process(capsys, *argv) -> tuple[int, str]:
    "Exit status and stderr of `main(argv)` in this process."
    capsys.readouterr()
    status = main([str(a) for a in argv])
    return status, capsys.readouterr().err


def assert_one_line_error(status: int, err: str, *fragments: str) -> str:
    lines = err.splitlines()
    assert status == 2, (status, err)
    assert len(lines) == 1 and lines[0].startswith(PREFIX) and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def finished_toy(tmp_path_factory) -> Path:
    "A results folder with one finished toy trial (random, seed 0): about 5 s, made once."
    out = tmp_path_factory.mktemp("toy") / "results"
    torch.set_num_threads(1)
    assert main(["run", "toy", "--out", str(out), "--seeds", "0", "--variants", "random"]) == 0
    return out


@pytest.fixture
def toy_results(finished_toy, tmp_path) -> Path:
    "A fresh copy of `finished_toy` for a test to break."
    return Path(shutil.copytree(finished_toy, tmp_path / "results"))


# ---- the cases found by trying the toy experiment (console script) ----

@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: --device cuda is valid here")
def test_device_cuda_without_gpu(tmp_path):
    before = snapshot(tmp_path)
    line = assert_one_line_error(*console("run", "toy", "--out", tmp_path / "out", "--seeds", "0", "--device", "cuda"),
                                 "--device 'cuda' is not available", "no CUDA GPU", "expected 'cpu'")
    assert snapshot(tmp_path) == before, line


def test_device_that_does_not_exist(tmp_path):
    "On any machine: a CUDA index past the last GPU (none here), and a name torch does not know."
    missing = f"cuda:{torch.cuda.device_count() + 3}"
    assert_one_line_error(*console("run", "toy", "--out", tmp_path / "out", "--device", missing), f"--device {missing!r} is not available")
    assert_one_line_error(*console("run", "toy", "--out", tmp_path / "out", "--device", "gpu"),
                          "--device must be 'cpu', 'cuda', 'cuda:<index>' or 'mps', got 'gpu'")
    assert not list(tmp_path.iterdir())


def test_truncated_trial_file_is_named_and_kept(toy_results):
    trial = toy_results / "random" / "trial_0.json"
    text = trial.read_text()
    trial.write_text(text[: text.index('"test_accuracy"') + 5])  # cut inside a string, as an interrupted copy would
    before = snapshot(toy_results)
    line = assert_one_line_error(*console("run", "toy", "--out", toy_results, "--seeds", "0", "--variants", "random", "bald"),
                                 f"results file {trial} cannot be read as JSON", "Unterminated string", "left as it is")
    assert snapshot(toy_results) == before, line  # the broken file kept byte for byte; no bald/ folder, no log line
    trial.write_text(text)  # repaired: the same command resumes, and the finished trial is not rerun
    assert main(["run", "toy", "--out", str(toy_results), "--seeds", "0", "--variants", "random"]) == 0
    assert trial.read_text() == text


@pytest.mark.parametrize("trials", ["-1", "0"])
def test_trials_below_one(tmp_path, trials):
    assert_one_line_error(*console("run", "toy", "--out", tmp_path / "out", "--trials", trials),
                          f"--trials must be at least 1 (seeds 0 to trials - 1), got {trials}")
    assert not list(tmp_path.iterdir())


def test_plot_of_a_folder_that_does_not_exist(tmp_path):
    assert_one_line_error(*console("plot", tmp_path / "nothing"),
                          f"results folder {tmp_path / 'nothing'} does not exist", "<variant>/trial_<seed>.json")
    assert not list(tmp_path.iterdir())


def test_failed_cinic10_download_leaves_nothing(tmp_path, capsys, monkeypatch):
    "Both addresses fail offline: a missing file and a closed port on this machine. No network beyond 127.0.0.1."
    urls = ((tmp_path / "no_such_archive.tar.gz").as_uri(), "http://127.0.0.1:9/CINIC-10.tar.gz")
    monkeypatch.setattr(batchbald_nb.data, "CINIC10_URLS", urls)
    (tmp_path / "data").mkdir()
    for root in (tmp_path / "data", tmp_path / "new" / "data"):  # an existing empty root, and one --download would create
        line = assert_one_line_error(*in_process(capsys, "run", "cinic10_standin", "--out", tmp_path / "out", "--seeds", "0",
                                                 "--data-root", root, "--download", "--device", "cpu"),
                                     "dataset 'cinic10'", "the download failed from every address", *urls)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["data"] and not list((tmp_path / "data").iterdir()), line


# ---- run: other bad inputs ----

@pytest.mark.parametrize("argv, fragments", [
    (["run", "nope"], ["unknown experiment 'nope'; expected one of: ", "toy"]),
    (["run", "toy", "--variants", "random", "bold"], ["experiment 'toy' has no variant 'bold'; expected some of: batchbald, bald, random"]),
    (["run", "toy", "--variants", "random", "random"], ["--variants must not repeat a variant", "random more than once"]),
    (["run", "toy", "--seeds", "-1", "0"], ["--seeds must be integers in [0, 2**63), got -1"]),
    (["run", "toy", "--seeds", str(2**64)], [f"--seeds must be integers in [0, 2**63), got {2**64}"]),
    (["run", "toy", "--seeds", "1", "0", "1"], ["--seeds must not repeat a seed", "got 1 more than once"]),
    (["run", "toy", "--processes", "0"], ["--processes must be at least 1, got 0"]),
    (["run", "toy", "--processes", "2", "--ray", "local"], ["--ray and --processes exclude each other"]),
])
def test_bad_run_arguments(tmp_path, capsys, argv, fragments):
    assert_one_line_error(*in_process(capsys, *argv, "--out", tmp_path / "out"), *fragments)
    assert not list(tmp_path.iterdir())


def test_argparse_errors_keep_argparse_format(tmp_path):
    status, err = console("run", "toy", "--out", tmp_path / "out", "--trials", "2", "--seeds", "0")
    assert status == 2 and err.startswith("usage: ") and "argument --seeds: not allowed with argument --trials" in err
    status, err = console("run", "toy", "--out", tmp_path / "out", "--trials", "two")
    assert status == 2 and "argument --trials: invalid int value: 'two'" in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())


def test_out_that_is_a_file(tmp_path, capsys):
    (tmp_path / "a_file").write_text("keep me")
    assert_one_line_error(*in_process(capsys, "run", "toy", "--out", tmp_path / "a_file"),
                          f"results folder {tmp_path / 'a_file'} is a file (expected a folder")
    assert_one_line_error(*in_process(capsys, "run", "toy", "--out", tmp_path / "a_file" / "sub"),
                          "cannot be created:", f"{tmp_path / 'a_file'} is a file")
    assert snapshot(tmp_path) == {"a_file": b"keep me"}


def test_results_folder_of_another_experiment(toy_results, capsys):
    before = snapshot(toy_results)
    assert_one_line_error(*in_process(capsys, "run", "readme", "--out", toy_results, "--seeds", "0"),
                          f"results folder {toy_results} holds experiment 'toy', not 'readme'")
    assert snapshot(toy_results) == before


@pytest.mark.parametrize("content, fragments", [
    ("seed 0's trial", ["holds results of a different config (seed: stored 0, requested 1)", "left as it is"]),
    ("another config", ["holds results of a different config (", "num_samples_K: stored 7, requested 20", "left as it is"]),
    ("[1, 2, 3]", ["is not a trial results file (expected a JSON object with 'config', 'initial_indices', 'steps', 'finished')"]),
])
def test_results_file_that_is_not_this_trials(toy_results, capsys, content, fragments):
    trial = json.loads((toy_results / "random" / "trial_0.json").read_text())
    if content == "another config":
        trial["config"].update(seed=1, num_samples_K=7)
    text = {"seed 0's trial": json.dumps(trial), "another config": json.dumps(trial)}.get(content, content)
    (toy_results / "random" / "trial_1.json").write_text(text)
    before = snapshot(toy_results)
    assert_one_line_error(*in_process(capsys, "run", "toy", "--out", toy_results, "--seeds", "0", "1", "--variants", "random"),
                          str(toy_results / "random" / "trial_1.json"), *fragments)
    assert snapshot(toy_results) == before


def test_variant_folder_that_is_a_file(toy_results, capsys):
    (toy_results / "bald").write_text("not a folder")
    before = snapshot(toy_results)
    assert_one_line_error(*in_process(capsys, "run", "toy", "--out", toy_results, "--seeds", "0"),
                          f"{toy_results / 'bald'} is a file, but trials of variant 'bald' go in a folder of that name")
    assert snapshot(toy_results) == before


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_data_root_that_is_not_a_folder(tmp_path, capsys, kind):
    root = tmp_path / "data"
    if kind == "file":
        root.write_text("not a folder")
    before = snapshot(tmp_path)
    assert_one_line_error(*in_process(capsys, "run", "toy", "--out", tmp_path / "out", "--data-root", root),
                          f"data root {str(root)!r} is not a folder (expected the folder holding the datasets")
    assert snapshot(tmp_path) == before


def test_missing_dataset_names_it_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    assert_one_line_error(*in_process(capsys, "run", "mnist_cpu", "--out", tmp_path / "out", "--data-root", tmp_path / "data",
                                      "--device", "cpu"),
                          "dataset 'mnist': expected MNIST/raw/", str(tmp_path / "data"), "download=False")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_trial_run_by_another_process(toy_results, capsys):
    "A second run of a trial that another process holds stops at that trial, naming it; the file keeps every byte."
    path = toy_results / "random" / "trial_0.json"
    text = path.read_text()
    with trial_lock(path):  # as the other process would hold it
        assert_one_line_error(*in_process(capsys, "run", "toy", "--out", toy_results, "--seeds", "0", "--variants", "random",
                                          "--device", "cpu"),
                              f"{path} is being written by another process running the same trial")
    assert path.read_text() == text


# ---- plot: bad inputs ----

def test_plot_of_a_file_and_of_a_folder_without_trials(tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "empty" / "bald").mkdir(parents=True)
    before = snapshot(tmp_path)
    assert_one_line_error(*in_process(capsys, "plot", tmp_path / "a_file"), f"results folder {tmp_path / 'a_file'} is a file")
    assert_one_line_error(*in_process(capsys, "plot", tmp_path / "empty"),
                          f"results folder {tmp_path / 'empty'} holds no trial with steps (expected <variant>/trial_<seed>.json")
    assert snapshot(tmp_path) == before


def test_plot_names_a_broken_trial_file(toy_results, capsys):
    path = toy_results / "random" / "trial_0.json"
    text = path.read_text()
    for broken, fragments in [(text[:2000], [f"results file {path} cannot be read as JSON", "left as it is"]),
                              ('{"steps": 3}', [f"{path} is not a trial results file"])]:
        path.write_text(broken)
        before = snapshot(toy_results)
        assert_one_line_error(*in_process(capsys, "plot", toy_results), *fragments)
        assert snapshot(toy_results) == before and not (toy_results / "curves.png").exists()


def test_plot_refuses_a_variant_that_mixes_configs(toy_results, capsys):
    trial = json.loads((toy_results / "random" / "trial_0.json").read_text())
    trial["config"].update(seed=1, num_samples_K=7)
    (toy_results / "random" / "trial_1.json").write_text(json.dumps(trial))
    (toy_results / "random" / "trial_2.json").write_text((toy_results / "random" / "trial_0.json").read_text())  # seed 0 inside
    before = snapshot(toy_results)
    assert_one_line_error(*in_process(capsys, "plot", toy_results),
                          f"{toy_results / 'random' / 'trial_2.json'} holds the trial of seed 0, not of seed 2")
    (toy_results / "random" / "trial_2.json").unlink()
    assert_one_line_error(*in_process(capsys, "plot", toy_results),
                          f"{toy_results / 'random'} mixes configs: seeds 0 and 1 differ in num_samples_K")
    assert not (toy_results / "curves.png").exists()
    assert set(snapshot(toy_results)) == set(before) - {"random/trial_2.json"}


def test_plot_bad_figure_paths(toy_results, capsys, tmp_path):
    (tmp_path / "a_file").write_text("x")
    before = snapshot(toy_results)
    for out, fragments in [(toy_results / "random", [f"figure path {toy_results / 'random'} is a folder"]),
                           (toy_results / "curves.xyz", ["ends in '.xyz' (expected one of ", ".png", ".pdf"]),
                           (tmp_path / "a_file" / "curves.png", [f"{tmp_path / 'a_file'} is a file"])]:
        assert_one_line_error(*in_process(capsys, "plot", toy_results, "--out", out), *fragments)
    assert snapshot(toy_results) == before and (tmp_path / "a_file").read_text() == "x"


def test_plot_writes_the_figure_and_nothing_else(toy_results, capsys):
    before = set(snapshot(toy_results))
    status, _ = in_process(capsys, "plot", toy_results, "--out", toy_results / "figs" / "curves.pdf")
    assert status == 0 and set(snapshot(toy_results)) - before == {"figs", "figs/curves.pdf"}
    assert (toy_results / "figs" / "curves.pdf").read_bytes().startswith(b"%PDF")


# ---- more: broken experiment.json, Ray missing, Ctrl-C ----

def test_unreadable_experiment_json(toy_results, capsys):
    (toy_results / "experiment.json").write_text('{"name": "to')
    before = snapshot(toy_results)
    assert_one_line_error(*in_process(capsys, "run", "toy", "--out", toy_results, "--seeds", "0", "--variants", "random"),
                          f"{toy_results / 'experiment.json'} is not an experiment.json that `run` wrote", "left as it is")
    assert_one_line_error(*in_process(capsys, "plot", toy_results), f"{toy_results / 'experiment.json'} cannot be read as JSON")
    assert snapshot(toy_results) == before


def test_ray_not_installed(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as where Ray is not installed
    assert_one_line_error(*in_process(capsys, "run", "toy", "--out", tmp_path / "out", "--ray", "local", "--device", "cpu"),
                          "ray_address needs Ray: pip install 'batchbald_nb[ray]'")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("processes, signal_name", [(1, "SIGINT"), (2, "SIGINT"), (2, "SIGTERM")])
def test_interrupted_run_keeps_its_steps_and_resumes(finished_toy, tmp_path, processes, signal_name):
    """Ctrl-C (SIGINT) or `kill` (SIGTERM) mid-trial: status 130, one last line saying so, every finished step on disk, no temporary
    file, with --processes no queued trial started after it and no worker process left running; the same command then resumes
    every trial to the end."""
    import os
    import signal
    import time

    seeds = ["0"] if processes == 1 else ["0", "1", "2"]  # two run at once, the third waits in the queue
    argv = [str(CLI), "run", "toy", "--out", str(tmp_path), "--seeds", *seeds, "--variants", "random", "--device", "cpu",
            "--processes", str(processes)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    paths = [tmp_path / "random" / f"trial_{s}.json" for s in seeds]

    def steps(path: Path) -> int:
        return len(json.loads(path.read_text())["steps"]) if path.exists() else 0

    # SIGINT back to its default in the child: a shell that starts pytest in the background (`make test &`) has it ignored, and an
    # ignored SIGINT is inherited, so the run would never see the Ctrl-C this test sends
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 180
    # signal once every running trial has a step on disk and one has two: waiting for both to reach two let a fast CI machine finish
    # the first trial (8 steps) while the second was still starting
    while proc.poll() is None and time.monotonic() < deadline and not (
            all(steps(p) >= 1 for p in paths[:processes]) and any(steps(p) >= 2 for p in paths[:processes])):
        time.sleep(0.05)
    workers = _children(proc.pid) if processes > 1 else []  # a file read, not a subprocess: the trials keep running meanwhile
    # on an idle machine a toy trial can still finish between the last look and the signal; its worker then starts the queued trial
    finished_before_signal = any(json.loads(p.read_text())["finished"] for p in paths[:processes])
    proc.send_signal(getattr(signal, signal_name))
    _, err = proc.communicate(timeout=120)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.1)
    assert not any(_alive(p) for p in workers), "a worker process outlived the interrupted run"
    interrupted = [json.loads(p.read_text()) for p in paths[:processes]]
    assert proc.returncode == 130 and not all(t["finished"] for t in interrupted), (proc.returncode, err[-500:])
    assert finished_before_signal or not any(t["finished"] for t in interrupted)
    assert err.replace("\r", "\n").strip().splitlines()[-1] == \
        "batchbald-nb: interrupted; every finished step is saved, and the same command resumes"
    assert not list(tmp_path.rglob("*.tmp")) and (finished_before_signal or not any(p.exists() for p in paths[processes:]))
    subprocess.run(argv, check=True, capture_output=True, env=env)
    resumed = json.loads(paths[0].read_text())
    uninterrupted = json.loads((finished_toy / "random" / "trial_0.json").read_text())
    assert all(json.loads(p.read_text())["finished"] for p in paths)
    assert resumed["steps"][: len(interrupted[0]["steps"])] == interrupted[0]["steps"]
    # random acquisition does not depend on the models, so the points acquired are exactly an uninterrupted run's
    assert [s["acquired_indices"] for s in resumed["steps"]] == [s["acquired_indices"] for s in uninterrupted["steps"]]


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="finds the workers in /proc")
def test_killed_worker_process_loses_nothing(finished_toy, tmp_path):
    """A worker killed from outside (the OOM killer, kill -9) ends the run with status 1 and one error line saying so, no
    traceback; the other trials stop after their last written step, the queued one never starts, and the same command resumes.
    (Python's resource tracker may add its own warning about the killed worker's semaphore, which it removes.)"""
    import os
    import signal
    import time

    argv = [str(CLI), "run", "toy", "--out", str(tmp_path), "--seeds", "0", "1", "2", "--variants", "random", "--device", "cpu",
            "--processes", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    paths = [tmp_path / "random" / f"trial_{s}.json" for s in range(3)]

    def steps(path: Path) -> int:
        return len(json.loads(path.read_text())["steps"]) if path.exists() else 0

    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 180
    while proc.poll() is None and time.monotonic() < deadline and not all(steps(p) >= 2 for p in paths[:2]):
        time.sleep(0.05)
    children = _children(proc.pid)  # a file read, not a subprocess: quick, while the trials run on
    workers = [pid for pid in children if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()]
    assert len(workers) == 2, children
    # on an idle machine a toy trial can finish between the last look and the kill; its worker then starts the queued trial
    finished_before_kill = any(p.exists() and json.loads(p.read_text())["finished"] for p in paths[:2])
    os.kill(int(workers[0]), signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    errors = [line for line in err.replace("\r", "\n").splitlines() if line.startswith("batchbald-nb")]
    assert proc.returncode == 1 and "Traceback" not in err, (proc.returncode, err[-800:])
    assert errors == ["batchbald-nb: error: a trial failed while running (BrokenProcessPool: A process in the process pool was "
                      "terminated abruptly while the future was running or pending.); every finished step is saved, and the "
                      "same command resumes"]
    assert all(steps(p) >= 2 for p in paths[:2]) and not list(tmp_path.rglob("*.tmp"))
    assert finished_before_kill or not paths[2].exists()  # the queued trial never starts after the kill
    subprocess.run(argv, check=True, capture_output=True, env=env)
    assert all(json.loads(p.read_text())["finished"] for p in paths)
    uninterrupted = json.loads((finished_toy / "random" / "trial_0.json").read_text())
    assert [s["acquired_indices"] for s in json.loads(paths[0].read_text())["steps"]] == \
        [s["acquired_indices"] for s in uninterrupted["steps"]]


def _children(pid: int) -> list[int]:
    "The process ids of `pid`'s children (Linux: /proc/<pid>/task/*/children)."
    from pathlib import Path as _Path
    return [int(c) for task in _Path(f"/proc/{pid}/task").glob("*") for c in (task / "children").read_text().split()]


def _alive(pid: int) -> bool:
    "Whether process `pid` exists and is not a zombie."
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False
