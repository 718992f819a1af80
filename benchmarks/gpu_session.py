"""One GPU session in one command: the CUDA tests, BatchBALD's speed on the GPU against the CPU, then the paper-scale MNIST runs
until a deadline. benchmarks/gpu_session.sh is the command a GPU machine runs; its header has the exact preparation and device
command lines. Subcommands:

    prepare             (here, once) copy MNIST's four .gz files into .gpu_data/ (11.6 MiB; git-excluded) for the device's `carry`
    run                 (the GPU machine) tests -> benchmark -> trials, every result under --out (default $OUT)
    run --dry-run       (any CPU, about a minute) the same steps small: the tests CPU against CPU, a 2,000-point pool, the `toy`
                        experiment stopped after its first steps and resumed to the end; exits non-zero unless the resume checks pass
    collect FOLDER      (here, after the device run) FOLDER = the run's files: *_cuda.json into benchmarks/results/, trial files from
                        <experiment>_results.tar.gz into results/<experiment>/ where they extend (never replace) what is there

What comes back from the device (at most 8 files, top level of --out): gpu_session.json (the summary, rewritten after every phase),
cuda_tests.log, gpu_batchbald_cuda.json (chapter 14 prints every benchmarks/results/*_cuda.json), <experiment>_results.tar.gz
(results/<experiment>/ and the trials' logs, rewritten as trials progress), session.log.
"""
from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GPU_DATA = REPO / ".gpu_data"  # what `prepare` writes and the device call carries
MNIST_GZ = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")

REAL = {"experiment": "mnist_paper", "variants": ["batchbald_b10", "bald_b10"], "seeds": list(range(6)),
        "bench": (60_000, 100, 10, 10, 10_000), "device": "cuda", "tests_timeout": 120, "bench_timeout": 180, "poll": 15.0,
        "tests_select": None, "bench_max_threads": None}
DRY = {"experiment": "toy", "variants": ["batchbald", "bald"], "seeds": [0],
       "bench": (1_000, 10, 10, 4, 10_000), "device": "cpu", "tests_timeout": 120, "bench_timeout": 120, "poll": 0.5,
       # the rehearsal leaves out the tests whose CPU-vs-CPU run costs most and adds least (the toy loop runs below anyway)
       "tests_select": "input_on_device or float16 or mc_dropout", "bench_max_threads": 1}
STOP_GRACE_SECONDS = 10  # SIGTERM, then this long before SIGKILL
FINAL_MARGIN_SECONDS = 25  # kept free at the end of the budget: stopping trials, the last bundle, the summary


class Log:
    "Lines with the elapsed time, to stdout and to <out>/session.log."

    def __init__(self, out: Path):
        self.start, self.path = time.monotonic(), out / "session.log"

    def __call__(self, message: str) -> None:
        line = f"[{time.monotonic() - self.start:7.1f}s] {message}"
        print(line, flush=True)
        with open(self.path, "a") as f:
            f.write(line + "\n")


def write_json_atomic(path: Path, payload) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, path)


def subprocess_env(**extra) -> dict:
    "The environment of every child: the repository importable without installing it, no progress bars."
    python_path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": python_path, "TQDM_DISABLE": "1", "PYTHONUNBUFFERED": "1", **extra}


# ---------------------------------------------------------------------------------------------------------------- the CUDA tests
def run_tests(out: Path, device: str, timeout: float, log: Log, select: str | None = None) -> dict:
    "tests/test_cuda.py (on `device`; cpu = a rehearsal; `select`: a pytest -k expression), its output to <out>/cuda_tests.log."
    command = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(REPO / "tests" / "test_cuda.py")]
    command += ["-k", select] if select else []
    start = time.monotonic()
    try:
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                              env=subprocess_env(BATCHBALD_NB_TEST_DEVICE=device))
        text, rc = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as e:
        text, rc = f"{e.stdout or ''}{e.stderr or ''}\nTIMEOUT after {timeout} s", None
        text = text if isinstance(text, str) else text.decode(errors="replace")
    (out / "cuda_tests.log").write_text(text)
    counts = {word: 0 for word in ("passed", "failed", "skipped", "error")}
    summary = next((line for line in reversed(text.splitlines()) if " in " in line and any(w in line for w in counts)), "")
    for part in summary.strip("= ").split(","):
        words = part.split()
        if len(words) >= 2 and words[0].isdigit():
            counts[words[1].rstrip("s") if words[1].startswith("error") else words[1]] = int(words[0])
    result = {"device": device, "returncode": rc, "seconds": time.monotonic() - start, "summary": summary.strip("= "), **counts,
              "ok": rc == 0 and counts["failed"] == 0 and counts["error"] == 0 and counts["passed"] > 0}
    log(f"tests/test_cuda.py on {device}: {result['summary'] or 'no summary (see cuda_tests.log)'} ({result['seconds']:.0f} s)")
    return result


