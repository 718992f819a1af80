#!/usr/bin/env bash
# Every benchmark behind chapter 14, one after the other (they must not overlap: each times itself). About 3 hours on 2 shared cores,
# most of it batchbald_redux. Needs: .venv/bin/pip install --no-deps -r benchmarks/requirements.txt
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export TQDM_DISABLE=1
$PY benchmarks/lazy_sampled.py          # ~20 min: lazy vs plain greedy once configurations are sampled
$PY benchmarks/kernel_study.py          # ~10 min: dtype policy errors, kernel speed, threads
$PY benchmarks/run_benchmarks.py        # ~1.5 h: the issue's five configurations, ours vs batchbald_redux 2.0.5
$PY benchmarks/run_benchmarks.py --suite memory    # ~2 min: a 1,000,000-point pool
$PY benchmarks/run_benchmarks.py --suite scaling   # ~45 min: time against N, K, C and b
$PY benchmarks/tile_size.py             # ~1 min: the kernel tile size and q log q
$PY benchmarks/scoring_batch.py         # ~5 min: inputs per MC dropout forward pass on a CPU
