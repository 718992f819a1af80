"""Rewrite the `dataset` field of stored trial results to the path-free wording `batchbald_nb.data` now writes.

Until 2026-12-01 the MNIST and EMNIST descriptions named the data root they were loaded from (`root ../shared/data`,
`images in /work/shared/data/emnist`, `Root /work/shared/data.`), so one dataset read through two spellings of the same folder looked like two
datasets. Only those path phrases change; everything else in a results file is left byte-for-byte as it was written
(the file is rewritten atomically). Run it on a results folder: `python tools/normalise_dataset_descriptions.py results`.
"""
import json, re, sys
from pathlib import Path

from batchbald_nb.active_learning import write_json_atomic

PATTERNS = [
    (re.compile(r"\((torchvision), root [^)]*\)"), r"(\1's files)"),
    (re.compile(r"built from real EMNIST images in [^:]*:"), "built from real EMNIST images (the data root's emnist/ folder):"),
    (re.compile(r" Root [^ ]+\.$"), ""),  # Repeated MNIST's, at the end of its description
]


def normalise(description: str) -> str:
    for pattern, replacement in PATTERNS:
        description = pattern.sub(replacement, description)
    return description


def main(root: str) -> None:
    changed = 0
    for path in sorted(Path(root).glob("**/trial_*.json")):
        results = json.loads(path.read_text())
        new = normalise(results.get("dataset", ""))
        if new == results.get("dataset", ""):
            continue
        results["dataset"] = new
        write_json_atomic(path, results)
        changed += 1
    print(f"{changed} results file(s) rewritten under {root}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "results")
