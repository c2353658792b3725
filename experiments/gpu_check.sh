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
# 3. an 80-member ensemble (ETTh1 H=96, the 16 alpha x beta pairs x 5 seeds) against one run;
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

# 3. 80 students as one program against one of them alone
say "80-member ensemble against one run"
TEACHER=runs/gpu_check/teacher_itransformer_etth1_96
DATASET=etth1
TSMOKE=""
[ "$SMOKE" = 1 ] && TSMOKE=",smoke=True"
if [ ! -f "$TEACHER/results.json" ]; then
  "$PY" -m timedistill_jax --config "teacher:dataset=$DATASET,model=itransformer,pred_len=96$TSMOKE" \
      --workdir "$TEACHER" --config.train.progress=False 2>&1 | tail -2 | tee -a "$LOG"
fi
KD="distill:dataset=$DATASET,teacher=itransformer,pred_len=96"
COMMON=(--config.teacher.workdir="$TEACHER" --config.train.progress=False)
[ "$SMOKE" = 1 ] && COMMON+=(--config.train.epochs=1 --config.train.max_steps_per_epoch=5)
GRID=(--config.ensemble.seeds=2021,2022,2023,2024,2025 --config.ensemble.alpha=0.1,0.5,1,2
      --config.ensemble.beta=0.1,0.5,1,2)
rm -rf runs/gpu_check/single runs/gpu_check/grid
t0=$(date +%s.%N)
"$PY" -m timedistill_jax --config "$KD" "${COMMON[@]}" --workdir runs/gpu_check/single \
    2>&1 | tail -1 | tee -a "$LOG"
t1=$(date +%s.%N)
( nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits -lms 250 \
    > runs/gpu_check/busy.txt 2>/dev/null & echo $! > runs/gpu_check/busy.pid ) || true
"$PY" -m timedistill_jax --config "$KD" "${COMMON[@]}" "${GRID[@]}" \
    --workdir runs/gpu_check/grid 2>&1 | tail -1 | tee -a "$LOG"
t2=$(date +%s.%N)
kill "$(cat runs/gpu_check/busy.pid 2>/dev/null)" 2>/dev/null || true
"$PY" - "$t0" "$t1" "$t2" "$OUT/benchmark_runs_gpu.md" <<'EOF' | tee -a "$LOG"
import json, sys
t0, t1, t2 = map(float, sys.argv[1:4])
single = json.load(open("runs/gpu_check/single/results.json"))
grid = json.load(open("runs/gpu_check/grid/results.json"))
busy = [float(x) for x in open("runs/gpu_check/busy.txt").read().split() if x.strip()] \
    if __import__("os").path.exists("runs/gpu_check/busy.txt") else []
lines = ["", "## 80 students as one program (ETTh1 H=96, 16 alpha x beta pairs x 5 seeds)", "",
         "| run | wall s | epochs | steps s | ms a step | test MSE |", "| --- |" + " --- |" * 5]
for name, r, wall in (("one distillation", single, t1 - t0), ("80-member ensemble", grid, t2 - t1)):
  steps = r["seconds"]["steps"]
  lines.append(f"| {name} | {wall:.1f} | {r['epochs']} | {steps:.1f} | "
               f"{r['ms_per_train_step']:.2f} | {r['test']['mse']:.4f} |")
lines += ["", f"80 single runs would take about {80 * (t1 - t0):.0f} s at the single run's wall "
          f"clock: the ensemble is {80 * (t1 - t0) / (t2 - t1):.1f}x that throughput."]
if busy:
  lines.append(f"GPU busy while the ensemble ran (nvidia-smi, every 250 ms): "
               f"{sum(busy) / len(busy):.0f}% on average over {len(busy)} samples.")
text = "\n".join(lines) + "\n"
open(sys.argv[4], "a").write(text)
print(text)
EOF

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
