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


# ---------------------------------------------------------------- chapter 01: P-hat, eq. (36), the decomposition


def p_hat(probs_B_K_C: torch.Tensor, labels_M_B: torch.Tensor) -> torch.Tensor:
    "P-hat (M x K): row M is prod_i p(labels_M_B[M, i] | w_j) over the B points, column j the parameter sample."
    gathered_B_K_M = torch.stack([probs_K_C[:, labels_M_B[:, i]] for i, probs_K_C in enumerate(probs_B_K_C)])
    return gathered_B_K_M.prod(dim=0).T


def eq36(P_m_K: torch.Tensor, probs_K_C: torch.Tensor) -> float:
    "Eq. (36): -(1/m) sum over rows and the last point's labels of (P P_n^T)/(P 1) log((1/k) P P_n^T)."
    q_m_C = P_m_K @ probs_K_C / P_m_K.shape[1]
    return -(torch.xlogy(q_m_C, q_m_C).sum(dim=1) / P_m_K.mean(dim=1)).mean().item()


def ancestral_draws(probs_B_K_C: torch.Tensor, m: int, generator: torch.Generator) -> torch.Tensor:
    "m configurations from p(y_1:B): a sample j uniformly, then every label from p(y_i | w_j)."
    j_m = torch.randint(probs_B_K_C.shape[1], (m,), generator=generator)
    return torch.stack([torch.multinomial(probs_K_C[j_m], 1, generator=generator)[:, 0] for probs_K_C in probs_B_K_C], dim=1)


def marginal_draws(probs_B_K_C: torch.Tensor, m: int, generator: torch.Generator) -> torch.Tensor:
    "BROKEN proposal: every label from its own marginal p(y_i), independently of the others."
    return torch.stack([torch.multinomial(probs_K_C.mean(0), m, replacement=True, generator=generator) for probs_K_C in probs_B_K_C], dim=1)


def configurations_of(log_probs_B_K_C: torch.Tensor, num_samples: int, seed: int = 0) -> Configurations:
    configurations, generator = Configurations.empty(log_probs_B_K_C.shape[1]), torch.Generator().manual_seed(seed)
    for log_probs_K_C in log_probs_B_K_C:
        configurations = add_point(configurations, log_probs_K_C, num_samples, generator)
    return configurations


# n = 4 points, K = 10, C = 4: the exact value enumerates 4**3 = 64 rows, and the labels are strongly tied through w (scale 3)
LOG_PROBS_B_K_C = random_log_probs_N_K_C(4, 10, 4, seed=3, zero_fraction=0.0)
PROBS_B_K_C = LOG_PROBS_B_K_C.exp()
EXACT = joint_entropy_exact(LOG_PROBS_B_K_C)
SEEDS, M = 300, 20  # m = 20 < 64 rows, so the production path samples too


def within_four_standard_errors(estimates_S: list[float]) -> bool:
    """The statistical check of chapter 01: the mean of S seeds within 4 standard errors of the exact value. For an unbiased estimator
    with a near-normal mean this fails with probability ~6e-5; the seeds are fixed, so the outcome is deterministic."""
    estimates = torch.tensor(estimates_S, dtype=torch.float64)
    return abs(estimates.mean().item() - EXACT) < 4 * estimates.std().item() / len(estimates_S) ** 0.5


def literal_estimate(draw, seed: int, shift: float = 0.0) -> float:
    labels_m_B = draw(PROBS_B_K_C[:-1], M, torch.Generator().manual_seed(seed))
    return eq36(p_hat(PROBS_B_K_C[:-1], labels_m_B), PROBS_B_K_C[-1]) + shift


def production_estimate(seed: int) -> float:
    configurations = configurations_of(LOG_PROBS_B_K_C[:-1], M, seed)
    assert configurations.sampled
    return joint_entropies_with_candidates(configurations, PROBS_B_K_C[-1:].permute(1, 0, 2)).item()


def test_eq36_check_accepts_unbiased_estimators_and_rejects_broken_ones():
    assert within_four_standard_errors([literal_estimate(ancestral_draws, s) for s in range(SEEDS)])
    assert within_four_standard_errors([production_estimate(s) for s in range(SEEDS)])  # stratified j, merged rows: still unbiased
    assert not within_four_standard_errors([literal_estimate(marginal_draws, s) for s in range(SEEDS)])  # wrong proposal
    # wrong normaliser: log(P P_n^T) without its 1/k shifts every estimate by -log k
    assert not within_four_standard_errors([literal_estimate(ancestral_draws, s, shift=-math.log(10)) for s in range(SEEDS)])


