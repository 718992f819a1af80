"""Lazy against plain greedy BatchBALD once configurations are sampled: how often the picks differ, and what it does to the batch.

    .venv/bin/python benchmarks/lazy_sampled.py            # about 20 minutes on 2 shared cores; writes results/lazy_sampled.json

While configurations are enumerated the two pick the same points (chapter 3 proves it, its tests check it). Once they are sampled, each
step's gains carry Monte-Carlo noise and a recomputed gain may exceed its old bound. For each configuration and pool seed we run, with
the same configuration-sampling seed, lazy greedy and plain greedy, plus plain greedy with another sampling seed (how much plain greedy's
own batch depends on the dice), and score every batch by its true mutual information (high-m estimate, see common.py).
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import RESULTS, batch_mutual_information_sampled, benchmark_pool, environment, write_json  # noqa: E402

from batchbald_nb.acquisition import get_batchbald_batch  # noqa: E402

CONFIGS = [  # (N, K, C, b, m): the benchmark's shapes at N = 5,000, plus a small m
    (5_000, 20, 10, 10, 1_000),
    (5_000, 20, 10, 10, 10_000),
    (5_000, 100, 10, 10, 10_000),
    (5_000, 10, 47, 5, 10_000),
    (5_000, 20, 10, 20, 10_000),
]


def first_difference(a: list[int], b: list[int]) -> int | None:
    "1-based step of the first different pick, None if the batches are identical."
    return next((i + 1 for i, (x, y) in enumerate(zip(a, b)) if x != y), None)


def run(log_probs_N_K_C, config, seed: int, lazy: bool) -> dict:
    N, K, C, b, m = config
    start = time.perf_counter()
    batch = get_batchbald_batch(log_probs_N_K_C, b, m, generator=torch.Generator().manual_seed(seed), lazy=lazy)
    seconds = time.perf_counter() - start
    mi, se = batch_mutual_information_sampled(log_probs_N_K_C[batch.indices])
    return {"indices": batch.indices, "estimated_mi": batch.scores[-1], "mi": mi, "mi_se": se, "seconds": seconds,
            "evaluations": batch.evaluations}


def summarise(rows: list[dict]) -> dict:
    "Per configuration: identical-batch rate, first differences, paired MI differences (lazy - plain, plain' - plain), time ratio."
    def mean_se(values):
        return statistics.mean(values), (statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan"))
    lazy_minus_plain = [r["lazy"]["mi"] - r["plain"]["mi"] for r in rows]
    other_minus_plain = [r["plain_other_seed"]["mi"] - r["plain"]["mi"] for r in rows]
    return {"runs": len(rows),
            "identical_lazy_plain": sum(r["first_difference_lazy_plain"] is None for r in rows) / len(rows),
            "identical_plain_plain_other_seed": sum(r["first_difference_plain_plain_other_seed"] is None for r in rows) / len(rows),
            "first_difference_lazy_plain": [r["first_difference_lazy_plain"] for r in rows],
            "first_difference_plain_plain_other_seed": [r["first_difference_plain_plain_other_seed"] for r in rows],
            "exact_steps": rows[0]["exact_steps"],
            "mi_lazy_mean": statistics.mean(r["lazy"]["mi"] for r in rows), "mi_plain_mean": statistics.mean(r["plain"]["mi"] for r in rows),
            "mi_lazy_minus_plain": mean_se(lazy_minus_plain), "mi_plain_other_seed_minus_plain": mean_se(other_minus_plain),
            "abs_mi_lazy_minus_plain": statistics.mean(abs(x) for x in lazy_minus_plain),
            "abs_mi_plain_other_seed_minus_plain": statistics.mean(abs(x) for x in other_minus_plain),
            "mi_estimate_se_typical": statistics.median(r["lazy"]["mi_se"] for r in rows),
            "seconds_lazy": statistics.median(r["lazy"]["seconds"] for r in rows),
            "seconds_plain": statistics.median(r["plain"]["seconds"] for r in rows),
            "evaluations_lazy": statistics.mean(sum(r["lazy"]["evaluations"]) for r in rows),
            "evaluations_plain": statistics.mean(sum(r["plain"]["evaluations"]) for r in rows)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = {"environment": environment(), "configs": []}
    for config in CONFIGS:
        N, K, C, b, m = config
        rows = []
        for seed in range(args.seeds):
            log_probs_N_K_C = benchmark_pool(N, K, C, seed=100 + seed)
            row = {"seed": 100 + seed, "exact_steps": sum(1 for n in range(1, b + 1) if C ** (n - 1) <= m),
                   "lazy": run(log_probs_N_K_C, config, seed, lazy=True), "plain": run(log_probs_N_K_C, config, seed, lazy=False),
                   "plain_other_seed": run(log_probs_N_K_C, config, 10_000 + seed, lazy=False)}
            row["first_difference_lazy_plain"] = first_difference(row["lazy"]["indices"], row["plain"]["indices"])
            row["first_difference_plain_plain_other_seed"] = first_difference(row["plain"]["indices"], row["plain_other_seed"]["indices"])
            assert row["first_difference_lazy_plain"] is None or row["first_difference_lazy_plain"] > row["exact_steps"], row
            rows.append(row)
        summary = summarise(rows)
        results["configs"].append({"N": N, "K": K, "C": C, "b": b, "m": m, "rows": rows, "summary": summary})
        d, s = summary["mi_lazy_minus_plain"]
        d2, s2 = summary["mi_plain_other_seed_minus_plain"]
        print(f"N={N} K={K} C={C} b={b} m={m}: identical batches lazy/plain {summary['identical_lazy_plain']:.0%}, plain/plain' "
              f"{summary['identical_plain_plain_other_seed']:.0%}; first differences lazy/plain {summary['first_difference_lazy_plain']} "
              f"(exact steps: {summary['exact_steps']}); MI lazy - plain {d:+.5f} ± {s:.5f}, plain' - plain {d2:+.5f} ± {s2:.5f} nats "
              f"(MI {summary['mi_plain_mean']:.4f}); time plain/lazy {summary['seconds_plain'] / summary['seconds_lazy']:.1f}x; "
              f"gains computed lazy/plain {summary['evaluations_lazy'] / summary['evaluations_plain']:.2f}", flush=True)
        write_json(RESULTS / "lazy_sampled.json", results)


if __name__ == "__main__":
    main()
