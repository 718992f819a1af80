"""What one active-learning step and one trial cost on this machine, for the paper's experiments and for our CPU reruns.

For each named experiment pair (`<name>_paper`, `<name>_cpu`) it times, in this one process and with synthetic inputs of the
right shape (the cost does not depend on pixel values), the parts of a step with that experiment's own model and settings:

* one training epoch (`training.epoch_samples` samples in batches, then the validation pass over `validation_size` points
  with `training.validation_num_samples_K` samples), with `train_model` itself;
* scoring pool points with `num_samples_K` MC dropout samples (`predict_log_probs_N_K_C`), per point;
* selecting a BatchBALD batch (`get_batchbald_batch`, the `num_configurations` of the experiment) on random predictions,
  at the scored pool size or at most 10,000 points, scaled linearly in N beyond that (its cost is linear in N).

A step then costs `epochs x epoch + scored points x per-point score + selection + test points x per-point score x (test K / K)`,
where `epochs` is the median number of epochs per step recorded by the runs (the paper's runs for a `_paper` experiment,
our results files for a `_cpu` one; `max_epochs` where none exist). A trial is its models times that step, and the experiment is every variant's trials (a variant with a smaller `b`
trains more models; BALD's and random's selection is counted at BatchBALD's cost, an overestimate of at most the
selection's share of the step). Paper and CPU
settings are timed in the same process, so their ratio holds even on a busy machine; the seconds are CPU seconds of this process
(`time.process_time`, one thread), so other jobs on the machine do not inflate them (they can still slow it through shared caches;
the file records the load average).

Usage: python benchmarks/compute_plan.py [--threads 1] [--out benchmarks/results/compute_plan.json]
"""
import argparse
import json
import math
import os
import platform
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from batchbald_nb.acquisition import get_batchbald_batch
from batchbald_nb.active_learning import TrainingConfig, train_model
from batchbald_nb.consistent_mc_dropout import predict_log_probs_N_K_C
from batchbald_nb.experiments import EXPERIMENTS
from batchbald_nb.models import make_model
from batchbald_nb.plots import load_experiment, paper_runs

ROOT = Path(__file__).resolve().parent.parent
# name -> (paper runs' dataset key, classes, train split size, test split size, a variant both experiments have)
PAIRS = {
    "repeated_mnist": ("repeated_mnist", 10, 180_000, 10_000, "batchbald"),
    "mnist": ("mnist", 10, 60_000, 10_000, "batchbald_b10"),
    "emnist": ("emnist", 47, 112_800, 18_800, "batchbald"),
}
# The CPU experiments that make issue 12's evidence, planned before they ran: (name, the pair above they belong to, the experiment
# whose recorded epochs per step stand in until they have runs of their own)
EVIDENCE = [
    ("mnist_k100_cpu", "mnist", "mnist_paper"),  # the authors' training and K: the paper's runs' epochs
    ("repeated_mnist_pool20k", "repeated_mnist", "repeated_mnist_cpu"),  # repeated_mnist_cpu's training
    ("emnist_authors_cpu", "emnist", "emnist_cpu"),  # 1,024-sample epochs as emnist_cpu (its max of 10 epochs was reached: a floor)
]
STANDIN_SIZES = {"emnist_balanced_standin": (21_150, 3_525)}  # the CPU rerun's dataset differs in size from the paper's


# The `_paper` experiments before the authors' training (chapter 07: validation with MC dropout, epochs drawn with replacement, test
# K = 10, m = 10,000, the text's EMNIST model), the validation and epoch change alone (the same K, m and model as before), and as
# they are now (the authors' K for testing, m = 40,000, their EMNIST model).
_BEFORE_TRAINING = {"validation": "mc", "epoch_sampling": "replacement"}
# The scoring pass before `scoring_batch_size` took 256 inputs per forward pass, and the convolutional models ran their first MC
# convolution K times (chapters 06, 14): "before" and "validation change alone" score that way, so the third row adds what the
# scoring pass's two rewrites save.
BEFORE_AFTER = {
    "before": {"training": _BEFORE_TRAINING, "test_num_samples_K": 10, "num_configurations": 10_000, "scoring_batch_size": 256,
               "factored": False},
    "validation change alone": {"test_num_samples_K": 10, "num_configurations": 10_000, "scoring_batch_size": 256, "factored": False},
    "validation and scoring-pass changes": {"test_num_samples_K": 10, "num_configurations": 10_000},
    "as published (now)": None,
}


