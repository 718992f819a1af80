"""Issue 15, section 2: why our greedy BatchBALD batches held less mutual information than batchbald_redux's at K = 100.

Once the configured points pin the parameters down (y_A determines w), I(y_x; w | y_A) = 0: every candidate's true gain is 0. With
sampled configurations (eq. 36) the estimated joint entropy then reduces to H^(y_A) + (1/m) sum_s H(y_x | w_{j_s}), j_s the parameter
sample that configuration s was drawn from, while the gain subtracts the exact (1/K) sum_j H(y_x | w_j). So the estimated gain is
exactly sum_j (n_j / m - 1/K) H(y_x | w_j), with n_j the draws from w_j: zero when every w_j is drawn m / K times (redux's stratified
draw), noise of the size of the late greedy gains when j is drawn at random (multinomial n_j, sd sqrt(m / K)); and since our draws
are kept and extended across steps, the same noise at every later step. benchmarks/mi_deficit.py measures what it costs.
"""
import pytest
import torch

from batchbald_nb.entropy import expected_conditional_entropy
from batchbald_nb.joint_entropy import Configurations, add_point, joint_entropies_with_candidates

K, C, M = 4, 4, 40  # 1, then 4 and 16 configurations enumerated, 64 > m: the third point's configurations are sampled


def pinned_down_gains(seed: int):
    """The sampled gains H^(y_A, y_x) - H^(y_A) - E[H(y_x | w)] of 50 random candidates x after three configured points, the first of
    which names w outright (p(y = j | w_j) = 1), so every true gain is 0; with the configurations and E[H(y_x | w_j)] per j."""
    generator = torch.Generator().manual_seed(seed)
    points_3_K_C = torch.log_softmax(torch.randn(3, K, C, generator=generator, dtype=torch.float64), dim=-1)
    points_3_K_C[0] = torch.eye(K, C, dtype=torch.float64).log()  # y_1 = j under w_j: y_1 determines w
    candidates_N_K_C = torch.log_softmax(2 * torch.randn(50, K, C, generator=generator, dtype=torch.float64), dim=-1)
    configurations = Configurations.empty(K)
    for log_probs_K_C in points_3_K_C:
        configurations = add_point(configurations, log_probs_K_C, M, generator)
    assert configurations.sampled and configurations.num_configurations == M
    joint_N = joint_entropies_with_candidates(configurations, candidates_N_K_C.exp().permute(1, 0, 2).contiguous())
    gains_N = joint_N - configurations.entropy() - expected_conditional_entropy(candidates_N_K_C)
    conditional_entropies_N_K = -(candidates_N_K_C.exp() * candidates_N_K_C).sum(dim=2)
    return gains_N, configurations, conditional_entropies_N_K


@pytest.mark.parametrize("seed", range(5))
def test_sampled_gain_is_the_draws_imbalance(seed):
    """The mechanism, as it stands: each estimated gain equals sum_j (n_j / m - 1/K) H(y_x | w_j) to float64 round-off (1e-12 nats on
    gains of about 1e-2), and is not 0 unless the draws happen to be balanced."""
    gains_N, configurations, conditional_entropies_N_K = pinned_down_gains(seed)
    draws_K = torch.bincount(configurations.sample_index_M, minlength=K).double()
    imbalance_N = conditional_entropies_N_K @ (draws_K / M - 1 / K)
    torch.testing.assert_close(gains_N, imbalance_N, rtol=0, atol=1e-12)
    assert (draws_K == M // K).all() or gains_N.abs().max() > 1e-4


@pytest.mark.parametrize("seed", range(5))
def test_no_gain_once_the_batch_pins_w_down(seed):
    "Every true gain is 0 here, and a draw that weighs each w_j 1/K, as the exact conditional entropies do, estimates 0 (1e-12)."
    gains_N, _, _ = pinned_down_gains(seed)
    assert gains_N.abs().max() < 1e-12
