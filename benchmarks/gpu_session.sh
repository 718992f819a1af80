#!/usr/bin/env bash
# One GPU session in one command (at most 9 minutes): the CUDA tests, BatchBALD on the GPU against the CPU, then the paper-scale
# MNIST runs until the deadline. The work is done by benchmarks/gpu_session.py; this file is the command line.
#
# 1. Here, once (copies MNIST's four .gz files, 11.6 MiB, from the data root -- /work/shared/data/MNIST/raw -- into .gpu_data/,
#    which it adds to .git/info/exclude; ../shared/data does not travel to the GPU machine, and that machine has no internet):
#
#        .venv/bin/python benchmarks/gpu_session.py prepare
#
# 2. The device tool's call (the script stops its trials 25 s before the 540 s budget, so it returns well inside timeout_s):
#
#        run(command="bash benchmarks/gpu_session.sh", carry=[".gpu_data"], timeout_s=590)
#
#    (a) tests/test_cuda.py on CUDA (limit 120 s; output in cuda_tests.log);
#    (b) BatchBALD b = 10 on benchmark_pool(N=60,000, K=100, C=10), m = 10,000: on the GPU (warm-up excluded, median of 3; input on
#        the GPU, and float32 input on the CPU with device='cuda'), then on the CPU once with 1 thread and once with all threads,
#        picks compared (gpu_batchbald_cuda.json; limit 180 s);
#    (c) mnist_paper, BatchBALD b=10 and BALD b=10, seeds 0-5: 12 trials, one process each, all on the one GPU, resuming from the
#        repository's results/mnist_paper/ (copied into a working folder first); every trial's file is rewritten atomically after
#        each step, the bundle mnist_paper_results.tar.gz in $OUT is refreshed every 15 s, and at the deadline the trials are
#        stopped (SIGTERM, then SIGKILL), losing at most the step in flight.
#    Everything lands in $OUT's top level (5 files: gpu_session.json, session.log, cuda_tests.log, gpu_batchbald_cuda.json,
#    mnist_paper_results.tar.gz).
#
# 3. Here, after the call (FILES_AT = the folder the tool names as files_at): the benchmark into benchmarks/results/ (chapter 14 prints
#    every *_cuda.json), the trials into results/mnist_paper/ where they extend what is there; the next session resumes from them:
#
#        .venv/bin/python benchmarks/gpu_session.py collect FILES_AT
#        git add benchmarks/results/gpu_batchbald_cuda.json results/mnist_paper && git commit -m "GPU session: ..."
#
# Rehearsal on any CPU (about a minute; the toy experiment, a 1,000-point pool, the tests CPU against CPU, a run stopped and resumed):
#
#        bash benchmarks/gpu_session.sh --dry-run --out /tmp/gpu_dry        (or DRY_RUN=1 OUT=/tmp/gpu_dry bash benchmarks/gpu_session.sh)
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi  # the device: python3
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TQDM_DISABLE=1
out_args=()
[ -n "${OUT:-}" ] && out_args=(--out "$OUT")
exec "$PY" benchmarks/gpu_session.py run --budget "${BUDGET:-540}" "${out_args[@]}" "$@"
