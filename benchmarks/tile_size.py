"""The kernel's tile size and its q log q, measured: results/tile_size.json, which chapter 14 plots and quotes.

    .venv/bin/python benchmarks/tile_size.py        # about a minute on one core

1. Tile size. The joint-entropy kernel (`JointEntropyKernel`) computes q = P~ p for a tile of candidate classes times configurations
   at a time, then q log q, then sums. Nanoseconds per q value at tile sizes 2^14 .. 2^22 q values (the package uses
   `CPU_TILE_ELEMENTS` = 2^18 on a CPU: 1 MiB of float32), float32, one thread, K = 20, C = 10, M = 10,000 distinct sampled
   configurations, 500 candidates; interleaved rounds, best of each.
2. q log q. `torch.xlogy(q, q)` against `log(q)` into a buffer then `mul_(q)` (what the kernel does, after clamping q at the
   dtype's smallest normal number so that 0 log 0 = 0), on one tile of 2^18 float32 values; best of 20 each, interleaved.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import RESULTS, environment, write_json  # noqa: E402

from batchbald_nb.joint_entropy import CPU_TILE_ELEMENTS, Configurations, JointEntropyKernel  # noqa: E402

TILES = [2**e for e in range(14, 23)]


def tile_sweep(rounds: int) -> dict:
    K, C, M, n = 20, 10, 10_000, 500
    g = torch.Generator().manual_seed(0)
    configurations = Configurations(torch.randn(M, K, dtype=torch.float64, generator=g) - 20, sampled=True)  # distinct rows
    probs_n_C_K = torch.softmax(torch.randn(n, C, K, dtype=torch.float64, generator=g), dim=1).float()
    kernel = JointEntropyKernel.of(configurations, torch.float32)
    reference = None
    best = {t: float("inf") for t in TILES}
    for _ in range(rounds):
        for tile in TILES:
            kernel.tile_elements = tile
            start = time.process_time()
            H_n = kernel(probs_n_C_K)
            best[tile] = min(best[tile], 1e9 * (time.process_time() - start) / (M * n * C))
            reference = H_n if reference is None else reference
            assert torch.allclose(H_n, reference, rtol=0, atol=1e-6 * float(reference.abs().max())), "the tile changed the result"
    return {"K": K, "C": C, "M": M, "n": n, "package_tile_elements": CPU_TILE_ELEMENTS,
            "rows": [{"tile_elements": t, "tile_mib_float32": t * 4 / 2**20, "best_ns_per_q": best[t]} for t in TILES]}


def qlogq(rounds: int) -> dict:
    g = torch.Generator().manual_seed(1)
    q = torch.rand(2**18, generator=g).clamp_min_(torch.finfo(torch.float32).tiny)
    buffer = torch.empty_like(q)
    best = {"xlogy": float("inf"), "log_then_mul": float("inf")}
    for _ in range(rounds):
        start = time.process_time()
        a = torch.xlogy(q, q)
        best["xlogy"] = min(best["xlogy"], time.process_time() - start)
        start = time.process_time()
        b = torch.log(q, out=buffer).mul_(q)
        best["log_then_mul"] = min(best["log_then_mul"], time.process_time() - start)
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-30)
    return {"elements": q.numel(), "best_ns_per_element": {k: 1e9 * v / q.numel() for k, v in best.items()},
            "xlogy_over_log_then_mul": best["xlogy"] / best["log_then_mul"]}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    result = {"environment": environment(), "tiles": tile_sweep(args.rounds), "qlogq": qlogq(4 * args.rounds)}
    result["environment"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    write_json(RESULTS / "tile_size.json", result)
    rows = result["tiles"]["rows"]
    print("\n".join(f"tile {r['tile_elements']:>8} ({r['tile_mib_float32']:.2f} MiB): {r['best_ns_per_q']:.2f} ns/q" for r in rows))
    print(f"xlogy / (log then mul_): {result['qlogq']['xlogy_over_log_then_mul']:.2f}")


if __name__ == "__main__":
    main()
