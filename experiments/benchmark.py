r"""Parameters, inference latency, peak memory and train-step time of every model on a dataset's
shape, with the paper's efficiency figures (docs/method.md, "Published numbers") beside the
ratios. From the repository root:

  python -m experiments.benchmark --dataset ecl                      # the paper's Fig. 2 shape
  python -m experiments.benchmark --dataset etth1 --models dmlp,moderntcn --pred_len 336

Every model is built with the reference's settings for the dataset (timedistill_jax.configs),
random weights and a random batch of the dataset's shape (C channels, L = 720, 4 time
features), so ECL, Traffic and Solar shapes are measured without their files; the cost of a
step does not depend on the values. Per model: parameters; inference at ``--batch`` (eval
mode, jitted, median after warm-up, each call ended with ``block_until_ready``); XLA's peak
memory of the compiled program (arguments + temporaries + outputs, from ``memory_analysis``; on
a GPU also the allocator's peak); ms per jitted training step (forward, backward and Adam). A
model slower than the time budget is timed fewer times (at least twice); one that does not fit
in memory is reported as such. Writes ``<out>/benchmark_<dataset>_H<h>_<platform>.md`` and
``.csv`` (``_L<l>`` and ``_B<b>`` after the dataset when ``--seq_len`` is not 720 or ``--batch``
not 32).
"""

import csv
import functools
import os
import sys
import time
from pathlib import Path

import jax
import numpy as np
from absl import app, flags

from timedistill_jax import steps
from timedistill_jax.configs import common, sweeps
from timedistill_jax.configs import student as student_config
from timedistill_jax.configs import teacher as teacher_config
from timedistill_jax.data import DATASETS, dataset_name
from timedistill_jax.data.time_features import num_time_features
from timedistill_jax.errors import ConfigError, TimeDistillError
from timedistill_jax.models import build_model, count_params
from timedistill_jax.train_state import create_train_state, make_optimizer

STUDENTS = ("dmlp", "mlp")
HOST_FRACTION = 0.35  # of the host's memory; see check_fits


def timed_ms(fn, *, repeats: int, budget_s: float) -> tuple:
  """(median ms, calls) of ``fn`` after one warm-up call; stops early when over budget.

  Not ``timing.median_ms``: a teacher on a big shape may take seconds a call, so the number of
  calls is bounded by a time budget, and the count is reported with the figure."""
  jax.block_until_ready(fn())
  times = []
  start = time.perf_counter()
  while len(times) < repeats and (len(times) < min(2, repeats)
                                  or time.perf_counter() - start < budget_s):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t)
  return 1000 * float(np.median(times)), len(times)


def peak_mb(jitted, *args) -> float:
  """Arguments + temporaries + outputs of the compiled program (aliased buffers once)."""
  m = jitted.lower(*args).compile().memory_analysis()
  if m is None:
    return float("nan")
  total = (m.argument_size_in_bytes + m.temp_size_in_bytes + m.output_size_in_bytes
           - m.alias_size_in_bytes)
  return total / 2**20


def check_fits(peak: float, what: str, host_fraction: float = HOST_FRACTION) -> None:
  """Refuses a program too big for this host's memory (CPU): running it would get the process
  killed by the OS, with every row measured so far.

  XLA:CPU's reported peak undercounts what its runtime allocates: PatchTST on the ECL shape at
  batch 32 reports 9.0 GiB and was killed at 23 GiB resident; ModernTCN reports 8.4 GiB and runs
  on a 24 GiB host with nothing else running. Hence the default margin of 35%
  (``--host_fraction``)."""
  if jax.devices()[0].platform != "cpu":
    return
  host_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
  if peak > host_fraction * host_mb:
    raise MemoryError(f"{what} needs {peak / 1024:.1f} GiB by XLA's count, over "
                      f"{host_fraction:.0%} of this host's {host_mb / 1024:.1f} GiB (XLA:CPU "
                      "allocates about twice its count); try a smaller --batch, or a larger "
                      "--host_fraction on a host with nothing else running")


def model_config(name: str, dataset: str, pred_len: int, seq_len: int = 720):
  arg = f"dataset={dataset},pred_len={pred_len},model={name}"
  config = (student_config if name in STUDENTS else teacher_config).get_config(arg)
  config.data.seq_len = seq_len
  return config


def random_batch(config, channels: int, batch: int) -> dict:
  d, f = config.data, num_time_features(config.data.freq)
  rng = np.random.default_rng(0)
  normal = lambda *s: rng.standard_normal(s).astype(np.float32)
  uniform = lambda *s: rng.uniform(-0.5, 0.5, s).astype(np.float32)
  return dict(x=normal(batch, d.seq_len, channels),
              y=normal(batch, d.label_len + d.pred_len, channels),
              x_mark=uniform(batch, d.seq_len, f),
              y_mark=uniform(batch, d.label_len + d.pred_len, f),
              mask=np.ones(batch, np.float32))


