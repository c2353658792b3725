r"""The paper's sensitivity grid times five seeds (80 students) as one program, against single runs.

From the repository root (ETTh1 in the data folder):

  TIMEDISTILL_DATA_DIR=/path/to/data python -m experiments.benchmark_grid \
      --out results/benchmark_grid_cpu.md

Distils the ETTh1 H=96 iTransformer teacher (trained once under ``--workdir`` and reused) into
the student with every (seed, alpha, beta) of seeds 2021-2025 x alpha, beta in {0.1, 0.5, 1, 2}:

1. ``--singles`` of those 80 settings, spread over the grid, each as a single run in a fresh
   ``python -m timedistill_jax`` process (wall clock from process start). The sum of all 80
   single runs is estimated as 80 times their mean: running all of them would take as long
   again as the rest of the benchmark several times over.
2. The 80 as one ensemble, one fresh process, one command; on a GPU the device's busy share
   while it runs, sampled with nvidia-smi.
3. The ensemble's members against the sampled single runs: same best epoch, test MSE gap.

All processes share one compilation cache (filled by the first single run), as a sweep would.
Writes a Markdown section (``--append`` adds it to an existing file) with the members' test MSE
over the alpha x beta grid; ``--report_only`` writes it again from the runs in ``--workdir``.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from absl import app, flags

from experiments.benchmark_runs import ROOT, teacher_dir

SEEDS = (2021, 2022, 2023, 2024, 2025)
GRID = (0.1, 0.5, 1.0, 2.0)


def settings() -> list:
  """The members in the ensemble's order: seeds outermost, then alpha, then beta."""
  return [(s, a, b) for s in SEEDS for a in GRID for b in GRID]


