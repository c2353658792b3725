r"""Checks our numbers against the reference PyTorch code measured on this machine kind.

From the repository root:

  python -m experiments.reference_check --workdir runs/reference_check          # everything
  python -m experiments.reference_check --horizons 96 --seeds 2021 --workdir runs/quick

ETTh1, L=720, reference settings (lr 0.01, type1, patience 5, batch 32, D=512, non-stationary),
iTransformer teacher (its ETTh1 settings, docs/method.md "Teacher settings"), alpha = beta =
1. For each horizon and seed: the teacher, the DMLP and the plain MLP without distillation, and
both distilled from the teacher of the same seed. Finished runs are reused, so the script
resumes where it stopped. Writes ``summary.csv`` (one row a run) and ``summary.md`` (mean +-
std over seeds next to the reference's figures, docs/pytorch.md "The reference code on this
machine") in the workdir.
"""

import csv
from pathlib import Path

import numpy as np
from absl import app, flags, logging

from timedistill_jax.configs import distill as distill_config
from timedistill_jax.configs import student as student_config
from timedistill_jax.configs import teacher as teacher_config
from timedistill_jax.run import run


# docs/pytorch.md, "The reference code on this machine": H=96 3-seed means, H=336 seed 2021.
REFERENCE = {
    96: {"teacher": (0.394, 0.424), "dmlp": (0.415, 0.436), "dmlp+kd": (0.371, 0.404),
         "mlp": (0.397, 0.425), "mlp+kd": (0.370, 0.401)},
    336: {"teacher": (0.460, 0.472), "dmlp": (0.510, 0.489), "dmlp+kd": (0.428, 0.441),
          "mlp": (0.459, 0.460), "mlp+kd": (0.418, 0.434)},
}
ROLES = ("teacher", "dmlp", "dmlp+kd", "mlp", "mlp+kd")


def runs_for(h: int, seed: int, root: Path):
  arg = f"dataset=etth1,pred_len={h},seed={seed}"
  teacher_dir = root / f"h{h}" / f"teacher_s{seed}"
  yield "teacher", teacher_config.get_config(arg + ",model=itransformer"), teacher_dir
  for student in ("dmlp", "mlp"):
    yield (student, student_config.get_config(arg + f",model={student}"),
           root / f"h{h}" / f"{student}_s{seed}")
    cfg = distill_config.get_config(arg + f",teacher=itransformer,student={student}")
    cfg.distill.alpha, cfg.distill.beta = 1.0, 1.0
    cfg.teacher.workdir = str(teacher_dir)
    yield student + "+kd", cfg, root / f"h{h}" / f"{student}_kd_s{seed}"


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  root = Path(_WORKDIR.value)
  rows = []
  for h in map(int, _HORIZONS.value):
    seeds = list(map(int, _SEEDS.value))
    seeds = seeds if h == 96 else seeds[:_LONG_SEEDS.value]
    for seed in seeds:
      for role, config, workdir in runs_for(h, seed, root):
        config.train.progress = False
        print(f"--- H={h} seed={seed} {role}: {workdir}", flush=True)
        r = run(config, workdir)
        rows.append(dict(horizon=h, seed=seed, role=role, mse=r["test"]["mse"],
                         mae=r["test"]["mae"], epochs=r["epochs"], best_epoch=r["best_epoch"],
                         params=r["num_params"], ms_per_step=r["ms_per_train_step"],
                         inference_ms=r["inference_ms_per_batch"], wall_s=r["wall_seconds"]))
  with open(root / "summary.csv", "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)

  lines = ["# ETTh1 against the reference PyTorch code (docs/pytorch.md)", "",
           "L=720, iTransformer teacher, alpha = beta = 1, lr 0.01, type1, patience 5, batch 32. "
           "Test MSE / MAE, mean +- std over seeds; the reference's figures in brackets.", "",
           "| H | seeds | " + " | ".join(ROLES) + " |", "| --- | --- |" + " --- |" * len(ROLES)]
  for h in sorted({r["horizon"] for r in rows}):
    cells = []
    for role in ROLES:
      sel = [r for r in rows if r["horizon"] == h and r["role"] == role]
      mse = np.array([r["mse"] for r in sel])
      mae = np.array([r["mae"] for r in sel])
      ref = REFERENCE.get(h, {}).get(role)
      ref_txt = f" [{ref[0]:.3f} / {ref[1]:.3f}]" if ref else ""
      cells.append(f"{mse.mean():.3f} +- {mse.std():.3f} / {mae.mean():.3f}{ref_txt}")
    n = len({r["seed"] for r in rows if r["horizon"] == h})
    lines.append(f"| {h} | {n} | " + " | ".join(cells) + " |")
  text = "\n".join(lines) + "\n"
  (root / "summary.md").write_text(text)
  print(text)


if __name__ == "__main__":
  # The command's flags, defined only when it runs: the experiment modules are imported
  # together (tests, tools) and several flag names recur among them.
  _WORKDIR = flags.DEFINE_string("workdir", "runs/reference_check", "Folder for all runs.")
  _HORIZONS = flags.DEFINE_list("horizons", ["96", "336"], "Horizons.")
  _SEEDS = flags.DEFINE_list("seeds", ["2021", "2022", "2023"], "Seeds (H=96).")
  _LONG_SEEDS = flags.DEFINE_integer("long_horizon_seeds", 1, "Seeds used for H > 96.")
  app.run(main)