# ------------------------------------------------------------------------------------------------------------------ the benchmark
def exact_steps(C: int, b: int, m: int) -> int:
    "Greedy steps with enumerated configurations (C**(n-1) <= m): picks must be identical on every device over these."
    return sum(1 for n in range(1, b + 1) if C ** (n - 1) <= m)


def compare_picks(reference: list[int], other: list[int], exact: int) -> dict:
    "Whether `other` picks what `reference` picks over the first `exact` steps and over the whole batch, and the first difference."
    first = next((i for i, (a, b) in enumerate(zip(reference, other)) if a != b), None)
    if first is None and len(reference) != len(other):
        first = min(len(reference), len(other))
    return {"agree_exact_steps": reference[:exact] == other[:exact] and len(other) >= min(exact, len(reference)),
            "agree_all": reference == other, "first_difference_step": None if first is None else first + 1}


def bench_worker(args) -> None:
    "In its own process: BatchBALD on the benchmark pool, timed on `device` (warm-up, then median of `repeats`) and on the CPU."
    import torch

    sys.path.insert(0, str(REPO / "benchmarks"))
    from common import benchmark_pool, environment

    from batchbald_nb.acquisition import get_batchbald_batch

    N, K, C, b, m = args.config
    all_threads = min(os.cpu_count() or 1, args.max_threads or os.cpu_count() or 1)
    start = time.perf_counter()
    pool_N_K_C = benchmark_pool(N, K, C, seed=args.seed)  # float64 on the CPU, as in run_benchmarks.py
    pool_seconds = time.perf_counter() - start
    device = torch.device(args.device)
    cuda = device.type == "cuda"

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    def timed(log_probs_N_K_C, runs: int, warm_up: bool, **options) -> tuple[list[float], object]:
        if warm_up:
            get_batchbald_batch(log_probs_N_K_C, b, m, generator=torch.Generator().manual_seed(args.seed), **options)
        seconds, batch = [], None
        for _ in range(runs):
            sync()
            t = time.perf_counter()
            batch = get_batchbald_batch(log_probs_N_K_C, b, m, generator=torch.Generator().manual_seed(args.seed), **options)
            sync()
            seconds.append(time.perf_counter() - t)
        return seconds, batch

    rows = []
    torch.set_num_threads(all_threads)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    on_device = pool_N_K_C.to(device)
    variants = [("device float64 input on the device", on_device, {}),  # what run_benchmarks.py --device cuda times
                ("device float32 input on the CPU", pool_N_K_C.float(), {"device": device})]  # the loop's case: model output on the CPU
    for name, log_probs_N_K_C, options in variants:
        seconds, batch = timed(log_probs_N_K_C, args.repeats, warm_up=True, **options)
        rows.append({"run": name, "device": str(device), "threads": torch.get_num_threads(), "seconds": statistics.median(seconds),
                     "seconds_all": seconds, "warm_up_excluded": True, "indices": list(batch.indices), "scores": list(batch.scores),
                     "evaluations": list(batch.evaluations)})
    peak_device_bytes = torch.cuda.max_memory_allocated(device) if cuda else None
    del on_device
    env = environment()
    env.update(device=str(device), device_name=torch.cuda.get_device_name(device) if cuda else "cpu (dry run: the CPU plays the GPU)")
    exact = exact_steps(C, b, m)

    def save(complete: bool) -> dict:
        "The file as it stands (rewritten after every run, so a timeout keeps the GPU's numbers); picks against the CPU's."
        cpu_rows = [r for r in rows if r["device"] == "cpu" and r["run"].startswith("cpu ")]
        reference = min(cpu_rows, key=lambda r: r["threads"], default=None)  # one thread if it ran
        for row in rows:
            if reference is not None:
                row.update(compare_picks(reference["indices"], row["indices"], exact), reference=reference["run"],
                           speedup_vs_cpu_1_thread=reference["seconds"] / row["seconds"] if reference["threads"] == 1 else None)
        payload = {"N": N, "K": K, "C": C, "b": b, "m": m, "seed": args.seed, "exact_steps": exact, "pool_seconds": pool_seconds,
                   "peak_device_bytes": peak_device_bytes, "goal_seconds": 1.0, "rows": rows, "environment": env, "complete": complete}
        payload["table"] = bench_table(payload)
        write_json_atomic(Path(args.bench_out), payload)
        return payload

    save(False)
    for threads in sorted({1, all_threads}, reverse=True):  # the CPU reference, one run each; one thread last (tens of seconds at N = 60,000)
        torch.set_num_threads(threads)
        seconds, batch = timed(pool_N_K_C, 1, warm_up=False)
        rows.append({"run": f"cpu {threads} thread(s)", "device": "cpu", "threads": threads, "seconds": seconds[0], "seconds_all": seconds,
                     "warm_up_excluded": False, "indices": list(batch.indices), "scores": list(batch.scores),
                     "evaluations": list(batch.evaluations)})
        save(False)
    print(save(True)["table"], flush=True)


