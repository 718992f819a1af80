"""Extract the BatchBALD paper's own per-trial results into a compact file that ships with the package.

Reads the authors' published run logs (`paper_runs.json`, 159 runs, ~4 MB; see its README) and writes
`batchbald_nb/reference/paper_runs_compact.json.gz`, keeping per run only what the book needs: an experiment key in
this package's names (dataset, method, K, b, initial set size, the authors' experiment description), the seed and
the stopping rule, and per acquisition step the number of labelled points the model was trained on, its test
accuracy and NLL, the epochs trained, and the wall time of training and of acquisition.

    python tools/extract_paper_runs.py [--source /work/shared/reference/paper_runs.json] [--out ...] [--check]

`--check` recomputes the file in memory and exits 1 if the committed one differs (the extraction date aside).

Conventions checked against the data while extracting (the script stops if one fails):

* step i's model was trained on `initial + i * b` labelled points: every step records exactly b chosen points,
  and EMNIST's step 0 (no initial set) trained 0 epochs and scores chance accuracy (about 1/47);
* accuracy is a fraction in [0, 1].

Per step the chosen training-set indices and their recorded scores are kept too, and per run its recorded training
arguments. Acquired *labels* are not in the runs, and the full EMNIST Balanced training labels are not available on
these machines (only a 9,120-image subset is), so the paper's EMNIST class figures can be redrawn only in part.
"""
from __future__ import annotations

import argparse
import datetime
import gzip
import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = Path("/work/shared/reference/paper_runs.json")
DEFAULT_OUT = ROOT / "batchbald_nb" / "reference" / "paper_runs_compact.json.gz"

# The authors' dataset names -> this book's. The "repeated" variants differ in how many noisy copies of MNIST's
# training set the pool holds (appendix D counts repetitions = copies - 1).
DATASETS = {
    "DatasetEnum.mnist": "mnist",
    "DatasetEnum.mnist_w_noise": "mnist_w_noise",  # 1 copy + Gaussian noise: appendix D's "0 repetitions"
    "DatasetEnum.repeated_mnist_w_noise2": "repeated_mnist_x2",  # 2 copies: "1 repetition"
    "DatasetEnum.repeated_mnist_w_noise": "repeated_mnist",  # 3 copies: section 4.1's Repeated MNIST, "2 repetitions"
    "DatasetEnum.repeated_mnist_w_noise5": "repeated_mnist_x5",  # 5 copies: "4 repetitions"
    "DatasetEnum.emnist": "emnist",  # EMNIST Balanced
    "DatasetEnum.cinic10": "cinic10",
}
DATASET_NOTES = {
    "mnist": "MNIST (60,000 training images)",
    "mnist_w_noise": "MNIST with Gaussian noise (std 0.1), one copy: appendix D / figure 10, 0 repetitions",
    "repeated_mnist_x2": "MNIST training set x2 with Gaussian noise (std 0.1): appendix D / figure 10, 1 repetition",
    "repeated_mnist": "Repeated MNIST, training set x3 with Gaussian noise (std 0.1): section 4.1, figures 2, 10, 11",
    "repeated_mnist_x5": "MNIST training set x5 with Gaussian noise (std 0.1): appendix D / figure 10, 4 repetitions",
    "emnist": "EMNIST Balanced, 47 classes: section 4.3, figures 7, 13",
    "cinic10": "CINIC-10 with an ImageNet-pretrained VGG-16: section 4.4, figure 9",
}
FUNCTIONS = {  # acquisition function of independent (top-b) scoring -> this package's method name
    "AcquisitionFunction.bald": "bald",
    "AcquisitionFunction.random": "random",
    "AcquisitionFunction.variation_ratios": "variation_ratios",
    "AcquisitionFunction.mean_stddev": "mean_std",
}
# 24 runs from December 2018 predate the `dataset`/`acquisition_method` arguments. Their pool indices are all
# < 60,000 and each initial set holds exactly 2 images of each MNIST class (checked against MNIST's training labels
# when they are available), their chosen-point scores are individual BALD scores (0.8-1.0 nats, not the rising
# joint scores of BatchBALD), and their file names read `bald_<b>_<seed>`: top-b BALD on MNIST, K = 20, with a
# fresh random balanced initial set per seed.
EARLY_RUNS_DESCRIPTION = (
    "Early runs (Dec 2018, before the dataset/acquisition_method arguments existed; dataset inferred as MNIST): "
    "top-b BALD, K=20, a random balanced initial set of 2 per class per seed"
)
MNIST_TRAIN_LABELS = Path("/work/shared/data/MNIST/raw/train-labels-idx1-ubyte")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def experiment_key(run: dict) -> dict:
    "The run's experiment in this package's names."
    args = run["args"]
    function = args["type"]
    if "dataset" in args:
        dataset, description = DATASETS[args["dataset"]], args["experiment_description"]
        acquisition = args["acquisition_method"]
    else:
        dataset, description, acquisition = "mnist", EARLY_RUNS_DESCRIPTION, "AcquisitionMethod.independent"
    if acquisition == "AcquisitionMethod.multibald":
        if function != "AcquisitionFunction.bald":
            raise ValueError(f"{run['file']}: multibald with {function}")
        method = "batchbald"
    elif acquisition == "AcquisitionMethod.independent":
        method = FUNCTIONS[function]
    else:
        raise ValueError(f"{run['file']}: unknown acquisition method {acquisition}")
    return {
        "dataset": dataset,
        "method": method,
        "K": int(args["num_inference_samples"]),
        "b": int(args["available_sample_k"]),
        "initial": len(run["initial_samples"]),
        "description": description,
    }


