"""The theory chapter's and the dropout chapter's checks, through the installed package: each passes on our implementation and FAILS on
a deliberately broken variant (a check that cannot fail is a defect). Smaller versions of the chapters' runs, fixed seeds."""
import math
import random

import pytest
import torch

from batchbald_nb.acquisition import get_bald_batch, get_batchbald_batch, get_random_batch
from batchbald_nb.active_learning import ToyBayesianMLP
from batchbald_nb.brute_force import (batch_mutual_information, check_bald_upper_bound, check_copy_gap, check_greedy_bound,
                                      check_log_k_bound, check_single_point, exhaustive_best_batch, greedy_batchbald_bruteforce,
                                      label_mutual_information_enumerated, nemhauser_bound, random_pool, redundant_pool,
                                      sampled_batch_mutual_information, submodularity_checks)
from batchbald_nb.consistent_mc_dropout import predict_log_probs_N_K_C
from batchbald_nb.entropy import bald_scores
from batchbald_nb.joint_entropy import batchbald_score_exact, joint_entropy_exact

torch.set_num_threads(1)


def sum_of_bald(log_probs_B_K_C):
    "BALD's batch score (eq. 3) used as a BatchBALD score: broken, it counts shared information once per point."
    return bald_scores(log_probs_B_K_C).sum().item()


def sampled_16():
    "A sampled estimate with m = 16 configurations: noisy, not an exact evaluation of the batch's mutual information."
    generator = torch.Generator().manual_seed(0)
    return lambda log_probs_B_K_C: sampled_batch_mutual_information(log_probs_B_K_C, 16, generator)


@pytest.fixture(scope="module")
def batches():
    "300 random batches, b in 1..5: every batch of two or more points has points 0 and 1 copies."
    result = []
    for seed in range(300):
        choose = random.Random(seed)
        b, K, C = choose.randint(1, 5), choose.randint(1, 10), choose.randint(2, 4)
        result.append(random_pool(b, K, C, seed))
    return result


@pytest.mark.parametrize("check, cases, broken", [
    (check_bald_upper_bound, "all", "sampled"),
    (check_single_point, "singles", "sampled"),
    (check_log_k_bound, "all", "sum_of_bald"),
    (check_copy_gap, "copies", "sum_of_bald"),
])
def test_batch_score_checks_pass_ours_and_fail_the_broken_variant(batches, check, cases, broken):
    chosen = {"all": batches, "singles": [lp for lp in batches if len(lp) == 1], "copies": [lp for lp in batches if len(lp) > 1]}[cases]
    ours = check(batch_mutual_information, chosen)
    assert ours.passed and ours.cases == len(chosen) > 40, ours
    assert check(batchbald_score_exact, chosen).passed  # the joint-entropy chapter's exact score passes too
    wrong = check(sum_of_bald if broken == "sum_of_bald" else sampled_16(), chosen)
    assert not wrong.passed and wrong.worst > 0.1, wrong  # caught, by far more than round-off


def test_copy_gap_is_strictly_positive_for_informative_copies(batches):
    "Appendix B.1 for a batch with two copies: BALD - BatchBALD >= I(y0; y1) > 0 whenever the copied point is informative."
    informative = [lp for lp in batches if len(lp) > 1 and bald_scores(lp[:1]).item() > 1e-12]
    assert len(informative) > 100
    for log_probs_B_K_C in informative:
        gap = sum_of_bald(log_probs_B_K_C) - batch_mutual_information(log_probs_B_K_C)
        information = label_mutual_information_enumerated(log_probs_B_K_C, [], 0, 1)
        assert information > 1e-12 and gap >= information - 1e-12


@pytest.fixture(scope="module")
def triples():
    result = []
    for seed in range(60):
        choose = random.Random(seed)
        K, C = choose.randint(2, 8), choose.randint(2, 3)
        pool_N_K_C = random_pool(7, K, C, seed)
        for trial in range(5):
            y1, y2 = (0, 1) if trial == 0 else choose.sample(range(7), 2)
            result.append((pool_N_K_C, choose.sample([i for i in range(7) if i not in (y1, y2)], choose.randint(0, 3)), y1, y2))
    return result


def test_submodularity_checks(triples):
    slack, identity = submodularity_checks(batch_mutual_information, triples)
    assert slack.passed and identity.passed
    assert not submodularity_checks(sampled_16(), triples)[0].passed  # a noisy estimate breaks diminishing returns
    broken_slack, broken_identity = submodularity_checks(sum_of_bald, triples)
    assert broken_slack.passed and not broken_identity.passed  # modular: slack 0, which the enumerated I(y1; y2 | A) refutes


