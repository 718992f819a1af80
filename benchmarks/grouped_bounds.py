"""Rewrite 6 (grouped bounds, the acquisition chapter) on the pools suite's rows: ours with and without it, in one process, and the ratio
against batchbald_redux that follows.

    .venv/bin/python benchmarks/grouped_bounds.py                  # every synthetic row (about 30 min of CPU on this 2-core machine)
    .venv/bin/python benchmarks/grouped_bounds.py --rows triples  # only rows whose "pool|N,K,C,b,m" contains one of these

For every row of `run_benchmarks.py --suite pools` (the two synthetic structures; the trained-model pools too where benchmarks/cache holds
them), on the same seeded pool: `get_batchbald_batch` with its defaults (grouped bounds) over 10 configuration-sampling seeds, and with
`grouped_bounds=False` (the code the stored pools suite measured) over the first `--stale-seeds` of them, interleaved, in this process,
in CPU seconds of one thread. Per row: the same-command speedup (median stale / median grouped on the seeds both ran), whether the picks
are identical, and the ratio against redux: its stored float64 time (pools.json, measured by the pools suite on another day; its runs
take minutes to hours; for the ensemble rows the pools suite lacks, the main suite's run on the same pool) over our median and over our
slowest seed. Writes results/grouped_bounds.json after every row (a rerun resumes).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import RESULTS, environment, make_pool, write_json  # noqa: E402
from run_benchmarks import POOL_SEEDS, REAL_CONFIGS, pool_rows  # noqa: E402

from batchbald_nb.acquisition import get_batchbald_batch  # noqa: E402

OUT = RESULTS / "grouped_bounds.json"


def load_pool(pool: str, config):
    N, K, C, b, m = config
    if pool in REAL_CONFIGS:
        path = RESULTS.parent / "cache" / f"{pool}_log_probs_N_K_C.pt"
        return torch.load(path).float() if path.exists() else None
    return make_pool(pool, N, K, C, seed=0, dtype=torch.float64)


def timed(log_probs_N_K_C, b: int, m: int, seed: int, grouped: bool) -> dict:
    start = time.process_time()
    batch = get_batchbald_batch(log_probs_N_K_C, b, m, generator=torch.Generator().manual_seed(seed), grouped_bounds=grouped)
    return {"seed": seed, "cpu_seconds": time.process_time() - start, "indices": list(batch.indices), "scores": list(batch.scores),
            "evaluations": list(batch.evaluations), "loadavg_1min": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="+", help='only rows whose "pool|N,K,C,b,m" contains one of these')
    parser.add_argument("--stale-seeds", type=int, default=2, help="seeds also run without grouped bounds (the same-command ratio)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    redux = {(r["pool"], (r["N"], r["K"], r["C"], r["b"], r["m"])): r for r in json.loads((RESULTS / "pools.json").read_text())["rows"]}
    for r in json.loads((RESULTS / "main.json").read_text())["rows"]:  # the ensemble pool with seed 0 is the main suite's pool
        key = ("ensemble", (r["N"], r["K"], r["C"], r["b"], r["m"]))
        if "redux_seconds" in r and not redux.get(key, {}).get("redux_seconds"):
            redux[key] = {"redux_seconds": r["redux_seconds"], "redux_source": "main.json"}
    store = json.loads(OUT.read_text()) if OUT.exists() else {"environment": environment(), "rows": []}
    done = {(r["pool"], tuple(r["config"])) for r in store["rows"]}
    for pool, config in pool_rows():
        key = f"{pool}|{','.join(map(str, config))}"
        if (pool, tuple(config)) in done or (args.rows and not any(r in key for r in args.rows)):
            continue
        log_probs_N_K_C = load_pool(pool, config)
        if log_probs_N_K_C is None:
            print(f"skipped {key}: the {pool} pool is not built (benchmarks/real_pools.py)", flush=True)
            continue
        N, K, C, b, m = config
        get_batchbald_batch(log_probs_N_K_C[:1000], min(b, 3), m, generator=torch.Generator().manual_seed(0))  # warm-up, untimed
        grouped, stale = [], []
        for i, seed in enumerate(POOL_SEEDS):
            grouped.append(timed(log_probs_N_K_C, b, m, seed, grouped=True))
            if i < args.stale_seeds:
                stale.append(timed(log_probs_N_K_C, b, m, seed, grouped=False))
            print(f"{key} seed {seed}: grouped {grouped[-1]['cpu_seconds']:.2f} s"
                  + (f", stale {stale[-1]['cpu_seconds']:.2f} s" if i < args.stale_seeds else ""), flush=True)
        median = statistics.median(r["cpu_seconds"] for r in grouped)
        slowest = max(r["cpu_seconds"] for r in grouped)
        paired = grouped[: len(stale)]
        row = {"pool": pool, "config": list(config), "grouped": grouped, "stale": stale,
               "grouped_median_seconds": median, "grouped_max_seconds": slowest, "max_over_median": slowest / median,
               "speedup_same_command": statistics.median(r["cpu_seconds"] for r in stale) / statistics.median(r["cpu_seconds"] for r in paired),
               "same_picks_as_stale": [g["indices"] == s["indices"] for g, s in zip(paired, stale)],
               "evaluations_grouped": [sum(r["evaluations"]) for r in paired], "evaluations_stale": [sum(r["evaluations"]) for r in stale]}
        reference = redux.get((pool, tuple(config)), {})
        if reference.get("redux_seconds"):
            row.update(redux_seconds=reference["redux_seconds"], redux_source=reference.get("redux_source"),
                       stale_median_seconds_stored=reference.get("ours_median_seconds"),
                       ratio_median=reference["redux_seconds"] / median, ratio_at_max=reference["redux_seconds"] / slowest)
        store["rows"].append(row)
        write_json(OUT, store)
        print(f"{key}: median {median:.2f} s (max/median {slowest / median:.2f}), {row['speedup_same_command']:.2f}x over stale bounds; "
              + (f"vs redux {row['ratio_median']:.0f}x at the median, {row['ratio_at_max']:.0f}x at the slowest" if "ratio_median" in row
                 else "no stored redux run"), flush=True)


if __name__ == "__main__":
    main()
