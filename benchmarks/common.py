"""Shared pieces of the benchmarks: the seeded synthetic pool, a high-m estimate of a batch's mutual information, peak-memory
readings, and this machine's own limits (GEMM GFLOP/s, logarithms per second). Nothing here is part of the package."""
from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
POOL_CHUNK = 65536  # the pool is generated in fixed chunks (seeded per chunk), so its values do not depend on memory


def benchmark_pool(N: int, K: int, C: int, seed: int = 0, dtype=torch.float64, D: int = 32, spread: float = 0.5) -> torch.Tensor:
    """log p(y | x_n, w_k), N x K x C, of a random last-layer ensemble: unit-direction features x_n in R^D whose norm (how far from the
    decision boundaries a point lies) is uniform in [0, 2 sqrt(D)], and K heads W_k = W + spread * E_k with standard-normal W and E_k.
    Like an MC-dropout network, the K samples disagree in a structured way shared by similar points. Generated a chunk at a time."""
    generator = torch.Generator().manual_seed(seed)
    heads_K_D_C = torch.randn(D, C, generator=generator, dtype=torch.float64) + spread * torch.randn(K, D, C, generator=generator, dtype=torch.float64)
    log_probs_N_K_C = torch.empty(N, K, C, dtype=dtype)
    for chunk_index, start in enumerate(range(0, N, POOL_CHUNK)):
        n = min(POOL_CHUNK, N - start)
        chunk_generator = torch.Generator().manual_seed(seed * 1_000_003 + 1 + chunk_index)
        norm_n_1 = torch.rand(n, 1, generator=chunk_generator, dtype=torch.float64) * 2 * D**0.5
        x_n_D = torch.nn.functional.normalize(torch.randn(n, D, generator=chunk_generator, dtype=torch.float64), dim=1) * norm_n_1
        log_probs_N_K_C[start : start + n] = torch.log_softmax(torch.einsum("nd,kdc->nkc", x_n_D, heads_K_D_C), dim=-1).to(dtype)
    return log_probs_N_K_C