def _check_early_runs_are_mnist(runs: list[dict]) -> str:
    "Check the inferred dataset of the early runs against MNIST's labels; return what was checked, for provenance."
    early = [r for r in runs if "dataset" not in r["args"]]
    if not MNIST_TRAIN_LABELS.exists():
        return "MNIST labels not available: early runs' balanced initial sets not checked"
    labels = MNIST_TRAIN_LABELS.read_bytes()[8:]
    for run in early:
        counts = [0] * 10
        for index in run["initial_samples"]:
            counts[labels[index]] += 1
        if counts != [2] * 10:
            raise ValueError(f"{run['file']}: initial set is not 2 per MNIST class: {counts}")
    return f"all {len(early)} early runs: initial set = 2 images of each MNIST class (checked against MNIST's labels)"


RECORDED_ARGS = ("batch_size", "epochs", "epoch_samples", "early_stopping_patience", "validation_set_size", "initial_samples_per_class",
                 "target_accuracy", "target_num_acquired_samples", "balanced_validation_set", "balanced_test_set", "num_inference_samples",
                 "available_sample_k")


def _as_list(value, kind) -> list:
    "A step's chosen samples (or scores) as a list: b = 1 runs record a bare number."
    return [kind(v) for v in value] if isinstance(value, list) else [kind(value)]


def _number(value, digits: int | None):
    if value is None:
        return None
    value = float(value)
    return value if digits is None else round(value, digits)


