"""Extract the frozen-backbone features of all 60,000 CIFAR-10 images into the feature cache, one process per core.

    .venv/bin/python tools/extract_features.py [--processes 2] [--resolution 160] [--layer blocks] [--cache-dir DIR] [--data-root DIR]

Each process takes every n-th chunk (`cached_features(..., shard=(i, n))`); chunks are saved as they finish, so an interrupted run
resumes where it stopped. The cache is where `load_dataset("cifar10_transfer")` looks for it (`default_feature_cache_dir()`)."""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path


def work(shard: tuple[int, int], args) -> None:
    import torch

    from batchbald_nb.transfer import (Preprocessing, cached_features, default_cache_path, default_feature_cache_dir,
                                       efficientnet_lite0, feature_cache_key, load_cifar10)
    torch.set_num_threads(1)
    preprocessing = Preprocessing(args.resolution)
    backbone = efficientnet_lite0(args.resolution, args.layer)
    cifar10 = load_cifar10(args.data_root)
    cache_dir = args.cache_dir or default_feature_cache_dir()
    for split, images in (("test", cifar10.x_test_M_32_32_3), ("train", cifar10.x_train_N_32_32_3)):
        key = feature_cache_key(backbone, images, preprocessing)
        path = default_cache_path(cache_dir, key, f"cifar10_{split}")
        features = cached_features(backbone, images, preprocessing, path, progress=shard[0] == 0, shard=shard)
        what = "its share done, other shares still running" if features is None else f"file complete: {path.name}"
        print(f"shard {shard}: {split}: {what}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--resolution", type=int, default=160)
    parser.add_argument("--layer", default="blocks")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--record", default=None, help="write the wall time to this JSON file (e.g. "
                        "benchmarks/results/feature_extraction_full.json)")
    args = parser.parse_args(argv)
    if args.processes < 1:
        parser.error(f"--processes must be a positive integer, got {args.processes}")
    start = time.perf_counter()
    processes = [mp.get_context("spawn").Process(target=work, args=((i, args.processes), args)) for i in range(args.processes)]
    for p in processes:
        p.start()
    for p in processes:
        p.join()
    if any(p.exitcode for p in processes):
        print(f"error: a worker failed (exit codes {[p.exitcode for p in processes]}); rerun to resume", file=sys.stderr)
        return 1
    work((0, 1), args)  # every chunk exists now: this assembles any file a shard left unassembled (a no-op read otherwise)
    seconds = time.perf_counter() - start
    print(f"all features cached in {seconds:.0f} s", flush=True)
    if args.record:
        record = {"seconds": round(seconds, 1), "processes": args.processes, "resolution": args.resolution, "layer": args.layer,
                  "images": 60_000, "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d"),
                  "note": "wall seconds for all 60,000 CIFAR-10 images (or the remainder, on a resumed run), one thread per process"}
        Path(args.record).write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
