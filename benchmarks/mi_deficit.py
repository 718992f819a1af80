"""Why our greedy BatchBALD batches hold less mutual information than batchbald_redux's at K = 100 (issue 15, section 2).

    .venv/bin/python benchmarks/mi_deficit.py             # about 7 minutes on one idle core (17 at load 10); writes results/mi_deficit.json
    .venv/bin/python benchmarks/mi_deficit.py --full      # more pools, the slower variants (about an hour at load 10)

Every variant runs `get_batchbald_batch` of the package on the same pools; what differs is swapped in around it (nothing in the
package is edited): how the label configurations are sampled once they no longer fit (`add_point`), the compute dtype, lazy or
plain greedy, and whether repeated sampled rows are merged. Each batch is scored by its true mutual information, a high-m
independent estimate (common.batch_mutual_information_sampled), and by the greedy's own final score (its in-sample estimate).

The variants:
  ours               the package as it is: configurations sampled once (j uniform at random), then extended a label per step
  persistent_strat   as ours, but that first draw stratified over j (m // K draws from every w_j): the recommended fix, in
                     distribution (apply it to the package and run `--variants ours` to measure the fix itself)
  fresh_strat        every sampled step draws m // K new configurations per w_j: redux's scheme       (candidate e)
  fresh              every sampled step draws m new configurations of all chosen points, j at random  (candidate a)
  ours_plain         lazy=False                                   (candidate c: lazy greedy's stale bounds; --full)
  ours_float64       dtype=float64: no float32 screening, no pruning (candidate b; --full)
  ours_no_merge      Configurations.weights without torch.unique  (candidate d; --full)
  redux_rng          fresh_strat with redux's own sampling code and torch's global generator: redux's picks (--full)
  ours_m100k         ours with m = 100,000 (--full)

Then, at every sampled step of the package's run on two pools, each candidate's gain is split into the part the draws' imbalance
over the parameter samples adds, sum_j (n_j / m - 1/K) H(y_x | w_j) (tests/test_mi_deficit.py), and a gain on an independent
stratified draw.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import RESULTS, batch_mutual_information_sampled, benchmark_pool, environment, write_json  # noqa: E402

import batchbald_nb.acquisition as acquisition  # noqa: E402
from batchbald_nb.joint_entropy import Configurations, add_point, sample_configurations  # noqa: E402

K, C, B, M = 100, 10, 10, 10_000
MI_DRAWS = 200_000  # per batch (100,000 without --full): standard error 5e-5 to 1e-4 nats, against a deficit of about 2e-3


def correlated_triples_pool(N: int, K: int, C: int, seed: int) -> torch.Tensor:
    """log p(y | x_n, w_k) of N points in triples: per triple a shared logit mean per class, N(0, 4); each of its 3 points adds
    N(0, 1) noise per sample and class."""
    generator = torch.Generator().manual_seed(seed)
    mean_T_1_C = 2 * torch.randn(math.ceil(N / 3), 1, C, generator=generator, dtype=torch.float64)
    logits_N_K_C = mean_T_1_C.repeat_interleave(3, dim=0)[:N] + torch.randn(N, K, C, generator=generator, dtype=torch.float64)
    return torch.log_softmax(logits_N_K_C, dim=-1)


def draw_configurations(log_probs_n_K_C: torch.Tensor, m: int, generator: torch.Generator, stratified: bool) -> Configurations:
    """m fresh ancestral draws of the labels of n points: j uniform (or m // K draws per j, as redux), then y_i ~ p(y_i | w_j)."""
    n, K, C = log_probs_n_K_C.shape
    if stratified:
        sample_index_M = torch.arange(K).repeat_interleave(m // K)
    else:
        sample_index_M = torch.randint(K, (m,), generator=generator)
    log_joint_probs_M_K = torch.zeros(len(sample_index_M), K, dtype=torch.float64)
    for log_probs_K_C in log_probs_n_K_C.double():
        labels_M = torch.multinomial(log_probs_K_C.exp()[sample_index_M], 1, generator=generator).squeeze(1)
        log_joint_probs_M_K += log_probs_K_C.T[labels_M]
    return Configurations(log_joint_probs_M_K, sampled=True, sample_index_M=sample_index_M)


def redux_draw(log_probs_n_K_C: torch.Tensor, m: int) -> Configurations:
    "redux 2.0.5's own draw (SampledJointEntropy.sample, torch's global generator), as our log-space Configurations."
    from batchbald_redux.joint_entropy import SampledJointEntropy
    n, K, C = log_probs_n_K_C.shape
    probs_M_K = SampledJointEntropy.sample(log_probs_n_K_C.double().exp(), m).sampled_joint_probs_M_K
    return Configurations(probs_M_K.log(), sampled=True, sample_index_M=torch.arange(K).repeat_interleave(m // K))


@contextlib.contextmanager
def sampling_scheme(scheme: str, selection_generator: torch.Generator):
    """Swap acquisition.add_point, for the configurations that choose the points (those drawn with `selection_generator`), for one
    that samples by `scheme` once they no longer fit: 'fresh', 'fresh_strat', 'redux_rng' (new draws of every chosen point at every
    sampled step) or 'persistent_strat' (first draw stratified, then extended a label per step by the package's own
    sample_configurations). Any other configurations (the package's independent scoring draws) are left to the package."""

    def patched(configurations, log_probs_K_C, num_samples, generator=None):
        if generator is not selection_generator:
            return add_point(configurations, log_probs_K_C, num_samples, generator)
        points = getattr(configurations, "points", []) + [log_probs_K_C]  # the chosen points so far, carried on the configurations
        if not configurations.sampled and configurations.num_configurations * log_probs_K_C.shape[1] <= num_samples:
            result = add_point(configurations, log_probs_K_C, num_samples, generator)
        elif scheme in ("fresh", "fresh_strat") or (scheme == "persistent_strat" and not configurations.sampled):
            result = draw_configurations(torch.stack(points), num_samples, generator, stratified=scheme != "fresh")
        elif scheme == "persistent_strat":
            result = sample_configurations(configurations, log_probs_K_C, num_samples, generator)
        elif scheme == "redux_rng":
            result = redux_draw(torch.stack(points), num_samples)
        else:
            raise ValueError(scheme)
        result.points = points
        return result

    original = acquisition.add_point
    acquisition.add_point = patched
    try:
        yield
    finally:
        acquisition.add_point = original


@contextlib.contextmanager
def no_merge():
    "Configurations.weights without merging repeated sampled rows (each draw its own row, weight 1 / (m p))."
    original = Configurations.weights

    def weights(self):
        if not self.sampled:
            return original(self)
        log_rows_M_K = self.log_joint_probs_M_K
        log_alpha_M = log_rows_M_K.max(dim=1).values
        scaled_M_K = (log_rows_M_K - log_alpha_M[:, None]).exp()
        m = self.num_configurations
        return scaled_M_K, 1.0 / (m * scaled_M_K.mean(dim=1)), log_alpha_M / m

    Configurations.weights = weights
    try:
        yield
    finally:
        Configurations.weights = original


def run_variant(variant: str, log_probs_N_K_C: torch.Tensor, seed: int, m: int = M) -> dict:
    "One greedy batch of `variant` with configuration-sampling seed `seed`, scored by its true mutual information."
    options = {"generator": torch.Generator().manual_seed(seed)}
    context = contextlib.nullcontext()
    if variant == "ours_plain":
        options["lazy"] = False
    elif variant == "ours_float64":
        options["dtype"] = torch.float64
    elif variant == "ours_no_merge":
        context = no_merge()
    elif variant == "ours_m100k":
        m = 100_000
    elif variant in ("fresh", "fresh_strat", "redux_rng", "persistent_strat"):
        context = sampling_scheme(variant, options["generator"])
        torch.manual_seed(seed)  # redux_rng: redux samples with torch's global generator, seeded as run_benchmarks.py does
    elif variant != "ours":
        raise ValueError(variant)
    start = time.perf_counter()
    with context:
        batch = acquisition.get_batchbald_batch(log_probs_N_K_C, B, m, **options)
    seconds = time.perf_counter() - start
    mi, se = batch_mutual_information_sampled(log_probs_N_K_C[batch.indices], num_draws=MI_DRAWS)
    selection_scores = getattr(batch, "selection_scores", None) or batch.scores  # the estimate on the draws that chose the points
    return {"indices": batch.indices, "mi": mi, "mi_se": se, "score": batch.scores[-1], "selection_score": selection_scores[-1],
            "seconds": seconds}


def gain_decomposition(log_probs_N_K_C: torch.Tensor, seed: int, reference_m: int = M) -> list[dict]:
    """At every sampled step of the package's greedy run: each candidate's estimated gain against sum_j (n_j / m - 1/K) H(y_x | w_j),
    the term the draws' imbalance adds (test_mi_deficit.py), and against the gain on an independent stratified draw (reference)."""
    from batchbald_nb.entropy import expected_conditional_entropy
    from batchbald_nb.joint_entropy import JointEntropyKernel
    used, selection_generator = [Configurations.empty(K)], torch.Generator().manual_seed(seed)

    def recording(configurations, log_probs_K_C, num_samples, generator=None):  # the configurations that choose the points
        result = add_point(configurations, log_probs_K_C, num_samples, generator)
        if generator is selection_generator:
            used.append(result)
        return result

    original, acquisition.add_point = acquisition.add_point, recording
    try:
        batch = acquisition.get_batchbald_batch(log_probs_N_K_C, B, M, generator=selection_generator)
    finally:
        acquisition.add_point = original
    probs_N_C_K = log_probs_N_K_C.exp().transpose(1, 2).contiguous()
    conditional_N = expected_conditional_entropy(log_probs_N_K_C)
    conditional_N_K = -(log_probs_N_K_C.exp() * log_probs_N_K_C).sum(dim=2)
    generator = torch.Generator().manual_seed(10_000 + seed)
    steps = []
    for step, configurations in enumerate(used[:B]):
        if not configurations.sampled:
            continue
        chosen = batch.indices[:step]
        candidates_N = torch.ones(len(log_probs_N_K_C), dtype=torch.bool)
        candidates_N[chosen] = False
        gains_N = JointEntropyKernel.of(configurations)(probs_N_C_K) - configurations.entropy() - conditional_N
        draws_K = torch.bincount(configurations.sample_index_M, minlength=K).double()
        imbalance_N = conditional_N_K @ (draws_K / configurations.num_configurations - 1 / K)
        reference = draw_configurations(log_probs_N_K_C[chosen], reference_m, generator, stratified=True)
        reference_N = JointEntropyKernel.of(reference)(probs_N_C_K) - reference.entropy() - conditional_N
        g, i, r = gains_N[candidates_N], imbalance_N[candidates_N], reference_N[candidates_N]
        top_n = torch.topk(r, 50).indices  # the contenders by the reference
        pick = batch.indices[step]
        steps.append({"step": step + 1, "draws_per_sample_min_max": [int(draws_K.min()), int(draws_K.max())],
                      "corr_gain_minus_reference_vs_imbalance": torch.corrcoef(torch.stack([g - r, i]))[0, 1].item(),
                      "sd_imbalance_top50": i[top_n].std().item(), "sd_reference_gain_top50": r[top_n].std().item(),
                      "reference_gain_best": r.max().item(), "reference_gain_of_pick": reference_N[pick].item(),
                      "imbalance_of_pick": imbalance_N[pick].item(), "imbalance_median": i.median().item(),
                      "reference_rank_of_pick": int((r > reference_N[pick]).sum()) + 1})
    return steps


def mean_se(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) / math.sqrt(len(values))


def summarise(rows: list[dict], variants: list[str]) -> dict:
    "Per variant: true MI, its difference to ours and to fresh_strat (paired over pool and seed), and the in-sample optimism."
    summary = {}
    for v in variants:
        paired = [r for r in rows if v in r["runs"]]
        if len(paired) < 2:
            continue
        summary[v] = {"runs": len(paired), "mi": mean_se([r["runs"][v]["mi"] for r in paired]),
                      "log_K_minus_mi": mean_se([math.log(K) - r["runs"][v]["mi"] for r in paired]),
                      "optimism": mean_se([r["runs"][v]["selection_score"] - r["runs"][v]["mi"] for r in paired]),
                      "seconds": statistics.median(r["runs"][v]["seconds"] for r in paired)}
        for reference in ("ours", "fresh_strat"):
            if reference != v and all(reference in r["runs"] for r in paired):
                summary[v][f"minus_{reference}"] = mean_se([r["runs"][v]["mi"] - r["runs"][reference]["mi"] for r in paired])
        if v != "ours" and all("ours" in r["runs"] for r in paired):
            summary[v]["identical_to_ours"] = sum(r["runs"][v]["indices"] == r["runs"]["ours"]["indices"] for r in paired) / len(paired)
    return summary


def main(argv=None) -> None:
    global MI_DRAWS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="more pools and seeds, the slower variants, 200,000 draws per true MI")
    parser.add_argument("--variants", nargs="+", help="run only these variants (default: by --full)")
    parser.add_argument("--N", type=int, default=2_000)
    parser.add_argument("--out", default=str(RESULTS / "mi_deficit.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    variants = ["ours", "persistent_strat", "fresh_strat", "fresh"]
    pool_seeds, triples_seeds, sampling_seeds, MI_DRAWS = [0, 1, 2], [0], [0, 1], 100_000
    if args.full:
        variants += ["ours_plain", "ours_float64", "ours_no_merge", "redux_rng", "ours_m100k"]
        pool_seeds, triples_seeds, sampling_seeds, MI_DRAWS = [0, 1, 2, 3, 4], [0, 1], [0, 1], 200_000
    variants = args.variants or variants
    pools = {f"benchmark_{s}": (lambda s=s: benchmark_pool(args.N, K, C, seed=s)) for s in pool_seeds}
    pools.update({f"triples_{s}": (lambda s=s: correlated_triples_pool(args.N, K, C, seed=s)) for s in triples_seeds})
    results = {"environment": environment(), "N": args.N, "K": K, "C": C, "b": B, "m": M, "mi_draws": MI_DRAWS, "variants": variants,
               "rows": []}
    for pool_name, make_pool in pools.items():
        log_probs_N_K_C = make_pool()
        for seed in sampling_seeds:
            row = {"pool": pool_name, "seed": seed, "runs": {}}
            for v in variants:
                row["runs"][v] = run_variant(v, log_probs_N_K_C, seed)
            results["rows"].append(row)
            print(pool_name, seed, " ".join(f"{v}={r['mi']:.5f}" for v, r in row["runs"].items()), flush=True)
            results["summary"] = {kind: summarise([r for r in results["rows"] if r["pool"].startswith(kind)], variants)
                                  for kind in ("benchmark", "triples")}
            write_json(Path(args.out), results)
    results["gain_decomposition"] = {name: gain_decomposition(pools[name](), 0) for name in ("benchmark_0", "triples_0")}
    write_json(Path(args.out), results)
    for name, steps in results["gain_decomposition"].items():
        for st in steps:
            print(f"{name} step {st['step']}: draws per w_j {st['draws_per_sample_min_max']}, sd over the top 50 of the imbalance term "
                  f"{st['sd_imbalance_top50']:.5f} vs of their gains {st['sd_reference_gain_top50']:.5f}; the pick ranks "
                  f"{st['reference_rank_of_pick']} by an independent stratified draw, its imbalance term {st['imbalance_of_pick']:+.5f}")
    for kind, summary in results["summary"].items():
        print(f"{kind} pools (N = {args.N}, K = {K}, C = {C}, b = {B}, m = {M}): true MI, log K - MI, difference to ours, in-sample optimism")
        for v, s in summary.items():
            d = s.get("minus_ours", (0.0, 0.0))
            print(f"  {v:17s} {s['mi'][0]:.5f}  {s['log_K_minus_mi'][0]:.5f} ± {s['log_K_minus_mi'][1]:.5f}  "
                  f"{d[0]:+.5f} ± {d[1]:.5f}  {s['optimism'][0]:+.4f} ± {s['optimism'][1]:.4f}  ({s['runs']} runs, {s['seconds']:.1f} s)")


if __name__ == "__main__":
    main()
