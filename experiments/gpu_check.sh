#!/usr/bin/env bash
# The GPU check: run as it is, from the repository root, on a machine with a GPU (about 8
# minutes on one H100). Writes results/benchmark_runs_gpu.md (and .json) and a log beside it.
#
#   bash experiments/gpu_check.sh            # the whole check
#   bash experiments/gpu_check.sh --smoke    # every part at toy size, on any machine
#
# 1. installs what is missing: the package's dependencies from ./.whl (wheels carried along,
#    for a machine without network) or from the package index;
# 2. the training-core benchmark on the GPU (steps, whole runs, 5 seeds as one ensemble);
# 3. an 80-member ensemble (ETTh1 H=96, the 16 alpha x beta pairs x 5 seeds) against single
#    runs of two of its settings (experiments/benchmark_grid.py);
# 4. the parallel checks on the real devices;
# 5. one full ETTh1 H=96 unit: teacher, MLP, distilled MLP (the demo);
# with the GPU's busy fraction (nvidia-smi samples) while the ensemble runs.
# ETTh1 is read from $TIMEDISTILL_DATA_DIR, else ./.data, else the demo's synthetic fallback.
set -euo pipefail
cd "$(dirname "$0")/.."
SMOKE=0
[ "${1:-}" = "--smoke" ] && SMOKE=1
PY=${PYTHON:-python3}
OUT=${GPU_CHECK_OUT:-results}
mkdir -p "$OUT" runs/gpu_check
LOG="$OUT/benchmark_runs_gpu.log"
: > "$LOG"
say() { echo "== $*" | tee -a "$LOG"; }

# 1. dependencies
if ! "$PY" -c "import flax, optax, orbax.checkpoint, ml_collections, pandas, tqdm, absl" \
    2>/dev/null; then
  if [ -d .whl ]; then
    "$PY" -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
  else
    "$PY" -m pip install -q -e .
  fi
fi
export PYTHONPATH=".:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
if [ -z "${TIMEDISTILL_DATA_DIR:-}" ] && [ -d .data ]; then
  export TIMEDISTILL_DATA_DIR="$PWD/.data"
fi
"$PY" -c "import jax; print('jax', jax.__version__, jax.devices())" | tee -a "$LOG"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | tee -a "$LOG" || true

# 2. the training-core benchmark
say "benchmark_runs"
if [ "$SMOKE" = 1 ]; then
  BENCH=(--rounds 1 --seconds 0.1 --steps_per_call 10 --noruns --noensembles)
else
  BENCH=(--rounds 3 --seconds 0.5)
fi
"$PY" -m experiments.benchmark_runs "${BENCH[@]}" --workdir runs/gpu_check \
    --out "$OUT/benchmark_runs_gpu.md" 2>&1 | tee -a "$LOG"

# 3. 80 students as one program against single runs of the same settings
say "80-member ensemble against single runs"
GRID=(--workdir runs/gpu_check --out "$OUT/benchmark_runs_gpu.md" --append --singles 2)
[ "$SMOKE" = 1 ] && GRID+=(--smoke)
"$PY" -m experiments.benchmark_grid "${GRID[@]}" 2>&1 | tee -a "$LOG"

# 4. the parallel checks on the real devices
say "parallel modes on the real devices"
"$PY" -m experiments.benchmark_parallel --devices "$("$PY" -c 'import jax; print(jax.device_count())')" \
    --fake_cpu_devices=false 2>&1 | tee -a "$LOG" | tee -a "$OUT/benchmark_runs_gpu.md"
"$PY" -m pytest -q -p no:cacheprovider tests/test_parallel.py 2>&1 | tail -3 | tee -a "$LOG"

# 5. one full unit: teacher, MLP, distilled MLP
say "the ETTh1 H=96 unit (make demo)"
DEMO=(--workdir runs/gpu_check/demo)
[ "$SMOKE" = 1 ] && DEMO+=(--smoke)
"$PY" -m timedistill_jax.demo "${DEMO[@]}" 2>&1 | tail -8 | tee -a "$LOG"
{ echo; echo "## The ETTh1 H=96 unit (python -m timedistill_jax.demo)"; echo;
  tail -n +3 runs/gpu_check/demo/summary.md; } >> "$OUT/benchmark_runs_gpu.md"
say "done: $OUT/benchmark_runs_gpu.md"