def bench_table(p: dict) -> str:
    "The text chapter 14 prints for this file."
    env = p["environment"]
    lines = [f"BatchBALD on {env['device_name']} ({env['device']}), torch {env['torch']}, {env['cpus']} CPU cores; pool: "
             f"benchmarks/common.py benchmark_pool(N={p['N']:,}, K={p['K']}, C={p['C']}, seed={p['seed']}), b = {p['b']}, m = {p['m']:,} "
             f"({p['exact_steps']} exact steps)", "",
             f"{'run':<60} {'seconds':>8} {'vs CPU 1 thread':>15} {'picks = CPU (exact steps)':>26} {'all picks':>9}"]
    for r in p["rows"]:
        how = f"median of {len(r['seconds_all'])}, warm" if r["warm_up_excluded"] else "one run"
        speedup = f"{r['speedup_vs_cpu_1_thread']:14.1f}x" if r.get("speedup_vs_cpu_1_thread") else f"{'-':>15}"
        agree = ("yes" if r["agree_exact_steps"] else "NO") if "agree_exact_steps" in r else "-"
        agree_all = ("yes" if r["agree_all"] else "no") if "agree_all" in r else "-"
        lines.append(f"{r['run'] + ' (' + how + ')':<60} {r['seconds']:8.3f} {speedup} {agree:>26} {agree_all:>9}")
    if not p.get("complete", True):
        lines.append("(incomplete: the CPU runs did not all finish)")
    if p.get("peak_device_bytes"):
        lines.append(f"\npeak GPU memory {p['peak_device_bytes'] / 2**20:,.0f} MiB; goal: under {p['goal_seconds']:g} s on one "
                     "H100-class GPU. Picks after the exact steps use sampled configurations (same CPU generator on both devices).")
    return "\n".join(lines)


def run_bench(out: Path, config, device: str, timeout: float, name: str, log: Log, max_threads: int | None = None) -> dict:
    path = out / name
    command = [sys.executable, str(Path(__file__).resolve()), "bench", "--config", *map(str, config), "--device", device,
               "--bench-out", str(path)] + (["--max-threads", str(max_threads)] if max_threads else [])
    start = time.monotonic()
    try:
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=subprocess_env())
        error = None if done.returncode == 0 and path.exists() else (done.stderr or done.stdout)[-3000:]
    except subprocess.TimeoutExpired:
        error = f"timeout after {timeout} s"
    seconds = time.monotonic() - start
    if error:
        log(f"benchmark FAILED ({seconds:.0f} s): {error.strip().splitlines()[-1] if error.strip() else error}")
    if not path.exists():
        return {"ok": False, "error": error, "seconds": seconds}
    payload = json.loads(path.read_text())  # complete, or as far as it got
    log(f"benchmark ({seconds:.0f} s):\n{payload['table']}")
    rows = payload["rows"]
    return {"ok": error is None and payload["complete"] and all(r.get("agree_exact_steps") for r in rows), "error": error,
            "file": name, "seconds": seconds, "device_seconds": rows[0]["seconds"],
            "cpu_1_thread_seconds": next((r["seconds"] for r in rows if r["run"] == "cpu 1 thread(s)"), None),
            "agree_exact_steps": [r.get("agree_exact_steps") for r in rows], "agree_all": [r.get("agree_all") for r in rows]}