def measure(name: str, dataset: str, channels: int, *, pred_len: int = 96, seq_len: int = 720,
            batch_size: int = 32, repeats: int = 20, budget_s: float = 30.0,
            train: bool = True, host_fraction: float = HOST_FRACTION) -> dict:
  """One model's row: params, inference ms and peak MB, train-step ms and peak MB."""
  config = model_config(name, dataset, pred_len, seq_len)
  d = config.data
  model = build_model(config.model, seq_len=d.seq_len, label_len=d.label_len,
                      pred_len=d.pred_len, enc_in=channels)
  batch = random_batch(config, channels, batch_size)
  one = {k: v[:1] for k, v in batch.items()}  # parameters do not depend on the batch size
  variables = jax.jit(lambda r: model.init({"params": r, "dropout": r}, one["x"], one["x_mark"],
                                           one["y_mark"], train=False, mask=one["mask"]))(
                                               jax.random.PRNGKey(0))
  row = dict(model=name, role="student" if name in STUDENTS else "teacher",
             params=count_params(variables))
  infer = jax.jit(functools.partial(steps.predict_step, model=model))
  row["infer_peak_mb"] = peak_mb(infer, variables, batch)
  try:
    check_fits(row["infer_peak_mb"], "inference", host_fraction)
  except MemoryError as e:
    return row | {"error": str(e)}
  row["inference_ms"], row["inference_calls"] = timed_ms(
      lambda: infer(variables, batch), repeats=repeats, budget_s=budget_s)
  if train:
    tx = make_optimizer(config.optim, 100, config.train.epochs)
    state = create_train_state({"model": variables["params"]}, variables.get("batch_stats", {}),
                               tx, jax.random.PRNGKey(1))
    step = jax.jit(functools.partial(steps.train_step, model=model, pred_len=d.pred_len),
                   donate_argnums=0)
    row["train_peak_mb"] = peak_mb(step, state, batch)
    try:
      check_fits(row["train_peak_mb"], "the training step", host_fraction)
    except MemoryError as e:
      return row | {"error": str(e)}
    box = {"state": state}

    def call():
      box["state"], metrics = step(box["state"], batch)
      return metrics["loss"]

    row["train_step_ms"], row["train_calls"] = timed_ms(call, repeats=repeats,
                                                        budget_s=budget_s)
  if jax.devices()[0].platform == "gpu":
    stats = jax.devices()[0].memory_stats() or {}
    row["device_peak_mb"] = stats.get("peak_bytes_in_use", float("nan")) / 2**20
  return row


def ratios_table(rows, student: str = "dmlp") -> list:
  """Speed-up and parameter ratio of the student against each teacher, next to the paper's."""
  base = next((r for r in rows if r["model"] == student and "error" not in r), None)
  if base is None:
    return []
  p_ms, p_params = sweeps.PAPER_EFFICIENCY["mlp"]
  lines = [f"Student: {student}. Paper (ECL, GPU, averaged over horizons): the student at "
           f"{p_ms} ms and {p_params / 1e6:.1f} M parameters.", "",
           "| teacher | inference speed-up of the student | paper | parameter ratio | paper |",
           "| --- | --- | --- | --- | --- |"]
  for r in rows:
    if r["role"] != "teacher" or "inference_ms" not in r:
      continue
    paper = sweeps.PAPER_EFFICIENCY.get(r["model"])
    p_speed = f"{paper[0] / p_ms:.1f}x" if paper else "—"
    p_ratio = f"{paper[1] / p_params:.0f}x" if paper else "—"
    lines.append(f"| {r['model']} | {r['inference_ms'] / base['inference_ms']:.1f}x | {p_speed} | "
                 f"{r['params'] / base['params']:.1f}x | {p_ratio} |")
  return lines


def read_rows(path) -> list:
  """The rows of an earlier CSV, numbers as numbers."""
  with open(path, newline="") as f:
    rows = list(csv.DictReader(f))
  return [{k: _number(v) for k, v in r.items() if v != ""} for r in rows]


def _number(text: str):
  for kind in (int, float):
    try:
      return kind(text)
    except ValueError:
      pass
  return text


def merge_rows(old, new, measured) -> list:
  """``new`` plus the ``old`` rows of models not measured now, in the order of the models."""
  by_model = {r["model"]: r for r in old if r["model"] not in measured}
  by_model.update({r["model"]: r for r in new})
  order = STUDENTS + common.TEACHERS
  return sorted(by_model.values(), key=lambda r: order.index(r["model"]))


def table_stem(out: Path, dataset: str, seq_len: int, pred_len: int, batch: int,
               platform: str) -> Path:
  """Where a setting's table goes, without its suffix. Every setting gets a file of its own, so
  ``--merge`` never puts rows measured at another look-back or batch into one table; the
  paper's L=720 and batch 32 go unnamed."""
  look_back = "" if seq_len == 720 else f"_L{seq_len}"
  batch_tag = "" if batch == 32 else f"_B{batch}"
  return out / f"benchmark_{dataset}{look_back}{batch_tag}_H{pred_len}_{platform}"


