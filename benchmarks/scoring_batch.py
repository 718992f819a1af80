"""How many inputs per forward pass the MC-dropout scoring pass should take on a CPU: results/scoring_batch.json, which chapter 14
reads.

    .venv/bin/python benchmarks/scoring_batch.py        # about 5 minutes on one core

`predict_log_probs_N_K_C` pushes a batch of B inputs through the deterministic trunk once, then B x K rows through the MC part.
On a CPU the rows of one pass should fit the caches: B x K in the low hundreds runs fastest, and the old default of 256 inputs
per pass (25,600 rows at K = 100) is well past that. For each model and K of the experiments it times the pass over the same
inputs at batch sizes 1 .. 512 inputs (CPU seconds, one thread, interleaved rounds, best of each) and reports: the best size,
the old default (256 inputs), and the package's default (`batch_size=None`: `scoring_batch_size`, with the model's
`cpu_rows_per_pass`), each as a ratio to the best.
For the convolutional models it also times the package's size with the first MC convolution factored and unfactored (chapter
06), so the table separates the two rewrites. The outputs of every size are checked equal to the old default's (they are the same function: only the blocking of the products
differs, so to float32 rounding).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import RESULTS, environment, write_json  # noqa: E402

from batchbald_nb.consistent_mc_dropout import predict_log_probs_N_K_C, scoring_batch_size  # noqa: E402
from batchbald_nb.models import make_model  # noqa: E402

OLD_DEFAULT = 256  # inputs per pass before `scoring_batch_size`
SIZES = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
# (label, model name, model options, classes, input shape, K): every model and K an experiment scores with
CASES = [
    ("MNIST CNN, K = 100 (mnist_k100_cpu, mnist_paper)", "mnist_cnn", {}, 10, (1, 28, 28), 100),
    ("MNIST CNN, K = 20 (mnist_cpu)", "mnist_cnn", {}, 10, (1, 28, 28), 20),
    ("MNIST CNN, K = 10 (repeated_mnist_*)", "mnist_cnn", {}, 10, (1, 28, 28), 10),
    ("EMNIST CNN (authors' code), K = 10 (emnist_*)", "emnist_cnn", {"architecture": "code"}, 47, (1, 28, 28), 10),
    ("transfer head, K = 50 (cifar10_transfer)", "transfer_head", {"num_features": 320}, 10, (320,), 50),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=25_600, help="input x K rows timed per measurement")
    parser.add_argument("--out", default=str(RESULTS / "scoring_batch.json"))
    parser.add_argument("--only", help="rerun only the cases whose label contains this text, keeping the file's other rows")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for label, name, options, classes, shape, K in CASES:
        if args.only and args.only not in label:
            continue
        torch.manual_seed(0)
        model = make_model(name, classes, **options)
        inputs = torch.randn(max(args.rows // K, 64), *shape, generator=torch.Generator().manual_seed(1))
        sizes = SIZES + [s for s in (scoring_batch_size(K, "cpu", model),) if s not in SIZES]
        reference = predict_log_probs_N_K_C(model, inputs, K, batch_size=OLD_DEFAULT, generator_seed=0, progress=False)
        best = {s: float("inf") for s in sizes}
        max_difference = 0.0
        for _ in range(args.rounds):
            for s in sizes:
                start = time.process_time()
                out = predict_log_probs_N_K_C(model, inputs, K, batch_size=s, generator_seed=0, progress=False)
                best[s] = min(best[s], time.process_time() - start)
                max_difference = max(max_difference, (out - reference).abs().max().item())
        path_best = {}  # the convolutional models at the package's size with the first MC convolution factored and not (chapter 06)
        if hasattr(model, "factor_first_mc_conv"):
            for factored in (True, False):
                model.factor_first_mc_conv = factored
                path_best[factored] = float("inf")
                for _ in range(args.rounds):
                    start = time.process_time()
                    out = predict_log_probs_N_K_C(model, inputs, K, batch_size=scoring_batch_size(K, "cpu", model), generator_seed=0,
                                                  progress=False)
                    path_best[factored] = min(path_best[factored], time.process_time() - start)
                    max_difference = max(max_difference, (out - reference).abs().max().item())
                del model.factor_first_mc_conv
        per_point_ms = {s: 1000 * t / len(inputs) for s, t in best.items()}
        fastest = min(per_point_ms, key=per_point_ms.get)
        chosen = scoring_batch_size(K, "cpu", model)
        row = {"case": label, "model": name, "K": K, "points": len(inputs), "ms_per_point": per_point_ms, "best_size": fastest,
               "package_size": chosen, "old_default": OLD_DEFAULT,
               "old_over_best": per_point_ms[OLD_DEFAULT] / per_point_ms[fastest],
               "package_over_best": per_point_ms[chosen] / per_point_ms[fastest],
               "old_over_package": per_point_ms[OLD_DEFAULT] / per_point_ms[chosen], "max_abs_difference": max_difference,
               "package_factors": bool(getattr(model, "factor_first_mc_conv", False)),
               "factored_ms_per_point": 1000 * path_best[True] / len(inputs) if path_best else None,
               "unfactored_ms_per_point": 1000 * path_best[False] / len(inputs) if path_best else None}
        rows.append(row)
        print(f"{label:48} best {fastest:4} ({per_point_ms[fastest]:.3f} ms/pt) | package {chosen:4} "
              f"x{row['package_over_best']:.2f} | old 256 x{row['old_over_best']:.2f} | old/package {row['old_over_package']:.2f} "
              f"| unfactored / factored at the package's size: " + (f"{row['unfactored_ms_per_point'] / row['factored_ms_per_point']:.2f}"
              if path_best else "-") + f" | max |diff| {max_difference:.1e}", flush=True)
    out = Path(args.out)
    if args.only and out.is_file():  # the other rows as they were measured (each row is one case, timed in one go)
        kept = {r["case"]: r for r in json.loads(out.read_text())["rows"]}
        kept.update({r["case"]: r for r in rows})
        rows = [kept[label] for label, *_ in CASES if label in kept]
    write_json(out, {"environment": environment(), "rounds": args.rounds, "rows": rows})
    print("wrote", args.out)


if __name__ == "__main__":
    main()