# ----------------------------------------------------------------------------------------------------------------------- the trials
def unpack_mnist(source: Path, root: Path) -> Path:
    "The four MNIST .gz files from `source` unpacked into <root>/MNIST/raw (torchvision's layout); returns `root`."
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in MNIST_GZ:
        target = raw / name[: -len(".gz")]
        if not target.exists():
            with gzip.open(source / name) as f_in, open(target, "wb") as f_out:
                shutil.copyfileobj(f_in, f_out)
    return root


def find_data_root(work: Path, log: Log) -> Path | None:
    "The carried .gpu_data/ (unpacked), else the package's default data root if it holds MNIST; None when neither does."
    carried = GPU_DATA / "MNIST" / "raw"
    if all((carried / n).is_file() for n in MNIST_GZ):
        root = unpack_mnist(carried, work / "data")
        log(f"MNIST unpacked from {carried.relative_to(REPO)} into {root}")
        return root
    sys.path.insert(0, str(REPO))
    from batchbald_nb.data import _MNIST_FILES, default_data_root
    root = default_data_root()
    if all((root / "MNIST" / "raw" / f).is_file() for f in _MNIST_FILES):
        log(f"MNIST found under the default data root {root}")
        return root
    log(f"MNIST is neither in {carried} (run `python3 benchmarks/gpu_session.py prepare` and carry .gpu_data) nor under {root}")
    return None


def trial_files(folder: Path) -> dict[tuple[str, int], Path]:
    "(variant, seed) -> results file, for every <variant>/trial_<seed>.json under `folder`."
    found = {}
    for path in sorted(folder.glob("*/trial_*.json")):
        seed = path.stem[len("trial_"):]
        if seed.isdigit():
            found[(path.parent.name, int(seed))] = path
    return found


def trial_state(path: Path) -> dict:
    "Steps, labelled points, finished flag and last accuracy of one results file (empty if missing or unreadable)."
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"steps": 0, "finished": False}
    steps = results.get("steps", [])
    return {"steps": len(steps), "finished": bool(results.get("finished")), "num_labelled": steps[-1]["num_labelled"] if steps else None,
            "test_accuracy": steps[-1]["test_accuracy"] if steps else None}


def comparable_steps(path: Path) -> list[dict]:
    "A results file's steps without their timings (what a resumed run must reproduce exactly)."
    timing = {"train_seconds", "scoring_seconds", "acquisition_seconds"}
    return [{k: v for k, v in s.items() if k not in timing} for s in json.loads(path.read_text())["steps"]]


def extends(new: Path, old: Path) -> bool:
    "Whether the trial in `new` continues the one in `old`: same config, and old's steps are the first steps of new's."
    new_results, old_results = json.loads(new.read_text()), json.loads(old.read_text())
    if new_results.get("config") != old_results.get("config"):
        return False
    old_steps = comparable_steps(old)
    return comparable_steps(new)[: len(old_steps)] == old_steps


def bundle(work_results: Path, logs: Path, experiment: str, out: Path) -> Path:
    "results/<experiment>/ (no hidden lock or temporary files) and the trial logs as one tar.gz in `out`, replaced atomically."
    path = out / f"{experiment}_results.tar.gz"
    tmp = out / f"{experiment}_results.tar.gz.tmp"
    with tarfile.open(tmp, "w:gz") as tar:
        for folder, arcname in ((work_results, f"results/{experiment}"), (logs, "logs")):
            for file in sorted(folder.rglob("*")):
                if file.is_file() and not any(part.startswith(".") for part in file.relative_to(folder).parts):
                    data = file.read_bytes()  # one whole version of a file a trial may be replacing right now (tar.add could mix two)
                    info = tarfile.TarInfo(f"{arcname}/{file.relative_to(folder)}")
                    info.size, info.mtime = len(data), int(time.time())
                    tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, path)
    return path


