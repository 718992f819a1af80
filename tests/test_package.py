"""Tests of the installed package as a user meets it: the public API, its contract, and the README's promises.

The estimators' brute-force tests live in the notebooks (run by `nbdev_test`); these check what crosses the package boundary.
"""
import dataclasses
import inspect
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import batchbald_nb
from batchbald_nb.acquisition import ACQUISITION_FUNCTIONS, CandidateBatch, get_bald_batch, get_batchbald_batch
from batchbald_nb.joint_entropy import batchbald_score_exact

ROOT = Path(__file__).resolve().parent.parent


def _pool(N=12, K=6, C=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.log_softmax(2 * torch.randn(N, K, C, generator=g, dtype=torch.float64), dim=-1)


def test_version_matches_settings():
    settings = (ROOT / "settings.ini").read_text()
    assert f"version = {batchbald_nb.__version__}" in settings


def test_batchbald_redux_signatures():
    "Names and leading parameters match batchbald_redux, so users can switch with one import line."
    assert list(inspect.signature(get_batchbald_batch).parameters)[:5] == ["log_probs_N_K_C", "batch_size", "num_samples", "dtype", "device"]
    assert list(inspect.signature(get_bald_batch).parameters)[:4] == ["log_probs_N_K_C", "batch_size", "dtype", "device"]
    batch = get_batchbald_batch(_pool(), 3, num_samples=1000)
    assert isinstance(batch, CandidateBatch) and len(batch.indices) == len(batch.scores) == 3


@pytest.mark.parametrize("method", sorted(ACQUISITION_FUNCTIONS))
def test_every_method_one_calling_convention(method):
    fn = ACQUISITION_FUNCTIONS[method]
    kwargs = {"num_samples": 1000} if method == "batchbald" else {}
    batch = fn(_pool(), 4, generator=torch.Generator().manual_seed(0), **kwargs)
    assert len(batch.indices) == 4 == len(set(batch.indices))
    assert all(0 <= i < 12 for i in batch.indices)


@pytest.mark.parametrize("seed", range(5))
def test_batchbald_final_score_is_exact_batch_mi(seed):
    "In the exact regime the last score is the batch's mutual information, recomputed by enumeration (eq. 8, 12)."
    log_probs_N_K_C = _pool(seed=seed)
    batch = get_batchbald_batch(log_probs_N_K_C, 4, num_samples=10**6)
    assert batch.scores[-1] == pytest.approx(batchbald_score_exact(log_probs_N_K_C[batch.indices]), abs=1e-9)


@pytest.mark.parametrize("bad, match", [
    (torch.zeros(3, 4), "3-D"),
    (torch.full((3, 2, 2), float("nan")), "NaN"),
    (torch.full((3, 2, 2), 0.5), "probabilities"),
    (torch.zeros(3, 2, 2) - 2.0, "sum to one"),
])
def test_bad_input_names_the_argument(bad, match):
    with pytest.raises(ValueError, match=match) as info:
        get_batchbald_batch(bad, 2, num_samples=100)
    assert "log_probs_N_K_C" in str(info.value)


def _logits(N=40, K=8, C=10, seed=1):
    return 3 * torch.randn(N, K, C, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("make", [
    lambda: torch.log_softmax(_logits().half(), dim=-1),
    lambda: torch.log_softmax(_logits().bfloat16(), dim=-1),
    lambda: torch.log_softmax(_logits().half(), dim=-1).double(),  # a float16 model's output, cast up
    lambda: torch.log_softmax(_logits().bfloat16(), dim=-1).float(),
    lambda: torch.log_softmax(_logits(), dim=-1).half(),  # computed in float32, stored in float16
], ids=["float16", "bfloat16", "float16->float64", "bfloat16->float32", "float32->float16"])
def test_half_precision_log_probs_are_accepted(make):
    log_probs_N_K_C = make()
    assert torch.logsumexp(log_probs_N_K_C.double(), -1).abs().max() > 1e-4  # really off by more than the float32 tolerance
    batch = get_batchbald_batch(log_probs_N_K_C, 4, num_samples=1000)
    assert batch.indices == get_batchbald_batch(log_probs_N_K_C.double(), 4, num_samples=1000).indices
    assert len(get_bald_batch(log_probs_N_K_C, 4).indices) == 4


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("make, match", [
    (lambda x: x, "logits"),
    (lambda x: -x.abs() - 1.0, "sum to one"),  # all-negative logits: no positive value, rows far from normalised
    (lambda x: torch.softmax(x, -1), "probabilities"),
    (lambda x: x.masked_fill(x > 2, float("nan")), "NaN"),
])
def test_half_precision_bad_input_still_rejected(dtype, make, match):
    bad = make(_logits().to(dtype))
    with pytest.raises(ValueError, match=match):
        get_batchbald_batch(bad, 2, num_samples=100)
    with pytest.raises(ValueError, match=match):
        get_batchbald_batch(bad.double(), 2, num_samples=100)


@pytest.mark.parametrize("method", sorted(ACQUISITION_FUNCTIONS))
def test_input_that_requires_grad(method):
    "A model output computed outside torch.no_grad() is scored by its values: same picks as the detached tensor, no graph kept."
    logits = _logits(N=30).requires_grad_()
    log_probs_N_K_C = torch.log_softmax(logits, dim=-1)
    kwargs = {"num_samples": 1000} if method == "batchbald" else {}
    fn = ACQUISITION_FUNCTIONS[method]
    batch = fn(log_probs_N_K_C, 5, generator=torch.Generator().manual_seed(0), **kwargs)
    assert batch.indices == fn(log_probs_N_K_C.detach(), 5, generator=torch.Generator().manual_seed(0), **kwargs).indices
    assert all(type(s) is float for s in batch.scores) and logits.grad is None


@pytest.mark.parametrize("count", [np.int64(3), np.int32(3), torch.tensor(3), torch.tensor(3.0), np.array(3), 3.0, np.float64(3.0)],
                         ids=lambda c: f"{type(c).__name__}")
def test_integral_counts_of_any_numeric_type(count):
    pool = _pool()
    expected = get_batchbald_batch(pool, 3, num_samples=1000)
    assert get_batchbald_batch(pool, count, num_samples=1000).indices == expected.indices
    assert get_bald_batch(pool, count).indices == get_bald_batch(pool, 3).indices
    assert get_batchbald_batch(pool, 3, num_samples=1e3).indices == expected.indices  # redux-style m = 1e3
    assert get_batchbald_batch(pool, 3, num_samples=count * 10 ** 6).indices == expected.indices  # exact either way


@pytest.mark.parametrize("name, kwargs, error", [
    ("batch_size", {"batch_size": 2.5}, ValueError), ("batch_size", {"batch_size": -1}, ValueError),
    ("batch_size", {"batch_size": True}, TypeError), ("batch_size", {"batch_size": np.bool_(True)}, TypeError),
    ("batch_size", {"batch_size": torch.tensor([2, 3])}, TypeError), ("batch_size", {"batch_size": "3"}, TypeError),
    ("batch_size", {"batch_size": float("nan")}, ValueError), ("batch_size", {"batch_size": torch.tensor(True)}, TypeError),
    ("num_samples", {"num_samples": 100.5}, ValueError), ("num_samples", {"num_samples": 0}, ValueError),
    ("num_samples", {"num_samples": False}, TypeError), ("num_samples", {"num_samples": float("inf")}, ValueError),
])
def test_bad_counts_name_the_argument(name, kwargs, error):
    arguments = {"batch_size": 2, "num_samples": 100, **kwargs}
    with pytest.raises(error, match=name):
        get_batchbald_batch(_pool(), **arguments)


def test_candidate_batch_has_redux_field_order():
    "batchbald_redux's CandidateBatch is (scores, indices): code that builds or reads one positionally must mean the same with ours."
    assert [f.name for f in dataclasses.fields(CandidateBatch)][:2] == ["scores", "indices"]
    assert CandidateBatch([0.7, 0.2], [5, 1]).indices == [5, 1]
    scores, indices = dataclasses.astuple(get_bald_batch(_pool(), 2))[:2]
    assert scores == sorted(scores, reverse=True) and all(isinstance(i, int) for i in indices)


def test_too_few_samples_warn_naming_num_samples():
    "Sampled with m < 50 draws: a UserWarning naming num_samples (chapter 3 measures the rule); exact or enough draws: no warning."
    pool = _pool(N=30, K=20, C=4)
    with pytest.warns(UserWarning, match="num_samples=1 "):
        batch = get_batchbald_batch(pool, 5, num_samples=1)
    assert batch.scores[-1] >= 0  # the m = 1 run used to report a negative batch information
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        get_batchbald_batch(pool, 5, num_samples=4**4)  # exact throughout
        get_batchbald_batch(pool, 6, num_samples=1000, generator=torch.Generator().manual_seed(0))  # sampled at step 6: 4**5 > 1000


def test_negative_batch_size():
    with pytest.raises(ValueError, match="batch_size"):
        get_bald_batch(_pool(), -1)


def test_readme_is_generated_and_names_the_ci_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make main" in readme
    assert re.search(r"^\s*make test\s*$", (ROOT / ".ci" / "run").read_text(), flags=re.M)