def compact_run(run: dict) -> dict:
    key = experiment_key(run)
    b, initial = key["b"], key["initial"]
    iterations = run["iterations"]
    for i, iteration in enumerate(iterations):
        chosen = iteration["chosen_samples"]
        n_chosen = 1 if isinstance(chosen, (int, str)) else len(chosen)
        if n_chosen != b:  # every step acquired exactly b points, so step i's model saw initial + i * b
            raise ValueError(f"{run['file']} step {i}: {n_chosen} chosen points, expected b = {b}")
        if not 0.0 <= iteration["test_metrics"]["accuracy"] <= 1.0:
            raise ValueError(f"{run['file']} step {i}: accuracy {iteration['test_metrics']['accuracy']}")
    if initial == 0 and iterations[0]["num_epochs"] != 0:
        raise ValueError(f"{run['file']}: no initial set but step 0 trained {iterations[0]['num_epochs']} epochs")
    args = run["args"]
    return {
        **key,
        "seed": int(args["seed"]),
        "file": run["file"],
        "stop": {  # the authors' stopping rule, when recorded (None for the early runs: a fixed number of steps)
            "target_accuracy": args.get("target_accuracy"),
            "target_num_acquired_samples": args.get("target_num_acquired_samples"),
            "num_iterations": args.get("num_iterations"),
        },
        # columns, one entry per step (per trained model)
        "num_labelled": [initial + i * b for i in range(len(iterations))],
        "accuracy": [float(it["test_metrics"]["accuracy"]) for it in iterations],  # exact: thresholds compare to it
        "nll": [_number(it["test_metrics"]["nll"], 6) for it in iterations],
        "epochs": [int(it["num_epochs"]) for it in iterations],
        "train_seconds": [_number(it["train_model_elapsed_time"], 3) for it in iterations],
        "acquisition_seconds": [_number(it["batch_acquisition_elapsed_time"], 3) for it in iterations],
        # what each step acquired: training-set positions (in the authors' dataset: for Repeated MNIST, copy r of image i is
        # r * 60,000 + i) and their scores as the run recorded them (BatchBALD: the running joint score; top-b: each point's own)
        "chosen": [_as_list(it["chosen_samples"], int) for it in iterations],
        "chosen_scores": [[_number(x, 6) for x in _as_list(it["chosen_samples_score"], float)] for it in iterations],
        "args": {key: args[key] for key in RECORDED_ARGS if key in args},  # the run's training arguments, as recorded
    }


def build(source: Path, readme: Path | None, date: str) -> dict:
    runs = json.loads(source.read_text(encoding="utf-8"))
    compact = [compact_run(r) for r in runs]
    compact.sort(key=lambda r: (r["dataset"], r["method"], r["K"], r["b"], r["initial"], r["seed"], r["file"]))
    return {
        "provenance": {
            "source": source.name,
            "source_sha256": sha256(source),
            "source_runs": len(runs),
            "readme": readme.read_text(encoding="utf-8") if readme is not None and readme.exists() else None,
            "extracted_by": "tools/extract_paper_runs.py",
            "extraction_date": date,
            "num_labelled": "step i's model was trained on initial + i * b labelled points (initial set included); "
            "checked: every step chose exactly b points, and with no initial set step 0 trained 0 epochs",
            "points_to_accuracy": "labelled points at the first model reaching X, minus b; quartiles are "
            "25/50/75 percentiles, nearest value, over trials (see batchbald_nb.plots.points_to_accuracy)",
            "methods": "multibald -> batchbald; independent + bald -> bald (top-b); independent + random -> random; "
            "variation_ratios; mean_stddev -> mean_std",
            "datasets": DATASET_NOTES,
            "early_runs": EARLY_RUNS_DESCRIPTION + "; " + _check_early_runs_are_mnist(runs),
            "chosen": "per step, the training-set positions acquired and their recorded scores (chosen_scores, 6 decimals); "
            "args: the run's recorded training arguments (those in RECORDED_ARGS of the extraction script)",
            "not_extracted": "initial indices, the remaining arguments. Acquired class labels are not in the source (only "
            "indices), and EMNIST Balanced's full training labels are not available here, so the paper's EMNIST class figures "
            "(8, 14, 15) can be redrawn only for acquisitions whose label is known from another source.",
            "rounding": "accuracy exact; nll to 6 decimals; seconds to 3 decimals; null where the run did not record it",
        },
        "runs": compact,
    }


def encode(data: dict) -> bytes:
    text = json.dumps(data, separators=(",", ":"), sort_keys=False)
    return gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--check", action="store_true", help="exit 1 if --out differs from a fresh extraction")
    args = parser.parse_args(argv)
    readme = args.source.with_name("README.md")
    if args.check:
        old = json.loads(gzip.decompress(args.out.read_bytes()))
        new = build(args.source, readme, old["provenance"]["extraction_date"])
        same = new == old
        print("up to date" if same else f"STALE: {args.out} differs from a fresh extraction of {args.source}")
        return 0 if same else 1
    data = build(args.source, readme, datetime.date.today().isoformat())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(encode(data))
    raw = len(json.dumps(data, separators=(",", ":")))
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes gzipped, {raw:,} bytes of JSON), {len(data['runs'])} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
