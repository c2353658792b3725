r"""The ETTh1 story in one command: teacher, plain MLP, distilled MLP, and a results table.

  python -m timedistill_jax.demo --workdir runs/demo      # what `make demo` runs

Trains an iTransformer teacher (H=96, the reference settings), the plain MLP student without
distillation, and the same MLP distilled from the teacher (alpha = beta = 1, as in the reference
measurements in docs/pytorch.md), then prints and writes ``summary.md`` / ``summary.json`` in the
workdir. Finished runs are reused, so a second call only prints the table. When ETTh1 can be
neither found nor downloaded, it says so in one line and uses the built-in synthetic series.
"""

import json
import sys
from pathlib import Path

from absl import app, flags, logging

from timedistill_jax.errors import DataError, TimeDistillError

_WORKDIR = flags.DEFINE_string("workdir", "runs/demo", "Folder for the three runs.")
_DATASET = flags.DEFINE_string("dataset", "etth1", "Dataset (falls back to synthetic).")
_PRED_LEN = flags.DEFINE_integer("pred_len", 96, "Forecast horizon H.")
_SEED = flags.DEFINE_integer("seed", 2021, "Seed of all three runs.")
_SMOKE = flags.DEFINE_bool("smoke", False, "A few steps per run, for checking a set-up.")
_CACHE = flags.DEFINE_string("compilation_cache", "", "Persistent compilation cache folder "
                             "(off when empty; timedistill_jax.compilation).")


def pick_dataset(name: str) -> str:
  """``name`` if its file can be found or downloaded, else ``synthetic`` (said out loud)."""
  from timedistill_jax.data import load_dataset

  try:
    load_dataset(name, seq_len=720, label_len=48, pred_len=_PRED_LEN.value)
    return name
  except DataError as e:
    reason = str(e).splitlines()[0]
    print(f"NOTE: {name} could not be found or downloaded ({reason}); the demo uses the "
          "built-in synthetic series instead.")
    return "synthetic"


def demo_configs(dataset: str, pred_len: int, seed: int, smoke: bool, workdir: Path) -> list:
  from timedistill_jax.configs import distill, student, teacher

  arg = f"dataset={dataset},pred_len={pred_len},seed={seed},smoke={smoke}"
  t_cfg = teacher.get_config(f"{arg},model=itransformer")
  s_cfg = student.get_config(f"{arg},model=mlp")
  d_cfg = distill.get_config(f"{arg},teacher=itransformer,student=mlp")
  d_cfg.distill.alpha, d_cfg.distill.beta = 1.0, 1.0
  d_cfg.teacher.workdir = str(workdir / "teacher")
  return [("teacher (iTransformer)", t_cfg, workdir / "teacher"),
          ("MLP", s_cfg, workdir / "mlp"),
          ("MLP + TimeDistill", d_cfg, workdir / "mlp_distilled")]


def table(rows) -> str:
  head = "| model | test MSE | test MAE | parameters | ms / train step | inference ms / batch 32 |"
  lines = [head, "| --- | --- | --- | --- | --- | --- |"]
  for label, r in rows:
    params = f"{r['num_params']:,}"
    if r.get("num_regressor_params"):
      params += f" (+{r['num_regressor_params']:,} regressor in training)"
    lines.append(f"| {label} | {r['test']['mse']:.4f} | {r['test']['mae']:.4f} | {params} | "
                 f"{r['ms_per_train_step']:.1f} | {r['inference_ms_per_batch']:.2f} |")
  return "\n".join(lines)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
  from timedistill_jax.run import run

  workdir = Path(_WORKDIR.value)
  if _CACHE.value:
    from timedistill_jax import compilation
    compilation.enable(_CACHE.value)
  try:
    dataset = pick_dataset(_DATASET.value)
    rows = []
    for label, config, run_dir in demo_configs(dataset, _PRED_LEN.value, _SEED.value,
                                               _SMOKE.value, workdir):
      print(f"\n=== {label}: {run_dir}")
      rows.append((label, run(config, run_dir)))
  except TimeDistillError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  title = f"{dataset}, L=720, H={_PRED_LEN.value}, seed {_SEED.value}"
  text = f"# TimeDistill demo: {title}\n\n{table(rows)}\n"
  (workdir / "summary.md").write_text(text)
  (workdir / "summary.json").write_text(json.dumps(
      {label: r for label, r in rows}, indent=1, default=float))
  print("\n" + text + f"\n(written to {workdir / 'summary.md'})")


if __name__ == "__main__":
  app.run(main)
