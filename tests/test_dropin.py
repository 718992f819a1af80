"""batchbald_nb as a drop-in for batchbald_redux 2.0.5: a script written the way a redux user writes it runs with only its import lines
swapped, and gets valid picks.

The script below is redux's API as its README and source use it: `get_batchbald_batch(log_probs_N_K_C, batch_size, num_samples,
dtype=..., device=...)`, `get_bald_batch(log_probs_N_K_C, batch_size)`, results read as `.indices` / `.scores` and built positionally as
`CandidateBatch(scores, indices)`. It is run against batchbald_nb always, and against batchbald_redux too when that is installed
(`pip install --no-deps batchbald_redux==2.0.5 toma==1.1.0`; not a dependency), where both must pick the same points in the exact regime.
"""
import math
import warnings

import numpy as np
import pytest
import torch

REDUX_IMPORTS = """
from batchbald_redux.batchbald import CandidateBatch, get_bald_batch, get_batchbald_batch
"""
OUR_IMPORTS = """
from batchbald_nb.acquisition import CandidateBatch, get_bald_batch, get_batchbald_batch
"""

REDUX_STYLE_SCRIPT = """
def acquire_with(log_probs_N_K_C, batch_size, num_samples):
    # BatchBALD, as in redux's README, with the counts a training loop happens to hold (numpy ints, floats like 1e3)
    candidate_batch = get_batchbald_batch(log_probs_N_K_C, batch_size, num_samples, dtype=torch.double)
    bald_batch = get_bald_batch(log_probs_N_K_C, batch_size)
    # results read by field, and rebuilt positionally: redux's CandidateBatch is (scores, indices)
    merged = CandidateBatch(candidate_batch.scores + bald_batch.scores, candidate_batch.indices + bald_batch.indices)
    return candidate_batch, bald_batch, merged
"""


def run_script(imports: str, *args):
    namespace = {"torch": torch}
    exec(imports + REDUX_STYLE_SCRIPT, namespace)
    return namespace["acquire_with"](*args)


def model_outputs(kind: str, N: int = 60, K: int = 10, C: int = 5, seed: int = 0) -> torch.Tensor:
    "What a model hands the acquisition function: log_softmax of its logits, computed in various ways."
    logits_N_K_C = 2 * torch.randn(N, K, C, generator=torch.Generator().manual_seed(seed))
    if kind == "float32":
        return torch.log_softmax(logits_N_K_C, dim=-1)
    if kind == "float64":
        return torch.log_softmax(logits_N_K_C.double(), dim=-1)
    if kind == "float16":
        return torch.log_softmax(logits_N_K_C.half(), dim=-1)
    if kind == "bfloat16":
        return torch.log_softmax(logits_N_K_C.bfloat16(), dim=-1)
    if kind == "float16->float64":  # a half-precision model's output, cast up by the caller
        return torch.log_softmax(logits_N_K_C.half(), dim=-1).double()
    if kind == "requires_grad":  # computed outside torch.no_grad()
        return torch.log_softmax(torch.nn.Linear(C, C).double()(logits_N_K_C.double()), dim=-1)
    raise ValueError(kind)


def assert_valid(batch, bald_batch, merged, N: int, batch_size: int):
    assert len(batch.indices) == len(batch.scores) == batch_size == len(set(batch.indices))
    assert all(isinstance(i, int) and 0 <= i < N for i in batch.indices)
    assert all(isinstance(s, float) and math.isfinite(s) for s in batch.scores)
    assert batch.scores == sorted(batch.scores)  # a batch's information can only grow with the batch
    assert batch.indices[0] == bald_batch.indices[0]  # the first BatchBALD pick is the top BALD point
    assert bald_batch.scores == sorted(bald_batch.scores, reverse=True)
    assert merged.indices == batch.indices + bald_batch.indices and merged.scores == batch.scores + bald_batch.scores


KINDS = ["float32", "float64", "float16", "bfloat16", "float16->float64", "requires_grad"]
COUNTS = [(4, 1000), (np.int64(4), np.int64(1000)), (4, 1e3), (torch.tensor(4), 1000.0), (np.int32(4), np.float64(1e3))]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("batch_size, num_samples", COUNTS, ids=lambda c: type(c).__name__)
def test_redux_style_script_runs_on_batchbald_nb(kind, batch_size, num_samples):
    log_probs_N_K_C = model_outputs(kind)
    batch, bald_batch, merged = run_script(OUR_IMPORTS, log_probs_N_K_C, batch_size, num_samples)
    assert_valid(batch, bald_batch, merged, len(log_probs_N_K_C), 4)
    # the same picks as from the plain float64 values: the input's type and the counts' types change nothing
    reference, _, _ = run_script(OUR_IMPORTS, log_probs_N_K_C.detach().double(), 4, 1000)
    assert batch.indices == reference.indices


def test_sampled_regime_gives_valid_picks_and_a_trusted_score():
    "Past the exact regime (step 6: 5**5 > m = 2000): valid picks, scores within the bound log K, no warning."
    log_probs_N_K_C = model_outputs("float32", N=80)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        batch, bald_batch, merged = run_script(OUR_IMPORTS, log_probs_N_K_C, 6, 2000)
    assert_valid(batch, bald_batch, merged, 80, 6)
    assert all(s <= math.log(10) + 3 * e + 1e-9 for s, e in zip(batch.scores, batch.standard_errors))


@pytest.mark.parametrize("kind", ["float32", "float64"])
def test_same_picks_as_batchbald_redux(kind):
    "Where redux is installed: the same script, redux's imports, the same picks in the exact regime (4 picks, 5**3 <= m)."
    pytest.importorskip("toma")
    pytest.importorskip("batchbald_redux")
    log_probs_N_K_C = model_outputs(kind).double()
    theirs, their_bald, _ = run_script(REDUX_IMPORTS, log_probs_N_K_C, 4, 1000)
    ours, our_bald, _ = run_script(OUR_IMPORTS, log_probs_N_K_C, 4, 1000)
    assert ours.indices == theirs.indices and our_bald.indices == their_bald.indices
    assert ours.scores == pytest.approx(theirs.scores, abs=1e-6)