def trial_worker(args) -> None:
    "In its own process: run (or resume) one trial of the experiment, the way `batchbald-nb run` does."
    import torch

    from batchbald_nb.experiments import EXPERIMENTS, run_experiment
    torch.set_num_threads(args.threads)
    summary = run_experiment(EXPERIMENTS[args.experiment], args.work, variants=[args.variant], seeds=[args.seed],
                             data_root=args.data_root, device=args.device, progress=False)
    print(json.dumps(summary), flush=True)


def stop(processes: dict, log: Log, why: str) -> None:
    "SIGTERM every running trial (its file was written atomically after its last step), then SIGKILL what is left."
    running = {k: p for k, p in processes.items() if p.poll() is None}
    if not running:
        return
    log(f"stopping {len(running)} running trial(s): {why}")
    for p in running.values():
        with_group(p, signal.SIGTERM)
    end = time.monotonic() + STOP_GRACE_SECONDS
    while time.monotonic() < end and any(p.poll() is None for p in running.values()):
        time.sleep(0.2)
    for p in running.values():
        if p.poll() is None:
            with_group(p, signal.SIGKILL)
            p.wait()


def with_group(p: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(p.pid, sig)  # each trial leads its own process group (start_new_session): its children go too
    except ProcessLookupError:
        pass


def run_trials(plan: dict, out: Path, work: Path, resume_from: Path | None, data_root: Path | None, deadline: float, log: Log,
               stop_after_steps: int | None = None, summary_hook=None) -> dict:
    """Every (variant, seed) of the plan in its own process, all at once; results under <work>/results/<experiment>, first copied
    from `resume_from` so finished trials are skipped and partial ones resume. Bundled into `out` every poll; stopped at `deadline`
    (time.monotonic()), or, with `stop_after_steps`, once every trial has that many steps on disk (the dry run's interruption)."""
    experiment = plan["experiment"]
    results = work / "results" / experiment
    logs = work / "logs"
    results.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    copied = 0
    if resume_from is not None and resume_from.is_dir():
        for (variant, seed), path in trial_files(resume_from).items():
            target = results / variant / path.name
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
                copied += 1
    before = {key: trial_state(path) for key, path in trial_files(results).items()}
    log(f"{experiment}: {copied} results file(s) copied from {resume_from} to resume; "
        f"{sum(s['finished'] for s in before.values())} already finished")
    wanted = [(v, s) for v in plan["variants"] for s in plan["seeds"]]
    to_run = [(v, s) for v, s in wanted if not before.get((v, s), {}).get("finished")]
    threads = max(1, (os.cpu_count() or 1) // max(1, len(to_run)))
    processes = {}
    for variant, seed in to_run:
        command = [sys.executable, str(Path(__file__).resolve()), "trial", "--experiment", experiment, "--variant", variant, "--seed",
                   str(seed), "--work", str(results), "--device", plan["device"], "--threads", str(threads)]
        if data_root is not None:
            command += ["--data-root", str(data_root)]
        with open(logs / f"{variant}_seed{seed}.log", "w") as log_file:
            processes[(variant, seed)] = subprocess.Popen(command, cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT,
                                                          env=subprocess_env(), start_new_session=True)
    log(f"{experiment}: started {len(processes)} trial process(es), {threads} thread(s) each, on {plan['device']}")
    def state() -> dict:
        return {f"{v} seed {s}": {"steps_before": before.get((v, s), {}).get("steps", 0), **trial_state(results / v / f"trial_{s}.json")}
                for v, s in wanted}

    last_bundle, stopped_why = 0.0, None
    while any(p.poll() is None for p in processes.values()):
        now = time.monotonic()
        if now >= deadline:
            stopped_why = "deadline"
            break
        if stop_after_steps is not None and all(trial_state(results / v / f"trial_{s}.json")["steps"] >= stop_after_steps
                                                for v, s in processes):
            stopped_why = f"every trial has {stop_after_steps} step(s) on disk"
            break
        if now - last_bundle >= plan["poll"]:
            bundle(results, logs, experiment, out)
            last_bundle = now
            if summary_hook:
                summary_hook({"trials": state(), "running": sum(p.poll() is None for p in processes.values())})
        # stopping after a number of steps (the dry run's stand-in for the deadline) needs a quick look: an idle machine runs the
        # whole toy trial in under a second, and a slow poll saw it finished (CI did)
        time.sleep(0.02 if stop_after_steps is not None else min(0.5, plan["poll"]))
    if stopped_why:
        stop(processes, log, stopped_why)
    bundle(results, logs, experiment, out)
    trials = state()
    for (variant, seed), p in processes.items():
        entry = trials[f"{variant} seed {seed}"]
        entry["returncode"] = p.returncode
        if p.returncode not in (0, -signal.SIGTERM, -signal.SIGKILL):
            entry["error"] = (logs / f"{variant}_seed{seed}.log").read_text()[-1500:]
    for name, entry in trials.items():
        log(f"  {name}: {entry['steps_before']} -> {entry['steps']} steps, finished {entry['finished']}, "
            f"labelled {entry.get('num_labelled')}, test accuracy {entry.get('test_accuracy')}"
            + (f", FAILED (rc {entry['returncode']})" if "error" in entry else ""))
    return {"experiment": experiment, "stopped": stopped_why or "all trials ended", "trials": trials, "results_folder": str(results),
            "bundle": f"{experiment}_results.tar.gz", "ok": not any("error" in e for e in trials.values())}


# ------------------------------------------------------------------------------------------------------------------------ collect
def collect(folder: Path, repo: Path, log=print) -> dict:
    """Bring a device run's files into the repository: *_cuda.json into benchmarks/results/, and each trial file of the bundles into
    results/<experiment>/ where the repository has none or the new one extends it (same config, its steps first). Returns what was done."""
    done = {"benchmarks": [], "trials_written": [], "trials_kept": [], "trials_refused": []}
    for path in sorted(folder.glob("*_cuda.json")):
        target = repo / "benchmarks" / "results" / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        done["benchmarks"].append(str(target.relative_to(repo)))
    for archive in sorted(folder.glob("*_results.tar.gz")):
        with tempfile.TemporaryDirectory() as tmp, tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.isfile() and m.name.startswith("results/") and ".." not in m.name.split("/")]
            tar.extractall(tmp, members=members)
            for experiment_dir in sorted(Path(tmp, "results").iterdir()):
                target_dir = repo / "results" / experiment_dir.name
                for (variant, seed), new in trial_files(experiment_dir).items():
                    old = target_dir / variant / new.name
                    name = str(old.relative_to(repo))
                    if old.exists() and extends(old, new):  # the repository's already holds the device's steps (or more)
                        done["trials_kept"].append(name)
                        continue
                    if old.exists() and not extends(new, old):
                        done["trials_refused"].append(name)
                        log(f"refused {name}: the device's file does not continue the repository's (different config or history)")
                        continue
                    old.parent.mkdir(parents=True, exist_ok=True)
                    tmp_target = old.with_name(f".{old.name}.collect.tmp")
                    shutil.copyfile(new, tmp_target)
                    os.replace(tmp_target, old)
                    done["trials_written"].append(name)
                if (experiment_dir / "experiment.json").exists() and not (target_dir / "experiment.json").exists():
                    shutil.copyfile(experiment_dir / "experiment.json", target_dir / "experiment.json")
    log(f"collected from {folder}: {json.dumps(done)}")
    return done


# --------------------------------------------------------------------------------------------------------------------------- run
def run(args) -> int:
    plan = dict(DRY if args.dry_run else REAL)
    if not (args.out or os.environ.get("OUT")):
        print("gpu_session run: no output folder; pass --out FOLDER (or set $OUT, as the device machine does)", file=sys.stderr)
        return 2
    out = Path(args.out or os.environ["OUT"]).resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = Log(out)
    start = time.monotonic()
    deadline = start + args.budget - FINAL_MARGIN_SECONDS
    summary = {"dry_run": args.dry_run, "budget_seconds": args.budget, "plan": {k: v for k, v in plan.items() if k != "poll"},
               "python": sys.version.split()[0], "cpus": os.cpu_count()}
    save = lambda: write_json_atomic(out / "gpu_session.json", {**summary, "elapsed_seconds": time.monotonic() - start})
    try:
        import torch
        summary.update(torch=torch.__version__, cuda_available=torch.cuda.is_available(),
                       device_name=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
    except Exception as e:  # noqa: BLE001 - recorded; the phases below report their own failures
        summary["torch_error"] = repr(e)
    log(f"gpu_session {'DRY RUN ' if args.dry_run else ''}in {REPO} -> {out}; budget {args.budget:.0f} s; "
        f"torch {summary.get('torch')}, CUDA {summary.get('cuda_available')} {summary.get('device_name') or ''}")
    if not args.dry_run and not summary.get("cuda_available"):
        log("no CUDA device: the GPU session needs one (use --dry-run to rehearse on a CPU)")
        summary["error"] = "no CUDA device"
        save()
        return 2
    save()
    if "tests" not in args.skip:
        summary["tests"] = run_tests(out, plan["device"], min(plan["tests_timeout"], max(10, deadline - time.monotonic())), log,
                                     plan["tests_select"])
        save()
    if "bench" not in args.skip:
        name = "gpu_batchbald_dryrun.json" if args.dry_run else "gpu_batchbald_cuda.json"
        summary["benchmark"] = run_bench(out, plan["bench"], plan["device"], min(plan["bench_timeout"], max(10, deadline - time.monotonic())),
                                         name, log, plan["bench_max_threads"])
        save()
    if "trials" not in args.skip:
        work = Path(args.work).resolve() if args.work else Path(tempfile.mkdtemp(prefix="gpu_session_"))
        work.mkdir(parents=True, exist_ok=True)
        hook = lambda progress: (summary.update(trials_progress=progress), save())
        if args.dry_run:
            summary["trials"] = dry_run_trials(plan, out, work, deadline, log, hook)
        else:
            data_root = find_data_root(work, log)
            if data_root is None:
                summary["trials"] = {"ok": False, "error": "MNIST not found (see session.log)"}
            else:
                resume_from = Path(args.resume_from) if args.resume_from else REPO / "results" / plan["experiment"]
                summary["trials"] = run_trials(plan, out, work, resume_from, data_root, deadline, log, summary_hook=hook)
        summary.pop("trials_progress", None)
        if not args.work:  # everything worth keeping is in the bundle
            shutil.rmtree(work, ignore_errors=True)
        save()
    phases = [summary[k]["ok"] for k in ("tests", "benchmark", "trials") if k in summary]
    summary["ok"] = all(phases)
    save()
    log(f"done in {time.monotonic() - start:.0f} s: {'OK' if summary['ok'] else 'SOME PHASE FAILED'} (see gpu_session.json)")
    return 0 if summary["ok"] else 1


def dry_run_trials(plan: dict, out: Path, work: Path, deadline: float, log: Log, hook) -> dict:
    """The trials twice, as two device sessions would run them: the first is stopped once every trial has a step on disk (standing
    in for the deadline), its bundle is collected into a repository stand-in, and the second resumes from there and finishes.
    Checks: the first left some trial unfinished, the second finished every trial, and each resumed history begins with the first's."""
    repo_standin = work / "repo"
    first = run_trials(plan, out, work / "first", None, None, deadline, log, stop_after_steps=1, summary_hook=hook)
    first_bundle = out / first["bundle"]
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(first_bundle, tmp)
        collected = collect(Path(tmp), repo_standin, log)
    second = run_trials(plan, out, work / "second", repo_standin / "results" / plan["experiment"], None, deadline, log, summary_hook=hook)
    first_files, second_files = trial_files(work / "first" / "results" / plan["experiment"]), trial_files(Path(second["results_folder"]))
    checks = {"first_pass_left_a_trial_unfinished": any(not trial_state(p)["finished"] for p in first_files.values()),
              "first_pass_wrote_every_trial": len(first_files) == len(plan["variants"]) * len(plan["seeds"]),
              "second_pass_finished_every_trial": all(trial_state(p)["finished"] for p in second_files.values())
              and len(second_files) == len(first_files),
              "second_pass_continues_the_first": all(key in second_files and extends(second_files[key], path)
                                                     for key, path in first_files.items()),
              # resumed, not recomputed: the first pass's steps are kept as written, their measured timings included
              "second_pass_kept_the_first_steps_as_written": all(
                  key in second_files and json.loads(second_files[key].read_text())["steps"][: trial_state(path)["steps"]]
                  == json.loads(path.read_text())["steps"] for key, path in first_files.items()),
              "collect_wrote_every_trial": len(collected["trials_written"]) == len(first_files)}
    log(f"dry-run resume checks: {checks}")
    return {"first": first, "collected": collected, "second": second, "checks": checks,
            "ok": first["ok"] and second["ok"] and all(checks.values())}


# -------------------------------------------------------------------------------------------------------------------------- prepare
def prepare(args) -> int:
    "Copy MNIST's .gz files into .gpu_data/MNIST/raw (what the device call carries) and keep that folder out of git."
    if args.data_root:
        source = Path(args.data_root)
    else:
        sys.path.insert(0, str(REPO))
        from batchbald_nb.data import default_data_root
        source = default_data_root()
    raw = source / "MNIST" / "raw"
    missing = [n for n in MNIST_GZ if not (raw / n).is_file()]
    if missing:
        print(f"gpu_session prepare: {raw} lacks {missing}; expected torchvision's MNIST layout (pass --data-root)", file=sys.stderr)
        return 2
    target = GPU_DATA / "MNIST" / "raw"
    target.mkdir(parents=True, exist_ok=True)
    for name in MNIST_GZ:
        shutil.copyfile(raw / name, target / name)
    exclude = REPO / ".git" / "info" / "exclude"  # local to this checkout: the folder travels only because the device call carries it
    if exclude.parent.is_dir() and "/.gpu_data/" not in (exclude.read_text().splitlines() if exclude.exists() else []):
        with open(exclude, "a") as f:
            f.write("/.gpu_data/\n")
    size = sum(p.stat().st_size for p in target.iterdir())
    print(f"copied {len(MNIST_GZ)} files ({size / 2**20:.1f} MiB) from {raw} to {target.relative_to(REPO)}; carry '.gpu_data'")
    return 0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("run", help="the session: tests, benchmark, trials")
    p.add_argument("--out", help="where every result goes (default: $OUT, which the device machine sets)")
    p.add_argument("--budget", type=float, default=540.0, help="seconds for the whole command (default 540 = 9 min); trials stop "
                   f"{FINAL_MARGIN_SECONDS} s before it")
    p.add_argument("--dry-run", action="store_true", default=os.environ.get("DRY_RUN") == "1",
                   help="rehearse on a CPU: toy experiment, small pool, tests CPU vs CPU (also DRY_RUN=1)")
    p.add_argument("--work", help="working folder for the trials (default: a new temporary folder)")
    p.add_argument("--resume-from", help="results folder to resume from (default: results/<experiment> of the repository)")
    p.add_argument("--skip", nargs="*", default=[], choices=["tests", "bench", "trials"], help="phases to leave out")
    p = commands.add_parser("prepare", help="copy MNIST into .gpu_data/ for the device call's carry")
    p.add_argument("--data-root", help="the data root holding MNIST/raw (default: the package's)")
    p = commands.add_parser("collect", help="bring a device run's files into the repository")
    p.add_argument("folder", type=Path)
    p = commands.add_parser("bench", help=argparse.SUPPRESS)
    p.add_argument("--config", type=int, nargs=5, required=True)
    p.add_argument("--device", required=True)
    p.add_argument("--bench-out", required=True)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-threads", type=int, help="CPU threads at most (default: all cores)")
    p = commands.add_parser("trial", help=argparse.SUPPRESS)
    for name in ("--experiment", "--variant", "--work", "--device"):
        p.add_argument(name, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-root")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.command == "run":
        return run(args)
    if args.command == "prepare":
        return prepare(args)
    if args.command == "collect":
        if not args.folder.is_dir():
            print(f"gpu_session collect: {args.folder} is not a folder; expected the device run's files (files_at)", file=sys.stderr)
            return 2
        collect(args.folder, REPO)
        return 0
    if args.command == "bench":
        bench_worker(args)
        return 0
    trial_worker(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