def timed(fn) -> float:
    """CPU seconds of `fn()` in this process (torch runs single-threaded here unless --threads says otherwise): on a machine shared
    with other jobs, wall time would measure the other jobs too."""
    start = time.process_time()
    fn()
    return time.process_time() - start


def recorded_epochs(experiment, dataset_key: str, variant: str, like: str | None = None) -> tuple[float, str]:
    """Median epochs per step as the runs recorded them, and where the number comes from. An experiment without runs of its own
    takes them from the experiment named by `like` (one that trains the same way)."""
    if like is not None and not (ROOT / "results" / experiment.name).is_dir():
        return recorded_epochs(EXPERIMENTS[like], dataset_key, variant)
    if experiment.name.endswith("_paper"):
        method = experiment.variants[variant]["method"]
        runs = paper_runs(dataset_key, method, K=experiment.base.num_samples_K, b=experiment.base.acquisition_size)
        epochs = [e for r in runs for e in r["epochs"] if e]
        if epochs:
            return statistics.median(epochs), f"the paper's {len(runs)} {dataset_key} {method} runs"
    results = ROOT / "results" / experiment.name
    if results.is_dir():
        trials = load_experiment(results).get(variant, [])
        epochs = [s["epochs"] for t in trials for s in t["steps"][1:] if s.get("epochs")]
        if epochs:
            return statistics.median(epochs), f"our {len(trials)} {experiment.name} {variant} trials"
    return experiment.base.training.max_epochs, "max_epochs (no recorded runs)"


