r"""Our side of the teachers-vs-reference check at look-back 96 (ETTh1, H = 96).

At L = 720 the heavy teachers cost seconds per training step on a CPU, so the side-by-side
accuracy check runs at L = 96 with otherwise the reference's ETTh1 settings
(the ``teacher`` config). For each teacher this trains it, distils a plain MLP from it (the
``distill`` config) and, once, trains the undistilled MLP (the ``student`` config); then it
writes a CSV (and prints a Markdown table) from the workdirs, next to the reference's figures
read from a CSV (columns: teacher, mse, mae, epochs, ms_per_step, inference_ms), which are
measured with the reference's own run.py in a scratch folder (see results/teachers_l96.md).
From the repository root:

  TIMEDISTILL_DATA_DIR=/path/to/data python -m experiments.teachers_l96 \
      --teachers=timemixer,timesnet --epochs=3 --root=runs/teachers_l96 \
      --reference_csv=ref_l96.csv --out=results/teachers_l96

``--table_only`` skips training and only rebuilds the table from existing workdirs.
"""

import csv
import json
import os

from absl import app, flags

from timedistill_jax.configs import distill as distill_config
from timedistill_jax.configs import student as student_config
from timedistill_jax.configs import teacher as teacher_config


FIELDS = ["row", "teacher", "side", "mse", "mae", "rel_diff_mse_pct", "epochs",
          "ms_per_step", "inference_ms_b32"]


def _dirs(teacher):
  root, e, s = _ROOT.value, _EPOCHS.value, _SEED.value
  return (os.path.join(root, f"{teacher}_e{e}_s{s}"),
          os.path.join(root, f"kd_mlp_{teacher}_e{e}_s{s}"))


def _with_seq_len(config):
  config.data.seq_len = _SEQ_LEN.value
  config.train.progress = False
  return config


def train_all():
  from timedistill_jax.run import run  # JAX starts only when something trains
  for t in _TEACHERS.value:
    tdir, kdir = _dirs(t)
    if not os.path.exists(os.path.join(tdir, "results.json")):
      config = _with_seq_len(teacher_config.get_config(
          f"dataset=etth1,model={t},pred_len=96,seed={_SEED.value}"))
      config.train.epochs = _EPOCHS.value
      run(config, tdir)
    if not os.path.exists(os.path.join(kdir, "results.json")):
      config = _with_seq_len(distill_config.get_config(
          f"dataset=etth1,teacher={t},student=mlp,pred_len=96,seed={_SEED.value}"))
      config.teacher.workdir = tdir
      run(config, kdir)
  mdir = os.path.join(_ROOT.value, f"mlp_s{_SEED.value}")
  if not os.path.exists(os.path.join(mdir, "results.json")):
    run(_with_seq_len(student_config.get_config(
        f"dataset=etth1,model=mlp,pred_len=96,seed={_SEED.value}")), mdir)


def _ours(path):
  if not os.path.exists(os.path.join(path, "results.json")):
    return None
  with open(os.path.join(path, "results.json")) as f:
    r = json.load(f)
  return dict(mse=r["test"]["mse"], mae=r["test"]["mae"], epochs=r["epochs"],
              ms_per_step=r["ms_per_train_step"], inference_ms_b32=r["inference_ms_per_batch"])


def _reference():
  if not _REFERENCE.value:
    return {}
  with open(_REFERENCE.value) as f:
    return {r["teacher"].lower(): {k: float(v) for k, v in r.items() if k != "teacher" and v}
            for r in csv.DictReader(f)}


def rows():
  ref, out = _reference(), []
  for t in _TEACHERS.value:
    tdir, kdir = _dirs(t)
    ours, theirs = _ours(tdir), ref.get(t)
    if theirs:
      out.append(dict(row="teacher", teacher=t, side="reference", **{
          k: theirs.get(k) for k in ("mse", "mae", "epochs", "ms_per_step")},
          inference_ms_b32=theirs.get("inference_ms")))
    if ours:
      diff = 100 * (ours["mse"] / theirs["mse"] - 1) if theirs and theirs.get("mse") else None
      out.append(dict(row="teacher", teacher=t, side="ours", rel_diff_mse_pct=diff, **ours))
    kd = _ours(kdir)
    if kd:
      out.append(dict(row="distilled_mlp", teacher=t, side="ours", **kd))
  plain = _ours(os.path.join(_ROOT.value, f"mlp_s{_SEED.value}"))
  if plain:
    out.append(dict(row="plain_mlp", teacher="", side="ours", **plain))
  return out


def _fmt(v, spec):
  return "" if v is None else format(v, spec)


def write(table):
  os.makedirs(os.path.dirname(_OUT.value) or ".", exist_ok=True)
  with open(_OUT.value + ".csv", "w", newline="") as f:
    w = csv.DictWriter(f, FIELDS)
    w.writeheader()
    w.writerows({k: r.get(k) for k in FIELDS} for r in table)
  lines = ["| row | teacher | side | test MSE | test MAE | MSE diff vs ref | epochs | ms/step | "
           "inference ms (b32) |", "|" + " --- |" * 9]
  for r in table:
    diff = r.get("rel_diff_mse_pct")
    lines.append(
        f"| {r['row']} | {r['teacher']} | {r['side']} | {_fmt(r.get('mse'), '.4f')} | "
        f"{_fmt(r.get('mae'), '.4f')} | {'' if diff is None else f'{diff:+.1f} %'} | "
        f"{_fmt(r.get('epochs'), '.0f')} | {_fmt(r.get('ms_per_step'), '.0f')} | "
        f"{_fmt(r.get('inference_ms_b32'), '.1f')} |")
  print("\n".join(lines))  # results/teachers_l96.md embeds it with the run notes


def main(argv):
  del argv
  if not _TABLE_ONLY.value:
    train_all()
  write(rows())


if __name__ == "__main__":
  # The command's flags, defined only when it runs: the experiment modules are imported
  # together (tests, tools) and several flag names recur among them.
  _TEACHERS = flags.DEFINE_list("teachers", ["timemixer", "timesnet", "patchtst", "micn",
                                             "fedformer", "autoformer"], "Teachers, in order.")
  _EPOCHS = flags.DEFINE_integer("epochs", 3, "Teacher epochs (the reference's are 10).")
  _SEED = flags.DEFINE_integer("seed", 2021, "Seed (the reference's fix_seed is 2021).")
  _SEQ_LEN = flags.DEFINE_integer("seq_len", 96, "Look-back L.")
  _ROOT = flags.DEFINE_string("root", "runs/teachers_l96", "Folder for the workdirs.")
  _REFERENCE = flags.DEFINE_string("reference_csv", "", "The reference's figures (optional).")
  _OUT = flags.DEFINE_string("out", "results/teachers_l96", "Output stem (.csv is added).")
  _TABLE_ONLY = flags.DEFINE_bool("table_only", False, "Only rebuild the table.")
  app.run(main)
