"""Why `emnist_cpu` left models at chance, and what the authors' training changes: results/emnist_chance_study.json (chapter 12).

    .venv/bin/python tools/emnist_chance_study.py        # about 15 CPU-minutes

For models of the committed `emnist_cpu` trials that ended at chance after the third acquisition (test accuracy under 3.5%, against
1/47 = 2.1% for guessing; 2,000 test points put chance's standard error at 0.3 points), it retrains the model of that very step
(the same labelled points, validation set, initial weights and training seed, so "as recorded" reproduces the recorded model) with
one change at a time and with all of them (the training of `emnist_authors_cpu`):
the authors' model (emnist_model.py), validation with dropout off, balanced-permutation epochs, up to 20 epochs.
Every retrained model is tested as the trial tested it (the trial's test subsample, K = 10, its evaluation seed).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import torch

from batchbald_nb.active_learning import (TrialConfig, _initial_split, _make_dataset, evaluate, gather, step_seed, train_model)
from batchbald_nb.models import make_model

ROOT = Path(__file__).resolve().parent.parent
CHANCE = 0.035


def variants(config: TrialConfig) -> dict:
    t = config.training
    return {
        "as recorded": ({}, t),
        "authors' model only": ({"architecture": "code"}, t),
        "dropout-off validation only": ({}, replace(t, validation="deterministic")),
        "permutation epochs only": ({}, replace(t, epoch_sampling="permutation")),
        "up to 20 epochs only": ({}, replace(t, max_epochs=20)),
        "all (emnist_authors_cpu's training)": ({"architecture": "code"}, replace(t, validation="deterministic",
                                                                                   epoch_sampling="permutation", max_epochs=20)),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-cases", type=int, default=6, help="at most this many chance models (the first of each trial first)")
    parser.add_argument("--out", default=str(ROOT / "results" / "emnist_chance_study.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    cases = []
    for path in sorted((ROOT / "results" / "emnist_cpu").glob("*/trial_*.json")):
        trial = json.loads(path.read_text())
        chance = [s["step"] for s in trial["steps"] if s["step"] >= 3 and s["test_accuracy"] < CHANCE]
        cases += [(path, trial, step, rank) for rank, step in enumerate(chance)]
    total_chance = len(cases)
    cases = sorted(cases, key=lambda c: (c[3], str(c[0])))[: args.max_cases]  # each trial's first chance model, then its second, ...
    rows = []
    for path, trial, step, _ in cases:
        config = TrialConfig.from_dict(trial["config"])
        dataset = _make_dataset(config, None, False)
        initial, validation, _ = _initial_split(config, dataset)
        labelled = list(initial) + [i for s in trial["steps"][:step] for i in s["acquired_indices"]]
        x, y = gather(dataset.train, labelled)
        x_val, y_val = gather(dataset.train, validation)
        test_indices = torch.randperm(len(dataset.test), generator=torch.Generator().manual_seed(config.seed))[: config.test_subsample].tolist()
        x_test, y_test = gather(dataset.test, test_indices)
        row = {"trial": str(path.relative_to(ROOT)), "step": step, "labelled": len(labelled),
               "recorded_accuracy": trial["steps"][step]["test_accuracy"], "variants": {}}
        for name, (options, training) in variants(config).items():
            seed = step_seed(config.seed, step, "train")
            torch.manual_seed(seed)
            model = make_model(config.model, dataset.num_classes, **{**config.model_options, **options})
            start = time.process_time()
            result = train_model(model, x, y, x_val, y_val, training, seed=seed)
            accuracy = evaluate(model, x_test, y_test, config.test_num_samples_K, seed=step_seed(config.seed, step, "evaluate")).accuracy
            row["variants"][name] = {"accuracy": accuracy, "epochs": result.epochs, "best_epoch": result.best_epoch,
                                     "cpu_seconds": time.process_time() - start}
            print(f"{row['trial']} step {step}: {name:38} accuracy {accuracy:.3f} epochs {result.epochs} best {result.best_epoch}", flush=True)
        rows.append(row)
    out = Path(args.out)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps({"chance_threshold": CHANCE, "chance_models_after_third_acquisition": total_chance,
                               "models": sum(len(json.loads(p.read_text())["steps"]) for p in (ROOT / "results" / "emnist_cpu").glob("*/trial_*.json")),
                               "cases": rows}, indent=1))
    os.replace(tmp, out)
    print("wrote", out)


if __name__ == "__main__":
    main()
