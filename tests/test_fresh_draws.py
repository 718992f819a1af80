"""Issue 12: configurations drawn afresh at every sampled step (`draws="fresh"`, the authors' scheme) or kept and extended
(`draws="extend"`, the default), and the benchmark that compares them (benchmarks/fresh_vs_extended.py)."""
import math
from pathlib import Path

import pytest
import torch

from batchbald_nb.acquisition import DRAWS, get_batchbald_batch
from batchbald_nb.brute_force import random_pool
from batchbald_nb.joint_entropy import joint_entropy_exact, sample_configurations_afresh

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.mark.parametrize("seed", range(3))
def test_fresh_draws_estimate_the_joint_entropy(seed):
    """-mean log p(y_s) over fresh draws is unbiased for eq. (12): within 5 standard errors (m = 20,000; the plain standard error,
    an upper bound under stratified j) on 4 random points, K = 5, C = 3 (81 configurations, exact by enumeration)."""
    log_probs_B_K_C = torch.log_softmax(2 * torch.randn(4, 5, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64), -1)
    configurations = sample_configurations_afresh(log_probs_B_K_C, 20_000, torch.Generator().manual_seed(seed))
    standard_error = configurations.log_probs_M().std().item() / math.sqrt(20_000)
    assert abs(configurations.entropy() - joint_entropy_exact(log_probs_B_K_C)) < 5 * standard_error
    assert (torch.bincount(configurations.sample_index_M, minlength=5) == 4_000).all()


@pytest.mark.parametrize("bad", ["Fresh", "", None, 0, ("fresh",)])
def test_draws_must_be_extend_or_fresh(bad):
    pool = random_pool(10, 4, 3, seed=0)
    with pytest.raises(ValueError, match=r"^draws must be one of 'extend', 'fresh', got"):
        get_batchbald_batch(pool, 2, 100, draws=bad)


def test_the_modes_differ_only_once_sampled():
    "C = 4, m = 64: picks 1-4 enumerated (identical in both modes), 5-6 sampled; both valid batches of distinct points."
    pool = random_pool(60, 8, 4, seed=1, zeros=False, duplicates=False)
    batches = {draws: get_batchbald_batch(pool, 6, 64, generator=torch.Generator().manual_seed(0), draws=draws) for draws in DRAWS}
    for batch in batches.values():
        assert [e > 0 for e in batch.standard_errors] == [False] * 4 + [True] * 2
        assert len(set(batch.indices)) == 6
    assert batches["fresh"].indices[:4] == batches["extend"].indices[:4]
    assert batches["fresh"].scores[:4] == batches["extend"].scores[:4]


def test_benchmark_exits_loudly_without_its_pools(monkeypatch, tmp_path, capsys):
    "A missing cached pool: a non-zero exit with one line naming the file and the command that builds it; no result written."
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import fresh_vs_extended
    import real_pools

    monkeypatch.setattr(real_pools, "CACHE", tmp_path)
    monkeypatch.setattr(fresh_vs_extended, "OUT", tmp_path / "fresh_vs_extended.json")
    with pytest.raises(SystemExit) as exit_info:
        fresh_vs_extended.main([])
    message = str(exit_info.value.code)
    assert exit_info.value.code not in (0, None) and "\n" not in message
    assert "mnist_log_probs_N_K_C.pt is missing" in message and "benchmarks/real_pools.py --pools mnist" in message
    assert list(tmp_path.iterdir()) == []
