"""Issue 12: sampled configurations drawn afresh at every sampled step (the authors' code, BlackHC/BatchBALD src/multi_bald.py) or
kept and extended by one label per step (the package's default): do the batches differ in quality?

    nice -n 19 .venv/bin/python benchmarks/fresh_vs_extended.py            # about 35 CPU minutes; resumes an interrupted run
    nice -n 19 .venv/bin/python benchmarks/fresh_vs_extended.py --restart  # drop the stored runs first

Pools: the real-model pools of benchmarks/real_pools.py (MNIST CNN, K = 100, 20,000 points; EMNIST CNN, K = 10, 10,000 points; both
read from benchmarks/cache, which that script fills) and the pools suite's synthetic correlated-triples pool (N = 10,000, K = 20,
C = 10, seed 0; common.triples_pool). For every seed s = 0..9, each pool is subsampled to 5,000 random points (generator seed s), and
get_batchbald_batch acquires b points with m = 40,000 (the authors' m) and m = 2,000 in both modes, draws="extend" and draws="fresh",
with the same generator (seed s), so that the two modes make the same picks while configurations are enumerated. Each batch's true
mutual information is estimated on 400,000 independent fresh draws (sample_configurations_afresh, its own generator), as
log K - mean_s H(j | y_s) (each term in [0, log K]: far tighter than -mean log p(y_s) when the batch pins w down), with its standard
error; every batch is estimated with the same draws' generator (common random numbers), so two identical batches get identical
estimates and a paired difference of two batches carries less estimation noise than its two standard errors suggest. Also recorded:
the CPU seconds of each acquisition (time.process_time, one torch thread).

Writes benchmarks/results/fresh_vs_extended.json after every run ("complete": false until the last one).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import RESULTS, environment, triples_pool, write_json  # noqa: E402
from real_pools import pool_path  # noqa: E402

from batchbald_nb.acquisition import get_batchbald_batch  # noqa: E402
from batchbald_nb.joint_entropy import sample_configurations_afresh  # noqa: E402

OUT = RESULTS / "fresh_vs_extended.json"
SETTINGS = [("mnist", 10), ("emnist", 5), ("emnist", 10), ("triples", 10)]  # (pool, b)
REAL_SHAPES = {"mnist": (20_000, 100, 10), "emnist": (10_000, 10, 47)}
TRIPLES = (10_000, 20, 10, 0)  # N, K, C, seed: the pools suite's triples pool (run_benchmarks.py --suite pools)
NUM_SAMPLES = (40_000, 2_000)
MODES = ("extend", "fresh")
SUBSAMPLE = 5_000
MI_DRAWS, MI_CHUNK, MI_SEED = 400_000, 50_000, 20_191_206


def load_pools() -> dict[str, torch.Tensor]:
    """The three pools (the real ones float32, as cached; the triples pool float64, as generated); exits non-zero, loudly, if a cached
    pool is missing or has the wrong shape."""
    pools = {}
    for name, shape in REAL_SHAPES.items():
        path = pool_path(name)
        if not path.is_file():
            sys.exit(f"fresh_vs_extended: {path} is missing; expected the cached {name} pool {shape}: build it with "
                     f"`.venv/bin/python benchmarks/real_pools.py --pools {name}`")
        pools[name] = torch.load(path)
        if tuple(pools[name].shape) != shape:
            sys.exit(f"fresh_vs_extended: {path} has shape {tuple(pools[name].shape)}; expected {shape}")
    N, K, C, seed = TRIPLES
    pools["triples"] = triples_pool(N, K, C, seed=seed)  # float64, as the pools suite makes it
    return pools


def subsample(pool: torch.Tensor, seed: int) -> torch.Tensor:
    "SUBSAMPLE random pool indices (generator seed `seed`), in increasing order."
    return torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))[:SUBSAMPLE].sort().values


def true_mutual_information(log_probs_B_K_C: torch.Tensor) -> tuple[float, float]:
    """I(y_1..y_B; w), w uniform over the K samples, as log K - E[H(j | y)] over MI_DRAWS fresh draws of (j, y) (MI_CHUNK at a time,
    each chunk stratified over j), with its standard error (the plain one: stratifying only lowers the true spread)."""
    K = log_probs_B_K_C.shape[1]
    generator = torch.Generator().manual_seed(MI_SEED)
    entropies = []
    for _ in range(MI_DRAWS // MI_CHUNK):
        configurations = sample_configurations_afresh(log_probs_B_K_C.double(), MI_CHUNK, generator)
        log_posterior_M_K = torch.log_softmax(configurations.log_joint_probs_M_K, dim=1)  # log p(w_j | y)
        entropies.append(-torch.xlogy(log_posterior_M_K.exp(), log_posterior_M_K.exp()).sum(dim=1))
    H_M = torch.cat(entropies)
    return math.log(K) - H_M.mean().item(), H_M.std().item() / math.sqrt(len(H_M))


def run_key(pool: str, b: int, m: int, mode: str, seed: int) -> str:
    return f"{pool}|b={b}|m={m}|{mode}|seed={seed}"


def sign_test_p(wins: int, losses: int) -> float:
    "Two-sided exact sign test of wins vs losses (ties dropped): the probability of a split at least this uneven under p = 1/2."
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2**n
    return min(1.0, 2 * tail)


def summarise(runs: dict, seeds: list[int]) -> list[dict]:
    "Per pool, b and m: each mode's median, min and max true MI and CPU seconds; paired differences fresh - extend by seed."
    rows = []
    for pool, b in SETTINGS:
        for m in NUM_SAMPLES:
            by_mode = {mode: [runs.get(run_key(pool, b, m, mode, s)) for s in seeds] for mode in MODES}
            paired = [(e, f) for e, f in zip(by_mode["extend"], by_mode["fresh"]) if e is not None and f is not None]
            if not paired:
                continue
            row = {"pool": pool, "b": b, "m": m, "seeds": len(paired)}
            for mode, index in zip(MODES, (0, 1)):
                mis = [p[index]["true_mi"] for p in paired]
                cpus = [p[index]["cpu_seconds"] for p in paired]
                row[mode] = {"median_mi": statistics.median(mis), "min_mi": min(mis), "max_mi": max(mis),
                             "median_mi_se": statistics.median(p[index]["true_mi_se"] for p in paired),
                             "median_cpu_seconds": statistics.median(cpus), "total_cpu_seconds": sum(cpus),
                             "sampled_steps": statistics.median(p[index]["sampled_steps"] for p in paired)}
            differences = [f["true_mi"] - e["true_mi"] for e, f in paired]
            difference_ses = [math.hypot(e["true_mi_se"], f["true_mi_se"]) for e, f in paired]
            wins, losses = sum(d > 0 for d in differences), sum(d < 0 for d in differences)
            row["differences"] = differences
            row["difference_ses"] = difference_ses
            row["same_batch"] = sum(sorted(e["pool_indices"]) == sorted(f["pool_indices"]) for e, f in paired)
            row["fresh_better"], row["extend_better"], row["ties"] = wins, losses, len(differences) - wins - losses
            row["median_difference"] = statistics.median(differences)
            row["mean_difference"] = statistics.fmean(differences)
            row["mean_difference_se"] = statistics.stdev(differences) / math.sqrt(len(differences)) if len(differences) > 1 else math.inf
            row["beyond_2_se"] = sum(abs(d) > 2 * s for d, s in zip(differences, difference_ses))
            row["sign_test_p"] = sign_test_p(wins, losses)
            row["cpu_ratio_fresh_over_extend"] = row["fresh"]["total_cpu_seconds"] / row["extend"]["total_cpu_seconds"]
            rows.append(row)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10, help="generator seeds 0..SEEDS-1 (default 10)")
    parser.add_argument("--restart", action="store_true", help="drop the runs stored by an earlier, interrupted invocation")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    torch.set_num_threads(1)
    os.environ.setdefault("TQDM_DISABLE", "1")
    pools = load_pools()
    seeds = list(range(args.seeds))
    stored = {} if args.restart or not OUT.is_file() else json.loads(OUT.read_text()).get("runs", {})
    runs = {key: run for key, run in stored.items() if int(key.rsplit("seed=", 1)[1]) in seeds}
    mi_cache = {}  # (pool, sorted pool indices) -> (MI, standard error): identical batches are estimated once
    for run in runs.values():
        mi_cache[(run["pool"], tuple(sorted(run["pool_indices"])))] = (run["true_mi"], run["true_mi_se"])
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    payload = {"environment": environment(), "subsample": SUBSAMPLE, "num_samples": list(NUM_SAMPLES), "modes": list(MODES),
               "settings": [list(s) for s in SETTINGS], "seeds": seeds, "mi_draws": MI_DRAWS, "mi_seed": MI_SEED,
               "triples_pool": dict(zip(("N", "K", "C", "seed"), TRIPLES)), "pool_shapes": {n: list(p.shape) for n, p in pools.items()}}
    for seed in seeds:  # seed-major: an interrupted run has every row on its first seeds
        for pool, b in SETTINGS:
            indices_n = subsample(pools[pool], seed)
            sub_n_K_C = pools[pool][indices_n]
            for m in NUM_SAMPLES:
                for mode in MODES:
                    key = run_key(pool, b, m, mode, seed)
                    if key in runs:
                        continue
                    start = time.process_time()
                    batch = get_batchbald_batch(sub_n_K_C, b, m, generator=torch.Generator().manual_seed(seed), draws=mode)
                    cpu_seconds = time.process_time() - start
                    pool_indices = indices_n[batch.indices].tolist()
                    cache_key = (pool, tuple(sorted(pool_indices)))
                    if cache_key not in mi_cache:
                        mi_cache[cache_key] = true_mutual_information(pools[pool][sorted(pool_indices)])
                    mi, mi_se = mi_cache[cache_key]
                    runs[key] = {"pool": pool, "b": b, "m": m, "mode": mode, "seed": seed, "indices": batch.indices,
                                 "pool_indices": pool_indices, "cpu_seconds": cpu_seconds, "true_mi": mi, "true_mi_se": mi_se,
                                 "score": batch.scores[-1], "score_se": batch.standard_errors[-1],
                                 "sampled_steps": sum(e > 0 for e in batch.standard_errors), "evaluations": sum(batch.evaluations)}
                    print(f"{key}: {cpu_seconds:.1f} CPU s, true MI {mi:.5f} +- {mi_se:.5f} (score {batch.scores[-1]:.5f})", flush=True)
                    payload.update(runs=runs, complete=False, summary=summarise(runs, seeds))
                    write_json(OUT, payload)
    payload.update(runs=runs, complete=len(runs) == len(seeds) * len(SETTINGS) * len(NUM_SAMPLES) * len(MODES),
                   summary=summarise(runs, seeds), this_invocation={"wall_seconds": time.perf_counter() - wall_start,
                                                                    "cpu_seconds": time.process_time() - cpu_start},
                   total_acquisition_cpu_seconds=sum(r["cpu_seconds"] for r in runs.values()))
    write_json(OUT, payload)
    for row in payload["summary"]:
        print(f"{row['pool']:>8} b={row['b']:>2} m={row['m']:>6}: extend {row['extend']['median_mi']:.5f} "
              f"[{row['extend']['min_mi']:.5f}, {row['extend']['max_mi']:.5f}], fresh {row['fresh']['median_mi']:.5f} "
              f"[{row['fresh']['min_mi']:.5f}, {row['fresh']['max_mi']:.5f}]; fresh - extend median {row['median_difference']:+.5f}, "
              f"mean {row['mean_difference']:+.5f} +- {row['mean_difference_se']:.5f}, signs +{row['fresh_better']} "
              f"-{row['extend_better']} ={row['ties']} (p {row['sign_test_p']:.2f}); "
              f"CPU fresh / extend {row['cpu_ratio_fresh_over_extend']:.2f}", flush=True)


if __name__ == "__main__":
    main()
