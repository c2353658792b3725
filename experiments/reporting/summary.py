"""The summary of a grid of runs: one CSV row a run, read from its finished folder.

Everything here reads finished run folders (``results.json``, ``metrics.jsonl``) or the
``summary.csv`` made from them, so the tables and plots can be remade at any time from the runs
alone; ``tables.py`` lays the rows out and ``report.py`` writes them into RESULTS.md.
"""

import csv
import json
from pathlib import Path

FIELDS = ("run", "dataset", "horizon", "role", "model", "teacher", "variant", "seed", "alpha",
          "beta", "test_mse", "test_mae", "val_mse", "params", "regressor_params", "epochs",
          "best_epoch", "ms_per_train_step", "inference_ms", "wall_s")
ROLES = ("teacher", "mlp", "distilled")


def result_row(run: str, results: dict, *, role: str, dataset: str, horizon: int, seed: int,
               teacher: str = "", variant: str = "", alpha=None, beta=None) -> dict:
  """One summary row from a run's ``results.json``."""
  return dict(
      run=run, dataset=dataset, horizon=int(horizon), role=role, model=results["model"],
      teacher=teacher, variant=variant, seed=int(seed),
      alpha="" if alpha is None else alpha, beta="" if beta is None else beta,
      test_mse=results["test"]["mse"], test_mae=results["test"]["mae"],
      # The best epoch's validation MSE: what a choice between runs may look at (not the test).
      val_mse=(results.get("best_val") or {}).get("mse"),
      params=results["num_params"], regressor_params=results.get("num_regressor_params", 0),
      epochs=results["epochs"], best_epoch=results["best_epoch"],
      ms_per_train_step=results["ms_per_train_step"],
      inference_ms=results["inference_ms_per_batch"], wall_s=results["wall_seconds"])


def reference_protocol(row) -> bool:
  """Whether ``row`` is a run of the reference's protocol: a teacher or MLP as its scripts
  train them, or the tuned distillation ("full"), not an ablation, sensitivity or teacher
  variant."""
  return row["variant"] in ("", "full")


def read_summary(path) -> list:
  path = Path(path)
  if not path.exists():
    return []
  with open(path, newline="") as f:
    rows = list(csv.DictReader(f))
  for r in rows:
    for k in ("horizon", "seed", "params", "regressor_params", "epochs", "best_epoch"):
      r[k] = int(r[k])
    for k in ("test_mse", "test_mae", "ms_per_train_step", "inference_ms", "wall_s"):
      r[k] = float(r[k])
    # Blank in rows written before the column existed, whose run folders may be gone.
    r["val_mse"] = float(r["val_mse"]) if r.get("val_mse") else None
  return rows


def write_summary(path, rows) -> None:
  """Writes ``rows`` (sorted, one per run) atomically, so an interrupted sweep keeps its file."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  order = {role: i for i, role in enumerate(ROLES)}
  rows = sorted(rows, key=lambda r: (r["dataset"], r["horizon"], r["teacher"],
                                     order.get(r["role"], 9), r["variant"], r["seed"]))
  tmp = path.with_name(path.name + ".tmp")
  with open(tmp, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=FIELDS)
    writer.writeheader()
    writer.writerows({k: "" if r.get(k) is None else r[k] for k in FIELDS} for r in rows)
  tmp.replace(path)


def merge_rows(old, new) -> list:
  """``old`` with the rows of ``new`` added or replaced (the key is the run folder)."""
  merged = {r["run"]: r for r in old}
  merged.update({r["run"]: r for r in new})
  return list(merged.values())


def read_metrics(workdir) -> list:
  """The per-epoch records of a run's ``metrics.jsonl`` (empty when there is none)."""
  path = Path(workdir) / "metrics.jsonl"
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def students(rows) -> list:
  """The student models of ``rows``: the ``model`` of their plain and distilled runs."""
  return sorted({r["model"] for r in rows if r["role"] != "teacher"})


def of_student(rows, student: str) -> list:
  """The teachers' rows and ``student``'s: a table compares one student with its teachers."""
  return [r for r in rows if r["role"] == "teacher" or r["model"] == student]