def step_cost(experiment, dataset_key: str, num_classes: int, train_size: int, test_size: int, variant: str,
              score_points: int, generator: torch.Generator, overrides: dict | None = None, like: str | None = None) -> dict:
    config = experiment.trial_config(variant, 0)
    overrides = dict(overrides or {})
    scoring_batch = overrides.pop("scoring_batch_size", None)  # None: the package's default
    factored = overrides.pop("factored", True)  # False: the first MC convolution run K times (chapter 06's literal path)
    if overrides:  # the same experiment with some settings changed (the `_paper` experiments before the authors' training)
        training = replace(config.training, **overrides.get("training", {}))
        config = replace(config, **{k: v for k, v in overrides.items() if k != "training"}, training=training)
    train_size, test_size = STANDIN_SIZES.get(config.dataset, (train_size, test_size))
    torch.manual_seed(0)
    model = make_model(config.model, num_classes, **config.model_options)  # the experiment's own model (EMNIST: the authors')
    if not factored and hasattr(model, "factor_first_mc_conv"):
        model.factor_first_mc_conv = False
    x = lambda n: torch.randn(n, 1, 28, 28, generator=generator)
    y = lambda n: torch.randint(0, num_classes, (n,), generator=generator)
    one_epoch = TrainingConfig(**{**vars(config.training), "max_epochs": 1})
    epoch_s = timed(lambda: train_model(model, x(20), y(20), x(config.validation_size), y(config.validation_size), one_epoch, seed=0))
    pool = train_size - config.validation_size - config.initial_per_class * num_classes
    scored = min(pool, config.pool_subsample or pool)
    K = config.num_samples_K
    inputs = x(score_points)
    score_s_per_point = timed(lambda: predict_log_probs_N_K_C(model, inputs, K, batch_size=scoring_batch, progress=False,
                                                                        generator_seed=0)) / score_points
    select_N = min(scored, 10_000)
    log_probs_N_K_C = torch.log_softmax(3 * torch.randn(select_N, K, num_classes, generator=generator), dim=-1)
    select_s = timed(lambda: get_batchbald_batch(log_probs_N_K_C, config.acquisition_size, config.num_configurations,
                                                 generator=torch.Generator().manual_seed(0))) * scored / select_N
    tested = min(test_size, config.test_subsample or test_size)
    test_s = score_s_per_point * tested * config.test_num_samples_K / K
    epochs, epochs_source = recorded_epochs(experiment, dataset_key, variant, like)
    models = {v: math.ceil((c.max_labelled - config.initial_per_class * num_classes) / c.acquisition_size) + 1
              for v in experiment.variants if (c := experiment.trial_config(v, 0))}
    step_s = epochs * epoch_s + scored * score_s_per_point + select_s + test_s
    return {"experiment": experiment.name, "variant": variant, "model": config.model, "K": K, "b": config.acquisition_size,
            "epoch_samples": config.training.epoch_samples, "validation_size": config.validation_size, "epoch_s": epoch_s,
            "epochs_per_step": epochs, "epochs_source": epochs_source, "pool_scored": scored, "score_s": scored * score_s_per_point,
            "select_s": select_s, "test_points": tested, "test_s": test_s, "step_s": step_s, "models_per_trial": models[variant],
            "trial_s": models[variant] * step_s, "models_by_variant": models, "variants": len(experiment.variants),
            "trials": experiment.num_trials, "total_s": sum(models.values()) * step_s * experiment.num_trials}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--score-points", type=int, default=500)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "compute_plan.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    load_start = os.getloadavg()
    rows, before_after = [], []
    for name, (dataset_key, classes, train_size, test_size, variant) in PAIRS.items():
        paper = EXPERIMENTS[f"{name}_paper"]
        for label, overrides in BEFORE_AFTER.items():  # in this process, so the ratios hold whatever the machine's load
            if overrides is None:  # the experiment as it is: the paper row of the plan below, timed once
                continue
            row = step_cost(paper, dataset_key, classes, train_size, test_size, variant, args.score_points, generator,
                            {**overrides, "model_options": {}})
            before_after.append({**row, "settings": label})
            print(f"{row['experiment']:22} {label:26} epoch {row['epoch_s']:6.1f} s | step {row['step_s']:7.1f} s", flush=True)
        for suffix in ("paper", "cpu"):
            row = step_cost(EXPERIMENTS[f"{name}_{suffix}"], dataset_key, classes, train_size, test_size, variant,
                            args.score_points, generator)
            rows.append(row)
            if suffix == "paper":
                before_after.append({**row, "settings": "as published (now)"})
            print(f"{row['experiment']:22} epoch {row['epoch_s']:6.1f} s x {row['epochs_per_step']:4.1f} | score {row['pool_scored']:6,} pts "
                  f"{row['score_s']:7.1f} s | select {row['select_s']:6.1f} s | test {row['test_s']:5.1f} s | step {row['step_s']:7.1f} s | "
                  f"trial ({row['models_per_trial']} models) {row['trial_s'] / 3600:6.2f} h | all {row['variants']}x{row['trials']} "
                  f"{row['total_s'] / 3600:7.1f} h", flush=True)
    for name, pair, like in EVIDENCE:
        dataset_key, classes, train_size, test_size, _ = PAIRS[pair]
        experiment = EXPERIMENTS[name]
        variant = next(iter(experiment.variants))  # BatchBALD: the others share model, K and training, and skip its selection
        row = step_cost(experiment, dataset_key, classes, train_size, test_size, variant, args.score_points, generator, like=like)
        rows.append(row)
        print(f"{name:22} epoch {row['epoch_s']:5.1f} s x {row['epochs_per_step']:4.1f} | score {row['pool_scored']:6,} pts "
              f"{row['score_s']:6.1f} s | select {row['select_s']:5.1f} s | test {row['test_s']:5.1f} s | step {row['step_s']:6.1f} s | "
              f"trial {row['trial_s'] / 3600:5.2f} h | all {row['total_s'] / 3600:5.1f} h", flush=True)
    result = {"machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(), "threads": args.threads,
              "torch": torch.__version__, "load_average_start": load_start, "load_average_end": os.getloadavg(),
              "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"), "rows": rows, "before_after": before_after}
    Path(args.out).write_text(json.dumps(result, indent=1))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
