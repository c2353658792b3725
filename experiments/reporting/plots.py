"""PNG plots of finished runs: a forecast window, training curves, the efficiency scatter.

Needs matplotlib (``pip install -e .[plots]``); imported only by the report writers, never by
the ``timedistill_jax`` core.
"""

import sys
from pathlib import Path

import jax
import ml_collections
import numpy as np

from experiments.reporting import summary, tables
from timedistill_jax import runs, steps
from timedistill_jax.errors import ConfigError, DataError


def _pyplot():
  try:
    import matplotlib
  except ImportError as e:
    raise ConfigError("plots need matplotlib: pip install -e '.[plots]'") from e
  matplotlib.use("Agg")  # files only, never a window
  import matplotlib.pyplot as plt
  return plt


def forecast_plot(workdirs: dict, path, *, window: int | None = None, channel: int = -1,
                  history: int = 192, title: str | None = None) -> Path:
  """One test window forecast by each run in ``workdirs`` (label -> run folder).

  The window defaults to the middle of the test split; ``channel`` -1 is the target (OT).
  """
  plt = _pyplot()
  preds, truth, past, cached = {}, None, None, {}
  for label, workdir in workdirs.items():
    loaded = runs.restore_run(workdir)
    config = ml_collections.ConfigDict(loaded.metadata["config"])
    key = (config.data.name, config.data.seq_len, config.data.label_len, config.data.pred_len)
    if key not in cached:  # teachers may read another label_len; x and y are the same rows
      cached[key] = runs.load_splits(config).test
    split = cached[key]
    i = len(split) // 2 if window is None else window
    batch = split.get_batch(np.array([i])) | {"mask": np.ones(1, np.float32)}
    pred = jax.jit(lambda v, b, m=loaded.model: steps.predict_step(v, b, model=m))(
        loaded.variables, runs.host_batch(batch))
    h = config.data.pred_len
    preds[label] = np.asarray(pred)[0, :, channel]
    truth = batch["y"][0, -h:, channel]
    past = batch["x"][0, -history:, channel]
  fig, ax = plt.subplots(figsize=(10, 4))
  t_past = np.arange(-len(past), 0)
  ax.plot(t_past, past, color="black", lw=1, label="input (last steps)")
  ax.plot(np.arange(len(truth)), truth, color="black", lw=1.5, ls="--", label="ground truth")
  for label, p in preds.items():
    mse = float(np.mean((p - truth) ** 2))
    ax.plot(np.arange(len(p)), p, lw=1.5, label=f"{label} (window MSE {mse:.3g})")
  ax.axvline(0, color="grey", lw=0.5)
  ax.set_xlabel("time step (0 = first forecast step)")
  ax.set_ylabel("standardised value")
  ax.legend(fontsize=8)
  if title:
    ax.set_title(f"{title}: test window {i} of {len(split)}")
  return _save(fig, plt, path)


def curves_plot(workdirs: dict, path, *, title: str | None = None) -> Path:
  """Validation MSE and training loss per epoch of each run (``metrics.jsonl``)."""
  plt = _pyplot()
  fig, (ax_val, ax_train) = plt.subplots(1, 2, figsize=(11, 4))
  for label, workdir in workdirs.items():
    records = summary.read_metrics(workdir)
    if not records:
      continue
    epochs = [r["epoch"] for r in records]
    ax_val.plot(epochs, [r["val"]["mse"] for r in records], marker="o", ms=3, label=label)
    ax_train.plot(epochs, [r["train"]["loss"] for r in records], marker="o", ms=3, label=label)
  ax_val.set(xlabel="epoch", ylabel="validation MSE", title="validation")
  ax_train.set(xlabel="epoch", ylabel="training loss (distilled: the whole objective)",
               title="training", yscale="log")
  ax_val.legend(fontsize=8)
  if title:
    fig.suptitle(title)
  return _save(fig, plt, path)


