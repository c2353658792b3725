"""RESULTS.md: every table a grid's runs have data for, with the paper's numbers beside.

Used by ``experiments.reproduce``; the rows come from ``summary.py`` and the tables from
``tables.py``, so the report can be remade at any time from the runs alone.
"""

from pathlib import Path

from experiments.reporting.summary import of_student, reference_protocol, students
from experiments.reporting.tables import (efficiency_table, main_table, student_table,
                                          teacher_variant_table, teachers_table,
                                          validation_pick_table, variants_table)


def write_results_md(rows, path, *, sweeps_module) -> Path:
  """RESULTS.md: every table that ``rows`` have data for, with the paper's numbers beside."""
  sw = sweeps_module
  path = Path(path)
  # The tables follow one student, the reference's (DMLP) when it ran; a second student run
  # with ``experiments.reproduce --student`` gets its own comparison and the efficiency
  # table's rows.
  found = students(rows)
  primary = sw.STUDENT if sw.STUDENT in found or not found else found[0]
  all_rows, rows = rows, of_student(rows, primary)
  main_rows = [r for r in rows if reference_protocol(r)]
  teachers = sorted({r["teacher"] for r in rows if r["role"] == "distilled"})
  out = ["# TimeDistill in JAX: results against the paper", "",
         "Written by `python -m experiments.reproduce` from the runs in `summary.csv` (one row "
         "a run). Look-back L = 720, the reference's settings per dataset (docs/method.md, "
         "\"Training settings\"); test MSE / MAE in standardised space over every test window; "
         "mean ± std over seeds. The student is the DMLP of the official scripts, which the "
         "paper calls \"MLP\" (docs/method.md, \"Student\"); alpha / beta are the reference's "
         "tuned values per dataset and teacher (\"Training settings\"). \"vs MLP\" / "
         "\"vs teacher\": MSE improvement of the distilled student. The paper's TimeDistill "
         "averages use the ModernTCN teacher and 5 seeds; its per-horizon numbers were not "
         "published (docs/method.md, \"Published numbers\"). Timings are from a 2-core CPU, "
         "some taken while other jobs shared it: see `python -m experiments.benchmark` for "
         "clean figures.", ""]
  for t in teachers:
    if any(r["role"] == "distilled" and r["teacher"] == t and r["variant"] == "full"
           for r in rows):
      out += [f"## Main table, {t} teacher", "", main_table(main_rows, t, sw.PAPER_AVERAGES), ""]
  if len(teachers) > 1:
    out += ["## Teacher variety", "", "Teacher MSE → distilled MLP MSE (improvement over the "
            "MLP), averaged over the horizons run and the seeds that ran at every one of them (the "
            "main table's average row); ± is the std over seeds of each seed's average over the "
            "horizons.", "",
            teachers_table(main_rows, teachers), ""]
  for name, variants in (("Ablation", sw.ABLATION_VARIANTS),
                         # "full" (the tuned pair) as the reference column.
                         ("Sensitivity to alpha / beta", (sw.FULL,) + sw.SENSITIVITY_VARIANTS),
                         ("Learning-rate schedule", sw.SCHEDULE_VARIANTS)):
    names = {v.name for v in variants} - {"full"}
    for t in teachers:
      if any(r["variant"] in names and r["teacher"] == t for r in rows):
        out += [f"## {name}, {t} teacher", "", "Distilled MLP test MSE averaged over the "
                "horizons and seeds at which all the variants of a row ran (± over seeds); the "
                "variants that ran.", "", variants_table(rows, t, variants), ""]
  for t in teachers:
    picks = validation_pick_table(rows, t, [v.name for v in sw.SENSITIVITY_VARIANTS])
    if len(picks.splitlines()) > 2:
      out += [f"## Alpha / beta picked by validation MSE, {t} teacher", "", "Where the whole "
              "alpha x beta grid ran: per horizon and seed, the pair whose student has the "
              "lowest validation MSE (no test data), its test MSE, and the best pair on test "
              "in hindsight; mean over the seeds. A dataset's last line picks one pair for "
              "all its horizons, as the reference's scripts do.", "", picks, ""]
  known = {v.name: v for sweep in sw.SWEEPS.values() for v in sweep.variants}
  for t, v in sorted({(r["teacher"], r["variant"]) for r in rows
                      if r["role"] == "teacher" and r["variant"]}):
    table = teacher_variant_table(rows, t, v)
    if len(table.splitlines()) > 2:
      how = ", ".join(f"train.{k}={x}" for k, x in known[v].teacher_train) if v in known else v
      out += [f"## Teacher variant {v}: {t} with {how}", "", "Test MSE of the reference's "
              f"teacher and of the teacher trained with {how}, and of the MLP distilled from "
              "each (the tuned alpha / beta), at the horizons and seeds where all of them ran; "
              "the average is each seed's mean over the horizons, then mean ± std over seeds.",
              "", table, ""]
  others = [n for n in found if n != primary]
  for t in teachers if others else ():
    table = student_table(all_rows, t, [primary] + others)
    if len(table.splitlines()) > 2:
      out += [f"## Student, {t} teacher", "", "Test MSE of each student without and with "
              "distillation (the tuned alpha / beta), at the horizons and seeds where every "
              "student ran both; the average is each seed's mean over the horizons, then "
              "mean ± std over seeds.", "", table, ""]
  out += ["## Efficiency of the runs", "", efficiency_table(all_rows), ""]
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("\n".join(out))
  return path