def triples_pool(N: int, K: int, C: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    """log p(y | x_n, w_k), N x K x C, of a pool of correlated triples: per triple a shared mean logit drawn N(0, 4) per class, and each
    of its 3 points adds N(0, 1) noise per sample and class. Points of a triple look alike without being copies, the structure on which
    greedy BatchBALD must keep telling near-duplicates apart, and on which lazy greedy prunes least. Generated a chunk at a time."""
    log_probs_N_K_C = torch.empty(N, K, C, dtype=dtype)
    chunk = POOL_CHUNK - POOL_CHUNK % 3  # whole triples per chunk
    for chunk_index, start in enumerate(range(0, N, chunk)):
        n = min(chunk, N - start)
        generator = torch.Generator().manual_seed(seed * 1_000_003 + 7_000_001 + chunk_index)
        means_t_C = 2.0 * torch.randn((n + 2) // 3, C, generator=generator, dtype=torch.float64)
        logits_n_K_C = means_t_C.repeat_interleave(3, dim=0)[:n, None, :] + torch.randn(n, K, C, generator=generator, dtype=torch.float64)
        log_probs_N_K_C[start : start + n] = torch.log_softmax(logits_n_K_C, dim=-1).to(dtype)
    return log_probs_N_K_C


POOL_STRUCTURES = ("ensemble", "triples")  # synthetic; benchmarks/real_pools.py adds pools from trained models ("mnist", "emnist")


def make_pool(structure: str, N: int, K: int, C: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    "A benchmark pool by structure name: 'ensemble' (benchmark_pool), 'triples' (triples_pool), or a cached real pool ('mnist', 'emnist')."
    if structure == "ensemble":
        return benchmark_pool(N, K, C, seed=seed, dtype=dtype)
    if structure == "triples":
        return triples_pool(N, K, C, seed=seed, dtype=dtype)
    from real_pools import load_pool

    log_probs_N_K_C = load_pool(structure)
    if tuple(log_probs_N_K_C.shape) != (N, K, C):
        raise ValueError(f"the cached {structure} pool has shape {tuple(log_probs_N_K_C.shape)}, the configuration asks for {(N, K, C)}")
    return log_probs_N_K_C.to(dtype)


def batch_mutual_information_sampled(log_probs_B_K_C: torch.Tensor, num_draws: int = 400_000, seed: int = 1234,
                                     chunk: int = 50_000) -> tuple[float, float]:
    """I(y_1..y_B; w) of a batch with w uniform over the K samples, as log K - E_y[H(j | y)] (y drawn ancestrally: j uniform, then each
    label from p(y_i | w_j)). Each term lies in [0, log K] and is near 0 when the batch pins w down, so the estimate is much tighter than
    -mean log p(y). Returns (estimate, standard error), in nats."""
    log_probs_B_K_C = log_probs_B_K_C.double()
    B, K, C = log_probs_B_K_C.shape
    generator = torch.Generator().manual_seed(seed)
    terms = []
    for start in range(0, num_draws, chunk):
        m = min(chunk, num_draws - start)
        j_m = torch.randint(K, (m,), generator=generator)
        labels_m_B = torch.stack([torch.multinomial(log_probs_B_K_C[i].exp()[j_m], 1, generator=generator).squeeze(1) for i in range(B)], 1)
        log_lik_m_K = sum(log_probs_B_K_C[i].T[labels_m_B[:, i]] for i in range(B))  # log p(y | w_j') for every j'
        log_post_m_K = torch.log_softmax(log_lik_m_K, dim=1)
        terms.append(-(log_post_m_K.exp() * log_post_m_K).nan_to_num(0.0).sum(dim=1))  # H(j | y), 0 log 0 = 0
    H_m = torch.cat(terms)
    return math.log(K) - H_m.mean().item(), H_m.std().item() / math.sqrt(num_draws)


def reset_peak_rss() -> None:
    "Reset the kernel's high-water mark of this process' resident memory (Linux: write 5 to /proc/self/clear_refs)."
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def rss_bytes(field: str = "VmHWM") -> int:
    "This process' peak (VmHWM, since the last reset) or current (VmRSS) resident memory, in bytes."
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _best_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def machine_limits(repeats: int = 7) -> dict:
    """This machine's own limits at the current torch thread count: GEMM GFLOP/s in the kernel's tile shapes (512 x K by K x 512) and
    for a large square product, and logarithms per second on an in-cache vector (2^18 values), float32 and float64. Best of `repeats`:
    the least-disturbed run on a shared machine."""
    limits = {"threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(), "torch": torch.__version__}
    for dtype in (torch.float32, torch.float64):
        name = str(dtype).replace("torch.", "")
        for K in (10, 20, 100):
            a, b, out = torch.rand(512, K, dtype=dtype), torch.rand(K, 512, dtype=dtype), torch.empty(512, 512, dtype=dtype)
            t = _best_time(lambda: [torch.matmul(a, b, out=out) for _ in range(200)], repeats)
            limits[f"gemm_tile_K{K}_{name}_gflops"] = 200 * 2 * 512 * 512 * K / t / 1e9
        a, out = torch.rand(1024, 1024, dtype=dtype), torch.empty(1024, 1024, dtype=dtype)
        limits[f"gemm_square_{name}_gflops"] = 2 * 1024**3 / _best_time(lambda: torch.matmul(a, a, out=out), repeats) / 1e9
        x = torch.rand(2**18, dtype=dtype) + 1e-3
        y = torch.empty_like(x)
        limits[f"log_{name}_per_ns"] = 50 * 2**18 / _best_time(lambda: [torch.log(x, out=y) for _ in range(50)], repeats) / 1e9
        limits[f"xlogy_{name}_per_ns"] = 50 * 2**18 / _best_time(lambda: [torch.xlogy(x, x, out=y) for _ in range(50)], repeats) / 1e9
        limits[f"clamp_log_mul_{name}_per_ns"] = 50 * 2**18 / _best_time(
            lambda: [torch.log(x.clamp_min_(1e-30), out=y).mul_(x) for _ in range(50)], repeats) / 1e9
    return limits


def ns_per_q_limit(limits: dict, K: int, dtype: str = "float32") -> float:
    """The machine's floor for one value of q in the kernel: its 2K-flop dot product at the tile GEMM rate plus one log-and-multiply at
    the in-cache rate (the two run one after the other on the same cores), in nanoseconds."""
    gflops = limits.get(f"gemm_tile_K{K}_{dtype}_gflops") or limits[f"gemm_tile_K20_{dtype}_gflops"]
    return 2 * K / gflops + 1 / limits[f"clamp_log_mul_{dtype}_per_ns"]


def environment() -> dict:
    "What the numbers were measured on."
    load = os.getloadavg()
    info = {"python": sys.version.split()[0], "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(), "loadavg_at_start": [round(x, 2) for x in load], "cuda": torch.cuda.is_available()}
    try:
        info["cpu_model"] = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.split("Model name:")[1].splitlines()[0].strip()
    except Exception:  # noqa: BLE001 - informational only
        pass
    return info


def write_json(path: Path, payload) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1))
