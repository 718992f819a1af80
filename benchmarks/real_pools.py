"""Pools from real models, for the acquisition benchmark: log p(y | x, w_k) of a trained MNIST CNN (section 4.1's model, consistent MC
dropout, K = 100) on 20,000 MNIST training images (a third of the training set: what this 2-core machine scores in
about 10 minutes), and of a trained EMNIST CNN (section 4.3's model, K = 10) on 10,000 images of the
EMNIST Balanced stand-in. Unlike the synthetic pools, the batch MI of these stays well below log K, where the quality of lazy greedy
and of the sampled estimator can show.

    .venv/bin/python benchmarks/real_pools.py                 # both pools; resumes an interrupted MNIST pool chunk by chunk
    .venv/bin/python benchmarks/real_pools.py --pools emnist  # one of them

The log-probabilities (80 MB for MNIST) go to benchmarks/cache/ (git-ignored; rebuilt by this script, which the benchmark calls when
they are missing); what made them (training set, epochs, test accuracy, seconds) goes to benchmarks/results/real_pools.json.
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

CACHE = Path(__file__).resolve().parent / "cache"
CHUNK = 2048  # pool points per saved chunk: an interrupted run loses at most one chunk
POOLS = {  # name -> (dataset, model, K, pool size (None: the whole training set), labelled points the model is trained on)
    "mnist": ("mnist", "mnist_cnn", 100, 20_000, 150),
    "emnist": ("emnist_balanced_standin", "emnist_cnn", 10, 10_000, 470),
}


def pool_path(name: str) -> Path:
    return CACHE / f"{name}_log_probs_N_K_C.pt"


def load_pool(name: str) -> torch.Tensor:
    "The cached pool (float32, N x K x C); a clear error naming the command that builds it when it is missing."
    path = pool_path(name)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: build it with `.venv/bin/python benchmarks/real_pools.py --pools {name}`")
    return torch.load(path)


def build(name: str, seed: int = 0) -> dict:
    from batchbald_nb.active_learning import TrainingConfig, evaluate, gather, train_model
    from batchbald_nb.consistent_mc_dropout import predict_log_probs_N_K_C
    from batchbald_nb.data import load_dataset
    from batchbald_nb.models import make_model

    dataset_name, model_name, K, pool_size, num_labelled = POOLS[name]
    dataset = load_dataset(dataset_name)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(dataset.train), generator=generator)
    labelled, validation = order[:num_labelled].tolist(), order[num_labelled : num_labelled + 1000].tolist()
    pool = list(range(len(dataset.train))) if pool_size is None else order[num_labelled + 1000 : num_labelled + 1000 + pool_size].tolist()
    torch.manual_seed(seed)
    model = make_model(model_name, num_classes=dataset.num_classes)
    x_train, y_train = gather(dataset.train, labelled)
    x_val, y_val = gather(dataset.train, validation)
    start = time.perf_counter()
    training = train_model(model, x_train, y_train, x_val, y_val, TrainingConfig(epoch_samples=2048, max_epochs=30), seed=seed)
    x_test, y_test = gather(dataset.test, list(range(min(5000, len(dataset.test)))))
    test = evaluate(model, x_test, y_test, K, seed=seed)
    train_seconds = time.perf_counter() - start
    print(f"{name}: trained on {num_labelled} points, {training.epochs} epochs, test accuracy {test.accuracy:.3f}", flush=True)
    parts_dir = CACHE / f"{name}_parts"
    parts_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    chunks = []
    for i, s in enumerate(range(0, len(pool), CHUNK)):
        part = parts_dir / f"{i:04d}.pt"
        if not part.is_file():  # masks from one seed for every chunk: sample k is the same function for the whole pool
            x_chunk, _ = gather(dataset.train, pool[s : s + CHUNK])
            log_probs = predict_log_probs_N_K_C(model, x_chunk, K, generator_seed=seed + 1, progress=False)
            tmp = part.with_suffix(".tmp")
            torch.save(log_probs, tmp)
            os.replace(tmp, part)
            print(f"{name}: {min(s + CHUNK, len(pool)):,} / {len(pool):,} pool points", flush=True)
        chunks.append(torch.load(part))
    log_probs_N_K_C = torch.cat(chunks)
    tmp = pool_path(name).with_suffix(".tmp")
    torch.save(log_probs_N_K_C, tmp)
    os.replace(tmp, pool_path(name))
    return {"dataset": dataset_name, "model": model_name, "K": K, "N": len(pool), "C": dataset.num_classes, "labelled": num_labelled,
            "validation": len(validation), "epochs": training.epochs, "best_epoch": training.best_epoch,
            "test_accuracy": test.accuracy, "test_points": len(x_test), "train_seconds": train_seconds,
            "predict_seconds": time.perf_counter() - start, "seed": seed}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pools", nargs="+", choices=sorted(POOLS), default=sorted(POOLS))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("TQDM_DISABLE", "1")
    record_path = RESULTS / "real_pools.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    for name in args.pools:
        record[name] = build(name)
        record[name]["environment"] = environment()
        write_json(record_path, record)
