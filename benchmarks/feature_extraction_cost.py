"""What the frozen EfficientNet-Lite0 backbone of `batchbald_nb.transfer` costs: CPU seconds per image at several input resolutions
(one thread, `time.process_time`, since the machine is shared), the accuracy a linear probe reaches on its cached features of a
small balanced CIFAR-10 subset at each resolution, and one K = 50 MC-dropout pass of the transfer head over 10,000 feature vectors.

    .venv/bin/python benchmarks/feature_extraction_cost.py [--resolutions 96 128 160 224] [--probe-resolutions 128 160] [--probe-blocks-resolutions 160]

Writes benchmarks/results/feature_extraction_cost.json (rewritten after each resolution, so an interrupted run keeps its rows).
The probe's features are cached under benchmarks/cache/ (keyed like the experiment's cache), so a rerun only re-times."""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from batchbald_nb.consistent_mc_dropout import predict_log_probs_N_K_C
from batchbald_nb.data import default_data_root
from batchbald_nb.transfer import (Preprocessing, TransferHead, cached_features, default_cache_path, efficientnet_lite0,
                                   feature_cache_key, load_cifar10)

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "feature_extraction_cost.json"
CACHE = ROOT / "cache" / "transfer_probe"
FULL_IMAGES, MACHINE_CORES = 60_000, 2


def balanced_subset(labels_N: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    "`per_class` indices of each class, drawn without replacement with a seeded generator, sorted."
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.choice(np.flatnonzero(labels_N == c), per_class, replace=False) for c in range(10)]))


def time_per_image(backbone, images_B_32_32_3: torch.Tensor, preprocessing: Preprocessing, repeats: int) -> float:
    "Median CPU seconds per image of `repeats` passes over the batch, after one warm-up pass."
    backbone.features(images_B_32_32_3[:4], preprocessing)
    seconds = []
    for _ in range(repeats):
        start = time.process_time()
        backbone.features(images_B_32_32_3, preprocessing)
        seconds.append((time.process_time() - start) / len(images_B_32_32_3))
    return float(np.median(seconds))