def main(argv):
  del argv
  dataset = dataset_name(_DATASET.value)  # Time-Series-Library's names too, any case
  try:
    common.check_name("dataset", dataset, tuple(DATASETS))
    for m in _MODELS.value:
      common.check_name("model", m, STUDENTS + common.TEACHERS)
    if not 0 < _HOST_FRACTION.value <= 1:
      raise ConfigError(f"--host_fraction={_HOST_FRACTION.value} is not a share of the host's "
                        "memory; give a number in (0, 1], e.g. 0.4.")
  except TimeDistillError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  channels = DATASETS[dataset].num_channels or 7
  device = jax.devices()[0]
  setting = (f"{dataset} shape (C={channels}), L={_SEQ_LEN.value}, H={_PRED_LEN.value}, "
             f"batch {_BATCH.value}; "
             f"{device.platform} ({device.device_kind}), {os.cpu_count()} CPUs visible, "
             f"jax {jax.__version__}")
  print(setting)
  rows = []
  for name in _MODELS.value:
    t0 = time.time()
    try:
      row = measure(name, dataset, channels, pred_len=_PRED_LEN.value, seq_len=_SEQ_LEN.value,
                    batch_size=_BATCH.value, repeats=_REPEATS.value, budget_s=_BUDGET.value,
                    train=_TRAIN.value, host_fraction=_HOST_FRACTION.value)
    except Exception as e:  # e.g. out of memory on a big shape: report it, go on
      row = dict(model=name, role="student" if name in STUDENTS else "teacher",
                 error=f"{type(e).__name__}: {str(e).splitlines()[0][:120]}")
    rows.append(row)
    print(f"  {name}: {row} ({time.time() - t0:.0f} s)", flush=True)

  out = Path(_OUT.value)
  stem = table_stem(out, dataset, _SEQ_LEN.value, _PRED_LEN.value, _BATCH.value, device.platform)
  if _MERGE.value and stem.with_suffix(".csv").exists():
    rows = merge_rows(read_rows(stem.with_suffix(".csv")), rows, _MODELS.value)

  fmt = lambda r, k, f: f.format(r[k]) if r.get(k) not in (None, "") else "—"
  lines = [f"# Efficiency on the {dataset} shape", "", setting, "",
           "| model | role | params | inference ms | inference peak MB | ms / train step | "
           "train peak MB |", "| --- | --- | --- | --- | --- | --- | --- |"]
  for r in rows:
    if "error" in r:
      lines.append(f"| {r['model']} | {r['role']} | {fmt(r, 'params', '{:,}')} | "
                   f"not run: {r['error']} | {fmt(r, 'infer_peak_mb', '{:.0f}')} | | "
                   f"{fmt(r, 'train_peak_mb', '{:.0f}')} |")
      continue
    lines.append(f"| {r['model']} | {r['role']} | {r['params']:,} | "
                 f"{fmt(r, 'inference_ms', '{:.2f}')} | {fmt(r, 'infer_peak_mb', '{:.0f}')} | "
                 f"{fmt(r, 'train_step_ms', '{:.1f}')} | {fmt(r, 'train_peak_mb', '{:.0f}')} |")
  lines += [""] + ratios_table(rows)
  text = "\n".join(lines) + "\n"
  print("\n" + text)
  out.mkdir(parents=True, exist_ok=True)
  stem.with_suffix(".md").write_text(text)
  keys = sorted({k for r in rows for k in r})
  with open(stem.with_suffix(".csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
  print(f"wrote {stem}.md and .csv")


if __name__ == "__main__":
  # The command's flags, defined only when it runs: the experiment modules are imported
  # together (tests, tools) and several flag names recur among them.
  _DATASET = flags.DEFINE_string("dataset", "ecl", "Dataset whose shape is used.")
  _MODELS = flags.DEFINE_list("models", list(STUDENTS + common.TEACHERS), "Models to measure.")
  _PRED_LEN = flags.DEFINE_integer("pred_len", 96, "Horizon H.")
  _SEQ_LEN = flags.DEFINE_integer("seq_len", 720, "Look-back L (the paper's: 720).")
  _BATCH = flags.DEFINE_integer("batch", 32, "Batch size (the paper's inference figures: 32).")
  _REPEATS = flags.DEFINE_integer("repeats", 20, "Timed calls per figure, at most.")
  _BUDGET = flags.DEFINE_float("budget_s", 30.0, "Seconds of timed calls per figure, at most.")
  _TRAIN = flags.DEFINE_bool("train", True, "Also time the training step.")
  _HOST_FRACTION = flags.DEFINE_float(
      "host_fraction", HOST_FRACTION, "CPU only: refuse a program whose XLA peak exceeds this "
      "fraction of the host's memory (XLA:CPU allocates about twice its count; 0.4 fits ModernTCN "
      "on the ECL shape at batch 32 on a 24 GiB host with nothing else running).")
  _OUT = flags.DEFINE_string("out", "results", "Folder for the tables.")
  _MERGE = flags.DEFINE_bool("merge", True, "Keep the rows of models not measured this time "
                             "from an earlier table of the same setting.")
  app.run(main)
