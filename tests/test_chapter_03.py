"""Chapter 03 (greedy BatchBALD, algorithm 1): the literal algorithm 1 of the chapter, the fast `get_batchbald_batch` against it, and
every claim the chapter checks, each passing on ours and FAILING on the deliberately broken variant the chapter shows beside it (a
check that cannot fail is a defect). Smaller versions of the chapter's runs, fixed seeds.

The literal loop and the checks' definitions are the chapter's own code: the cells that define them (definitions only, no runs) are
read from nbs/03_acquisition.ipynb by cell id and executed here, so the test checks what the reader reads."""
import json
import math
from pathlib import Path

import pytest
import torch

from batchbald_nb.acquisition import get_bald_batch, get_batchbald_batch, rescoring_tolerance
from batchbald_nb.brute_force import batch_mutual_information, exhaustive_best_batch, greedy_batchbald_bruteforce, nemhauser_bound, random_pool
from batchbald_nb.entropy import bald_scores

torch.set_num_threads(1)

NOTEBOOK = Path(__file__).resolve().parent.parent / "nbs" / "03_acquisition.ipynb"
LITERAL_CELL, CHECKS_CELL = "ca530817", "02258462"  # greedy_batchbald_literal and a_batchbald; the checks and broken variants


@pytest.fixture(scope="module")
def chapter() -> dict:
    "The namespace of the chapter's definition cells."
    cells = {cell["id"]: "".join(cell["source"]) for cell in json.loads(NOTEBOOK.read_text())["cells"]}
    namespace = {}
    for cell_id in (LITERAL_CELL, CHECKS_CELL):
        assert "def " in cells[cell_id], f"cell {cell_id} of {NOTEBOOK.name} no longer defines what this test runs"
        exec(compile(cells[cell_id], f"{NOTEBOOK.name}#{cell_id}", "exec"), namespace)
    namespace["random_pool"] = random_pool  # the checks cell uses the literal-check cell's import
    namespace["exhaustive_best_batch"] = exhaustive_best_batch
    return namespace


def figure_1_pool() -> torch.Tensor:
    "The chapter's figure-1 pool: three informative points as exact twins (0/1, 2/3, 4/5), five mild points (6..10)."
    generator = torch.Generator().manual_seed(0)
    informative_3_K_C = torch.log_softmax(4 * torch.randn(3, 20, 4, generator=generator), dim=-1)
    mild_5_K_C = torch.log_softmax(torch.randn(5, 20, 4, generator=generator), dim=-1)
    return torch.cat([informative_3_K_C.repeat_interleave(2, dim=0), mild_5_K_C])


SMALL_POOLS = [(8, 6, 3, 3), (9, 5, 2, 4), (7, 8, 4, 3), (10, 4, 3, 4)]


@pytest.mark.parametrize("seed, shape", list(enumerate(SMALL_POOLS)))
def test_literal_loop_is_brute_force_greedy_and_the_fast_code_matches_it(chapter, seed, shape):
    N, K, C, b = shape
    log_probs_N_K_C = random_pool(N, K, C, seed)
    picks, scores = chapter["greedy_batchbald_literal"](log_probs_N_K_C, b)
    reference_picks, reference_scores = greedy_batchbald_bruteforce(log_probs_N_K_C, b)
    # 1e-12: two float64 code paths summing at most 3**4 terms of size <= 1/e (the theory chapter's round-off estimate)
    assert picks == reference_picks and max(abs(s - r) for s, r in zip(scores, reference_scores)) < 1e-12
    assert scores[-1] >= nemhauser_bound(b) * exhaustive_best_batch(log_probs_N_K_C, b)[1]
    for options in (dict(lazy=False, dtype=torch.float64), dict(dtype=torch.float64), dict()):  # rewrites 1; 1+2; 1+2+3+5
        batch = get_batchbald_batch(log_probs_N_K_C, b, num_samples=C ** (b - 1), **options)
        assert batch.indices == picks, options
        # 1e-9: the float32 path's picks and scores are re-decided in float64, so only float64 round-off (~1e-15) separates them
        assert max(abs(s - r) for s, r in zip(batch.scores, scores)) < 1e-9


def test_saturated_pools_agree_until_saturation(chapter):
    "Rewrite 5 (saturation stop): picks equal to the literal loop's while they matter, scores within the float32 tolerance after."
    for K, seed in [(2, 0), (3, 5)]:
        log_probs_N_K_C = torch.log_softmax(3 * random_pool(10, K, 3, seed, zeros=False), dim=-1)
        picks, scores = chapter["greedy_batchbald_literal"](log_probs_N_K_C, 5)
        batch = get_batchbald_batch(log_probs_N_K_C, 5, num_samples=3**4)
        tolerance = rescoring_tolerance(torch.float32, math.log(3) * 5)  # at least any step's float32 tolerance here
        assert 0 in batch.evaluations  # it did saturate
        for n in range(5):
            decided = math.log(K) - ([0.0] + scores)[n] > tolerance
            assert batch.indices[n] == picks[n] or not decided
            assert abs(batch.scores[n] - scores[n]) <= (1e-9 if decided else tolerance)


