"""The package on CUDA gives the CPU's answers: every acquisition function's picks and scores on small seeded pools, inputs on the CPU
with device='cuda' and inputs already on the GPU, a float16 input, the consistent MC dropout model's log-probabilities, and one
active-learning step of the `toy` experiment.

Without CUDA every test is skipped with one loud reason (`pytest -rs` lists it); benchmarks/gpu_session.sh runs this file on a GPU
machine. BATCHBALD_NB_TEST_DEVICE=cpu runs the same comparisons CPU against CPU (a rehearsal of this file's own logic on a machine
without a GPU: benchmarks/gpu_session.py --dry-run does, and tests/test_gpu_kit.py checks that it passes)."""
import math
import os
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from common import benchmark_pool  # noqa: E402

from batchbald_nb.acquisition import ACQUISITION_FUNCTIONS, acquire, get_bald_batch, get_batchbald_batch, rescoring_tolerance  # noqa: E402

DEVICE = os.environ.get("BATCHBALD_NB_TEST_DEVICE", "cuda")
SKIP_REASON = "CUDA not available: GPU tests skipped — run benchmarks/gpu_session.sh on a GPU machine"
RUNNABLE = not DEVICE.startswith("cuda") or torch.cuda.is_available()
if not RUNNABLE:
    print(f"\n*** {SKIP_REASON} ***", file=sys.stderr)

# Exact regime: C**(n-1) <= m for every step n <= b (10**3 <= 10_000), so configurations are enumerated, never sampled, and the
# picks are float64's on both devices (near-ties are re-decided in float64), hence identical.
N, K, C, B, M = 600, 20, 10, 4, 10_000
SEED = 0
# Scores: BatchBALD's come from float32 products (or float64 rescoring); each is within the dtype error rescoring_tolerance(float32,
# H) of the float64 value (H <= b log C, the largest joint entropy) plus the pruning error of the light configurations it drops
# (at most half the dtype error, see get_batchbald_batch), so CPU and GPU differ by at most 3 times the dtype error. The top-b
# functions score in float64 on both devices: only summation order differs, ~1e-15 relative; 1e-9 leaves room and still fails a
# float32 path (errors ~1e-7).
BATCHBALD_SCORE_TOLERANCE = 3 * rescoring_tolerance(torch.float32, B * math.log(C))
FLOAT64_SCORE_TOLERANCE = 1e-9


def require_device() -> None:
    "Skip the calling test, loudly, unless DEVICE can run."
    if not RUNNABLE:
        pytest.skip(SKIP_REASON)


@pytest.fixture(autouse=True)
def _needs_cuda():
    require_device()


@pytest.fixture(scope="module")
def pool_N_K_C():
    return benchmark_pool(N, K, C, seed=SEED)  # float64, on the CPU


def _generator(seed: int = 1) -> torch.Generator:
    return torch.Generator().manual_seed(seed)  # a CPU generator: the package draws on the CPU for every device


def _run(method: str, log_probs_N_K_C: torch.Tensor, device=None, **options):
    return acquire(method, log_probs_N_K_C, B, num_samples=M, generator=_generator(), device=device, **options)


def _assert_same(cpu, gpu, tolerance: float, what: str) -> None:
    assert list(gpu.indices) == list(cpu.indices), f"{what}: picks differ, CPU {cpu.indices} vs {DEVICE} {gpu.indices}"
    worst = max((abs(a - b) for a, b in zip(cpu.scores, gpu.scores)), default=0.0)
    assert len(gpu.scores) == len(cpu.scores) and worst <= tolerance, f"{what}: scores differ by {worst:.3g} > {tolerance:.3g}"


@pytest.mark.parametrize("method", sorted(ACQUISITION_FUNCTIONS))
@pytest.mark.parametrize("placement", ["input_on_cpu", "input_on_device"])
def test_acquisition_matches_cpu(pool_N_K_C, method, placement):
    cpu = _run(method, pool_N_K_C)
    if placement == "input_on_cpu":
        gpu = _run(method, pool_N_K_C, device=DEVICE)
    else:
        gpu = _run(method, pool_N_K_C.to(DEVICE))  # device=None: compute where the input is
    tolerance = BATCHBALD_SCORE_TOLERANCE if method == "batchbald" else FLOAT64_SCORE_TOLERANCE
    _assert_same(cpu, gpu, tolerance, f"{method} ({placement})")
    assert len(gpu.indices) == B and len(set(gpu.indices)) == B


