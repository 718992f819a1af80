"""The kernel's dtype policy and its speed, measured: results/kernel_study.json, which chapter 14 plots and quotes.

    .venv/bin/python benchmarks/kernel_study.py        # about 10 minutes on 2 shared cores

1. Error. Along float64 plain greedy's own path on the benchmark pools (N = 2,000), every step's joint entropies with every candidate, in
   float64 (the reference) and in the candidate policies: float32 products with float64 accumulation over configurations (ours), the same
   plus dropping light enumerated configurations (ours, as greedy runs it), and float32 throughout (accumulation too). Recorded: the largest
   error, relative to H + 1, the tolerance greedy uses, how many candidates fall within 2 tolerance of the best (the float64 re-decisions),
   and whether the float32 argmax alone would have differed from float64's.
2. Speed. Nanoseconds per q value of the kernel in float32 and float64, and at 1 and 2 threads (interleaved rounds, best of each).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import RESULTS, benchmark_pool, environment, machine_limits, ns_per_q_limit, write_json  # noqa: E402

from batchbald_nb.acquisition import _pool_probs_N_C_K, get_batchbald_batch, rescoring_tolerance  # noqa: E402
from batchbald_nb.joint_entropy import Configurations, JointEntropyKernel, add_point  # noqa: E402

SHAPES = [(2_000, 20, 10, 10, 10_000), (2_000, 100, 10, 10, 10_000), (2_000, 10, 47, 5, 10_000), (2_000, 20, 10, 40, 10_000)]


def float32_accumulated(kernel: JointEntropyKernel, probs_n_C_K: torch.Tensor) -> torch.Tensor:
    "The kernel's arithmetic with the sum over configurations in float32 too (the policy we did not take), untiled."
    q_nC_M = probs_n_C_K.reshape(-1, probs_n_C_K.shape[2]) @ kernel.scaled_over_K_K_M
    qlogq_nC_M = q_nC_M * torch.log(q_nC_M.clamp_min(torch.finfo(q_nC_M.dtype).tiny))
    S_n = (qlogq_nC_M.view(probs_n_C_K.shape[0], probs_n_C_K.shape[1], -1).sum(dim=1) @ kernel.a_M.float())
    return (-S_n - kernel.b_sum).double()


def error_study(shapes) -> list[dict]:
    out = []
    for N, K, C, b, m in shapes:
        log_probs_N_K_C = benchmark_pool(N, K, C, seed=0)
        path = get_batchbald_batch(log_probs_N_K_C, b, m, dtype=torch.float64, lazy=False, generator=torch.Generator().manual_seed(0))
        probs64 = _pool_probs_N_C_K(log_probs_N_K_C, torch.float64, "cpu")
        probs32 = _pool_probs_N_C_K(log_probs_N_K_C, torch.float32, "cpu")
        configurations = Configurations.empty(K)
        generator = torch.Generator().manual_seed(0)
        available_N = torch.ones(N, dtype=torch.bool)
        steps = []
        for step, index in enumerate(path.indices):
            entropy = configurations.entropy()
            tolerance = rescoring_tolerance(torch.float32, entropy + math.log(C))
            reference = JointEntropyKernel.of(configurations, torch.float64)(probs64)
            kernel32 = JointEntropyKernel.of(configurations, torch.float32)
            pruned32 = JointEntropyKernel.of(configurations, torch.float32, prune_mass=tolerance / math.log(C))
            policies = {"float32_products_float64_sums": kernel32(probs32), "plus_light_rows_dropped": pruned32(probs32),
                        "float32_throughout": float32_accumulated(kernel32, probs32)}
            record = {"step": step + 1, "rows": configurations.num_configurations, "sampled": configurations.sampled,
                      "rows_after_merge": kernel32.num_rows, "rows_after_pruning": pruned32.num_rows, "entropy_bound": entropy + math.log(C),
                      "tolerance": tolerance + pruned32.pruning_error(C), "pruning_error": pruned32.pruning_error(C)}
            best64 = torch.where(available_N, reference, -math.inf).argmax().item()
            for name, values in policies.items():
                error_N = (values - reference).abs()
                scores = torch.where(available_N, values, -math.inf)
                record[name] = {"max_abs_error": error_N.max().item(), "max_rel_error": (error_N / (reference.abs() + 1)).max().item(),
                                "argmax_differs": scores.argmax().item() != best64,
                                "within_2_tolerance": int((scores >= scores.max() - 2 * record["tolerance"]).sum())}
            steps.append(record)
            available_N[index] = False
            configurations = add_point(configurations, log_probs_N_K_C[index], m, generator)
        worst = {name: max(s[name]["max_rel_error"] for s in steps) for name in policies}
        print(f"N={N} K={K} C={C} b={b}: largest error / (H + 1): " + ", ".join(f"{k} {v:.1e}" for k, v in worst.items())
              + f"; tolerance / (H + 1) {max(s['tolerance'] / (s['entropy_bound'] + 1) for s in steps):.1e}", flush=True)
        out.append({"N": N, "K": K, "C": C, "b": b, "m": m, "steps": steps, "worst_rel_error": worst})
    return out


def speed_study(rounds: int = 5) -> dict:
    "ns per q value of the kernel: float32 vs float64, 1 vs 2 threads; interleaved rounds, best of each."
    K, C, M, n = 20, 10, 10_000, 500
    configurations = Configurations(torch.randn(M, K, dtype=torch.float64) - 20, sampled=True)  # distinct rows: nothing merges
    probs_n_C_K = torch.softmax(torch.randn(n, C, K, dtype=torch.float64), dim=1)
    timings = {}
    for _ in range(rounds):
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for dtype in (torch.float32, torch.float64):
                kernel = JointEntropyKernel.of(configurations, dtype)
                x = probs_n_C_K.to(dtype)
                start = time.perf_counter()
                kernel(x)
                seconds = time.perf_counter() - start
                timings.setdefault(f"{str(dtype)[6:]}_threads{threads}", []).append(1e9 * seconds / (M * n * C))
    torch.set_num_threads(1)
    return {"K": K, "C": C, "M": M, "n": n, "loadavg": list(os.getloadavg()), "ns_per_q": timings, "best_ns_per_q": {k: min(v) for k, v in timings.items()},
            "median_ns_per_q": {k: sorted(v)[len(v) // 2] for k, v in timings.items()}}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speed-only", action="store_true",
                        help="only add one more sample of the speed study (threads x dtype) to the stored results, with the load average")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.speed_only:
        path = RESULTS / "kernel_study.json"
        results = json.loads(path.read_text())
        sample = speed_study()
        results.setdefault("speed_samples", []).append(sample)
        print("load", [round(x, 2) for x in sample["loadavg"]], "best ns per q:", {k: round(v, 2) for k, v in sample["best_ns_per_q"].items()})
        write_json(path, results)
        return
    results = {"environment": environment()}
    results["limits_1_thread"] = machine_limits()
    torch.set_num_threads(2)
    results["limits_2_threads"] = machine_limits()
    torch.set_num_threads(1)
    results["speed"] = speed_study()
    results["floor_ns_per_q_float32_K20"] = ns_per_q_limit(results["limits_1_thread"], 20, "float32")
    results["floor_ns_per_q_float64_K20"] = ns_per_q_limit(results["limits_1_thread"], 20, "float64")
    print("speed (ns per q, best / median):", {k: (round(v, 2), round(results["speed"]["median_ns_per_q"][k], 2))
                                               for k, v in results["speed"]["best_ns_per_q"].items()},
          "floor float32/float64:", round(results["floor_ns_per_q_float32_K20"], 2), round(results["floor_ns_per_q_float64_K20"], 2), flush=True)
    write_json(RESULTS / "kernel_study.json", results)
    results["errors"] = error_study(SHAPES)
    write_json(RESULTS / "kernel_study.json", results)


if __name__ == "__main__":
    main()
