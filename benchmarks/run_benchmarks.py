"""Greedy BatchBALD: batchbald_nb against batchbald_redux 2.0.5 on the same seeded pools, one fresh process per run.

    .venv/bin/pip install --no-deps -r benchmarks/requirements.txt    # once: the reference implementation
    .venv/bin/python benchmarks/run_benchmarks.py                     # the issue's five configurations (about 1.5 h, mostly redux)
    .venv/bin/python benchmarks/run_benchmarks.py --suite scaling     # time against N, K, C and b (about 1 h, mostly redux)
    .venv/bin/python benchmarks/run_benchmarks.py --suite memory      # N = 1,000,000: peak memory (a few minutes, ours only)

Each (implementation, configuration) runs in its own subprocess, so that its peak resident memory (VmHWM, reset after the pool is built)
is its own. Wall times are ratios of runs made minutes apart in one invocation; the machine is shared, so each row also records the load
average. Both implementations run with the same torch thread count (default 1: see --threads). Results go to benchmarks/results/*.json
and *.csv, which chapter 14 plots.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (RESULTS, batch_mutual_information_sampled, benchmark_pool, environment, machine_limits, make_pool,  # noqa: E402
                    ns_per_q_limit, reset_peak_rss, rss_bytes, write_json)

MAIN_CONFIGS = [  # (N, K, C, b, m), from the issue
    (10_000, 20, 10, 10, 10_000),
    (20_000, 100, 10, 10, 10_000),
    (60_000, 100, 10, 10, 10_000),
    (10_000, 10, 47, 5, 10_000),
    (10_000, 20, 10, 40, 10_000),
]
SCALING_BASE = (2_000, 20, 10, 10, 10_000)
SCALING_SWEEPS = {  # parameter -> values; redux runs only at the second list's values (its cost grows fastest: minutes per point)
    "N": ([1_000, 2_000, 5_000, 10_000, 30_000, 100_000, 300_000], [1_000, 2_000, 5_000]),
    "K": ([5, 10, 20, 50, 100, 200], [5, 20, 50]),
    "C": ([2, 3, 5, 10, 20, 47, 100], [2, 10, 47]),
    "b": ([1, 2, 3, 4, 5, 6, 8, 10, 20, 40], [1, 5, 10, 20]),
}
MEMORY_CONFIG = (1_000_000, 20, 10, 10, 10_000)


def exact_steps(C: int, b: int, m: int) -> int:
    "How many greedy steps have enumerated (exact) configurations: step n is exact while C**(n-1) <= m, in both implementations."
    return sum(1 for n in range(1, b + 1) if C ** (n - 1) <= m)


def plain_greedy_q_values(N: int, C: int, b: int, m: int) -> int:
    "q values (configurations x classes x candidates) plain greedy computes: sum over steps of min(C^(n-1), m) * C * N, section 3.4."
    return sum(min(C ** (n - 1), m) * C * N for n in range(1, b + 1))


# ----------------------------------------------------------------------------------------------------------------------------- worker
def worker(args) -> None:
    "One run in this (fresh) process; prints one JSON line."
    torch.set_num_threads(args.threads)
    N, K, C, b, m = args.config
    baseline_rss = rss_bytes("VmRSS")
    log_probs_N_K_C = make_pool(args.pool, N, K, C, seed=args.seed, dtype=getattr(torch, args.input_dtype))
    input_bytes = log_probs_N_K_C.numel() * log_probs_N_K_C.element_size()
    counters = {"q_values": 0, "kernel_seconds": 0.0}
    if args.worker == "ours":
        import batchbald_nb.joint_entropy as joint_entropy
        from batchbald_nb.acquisition import get_batchbald_batch

        call = joint_entropy.JointEntropyKernel.__call__

        def counted(self, probs_n_C_K):  # instrumentation: how many q values the products computed, and the time inside the kernel
            start = time.perf_counter()
            result = call(self, probs_n_C_K)
            counters["kernel_seconds"] += time.perf_counter() - start
            counters["q_values"] += probs_n_C_K.shape[0] * probs_n_C_K.shape[1] * self.num_rows
            return result

        joint_entropy.JointEntropyKernel.__call__ = counted
        run = lambda seed=args.seed: get_batchbald_batch(log_probs_N_K_C, b, m, generator=torch.Generator().manual_seed(seed),
                                                         lazy=not args.plain, device=args.device)
    else:
        from batchbald_redux.batchbald import get_batchbald_batch as redux_batchbald

        def run(seed=args.seed):  # dtype=torch.double as in redux's example experiment; --redux-dtype float32 tries its float32 path
            torch.manual_seed(seed)  # redux samples configurations with torch's global generator
            return redux_batchbald(log_probs_N_K_C, b, m, dtype=getattr(torch, args.redux_dtype), device=args.device)
        counters["q_values"] = plain_greedy_q_values(N, C, b, m)
    rss_before_run = rss_bytes("VmRSS")
    reset_peak_rss()
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    load = os.getloadavg()[0]
    per_seed = []
    if args.sample_seeds:  # several configuration-sampling seeds in this process, after one untimed warm-up call on a small pool
        warm_up_pool = log_probs_N_K_C[:1000]
        if args.worker == "ours":
            get_batchbald_batch(warm_up_pool, min(b, 3), m, generator=torch.Generator().manual_seed(0), device=args.device)
        for seed in args.sample_seeds:
            start, cpu_start = time.perf_counter(), time.process_time()
            seed_batch = run(seed)
            if seed == args.sample_seeds[0]:
                seed_batch_0 = seed_batch
            if cuda:
                torch.cuda.synchronize()
            per_seed.append({"seed": seed, "seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu_start,
                             "indices": list(seed_batch.indices),
                             "scores": list(seed_batch.scores), "evaluations": list(getattr(seed_batch, "evaluations", [])),
                             "loadavg_1min": os.getloadavg()[0]})
    if per_seed:  # the first seed's run is the result
        batch = seed_batch_0
        seconds, cpu_seconds = per_seed[0]["seconds"], per_seed[0]["cpu_seconds"]
    else:
        start, cpu_start = time.perf_counter(), time.process_time()
        batch = run()
        if cuda:
            torch.cuda.synchronize()
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    result = {"impl": args.worker + ("_plain" if args.plain else ""), "N": N, "K": K, "C": C, "b": b, "m": m, "seed": args.seed,
              "threads": args.threads, "input_dtype": args.input_dtype, "seconds": seconds, "cpu_seconds": cpu_seconds, "indices": list(batch.indices),
              "scores": list(batch.scores), "evaluations": list(getattr(batch, "evaluations", [])), "input_bytes": input_bytes,
              "baseline_rss_bytes": baseline_rss, "rss_before_run_bytes": rss_before_run, "peak_rss_bytes": rss_bytes("VmHWM"),
              "loadavg_1min": load, "device": args.device, "peak_device_bytes": torch.cuda.max_memory_allocated() if cuda else None,
              "pool": args.pool, "redux_dtype": args.redux_dtype if args.worker == "redux" else None, "per_seed": per_seed, **counters}
    print("RESULT " + json.dumps(result), flush=True)


def run_worker(impl: str, config, args, plain: bool = False, input_dtype: str = "float64", timeout: float | None = None,
               pool: str = "ensemble", redux_dtype: str = "float64", sample_seeds=()) -> dict:
    "Run one worker subprocess and return its result (or an error record)."
    command = [sys.executable, os.path.abspath(__file__), "--worker", impl, "--config", *map(str, config), "--seed", str(args.seed),
               "--threads", str(args.threads), "--input-dtype", input_dtype, "--device", args.device, "--pool", pool,
               "--redux-dtype", redux_dtype] + (["--plain"] if plain else []) + (["--sample-seeds", *map(str, sample_seeds)] if sample_seeds else [])
    env = dict(os.environ, TQDM_DISABLE="1")
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"impl": impl, "error": f"timeout after {timeout} s"}
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    return {"impl": impl, "error": (done.stderr or done.stdout)[-2000:]}


# ----------------------------------------------------------------------------------------------------------------------------- parent
def mib(x: float) -> str:
    return f"{x / 2**20:,.0f}"


def compare(config, ours_runs: list[dict], redux: dict | None, limits: dict, args) -> dict:
    "One table row: times, ratio, memory, pick agreement, and (where picks differ) each batch's mutual information."
    N, K, C, b, m = config
    ours = sorted(ours_runs, key=lambda r: r["seconds"])[len(ours_runs) // 2]  # the median run
    row = {"N": N, "K": K, "C": C, "b": b, "m": m, "ours_seconds": statistics.median(r["seconds"] for r in ours_runs),
           "ours_seconds_all": [r["seconds"] for r in ours_runs], "ours_peak_rss_bytes": max(r["peak_rss_bytes"] for r in ours_runs),
           "ours_rss_before_run_bytes": ours["rss_before_run_bytes"], "input_bytes": ours["input_bytes"], "ours_indices": ours["indices"],
           "ours_scores": ours["scores"], "ours_evaluations": ours["evaluations"], "ours_q_values": ours["q_values"],
           "ours_kernel_seconds": ours["kernel_seconds"], "exact_steps": exact_steps(C, b, m), "loadavg_ours": [r["loadavg_1min"] for r in ours_runs],
           "limits": limits}  # the limits measured at the start of this row's invocation: its fractions of the limit are against them
    floor = ns_per_q_limit(limits, K, "float32")
    row["ours_ns_per_q_kernel"] = 1e9 * ours["kernel_seconds"] / max(1, ours["q_values"])
    row["ours_kernel_fraction_of_limit"] = floor / row["ours_ns_per_q_kernel"]
    row["ours_fraction_of_time_in_kernel"] = ours["kernel_seconds"] / ours["seconds"]
    row["plain_greedy_q_values"] = plain_greedy_q_values(N, C, b, m)
    ours_mi = batch_mutual_information_sampled(benchmark_pool(N, K, C, seed=args.seed)[ours["indices"]])
    row["ours_mi"], row["ours_mi_se"] = ours_mi
    if redux and "error" not in redux:
        e = row["exact_steps"]
        first_difference = next((i for i, (a, c) in enumerate(zip(ours["indices"], redux["indices"])) if a != c), None)
        row.update({"redux_seconds": redux["seconds"], "ratio": redux["seconds"] / row["ours_seconds"],
                    "redux_peak_rss_bytes": redux["peak_rss_bytes"], "redux_rss_before_run_bytes": redux["rss_before_run_bytes"],
                    "redux_indices": redux["indices"], "redux_scores": redux["scores"], "loadavg_redux": redux["loadavg_1min"],
                    "agree_exact_steps": ours["indices"][:e] == redux["indices"][:e], "agree_all": ours["indices"] == redux["indices"],
                    "first_difference_step": None if first_difference is None else first_difference + 1,
                    "redux_ns_per_q": 1e9 * redux["seconds"] / redux["q_values"],
                    "redux_fraction_of_limit": ns_per_q_limit(limits, K, "float64") / (1e9 * redux["seconds"] / redux["q_values"])})
        redux_mi = batch_mutual_information_sampled(benchmark_pool(N, K, C, seed=args.seed)[redux["indices"]])
        row["redux_mi"], row["redux_mi_se"] = redux_mi
    elif redux:
        row["redux_error"] = redux["error"]
    return row


def print_table(rows: list[dict], limits: dict, env: dict) -> str:
    lines = [f"machine: {env.get('cpu_model', '?')}, {env['cpus']} cores, torch {env['torch']}, {env['threads']} thread(s), "
             f"CUDA: {'yes' if env['cuda'] else 'no (no GPU lent to this run)'}; load average at start {env['loadavg_at_start']}",
             f"limits ({limits['threads']} thread): GEMM 512xKx512 float32 {limits['gemm_tile_K20_float32_gflops']:.0f} GFLOP/s (K=20), "
             f"{limits['gemm_tile_K100_float32_gflops']:.0f} (K=100), float64 {limits['gemm_tile_K20_float64_gflops']:.0f}/"
             f"{limits['gemm_tile_K100_float64_gflops']:.0f}; log {limits['log_float32_per_ns']:.2f}/ns float32, "
             f"{limits['log_float64_per_ns']:.2f}/ns float64; log+mul in cache {limits['clamp_log_mul_float32_per_ns']:.2f}/ns float32",
             ""]
    header = (f"{'N':>8} {'K':>4} {'C':>3} {'b':>3} {'m':>6} | {'ours s':>7} {'redux s':>8} {'ratio':>6} | {'ours MiB':>8} {'redux MiB':>9}"
              f" {'input MiB':>9} | {'exact':>5} {'agree':>9} {'all':>3} | {'MI ours':>12} {'MI redux':>12} | {'kernel/limit':>12}")
    lines += [header, "-" * len(header)]
    for r in rows:
        redux_s = f"{r['redux_seconds']:8.1f}" if "redux_seconds" in r else f"{'-':>8}"
        ratio = f"{r['ratio']:6.0f}" if "ratio" in r else f"{'-':>6}"
        redux_mem = mib(r["redux_peak_rss_bytes"]) if "redux_peak_rss_bytes" in r else "-"
        agree = (f"{'yes' if r['agree_exact_steps'] else 'NO'} {r['exact_steps']:>2}/{r['b']:<2}" if "agree_exact_steps" in r else "-")
        agree_all = ("yes" if r["agree_all"] else "no") if "agree_all" in r else "-"
        mi_redux = f"{r['redux_mi']:.4f}±{r['redux_mi_se']:.4f}" if "redux_mi" in r else "-"
        lines.append(f"{r['N']:>8} {r['K']:>4} {r['C']:>3} {r['b']:>3} {r['m']:>6} | {r['ours_seconds']:7.2f} {redux_s} {ratio} | "
                     f"{mib(r['ours_peak_rss_bytes']):>8} {redux_mem:>9} {mib(r['input_bytes']):>9} | {agree:>9} {agree_all:>3} | "
                     f"{r['ours_mi']:.4f}±{r['ours_mi_se']:.4f} {mi_redux:>12} | {100 * r['ours_kernel_fraction_of_limit']:11.0f}%")
    lines += ["", "ours s: median of the runs (float32 products, lazy greedy, defaults); redux s: batchbald_redux 2.0.5, dtype=torch.double, "
              "one run. MiB: peak resident memory of the run's process (VmHWM; includes python+torch and the input). exact: whether the "
              "picks agree over the steps where both enumerate configurations (C^(n-1) <= m), of b. all: the whole batch. MI: the batch's "
              "I(y; w) in nats (log K - E H(j | y), 400k draws, ± standard error). kernel/limit: the machine's floor per q value "
              "(2K flops at the tile GEMM rate + one log+mul) over ours' measured kernel time per q value."]
    return "\n".join(lines)


def save(name: str, payload: dict, rows: list[dict]) -> None:
    write_json(RESULTS / f"{name}.json", payload)
    keys = ["N", "K", "C", "b", "m", "ours_seconds", "redux_seconds", "ratio", "ours_peak_rss_bytes", "redux_peak_rss_bytes", "input_bytes",
            "exact_steps", "agree_exact_steps", "agree_all", "first_difference_step", "ours_mi", "ours_mi_se", "redux_mi", "redux_mi_se",
            "ours_q_values", "plain_greedy_q_values", "ours_kernel_fraction_of_limit", "redux_fraction_of_limit", "sweep"]
    with open(RESULTS / f"{name}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def previous_rows(name: str, args) -> dict:
    "Rows of an interrupted run of the same suite (same seed, threads and device), by configuration; a complete run starts afresh."
    path = RESULTS / f"{name}.json"
    if args.fresh or not path.exists():
        return {}
    previous = json.loads(path.read_text())
    env = previous.get("environment", {})
    if previous.get("complete") or env.get("threads") != args.threads or env.get("device", "cpu") != args.device or \
            previous.get("seed", args.seed) != args.seed:
        return {}
    return {(r["N"], r["K"], r["C"], r["b"], r["m"]): r for r in previous["rows"]}


def main_suite(args, configs, name: str, sweep_of=None) -> None:
    env, limits = environment(), machine_limits()
    env["device"] = args.device
    print(f"limits: {json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in limits.items()})}", flush=True)
    rows, done = [], previous_rows(name, args)
    for config in configs:
        if tuple(config) in done:  # finished in an earlier, interrupted invocation of the same suite: keep its row
            rows.append(done[tuple(config)])
            print(f"resumed {config} from benchmarks/results/{name}.json", flush=True)
            continue
        ours_runs = [run_worker("ours", config, args) for _ in range(args.repeats)]
        errors = [r for r in ours_runs if "error" in r]
        if errors:
            raise RuntimeError(f"ours failed on {config}: {errors[0]['error']}")
        redux = None
        if not args.skip_redux and (sweep_of is None or sweep_of(config)[1]):
            redux = run_worker("redux", config, args, timeout=args.redux_timeout)
        row = compare(config, ours_runs, redux, limits, args)
        if sweep_of is not None:
            row["sweep"] = sweep_of(config)[0]
        rows.append(row)
        print(json.dumps({k: row.get(k) for k in ("N", "K", "C", "b", "m", "ours_seconds", "redux_seconds", "ratio", "agree_exact_steps",
                                                   "agree_all")}), flush=True)
        save(name, {"environment": env, "limits": limits, "seed": args.seed, "rows": rows, "complete": False}, rows)
    table = print_table(rows, limits, env)
    print(table, flush=True)
    save(name, {"environment": env, "limits": limits, "seed": args.seed, "rows": rows, "table": table, "complete": True}, rows)


def scaling_suite(args) -> None:
    configs, membership = [], {}
    for parameter, (values, redux_values) in SCALING_SWEEPS.items():
        for value in values:
            config = list(SCALING_BASE)
            config["NKCbm".index(parameter)] = value
            config = tuple(config)
            configs.append(config)
            membership.setdefault(config, []).append((parameter, value in redux_values))
    seen, unique = set(), []
    for config in configs:  # the base configuration is in every sweep: run it once
        if config not in seen:
            seen.add(config)
            unique.append(config)
    sweep_of = lambda config: (",".join(p for p, _ in membership[config]), any(r for _, r in membership[config]))
    main_suite(args, unique, "scaling" + ("" if args.device == "cpu" else "_" + args.device.split(":")[0]), sweep_of)


def memory_suite(args) -> None:
    "A million-point pool (float32 input, as a model returns it): ours only, one run, peak resident memory against the input's size."
    from batchbald_nb.joint_entropy import DEFAULT_MEMORY_BUDGET_BYTES

    env = environment()
    run = run_worker("ours", MEMORY_CONFIG, args, input_dtype="float32")
    if "error" in run:
        raise RuntimeError(run["error"])
    extra = run["peak_rss_bytes"] - run["baseline_rss_bytes"]
    run.update({"budget_bytes": DEFAULT_MEMORY_BUDGET_BYTES, "peak_above_baseline_bytes": extra,
                "allowed_bytes": 2 * run["input_bytes"] + DEFAULT_MEMORY_BUDGET_BYTES, "within": extra <= 2 * run["input_bytes"] + DEFAULT_MEMORY_BUDGET_BYTES})
    text = (f"N={run['N']:,} K={run['K']} C={run['C']} b={run['b']} m={run['m']}: {run['seconds']:.1f} s; input {mib(run['input_bytes'])} MiB "
            f"(float32); python+torch before the pool {mib(run['baseline_rss_bytes'])} MiB; peak RSS {mib(run['peak_rss_bytes'])} MiB = "
            f"baseline + {mib(extra)} MiB = baseline + {extra / run['input_bytes']:.2f} x input; allowed 2 x input + budget = "
            f"{mib(run['allowed_bytes'])} MiB: {'OK' if run['within'] else 'EXCEEDED'}; picks {run['indices']}; gains computed per step "
            f"{run['evaluations']}")
    print(text, flush=True)
    write_json(RESULTS / "memory.json", {"environment": env, "run": run, "text": text})


# ---------------------------------------------------------------------------------------------------------------- pool structures
POOL_SEEDS = tuple(range(10))  # configuration-sampling seeds per row: the median and the maximum are reported
REAL_CONFIGS = {"mnist": (20_000, 100, 10, 10, 10_000), "emnist": (10_000, 10, 47, 5, 10_000)}  # benchmarks/real_pools.py
REDUX_TRIPLES = (0, 1, 3)  # MAIN_CONFIGS indices redux runs on the triples pool by default (the other two cost it 0.75-1.5 h each)


def pool_rows() -> list[tuple[str, tuple]]:
    "(pool structure, configuration) of every row of the pools suite."
    return [(s, c) for s in ("ensemble", "triples") for c in MAIN_CONFIGS] + list(REAL_CONFIGS.items())


def run_key(impl: str, pool: str, config) -> str:
    return f"{impl}|{pool}|{','.join(map(str, config))}"


def pools_suite(args) -> None:
    """Ours (10 configuration-sampling seeds, lazy; plain greedy too on the real pools) and batchbald_redux (float64, its best valid
    setting, and float32 on one configuration per synthetic structure) on synthetic pools of two structures and on pools from trained
    models. Every run is stored in pools_runs.json as it finishes; a rerun skips stored runs (--rerun-ours drops ours after a code
    change). The table (pools.json) is rebuilt from the stored runs."""
    # One file per implementation (and per --store-tag), so that stages can run side by side, each rewriting only its own file.
    paths = {"ours": RESULTS / f"pools_runs_ours{args.store_tag}.json", "redux": RESULTS / f"pools_runs{args.store_tag}.json"}
    store = {}
    for path in sorted(RESULTS.glob("pools_runs*.json")):
        if not args.fresh and not (path.name.startswith("pools_runs_ours") and args.rerun_ours):
            store.update(json.loads(path.read_text()))
    main_rows = {}
    if (RESULTS / "main.json").exists():  # the ensemble pool with seed 0 is the main suite's pool: its redux runs are the same runs
        for r in json.loads((RESULTS / "main.json").read_text())["rows"]:
            if "redux_seconds" in r:
                main_rows[(r["N"], r["K"], r["C"], r["b"], r["m"])] = r
    plan = []
    for pool, config in pool_rows():
        real = pool in REAL_CONFIGS
        plan.append(("ours", pool, config, dict(sample_seeds=POOL_SEEDS, input_dtype="float32" if real else "float64")))
        if real:
            plan.append(("ours_plain", pool, config, dict(plain=True, input_dtype="float32")))
        if pool == "ensemble":  # the main suite's redux runs are on these very pools: rerun only what it lacks
            redux_runs = tuple(config) not in main_rows
        elif pool == "triples":
            redux_runs = args.redux_all or MAIN_CONFIGS.index(config) in REDUX_TRIPLES
        else:  # pools from trained models: the EMNIST one (about 5 min of redux); the MNIST one with --redux-all
            redux_runs = args.redux_all or pool == "emnist"
        if redux_runs:
            plan.append(("redux", pool, config, {}))
        if config == MAIN_CONFIGS[0] and pool == "ensemble":  # one configuration shows what float32 does to redux
            plan.append(("redux_float32", pool, config, dict(redux_dtype="float32", input_dtype="float32")))
    full_plan = list(plan)
    if args.rows:  # only the rows whose "pool|N,K,C,b,m" contains one of these strings
        plan = [p for p in plan if any(r in f"{p[1]}|{','.join(map(str, p[2]))}" for r in args.rows)]
    if args.stage == "redux":
        plan = [p for p in plan if p[0].startswith("redux")]
    elif args.stage == "ours":
        plan = [p for p in plan if p[0].startswith("ours")]
    env = environment()
    for impl, pool, config, options in plan:
        key = run_key(impl, pool, config)
        if key in store:
            continue
        if pool in REAL_CONFIGS and not (Path(__file__).resolve().parent / "cache" / f"{pool}_log_probs_N_K_C.pt").exists():
            print(f"skipped {key}: the {pool} pool is not built (benchmarks/real_pools.py)", flush=True)
            continue
        print(f"running {key}", flush=True)
        result = run_worker(impl.split("_")[0], config, args, pool=pool, timeout=args.redux_timeout, **options)
        if "error" in result:
            print(f"FAILED {key}: {result['error'][-500:]}", flush=True)
            continue
        result["environment"] = env
        log_probs = make_pool(pool, *config[:3], seed=args.seed)
        result["mi"], result["mi_se"] = batch_mutual_information_sampled(log_probs[result["indices"]])
        store[key] = result
        impl_family = impl.split("_")[0]
        path = paths[impl_family]
        stored = json.loads(path.read_text()) if path.exists() and not args.fresh else {}
        stored[key] = result
        write_json(path, stored)
        print(f"done {key}: {result['seconds']:.2f} s" + (f", seeds median {statistics.median(r['seconds'] for r in result['per_seed']):.2f} s"
                                                          if result.get("per_seed") else ""), flush=True)
    table_rows = []
    for pool, config in pool_rows():
        ours = store.get(run_key("ours", pool, config))
        if ours is None:
            continue
        seconds = [r.get("cpu_seconds", r["seconds"]) for r in ours["per_seed"]]  # CPU time: the machine is shared (one thread each)
        row = {"pool": pool, "N": config[0], "K": config[1], "C": config[2], "b": config[3], "m": config[4],
               "ours_median_seconds": statistics.median(seconds), "ours_max_seconds": max(seconds), "ours_seconds_all": seconds,
               "ours_max_over_median": max(seconds) / statistics.median(seconds), "ours_mi": ours["mi"], "ours_mi_se": ours["mi_se"],
               "ours_indices": ours["indices"], "ours_final_scores": [r["scores"][-1] for r in ours["per_seed"]],
               "ours_evaluations": ours["evaluations"], "ours_loadavg": [r["loadavg_1min"] for r in ours["per_seed"]]}
        redux = store.get(run_key("redux", pool, config))
        if redux is None and pool == "ensemble" and tuple(config) in main_rows:
            r = main_rows[tuple(config)]
            redux = {"seconds": r["redux_seconds"], "indices": r["redux_indices"], "scores": r["redux_scores"], "mi": r["redux_mi"],
                     "mi_se": r["redux_mi_se"], "source": "main.json", "loadavg_1min": r["loadavg_redux"]}
        if redux is not None:
            redux_seconds = redux.get("cpu_seconds", redux["seconds"])  # main.json's runs: wall time at load average 1 on 2 cores
            row.update({"redux_seconds": redux_seconds, "ratio_median": redux_seconds / row["ours_median_seconds"],
                        "ratio_at_max": redux_seconds / row["ours_max_seconds"], "redux_wall_seconds": redux["seconds"], "redux_mi": redux["mi"], "redux_mi_se": redux["mi_se"],
                        "redux_indices": redux["indices"], "redux_final_score": redux["scores"][-1],
                        "redux_source": redux.get("source", "pools_runs.json"), "redux_loadavg": redux["loadavg_1min"]})
        redux32 = store.get(run_key("redux_float32", pool, config))
        if redux32 is not None:
            row.update({"redux_float32_seconds": redux32.get("cpu_seconds", redux32["seconds"]), "redux_float32_mi": redux32["mi"],
                        "redux_float32_nan_scores": sum(1 for x in redux32["scores"] if x != x), "redux_float32_indices": redux32["indices"]})
        plain = store.get(run_key("ours_plain", pool, config))
        if plain is not None:
            row.update({"plain_seconds": plain.get("cpu_seconds", plain["seconds"]), "plain_mi": plain["mi"], "plain_mi_se": plain["mi_se"], "plain_indices": plain["indices"],
                        "lazy_seed0_indices": ours["per_seed"][0]["indices"], "same_batch_as_lazy": plain["indices"] == ours["per_seed"][0]["indices"]})
        table_rows.append(row)
    lines = [f"{'pool':>8} {'N':>6} {'K':>4} {'C':>3} {'b':>3} | {'ours med':>8} {'max':>6} {'max/med':>7} | {'redux s':>8} {'ratio':>6} "
             f"{'at max':>6} | {'MI ours':>8} {'MI redux':>8} | {'redux32 s':>9} {'NaN':>3}"]
    for r in table_rows:
        lines.append(f"{r['pool']:>8} {r['N']:>6} {r['K']:>4} {r['C']:>3} {r['b']:>3} | {r['ours_median_seconds']:8.2f} {r['ours_max_seconds']:6.2f} "
                     f"{r['ours_max_over_median']:7.2f} | {r.get('redux_seconds', float('nan')):8.1f} {r.get('ratio_median', float('nan')):6.0f} "
                     f"{r.get('ratio_at_max', float('nan')):6.0f} | {r['ours_mi']:8.4f} {r.get('redux_mi', float('nan')):8.4f} | "
                     f"{r.get('redux_float32_seconds', float('nan')):9.1f} {r.get('redux_float32_nan_scores', '-'):>3}")
    table = "\n".join(lines)
    print(table, flush=True)
    write_json(RESULTS / "pools.json", {"environment": env, "seeds": list(POOL_SEEDS), "rows": table_rows, "table": table,
                                        "complete": all(run_key(i, p, c) in store for i, p, c, _ in full_plan),
                                        "missing_runs": [run_key(i, p, c) for i, p, c, _ in full_plan if run_key(i, p, c) not in store]})


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=["main", "scaling", "memory", "pools"], default="main")
    parser.add_argument("--stage", choices=["all", "redux", "ours"], default="all", help="pools suite: which runs to make now")
    parser.add_argument("--rerun-ours", action="store_true", help="pools suite: drop stored runs of ours (after a change to the code)")
    parser.add_argument("--store-tag", default="", help="pools suite: suffix of the files this call writes its runs to (parallel calls)")
    parser.add_argument("--rows", nargs="+", help='pools suite: only rows whose "pool|N,K,C,b,m" contains one of these (e.g. triples|10000)')
    parser.add_argument("--redux-all", action="store_true", help="pools suite: redux on every configuration of every structure")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for both implementations (default 1: on a machine shared with other jobs, a 2-thread OpenMP "
                             "team waits at every barrier for a descheduled thread; chapter 14 shows the measurement)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of ours per configuration (the median is reported); redux runs once")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="where both implementations compute (cpu, cuda); results files get a suffix")
    parser.add_argument("--skip-redux", action="store_true")
    parser.add_argument("--fresh", action="store_true", help="ignore the rows of an interrupted earlier run (default: resume it)")
    parser.add_argument("--redux-timeout", type=float, default=3 * 3600)
    parser.add_argument("--only", type=int, nargs="*", help="indices into the main configurations to run")
    parser.add_argument("--worker", choices=["ours", "redux"], help=argparse.SUPPRESS)
    parser.add_argument("--config", type=int, nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--plain", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--input-dtype", default="float64", help=argparse.SUPPRESS)
    parser.add_argument("--pool", default="ensemble", help=argparse.SUPPRESS)
    parser.add_argument("--redux-dtype", default="float64", choices=["float64", "float32"], help=argparse.SUPPRESS)
    parser.add_argument("--sample-seeds", type=int, nargs="*", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        worker(args)
    elif args.suite == "main":
        name = ("main" if not args.only else "main_partial") + ("" if args.device == "cpu" else "_" + args.device.split(":")[0])
        main_suite(args, [MAIN_CONFIGS[i] for i in args.only] if args.only else MAIN_CONFIGS, name)
    elif args.suite == "scaling":
        scaling_suite(args)
    elif args.suite == "pools":
        pools_suite(args)
    else:
        memory_suite(args)
