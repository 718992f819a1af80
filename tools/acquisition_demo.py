"""The main job until the active-learning loop lands: BALD vs BatchBALD picks on a small synthetic 2-D pool.

The pool holds 500 points and a near-duplicate of each; the "model" is an ensemble of K random linear softmax classifiers.
Prints both batches and their true joint mutual information, and writes a figure and a JSON file to --out.
"""
import argparse
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from batchbald_nb.acquisition import get_bald_batch, get_batchbald_batch
from batchbald_nb.joint_entropy import batchbald_score_exact


def make_pool(num_points: int, num_models: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    x_N_2 = torch.randn(num_points, 2, generator=g)
    x_N_2 = torch.cat([x_N_2, x_N_2 + 0.01 * torch.randn(num_points, 2, generator=g)])
    weights_K_2_C = 3 * torch.randn(num_models, 2, 3, generator=g)
    logits_N_K_C = torch.einsum("nd,kdc->nkc", x_N_2, weights_K_2_C) + torch.randn(num_models, 3, generator=g)
    return x_N_2, torch.log_softmax(logits_N_K_C, dim=-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("runs/acquisition_demo"))
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--num-models", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    x_N_2, log_probs_N_K_C = make_pool(500, args.num_models, args.seed)
    batches = {"BALD": get_bald_batch(log_probs_N_K_C, args.batch_size),
               "BatchBALD": get_batchbald_batch(log_probs_N_K_C, args.batch_size, num_samples=10_000)}
    summary = {}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5), sharex=True, sharey=True)
    for ax, (name, batch) in zip(axes, batches.items()):
        pairs = args.batch_size - len({i % 500 for i in batch.indices})
        mi = batchbald_score_exact(log_probs_N_K_C[batch.indices].double())
        summary[name] = {"indices": batch.indices, "near_duplicate_pairs": pairs, "joint_mutual_information": mi}
        print(f"{name:9} picks {sorted(batch.indices)}: {pairs} near-duplicate pairs, joint MI {mi:.3f} nats")
        ax.scatter(*x_N_2.T, s=4, c="lightgray")
        ax.scatter(*x_N_2[batch.indices].T, s=60, facecolors="none", edgecolors="C3" if name == "BALD" else "C0")
        ax.set_title(f"{name}: joint MI {mi:.2f} nats (log K = {math.log(args.num_models):.2f}), {pairs} duplicate pairs")
    fig.suptitle(f"b = {args.batch_size} picks from 500 points + their near-duplicates, K = {args.num_models} models")
    fig.tight_layout()
    fig.savefig(args.out / "picks.png", dpi=120)
    (args.out / "picks.json").write_text(json.dumps(summary, indent=1))
    print(f"wrote {args.out / 'picks.png'} and {args.out / 'picks.json'}")


if __name__ == "__main__":
    main()