def sample(n: int) -> list:
  """``n`` member indices spread over the grid: the seeds in turn, and (alpha, beta) on the
  diagonals of the 4 x 4 pair grid, so 4 or more visit every alpha and every beta."""
  g = len(GRID)
  return sorted((k % len(SEEDS)) * g * g + (k % g) * g + (k + k // g) % g for k in range(n))


def timed(args: list, workdir: Path) -> tuple:
  """One fresh process; its wall clock from start and its ``results.json``."""
  shutil.rmtree(workdir, ignore_errors=True)
  t = time.perf_counter()
  proc = subprocess.run([sys.executable, "-m", "timedistill_jax", *args, "--workdir",
                         str(workdir)], cwd=ROOT, capture_output=True, text=True)
  wall = time.perf_counter() - t
  if proc.returncode:
    raise SystemExit(f"ERROR: {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
  return wall, json.loads((workdir / "results.json").read_text())


class BusySampler:
  """The GPU's utilisation every 250 ms through nvidia-smi, when there is one."""

  def __init__(self, path: Path):
    self.path, self.proc = path, None
    if shutil.which("nvidia-smi"):
      self.proc = subprocess.Popen(
          ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
           "-lms", "250"], stdout=path.open("w"), stderr=subprocess.DEVNULL)

  def stop(self) -> list:
    if self.proc is None:
      return []
    self.proc.terminate()
    self.proc.wait()
    return [float(x) for x in self.path.read_text().split() if x.strip()]


def measure(root: Path) -> dict:
  """Runs the sampled single runs and the ensemble; returns (and keeps in ``root``) their wall
  clocks and results."""
  root.mkdir(parents=True, exist_ok=True)
  teacher = teacher_dir(root, smoke=_SMOKE.value)
  config = f"distill:dataset=etth1,teacher=itransformer,student={_STUDENT.value},pred_len=96"
  common = ["--config", config, f"--config.teacher.workdir={teacher}",
            "--config.train.progress=False", f"--compilation_cache={root / 'xla_cache'}"]
  if _SMOKE.value:
    common += ["--config.train.epochs=1", "--config.train.max_steps_per_epoch=5"]
  grid = settings()
  singles = {}
  for i in sample(_SINGLES.value):
    seed, alpha, beta = grid[i]
    wall, results = timed([*common, f"--config.seed={seed}", f"--config.distill.alpha={alpha}",
                           f"--config.distill.beta={beta}"], root / f"single_{i}")
    singles[i] = {"wall": wall, "epochs": results["epochs"], "best_epoch": results["best_epoch"],
                  "test_mse": results["test"]["mse"], "seed": seed, "alpha": alpha,
                  "beta": beta}
    print(f"single run {i} (seed {seed}, alpha {alpha:g}, beta {beta:g}): {wall:.1f} s, "
          f"{results['epochs']} epochs", flush=True)
  busy = BusySampler(root / "busy.txt")
  wall, results = timed([*common, "--config.ensemble.seeds=" + ",".join(map(str, SEEDS)),
                         "--config.ensemble.alpha=" + ",".join(f"{g:g}" for g in GRID),
                         "--config.ensemble.beta=" + ",".join(f"{g:g}" for g in GRID)],
                        root / "grid")
  print(f"80-member ensemble: {wall:.1f} s, {results['epochs']} epochs", flush=True)
  record = {"student": _STUDENT.value, "smoke": _SMOKE.value, "load": os.getloadavg()[0],
            "singles": singles, "ensemble": {"wall": wall, "busy": busy.stop()}}
  (root / "benchmark_grid.json").write_text(json.dumps(record, indent=1))
  return record


def render(record: dict, results: dict) -> str:
  """The Markdown section of a measurement and the ensemble's ``results.json``."""
  singles, wall = record["singles"], record["ensemble"]["wall"]
  members, busy = results["members"], record["ensemble"]["busy"]
  epochs = [m["epochs"] for m in members]
  step_ms = results["ms_per_train_step"]
  lines = ["", f"## 80 students as one program: ETTh1 H=96, {record['student'].upper()} from the "
           "iTransformer teacher, alpha x beta in {0.1, 0.5, 1, 2} x seeds 2021-2025", "",
           f"`python -m experiments.benchmark_grid{' --smoke' if record['smoke'] else ''}`; "
           f"load average (1 min) at the end: {record['load']:.2f}.", "",
           "| run | wall s | epochs | ms a step (all members) | ms a member-step | in steps |",
           "| --- |" + " --- |" * 5,
           f"| one ensemble of 80 | {wall:.1f} | {results['epochs']} (members: "
           f"{min(epochs)}-{max(epochs)}, mean {np.mean(epochs):.1f}) | {step_ms:.1f} | "
           f"{step_ms / len(members):.2f} | {results['seconds']['steps'] / wall:.0%} |"]
  for s in singles.values():
    lines.append(f"| single run: seed {s['seed']}, alpha {s['alpha']:g}, beta {s['beta']:g} | "
                 f"{s['wall']:.1f} | {s['epochs']} | | | |")
  if singles:
    mean_single = float(np.mean([s["wall"] for s in singles.values()]))
    estimate = len(members) * mean_single
    gaps = [abs(members[int(i)]["test"]["mse"] - s["test_mse"]) / s["test_mse"]
            for i, s in singles.items()]
    same = sum(members[int(i)]["best_epoch"] == s["best_epoch"] for i, s in singles.items())
    lines += ["", f"80 single runs one after another: about {estimate:.0f} s (80 x the "
              f"{len(singles)} sampled runs' mean of {mean_single:.1f} s). The ensemble's "
              f"throughput: {estimate / wall:.2f}x theirs. Its members against the sampled "
              f"single runs: {same} of {len(singles)} with the same best epoch, test MSE apart "
              f"by at most {max(gaps):.1e} (relative)."]
  if busy:
    lines.append(f"GPU busy while the ensemble ran (nvidia-smi, every 250 ms): "
                 f"{np.mean(busy):.0f}% on average over {len(busy)} samples.")
  table = {}
  for m in members:
    table.setdefault((m["alpha"], m["beta"]), []).append(m["test"]["mse"])
  best = min(table, key=lambda k: np.mean(table[k]))
  lines += ["", "Test MSE of the members, mean over the 5 seeds (the paper's Fig. 10 on ETTh1, "
            "here with the iTransformer teacher); bold: the lowest.", "",
            "| alpha \\ beta | " + " | ".join(f"{b:g}" for b in GRID) + " |",
            "| --- |" + " --- |" * len(GRID)]
  for a in GRID:
    cells = [f"{np.mean(table[(a, b)]):.4f}" for b in GRID]
    cells = [f"**{c}**" if (a, b) == best else c for b, c in zip(GRID, cells)]
    lines.append(f"| {a:g} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  root = Path(_WORKDIR.value)
  if _REPORT_ONLY.value:
    record = json.loads((root / "benchmark_grid.json").read_text())
  else:
    record = measure(root)
  text = render(record, json.loads((root / "grid" / "results.json").read_text()))
  print(text)
  out = Path(_OUT.value)
  out.parent.mkdir(parents=True, exist_ok=True)
  with out.open("a" if _APPEND.value else "w") as f:
    f.write(text if _APPEND.value else "# The sensitivity grid as one ensemble\n" + text)
  print(f"wrote {out}")


if __name__ == "__main__":
  _OUT = flags.DEFINE_string("out", "results/benchmark_grid_cpu.md", "Markdown file to write.")
  _APPEND = flags.DEFINE_bool("append", False, "Append the section to --out instead.")
  _STUDENT = flags.DEFINE_enum("student", "mlp", ["mlp", "dmlp"], "The student.")
  _SINGLES = flags.DEFINE_integer("singles", 6, "Grid points also run as single runs.",
                                  lower_bound=0, upper_bound=80)
  _SMOKE = flags.DEFINE_bool("smoke", False, "Toy sizes: 1 epoch of 5 steps, smoke models.")
  _WORKDIR = flags.DEFINE_string("workdir", "runs/benchmark_grid", "Folder of the runs.")
  _REPORT_ONLY = flags.DEFINE_bool("report_only", False, "Write the section again from the "
                                   "runs in --workdir, measuring nothing.")
  app.run(main)
