"""What one active-learning step costs on this machine, at the paper's MNIST settings and at the CPU experiments' settings.

Times the three parts of a step separately on real MNIST (training one epoch, scoring pool points with K MC samples, evaluating),
then extrapolates linearly to a whole step (scoring and evaluation are linear in points x K; a step trains for the measured
number of epochs). Prints a table; `--json` also writes it. Usage: python benchmarks/al_step_cost.py [--threads 1]
"""
import argparse
import json
import os
import time

import torch

from batchbald_nb.active_learning import TrainingConfig, evaluate, gather, train_model
from batchbald_nb.consistent_mc_dropout import predict_log_probs_N_K_C
from batchbald_nb.data import load_dataset
from batchbald_nb.models import make_model


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--score-points", type=int, default=1000)
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    mnist = load_dataset("mnist")
    x_pool, _ = gather(mnist.train, range(args.score_points))
    x_lab, y_lab = gather(mnist.train, range(20))
    x_val, y_val = gather(mnist.train, range(50_000, 51_024))
    torch.manual_seed(0)
    model = make_model("mnist_cnn", 10)
    one_epoch = TrainingConfig(epoch_samples=5056, max_epochs=1, validation_num_samples_K=10)
    train_epoch_s = timed(lambda: train_model(model, x_lab, y_lab, x_val, y_val, one_epoch, seed=0))
    rows = {}
    for K in (10, 20, 100):
        per_point_s = timed(lambda: predict_log_probs_N_K_C(model, x_pool, K, progress=False, generator_seed=0)) / args.score_points
        rows[K] = per_point_s
    load = os.getloadavg()[0]
    print(f"threads {args.threads}, load average {load:.1f}; one paper epoch (5,056 samples + 1,024 validation x K=10): {train_epoch_s:.1f} s")
    for K, s in rows.items():
        print(f"scoring, K={K:3d}: {s * 1e3:.2f} ms per pool point -> 60,000-point pool {s * 60_000:.0f} s, 2,000-point subsample {s * 2000:.1f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "load_average": load, "train_epoch_s": train_epoch_s,
                       "score_s_per_point": rows}, f, indent=1)


if __name__ == "__main__":
    main()