def test_error_shrinks_with_m():
    def rmse(m: int) -> float:
        errors = [eq36(p_hat(PROBS_B_K_C[:-1], ancestral_draws(PROBS_B_K_C[:-1], m, torch.Generator().manual_seed(s))), PROBS_B_K_C[-1]) - EXACT
                  for s in range(100)]
        return math.sqrt(sum(e * e for e in errors) / len(errors))

    assert rmse(10) > rmse(100) > rmse(1000)  # 1/sqrt(m): factors of ~3.2, far above the noise of 100-seed estimates


def test_kernel_equals_literal_eq36_and_a_merge_without_counts_does_not():
    configurations = configurations_of(random_log_probs_N_K_C(7, 6, 3, seed=5)[:6], 200, seed=1)
    rows_m_K = configurations.log_joint_probs_M_K.exp()
    distinct_K = torch.unique(configurations.log_joint_probs_M_K, dim=0).exp()
    assert configurations.sampled and len(distinct_K) < len(rows_m_K)  # there are repeats to merge
    candidates_n_K_C = random_log_probs_N_K_C(5, 6, 3, seed=6).exp()
    kernel_n = joint_entropies_with_candidates(configurations, candidates_n_K_C.permute(1, 0, 2))
    literal_n = torch.tensor([eq36(rows_m_K, probs_K_C) for probs_K_C in candidates_n_K_C], dtype=torch.float64)
    forgot_counts_n = torch.tensor([eq36(distinct_K, probs_K_C) for probs_K_C in candidates_n_K_C], dtype=torch.float64)
    assert torch.allclose(kernel_n, literal_n, atol=ROUND_OFF, rtol=0)
    assert (forgot_counts_n - literal_n).abs().max() > 1e-3  # far outside round-off


def reweighted_bald(P_M_K: torch.Tensor, x_K_C: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    "Per configuration M: H(y_x | y_M) and BALD of x under the samples reweighted by p(y_M | w_j)."
    w_M_K = P_M_K / P_M_K.sum(dim=1, keepdim=True)
    H_K = -torch.xlogy(x_K_C, x_K_C).sum(-1)
    predictive_M_C = w_M_K @ x_K_C
    H_M = -torch.xlogy(predictive_M_C, predictive_M_C).sum(-1)
    return H_M, H_M - w_M_K @ H_K


def test_decomposition_eq36_is_mean_of_log_p_plus_conditional_entropy_and_the_gain_is_reweighted_bald():
    x_K_C = PROBS_B_K_C[-1]
    P_m_K = p_hat(PROBS_B_K_C[:-1], ancestral_draws(PROBS_B_K_C[:-1], 500, torch.Generator().manual_seed(0)))
    H_m, bald_m = reweighted_bald(P_m_K, x_K_C)
    assert abs(eq36(P_m_K, x_K_C) - (H_m - P_m_K.mean(1).log()).mean().item()) < ROUND_OFF
    # enumerated exactly: gain = H(y_1:3, y_x) - H(y_1:3) - E[H(y_x | w)] = sum_M p_M BALD(x | y_M)
    all_M_B = torch.cartesian_prod(*[torch.arange(4)] * 3)
    P_M_K = p_hat(PROBS_B_K_C[:-1], all_M_B)
    gain = EXACT - joint_entropy_exact(LOG_PROBS_B_K_C[:-1]) - expected_conditional_entropy(LOG_PROBS_B_K_C[-1:]).item()
    _, exact_bald_M = reweighted_bald(P_M_K, x_K_C)
    assert abs(gain - (P_M_K.mean(1) * exact_bald_M).sum().item()) < ROUND_OFF
    # the check can fail: the unconditioned BALD of x is not the gain (the configured points already told part of it)
    assert abs(gain - bald_scores(LOG_PROBS_B_K_C[-1:]).item()) > 1e-3


def test_p_hat_columns_sum_to_one_and_rows_do_not():
    all_M_B = torch.cartesian_prod(*[torch.arange(4)] * 3)
    P_M_K = p_hat(PROBS_B_K_C[:-1], all_M_B)
    assert torch.allclose(P_M_K.sum(dim=0), torch.ones(10, dtype=torch.float64), atol=ROUND_OFF)
    assert not torch.allclose(P_M_K.sum(dim=1), torch.ones(64, dtype=torch.float64), atol=0.1)
    assert abs(P_M_K.mean(dim=1).sum().item() - 1) < ROUND_OFF
