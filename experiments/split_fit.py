r"""How well finished runs fit each split: MSE / MAE of their best checkpoint on train, val, test.

A distilled student learns the teacher's forecasts of the *training* windows, so a teacher that
fits the training split far more tightly than the validation split passes that on: this shows
it. Works for teachers, plain students and distilled students alike (any run folder with
``checkpoints/best``); metrics over every window, the last batch padded and masked, in
standardised space, evaluated as the run was, so the test column equals its ``results.json``.

From the repository root:

  TIMEDISTILL_DATA_DIR=/path/to/data python -m experiments.split_fit \
      runs/reproduce/etth1_H720/s2023/teacher_moderntcn runs/reproduce/etth1_H720/s2023/dmlp \
      --table results/split_fit_etth1_H720.md

Prints a Markdown table and, with ``--table``, writes it with a CSV beside it.
"""

import csv
from pathlib import Path

import ml_collections
from absl import app, flags, logging

from timedistill_jax import runs


SPLITS = ("train", "val", "test")


def split_fit(workdir) -> dict:
  """``{"run", "model", "train_mse", "train_mae", "val_mse", ..., "test_mae"}`` of one run,
  evaluated as the run itself evaluated (its eval batch; every window unless a smoke run)."""
  loaded = runs.restore_run(workdir)
  config = ml_collections.ConfigDict(loaded.metadata["config"])
  splits = runs.load_splits(config)
  evaluate = runs.Evaluator(loaded.model, config, splits, split_names=SPLITS)
  row = dict(run=str(workdir), model=config.model.name)
  for name in SPLITS:
    metrics = evaluate(loaded.variables, name)
    row[f"{name}_mse"], row[f"{name}_mae"] = metrics["mse"], metrics["mae"]
  return row


def table(rows) -> str:
  lines = ["| run | model | " + " | ".join(f"{s} MSE / MAE" for s in SPLITS) + " |",
           "|" + " --- |" * (2 + len(SPLITS))]
  for r in rows:
    lines.append(f"| {r['run']} | {r['model']} | " + " | ".join(
        f"{r[f'{s}_mse']:.4f} / {r[f'{s}_mae']:.4f}" for s in SPLITS) + " |")
  return "\n".join(lines)


def main(argv):
  if len(argv) < 2:
    raise app.UsageError("name one or more run folders (each with checkpoints/best)")
  logging.set_verbosity(logging.WARNING)  # Orbax logs every restore at INFO
  rows = [split_fit(w) for w in argv[1:]]
  text = table(rows)
  print(text)
  if _TABLE.value:
    out = Path(_TABLE.value)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    with open(out.with_suffix(".csv"), "w", newline="") as f:
      writer = csv.DictWriter(f, fieldnames=list(rows[0]))
      writer.writeheader()
      writer.writerows(rows)
    print(f"wrote {out} and {out.with_suffix('.csv')}")


if __name__ == "__main__":
  # The command's flags, defined only when it runs: the experiment modules are imported
  # together (tests, tools) and several flag names recur among them.
  _TABLE = flags.DEFINE_string("table", "", "Markdown file to write (a .csv goes beside it).")
  app.run(main)