def efficiency_plot(points, path, *, title: str) -> Path:
  """The paper's Fig. 2: inference ms (x) against MSE (y), marker area ~ parameters.

  ``points``: ``[(label, inference_ms, mse, params), ...]``.
  """
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(7, 5))
  biggest = max(p[3] for p in points)
  for label, ms, mse, params in points:
    ax.scatter(ms, mse, s=60 + 1400 * params / biggest, alpha=0.5)
    ax.annotate(f"{label}\n{params / 1e6:.2f} M", (ms, mse), fontsize=8, ha="center",
                va="bottom", xytext=(0, 8), textcoords="offset points")
  ax.set(xlabel="inference ms per batch of 32", ylabel="test MSE", title=title)
  ax.set_xscale("log")
  ax.margins(0.25)  # room for the labels above the largest markers
  ax.grid(alpha=0.3)
  return _save(fig, plt, path)


def _labelled_runs(rows, root) -> dict:
  """Legend label -> run folder for one seed's teacher, MLP and distilled MLP."""
  labelled = {}
  for r in sorted(rows, key=lambda r: summary.ROLES.index(r["role"])):
    label = {"teacher": f"teacher ({r['model']})", "mlp": f"MLP ({r['model']})",
             # the student's name too: a sweep may have run two students
             "distilled": f"{r['model']} + TimeDistill ({r['teacher']})"}[r["role"]]
    labelled[label] = root / r["run"]
  return labelled


def _unfinished(labelled: dict) -> list:
  """The labels of ``labelled`` whose folder holds no finished run (``results.json``)."""
  return [label for label, workdir in labelled.items()
          if not (workdir / "results.json").exists()]


def _save(fig, plt, path) -> Path:
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def write_plots(rows, root, out) -> list:
  """For each dataset and horizon of ``rows``: the forecast and curves of the first seed's
  teacher, MLP and distilled MLP; per dataset: the efficiency scatter. Returns the paths.

  A plot missing some of a seed's runs (their folders gone from ``root``) would not show what
  the tables compare, so where the first seed's runs are not all there the plot already written
  is kept; where none was written yet, it is drawn from the lowest seed whose runs are all there.
  The seed is in each plot's title.
  """
  root, out, written = Path(root), Path(out), []
  for dataset in sorted({r["dataset"] for r in rows}):
    for h in sorted({r["horizon"] for r in rows if r["dataset"] == dataset}):
      here = [r for r in rows if r["dataset"] == dataset and r["horizon"] == h
              and summary.reference_protocol(r)]
      by_seed = {s: _labelled_runs([r for r in here if r["seed"] == s], root)
                 for s in sorted({r["seed"] for r in here})}
      if not by_seed:  # only runs off the reference protocol (an ablation, a sensitivity pair)
        continue
      first = min(by_seed)
      gone = _unfinished(by_seed[first])
      seed = first
      if gone:
        reason = f"the seed-{first} runs of {', '.join(gone)} are not under {root}"
        complete = [s for s, of_seed in by_seed.items() if not _unfinished(of_seed)]
        if (out / f"curves_{dataset}_H{h}.png").exists() or not complete:
          print(f"plots: left forecast/curves for {dataset} H={h} as they were: {reason}",
                file=sys.stderr)
          continue
        seed = complete[0]
        print(f"plots: forecast/curves for {dataset} H={h} drawn from seed {seed}: {reason}",
              file=sys.stderr)
      labelled = by_seed[seed]
      if len(labelled) < 2:
        continue
      title = f"{dataset}, H={h}, seed {seed}"
      try:
        written.append(forecast_plot(labelled, out / f"forecast_{dataset}_H{h}.png", title=title))
      except DataError as e:
        # The forecast needs the dataset's file; the tables and the other plots do not, so a
        # machine without it still gets them.
        print(f"plots: left forecast for {dataset} H={h} as it was: {e}", file=sys.stderr)
      written.append(curves_plot(labelled, out / f"curves_{dataset}_H{h}.png", title=title))
    groups = tables.groups([r for r in rows if r["dataset"] == dataset])
    points = [(f"{label} ({role})" if role == "teacher" else label,
               float(np.median([r["inference_ms"] for r in g])),
               float(np.mean([r["test_mse"] for r in g])), float(np.mean([r["params"] for r in g])))
              for (role, label), g in groups.items()]
    if len(points) > 1:
      written.append(efficiency_plot(
          points, out / f"efficiency_{dataset}.png",
          title=f"{dataset}: test MSE vs CPU inference time (mean over horizons and seeds)"))
  return written