def linear_probe(train_N_D: torch.Tensor, y_train_N: torch.Tensor, test_M_D: torch.Tensor, y_test_M: torch.Tensor,
                 weight_decay: float = 1e-3, steps: int = 200) -> dict:
    "Multinomial logistic regression on standardised features (full-batch L-BFGS, fixed L2 penalty): train and test accuracy."
    mean_D, std_D = train_N_D.mean(0), train_N_D.std(0) + 1e-6
    x_train, x_test = (((x - mean_D) / std_D).double() for x in (train_N_D, test_M_D))
    weights_D_C = torch.zeros(x_train.shape[1], 10, dtype=torch.float64, requires_grad=True)
    bias_C = torch.zeros(10, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([weights_D_C, bias_C], max_iter=steps, line_search_fn="strong_wolfe")

    def loss():
        optimiser.zero_grad()
        value = F.cross_entropy(x_train @ weights_D_C + bias_C, y_train_N) + weight_decay * weights_D_C.square().sum()
        value.backward()
        return value

    optimiser.step(loss)
    with torch.no_grad():
        accuracy = lambda x, y: float(((x @ weights_D_C + bias_C).argmax(-1) == y).double().mean())
        return {"train_accuracy": accuracy(x_train, y_train_N), "test_accuracy": accuracy(x_test, y_test_M),
                "weight_decay": weight_decay, "lbfgs_max_iter": steps}


def head_cost(num_features: int, num_points: int = 10_000, K: int = 50, batch_size: int = 250) -> dict:
    "CPU seconds of one K-sample pass of a TransferHead over `num_points` random feature vectors (predict_log_probs_N_K_C)."
    torch.manual_seed(0)
    head = TransferHead(num_features=num_features)
    features_N_D = torch.randn(num_points, num_features)
    start = time.process_time()
    log_probs_N_K_C = predict_log_probs_N_K_C(head, features_N_D, K, batch_size=batch_size, generator_seed=0, progress=False)
    seconds = time.process_time() - start
    assert log_probs_N_K_C.shape == (num_points, K, 10)
    return {"num_features": num_features, "num_points": num_points, "K": K, "batch_size": batch_size, "cpu_seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[96, 128, 160, 224])
    parser.add_argument("--probe-resolutions", type=int, nargs="*", default=[128, 160],
                        help="resolutions at which to probe the 1280 head features")
    parser.add_argument("--probe-blocks-resolutions", type=int, nargs="*", default=[160],
                        help="resolutions at which to probe the 320 block features too")
    parser.add_argument("--timing-images", type=int, default=32)
    parser.add_argument("--batch-sizes", type=int, nargs="*", default=[16, 32, 256],
                        help="backbone batch sizes to time at --batch-size-resolution, on --batch-size-images images")
    parser.add_argument("--batch-size-resolution", type=int, default=128)
    parser.add_argument("--batch-size-images", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--probe-train-per-class", type=int, default=200)
    parser.add_argument("--probe-test-per-class", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)

    cifar10 = load_cifar10(default_data_root())
    train_pick = balanced_subset(cifar10.y_train_N, args.probe_train_per_class, seed=0)
    test_pick = balanced_subset(cifar10.y_test_M, args.probe_test_per_class, seed=1)
    x_train, x_test = cifar10.x_train_N_32_32_3[train_pick], cifar10.x_test_M_32_32_3[test_pick]
    y_train, y_test = torch.from_numpy(cifar10.y_train_N[train_pick]), torch.from_numpy(cifar10.y_test_M[test_pick])
    timing_batch = torch.from_numpy(np.ascontiguousarray(x_test[:: max(1, len(x_test) // args.timing_images)][: args.timing_images]))

    result = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__, "threads": 1,
              "timing_images": len(timing_batch), "repeats": args.repeats, "probe_train": len(train_pick), "probe_test": len(test_pick),
              "note": "cpu_seconds_per_image: median CPU time of one thread; projected minutes assume the 2 cores run in parallel "
                      "at that speed (an idle machine; a loaded one is slower)",
              "resolutions": [], "batch_sizes": [], "head_K50": []}

    def save():
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=1) + "\n")

    for resolution in args.resolutions:
        preprocessing = Preprocessing(resolution)
        backbone = efficientnet_lite0(resolution)
        per_image = time_per_image(backbone, timing_batch, preprocessing, args.repeats)
        row = {"resolution": resolution, "cpu_seconds_per_image": per_image,
               "projected_minutes_60000_2_cores": per_image * FULL_IMAGES / MACHINE_CORES / 60}
        print(f"{resolution}px: {per_image * 1000:.1f} ms CPU per image, 60,000 on 2 cores ~ {row['projected_minutes_60000_2_cores']:.1f} min",
              flush=True)
        if resolution in args.probe_resolutions:
            row["probe"] = {}
            for layer in ("head", "blocks") if resolution in args.probe_blocks_resolutions else ("head",):
                layer_backbone = backbone if layer == "head" else efficientnet_lite0(resolution, layer="blocks")
                start = time.process_time()
                features = {}
                for split, images in (("train", x_train), ("test", x_test)):
                    key = feature_cache_key(layer_backbone, images, preprocessing)
                    features[split] = cached_features(layer_backbone, images, preprocessing,
                                                      default_cache_path(CACHE, key, label=f"probe_{split}"), chunk_size=250)
                extraction = time.process_time() - start
                probe = linear_probe(features["train"], y_train, features["test"], y_test)
                row["probe"][layer] = {**probe, "num_features": layer_backbone.num_features, "extraction_cpu_seconds": extraction}
                print(f"  probe on {layer} ({layer_backbone.num_features} features): test accuracy {probe['test_accuracy']:.3f}", flush=True)
        result["resolutions"].append(row)
        save()
    batch_images = torch.from_numpy(np.ascontiguousarray(x_test[: args.batch_size_images]))
    for batch_size in args.batch_sizes:
        backbone = efficientnet_lite0(args.batch_size_resolution)
        backbone.batch_size = batch_size
        per_image = time_per_image(backbone, batch_images, Preprocessing(args.batch_size_resolution), repeats=1)
        result["batch_sizes"].append({"resolution": args.batch_size_resolution, "batch_size": batch_size, "images": len(batch_images),
                                      "cpu_seconds_per_image": per_image})
        print(f"batch size {batch_size} at {args.batch_size_resolution}px: {per_image * 1000:.1f} ms CPU per image", flush=True)
        save()
    for num_features in (1280, 320):
        result["head_K50"].append(head_cost(num_features))
        print(f"head K=50, 10,000 x {num_features}: {result['head_K50'][-1]['cpu_seconds']:.1f} CPU s", flush=True)
        save()


if __name__ == "__main__":
    main()