@pytest.fixture(scope="module")
def pools(chapter):
    "40 random pools and 9 redundant pools (b = 3, 4, 5): smaller than the chapter's 120 and 15, same generator."
    return chapter["check_pools"](40, 9)


def check_rows(chapter, pools, fast: bool):
    if fast:
        select = lambda lp, b: get_batchbald_batch(lp, b, num_samples=10**6).indices  # every step enumerated: C**(b-1) <= 10**6
        score = lambda lp: get_batchbald_batch(lp, len(lp), num_samples=10**6).scores[-1]
    else:
        select, score = (lambda lp, b: chapter["greedy_batchbald_literal"](lp, b)[0]), chapter["a_batchbald"]
    return chapter["run_checks"](*pools, select, score)


@pytest.mark.parametrize("fast", [False, True], ids=["literal", "get_batchbald_batch"])
@pytest.mark.parametrize("claim", range(4), ids=["greedy_bound_random_pools", "greedy_bound_near_duplicates", "bald_upper_bound", "log_k_bound"])
def test_each_check_passes_ours_and_fails_its_broken_variant(chapter, pools, fast, claim):
    ours, broken_name, broken = check_rows(chapter, pools, fast)[claim]
    assert ours.passed and ours.cases >= 9, ours
    # the broken variant is caught: some cases fail, by far more than the 1e-12 round-off tolerance of the checks
    assert not broken.passed and broken.failures > 0 and broken.worst > 0.05, (broken_name, broken)
    assert broken.cases == ours.cases


def test_print_checks_refuses_a_check_that_passes_the_broken_variant(chapter, pools):
    "The chapter's table asserts both directions: a 'broken' variant that passes (here: ours in its place) makes it fail."
    rows = check_rows(chapter, pools, fast=False)
    with pytest.raises(AssertionError):
        chapter["print_checks"]([(ours, "ours again", ours) for ours, _, _ in rows], chapter["POOL_NAMES"])


def test_figure_1_twin_is_the_right_fourth_pick(chapter):
    "The chapter's figure 1: one point of each pair, then point 4's twin, because its gain beats every mild point's."
    log_probs_N_K_C = figure_1_pool()
    picks, scores = chapter["greedy_batchbald_literal"](log_probs_N_K_C, 4)
    assert picks == [2, 4, 0, 5] == get_batchbald_batch(log_probs_N_K_C, 4, num_samples=10_000).indices
    gains = {x: chapter["a_batchbald"](log_probs_N_K_C[picks[:3] + [x]]) - scores[2] for x in range(11) if x not in picks[:3]}
    assert max(gains, key=gains.get) == 5
    assert min(gains[x] for x in (1, 3, 5)) > max(gains[x] for x in range(6, 11))
    bald_picks = get_bald_batch(log_probs_N_K_C, 4).indices
    assert bald_picks == [2, 3, 4, 5] and batch_mutual_information(log_probs_N_K_C[bald_picks]) < scores[-1]
    # the broken variant of "BatchBALD's fourth pick maximises the batch MI": BALD's fourth pick (a twin of a point it already has)
    assert batch_mutual_information(log_probs_N_K_C[picks[:3] + [3]]) < scores[-1]


def test_lazy_greedy_saves_when_few_stand_out_and_little_when_many_are_close():
    "The numbers behind the chapter's 'What lazy greedy saves': the share of plain greedy's gains computed after step 1."
    generator = torch.Generator().manual_seed(1)
    informative = torch.log_softmax(3 * torch.randn(20, 20, 4, generator=generator, dtype=torch.float64), dim=-1)
    confident = torch.log_softmax(torch.tensor([6.0, 0, 0, 0], dtype=torch.float64)
                                  + 0.5 * torch.randn(380, 20, 4, generator=generator, dtype=torch.float64), dim=-1)
    share, grouped_share = {}, {}
    for name, pool in {"few": torch.cat([informative, confident]), "diverse": random_pool(400, 20, 4, seed=10)}.items():
        lazy, plain = get_batchbald_batch(pool, 6, 4**5, grouped_bounds=False), get_batchbald_batch(pool, 6, 4**5, lazy=False)
        grouped = get_batchbald_batch(pool, 6, 4**5)  # rewrite 6, the default
        assert lazy.indices == plain.indices == grouped.indices  # exact regime: lazy greedy changes no pick, with either bound
        share[name] = sum(lazy.evaluations[1:]) / sum(plain.evaluations[1:])
        grouped_share[name] = sum(grouped.evaluations[1:]) / sum(plain.evaluations[1:])
    assert share["few"] < 0.25 < 0.5 < share["diverse"]
    assert grouped_share["diverse"] < share["diverse"]  # the grouped bounds prune where the stale ones cannot
    saturating = get_batchbald_batch(random_pool(400, 5, 4, seed=10), 6, 4**5, grouped_bounds=False).evaluations
    assert saturating[-1] == 0 and saturating[saturating.index(0) - 1] > 0.9 * (400 - saturating.index(0) + 1)