def test_label_mutual_information_enumerated_matches_joint_entropies():
    "The separate code path agrees with the joint-entropy chapter's, and is 0 for a label independent of everything."
    pool_N_K_C = random_pool(6, 5, 3, seed=11)
    pool_N_K_C[5] = pool_N_K_C[5, :1]  # every sample agrees: independent of all other labels
    H = lambda points: joint_entropy_exact(pool_N_K_C[points]) if points else 0.0
    for given, y1, y2 in [([], 0, 1), ([2], 3, 4), ([1, 2], 0, 3), ([0, 2, 3], 1, 4)]:
        expected = H(given + [y1]) + H(given + [y2]) - H(given + [y1, y2]) - H(given)
        assert label_mutual_information_enumerated(pool_N_K_C, given, y1, y2) == pytest.approx(expected, abs=1e-10)
    assert abs(label_mutual_information_enumerated(pool_N_K_C, [1], 0, 5)) < 1e-12


def test_greedy_bound_needs_near_duplicates_to_tell_batchbald_from_bald():
    "Top-b BALD passes the greedy check on random pools (why they are not enough) and fails it on every redundant pool; greedy passes."
    pools = []
    for seed in range(12):
        b = 3 + seed % 3
        pool_N_K_C = redundant_pool(b, seed)
        pools.append((pool_N_K_C, b, exhaustive_best_batch(pool_N_K_C, b)[1]))
    greedy = lambda lp, b: greedy_batchbald_bruteforce(lp, b)[0]
    fast = lambda lp, b: get_batchbald_batch(lp, b, num_samples=10**6).indices
    top_b_bald = lambda lp, b: get_bald_batch(lp, b).indices
    assert check_greedy_bound(greedy, pools).passed and check_greedy_bound(fast, pools).passed
    bald = check_greedy_bound(top_b_bald, pools)
    assert bald.failures == len(pools)
    assert all(nemhauser_bound(b) - v < 1 - 1 / math.e for (_, b, _), v in zip(pools, bald.violations))  # below 1 - 1/e itself

    random_pools = []
    for seed in range(60):  # the first 60 of the chapter's 500 random pools
        choose = random.Random(seed)
        N = choose.randint(4, 9)
        b, K, C = choose.randint(2, min(4, N - 1)), choose.randint(2, 8), choose.randint(2, 3)
        pool_N_K_C = random_pool(N, K, C, seed)
        random_pools.append((pool_N_K_C, b, exhaustive_best_batch(pool_N_K_C, b)[1]))
    assert check_greedy_bound(greedy, random_pools).passed and check_greedy_bound(top_b_bald, random_pools).passed
    generator = torch.Generator().manual_seed(0)
    assert not check_greedy_bound(lambda lp, b: get_random_batch(lp, b, generator=generator).indices, random_pools).passed


def test_redundant_pool_rejects_batch_size_below_two():
    with pytest.raises(ValueError, match="batch_size"):
        redundant_pool(1, 0)


def _copy_difference(log_probs_N_K_C, copies, N):
    copies_R_N_K_C = log_probs_N_K_C.unflatten(0, (copies, N))
    return (copies_R_N_K_C - copies_R_N_K_C[:1]).abs().max().item()


def _copy_pair_error(log_probs_N_K_C, N):
    return max(abs(batchbald_score_exact(log_probs_N_K_C[[i, N + i]]) - batchbald_score_exact(log_probs_N_K_C[[i, i]])) for i in range(N))


def test_consistent_masks_pass_and_per_point_or_per_batch_masks_fail():
    "The dropout chapter's checks on a pool of exact copies: sample k must be one function for every pool point."
    torch.manual_seed(0)
    model = ToyBayesianMLP(num_classes=3, hidden=32, p=0.5)
    N, K = 20, 16
    pool_RN_2 = torch.randn(N, 2, generator=torch.Generator().manual_seed(1)).repeat(3, 1)  # copy r of point i is row r * N + i
    variants = {
        "consistent": predict_log_probs_N_K_C(model, pool_RN_2, K, batch_size=N, generator_seed=0, progress=False),
        "consistent, other batch size": predict_log_probs_N_K_C(model, pool_RN_2, K, batch_size=7, generator_seed=0, progress=False),
        "per-batch masks": predict_log_probs_N_K_C(model, pool_RN_2, K, batch_size=N, generator_seed=0, progress=False, consistent=False),
        "per-point masks": predict_log_probs_N_K_C(model, pool_RN_2, K, batch_size=1, generator_seed=0, progress=False, consistent=False),
    }
    for name, log_probs_N_K_C in variants.items():
        difference, pair_error = _copy_difference(log_probs_N_K_C, 3, N), _copy_pair_error(log_probs_N_K_C, N)
        bald_3_N = bald_scores(log_probs_N_K_C).reshape(3, N)
        if name.startswith("consistent"):
            assert difference <= 1e-6 and pair_error <= 1e-6 and torch.allclose(bald_3_N[0], bald_3_N[1], atol=1e-9, rtol=0), name
        else:
            assert difference > 1e-2 and pair_error > 1e-3 and not torch.allclose(bald_3_N[0], bald_3_N[1], atol=1e-3), name
        pair_N = torch.tensor([batchbald_score_exact(log_probs_N_K_C[[i, N + i]]) for i in range(N)], dtype=torch.float64)
        assert (pair_N <= bald_3_N[0] + bald_3_N[1] + 1e-9).all(), name  # sub-additivity holds for any pairing, consistent or not