def test_batchbald_plain_greedy_matches_lazy_on_device(pool_N_K_C):
    "Plain greedy (every gain, every step) on the device picks what lazy greedy on the CPU picks."
    cpu = get_batchbald_batch(pool_N_K_C, B, M, generator=_generator())
    gpu = get_batchbald_batch(pool_N_K_C.to(DEVICE), B, M, generator=_generator(), lazy=False)
    _assert_same(cpu, gpu, BATCHBALD_SCORE_TOLERANCE, "batchbald lazy=False")
    assert gpu.evaluations[1:] == [N - n for n in range(1, B)]  # plain greedy computes every remaining candidate's gain


def test_batchbald_float64_products_match_cpu(pool_N_K_C):
    cpu = get_batchbald_batch(pool_N_K_C, B, M, dtype=torch.float64, generator=_generator())
    gpu = get_batchbald_batch(pool_N_K_C.to(DEVICE), B, M, dtype=torch.float64, generator=_generator())
    _assert_same(cpu, gpu, 3 * rescoring_tolerance(torch.float64, B * math.log(C)), "batchbald float64")


@pytest.mark.parametrize("method", ["batchbald", "bald"])
def test_float16_input(pool_N_K_C, method):
    "A float16 pool (as a half-precision model returns it): the device gives the CPU's answer on the same float16 values."
    half_N_K_C = torch.log_softmax(pool_N_K_C.to(torch.float16).float(), dim=-1).to(torch.float16)  # renormalised after rounding
    cpu = _run(method, half_N_K_C)
    gpu = _run(method, half_N_K_C.to(DEVICE))
    _assert_same(cpu, gpu, BATCHBALD_SCORE_TOLERANCE if method == "batchbald" else FLOAT64_SCORE_TOLERANCE, f"{method} float16")
    assert all(math.isfinite(s) for s in gpu.scores)


def test_bald_of_device_pool_is_bald_of_cpu_pool_in_float32(pool_N_K_C):
    "A float32 pool on the device (the usual case: a model's output) against the same float32 pool on the CPU."
    pool32_N_K_C = pool_N_K_C.float()
    _assert_same(get_bald_batch(pool32_N_K_C, B), get_bald_batch(pool32_N_K_C.to(DEVICE), B), FLOAT64_SCORE_TOLERANCE, "bald float32")


def test_consistent_mc_dropout_log_probs_match_cpu():
    from batchbald_nb.consistent_mc_dropout import predict_log_probs_N_K_C
    from batchbald_nb.models import MnistBayesianCNN

    torch.manual_seed(0)
    model = MnistBayesianCNN(num_classes=10)
    x_N_1_28_28 = torch.randn(24, 1, 28, 28, generator=_generator(2))
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # TF32 rounds to 10 mantissa bits: compare float32
    try:
        cpu_N_K_C = predict_log_probs_N_K_C(model, x_N_1_28_28, 8, batch_size=10, generator_seed=3, progress=False)
        gpu_N_K_C = predict_log_probs_N_K_C(model, x_N_1_28_28, 8, batch_size=10, generator_seed=3, device=DEVICE, progress=False)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    assert gpu_N_K_C.device.type == "cpu" and gpu_N_K_C.dtype == torch.float32  # results come back to the CPU
    assert next(model.parameters()).device.type == "cpu"  # the model is moved back
    # the same masks (drawn on the CPU from the seed) on both devices: log-probs agree to float32 round-off of a small CNN
    torch.testing.assert_close(gpu_N_K_C, cpu_N_K_C, atol=1e-4, rtol=1e-4)
    assert (cpu_N_K_C[:, 0] - cpu_N_K_C[:, 1]).abs().max() > 1e-3  # the K samples differ: dropout is on


def test_one_active_learning_step_of_toy_experiment(tmp_path):
    import json

    from batchbald_nb.active_learning import run_trial
    from batchbald_nb.experiments import EXPERIMENTS

    config = EXPERIMENTS["toy"].trial_config("batchbald", 0)
    config = replace(config, max_labelled=config.initial_per_class * 4 + config.acquisition_size)  # 4 classes: one acquisition
    results = run_trial(config, tmp_path / "trial_0.json", device=DEVICE, progress=False)
    stored = json.loads((tmp_path / "trial_0.json").read_text())
    assert stored["finished"] and stored["environment"]["device"].startswith(DEVICE)
    first, last = results["steps"]
    assert len(first["acquired_indices"]) == config.acquisition_size == len(set(first["acquired_indices"]))
    assert not set(first["acquired_indices"]) & (set(results["initial_indices"]) | set(results["validation_indices"]))
    assert all(s > 0 and math.isfinite(s) for s in first["scores"])
    assert last["num_labelled"] == config.max_labelled and 0.0 <= last["test_accuracy"] <= 1.0
