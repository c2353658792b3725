r"""Forecasting new data with a finished run (student, distilled student or teacher).

  python -m timedistill_jax.forecast --workdir runs/dmlp --input recent.csv --output next.csv \
      [--plot next.png]

or from Python, with a DataFrame or the path of a CSV file::

  import timedistill_jax
  table = timedistill_jax.forecast("runs/dmlp", recent)    # a DataFrame: date + forecasts

The input is laid out as the training file: a ``date`` column, then the run's columns (in any
order). Its last ``seq_len`` rows are the look-back window. Their dates give the time features of
the input (``x_mark``); the next ``pred_len`` dates, one sampling interval apart, and the last
``label_len`` input dates give those of the decoder (``y_mark``), as TSLib builds them. The
values are scaled with the run's scaler, the run's model predicts in eval mode, and the forecast
comes back in original units: ``pred_len`` rows, a ``date`` column holding the future dates, then
one column per forecast variate, named as in the training file (every variate for features
``M``, the target for ``S`` and ``MS``).

Every input error is one ``TimeDistillError`` (on the command line: one line ``error: ...`` and
exit status 2, nothing written), found before the model is built: a workdir with no finished run,
too few rows, missing or extra columns, NaN / inf / non-numeric cells in the window, dates that
are unsorted, repeated or irregular, or an interval other than the run's.
"""

import dataclasses
import os
from pathlib import Path
import sys
import types

import numpy as np
import pandas as pd

from timedistill_jax import cli
from timedistill_jax.data.checks import (KNOWN_INTERVALS, check_header, check_interval,
                                         check_order, check_values, infer_interval,
                                         interval_timedelta, names, parse_dates, read_csv)
from timedistill_jax.data.time_features import time_features
from timedistill_jax.errors import CheckpointError, DataError, TimeDistillError

MAX_PLOTTED = 24  # columns drawn by --plot; ECL has 321


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """What serving a run needs from its checkpoint metadata, in JSON-able types."""

  columns: tuple  # the model's input channels, in channel order
  output_columns: tuple  # the forecast's columns
  output_index: tuple  # their channels
  scaler_mean: tuple  # per input channel
  scaler_std: tuple
  seq_len: int
  label_len: int
  pred_len: int
  freq: str  # the time-feature encoding (TSLib timeF)
  num_time_features: int
  interval: str  # the sampling interval, a pandas offset string
  features: str
  target: str
  model: str
  kind: str

  @classmethod
  def from_metadata(cls, meta: dict, workdir) -> "RunSpec":
    cfg, data = meta["config"]["data"], meta["data"]
    columns = tuple(data["columns"])
    index = (len(columns) - 1,) if cfg["features"] == "MS" else tuple(range(len(columns)))
    return cls(columns=columns, output_columns=tuple(columns[i] for i in index),
               output_index=index, scaler_mean=tuple(data["scaler_mean"]),
               scaler_std=tuple(data["scaler_std"]), seq_len=cfg["seq_len"],
               label_len=cfg["label_len"], pred_len=cfg["pred_len"], freq=cfg["freq"],
               num_time_features=data["num_time_features"],
               interval=run_interval(data, workdir), features=cfg["features"],
               target=cfg["target"], model=meta["model"],
               kind=meta["config"].get("kind", "student"))

  def marks(self, dates: pd.DatetimeIndex) -> np.ndarray:
    """Time features of ``dates`` as the run saw them: float32 ``[T, F]``."""
    if self.num_time_features == 0:  # Solar: the reference passes no marks
      return np.zeros((len(dates), 0), np.float32)
    return time_features(dates, self.freq)


def run_interval(data: dict, workdir) -> str:
  """The run's sampling interval: from its metadata, else (runs saved before it was kept) from
  the dates of its training file's training rows, else from the known benchmark datasets."""
  if data.get("interval"):
    return data["interval"]
  source, (b1, b2) = data.get("source", ""), data["borders"]["train"]
  if source and Path(source).is_file():
    try:
      dates = parse_dates(read_csv(source, usecols=["date"]), source)
      interval = infer_interval(dates[b1:b2])
      if interval:
        return interval
    except (TimeDistillError, ValueError):
      pass  # the known table below may still know it
  if data.get("name") in KNOWN_INTERVALS:
    return KNOWN_INTERVALS[data["name"]]
  raise CheckpointError(
      f"run {workdir} was saved without its sampling interval, its training file {source!r} "
      f"cannot be read, and dataset {data.get('name')!r} has no known interval; put the "
      "training file back where it was trained from, or retrain the run with this version.")


def finished_run(workdir) -> Path:
  """``workdir`` if it holds a finished run (a best checkpoint and results.json)."""
  workdir = Path(workdir)
  if not (workdir / "checkpoints" / "best").is_dir():
    what = "does not exist" if not workdir.exists() else "holds no trained model"
    raise CheckpointError(
        f"--workdir {workdir} {what}: pass the workdir of a finished run, e.g. one trained "
        f"with python -m timedistill_jax --config student:dataset=etth1 --workdir {workdir}")
  if not (workdir / "results.json").is_file():
    raise CheckpointError(
        f"the run in {workdir} has not finished (no results.json): rerun its command to "
        "resume it to the end, then forecast with it.")
  members = sorted((p for p in (workdir / "members").glob("*") if (p / "results.json").is_file()),
                   key=lambda p: (len(p.name), p.name))
  if members:  # an ensemble's best checkpoint stacks its members' states
    raise CheckpointError(
        f"{workdir} holds an ensemble of {len(members)} members; pass one of them as --workdir, "
        f"e.g. {members[0]} (docs/ensembles.md).")
  return workdir


def load(workdir, check=None):
  """``(Restored, RunSpec)`` of the finished run in ``workdir``; ``check(spec)`` may refuse it
  before the model is built."""
  from timedistill_jax.runs import restore_run  # flax, orbax: only once a run is used

  specs = []

  def on_metadata(meta):
    specs.append(RunSpec.from_metadata(meta, workdir))
    if check is not None:
      check(specs[0])

  restored = restore_run(finished_run(workdir), check=on_metadata)
  return restored, specs[0]


@dataclasses.dataclass(frozen=True)
class Window:
  """One forecast's input, checked against the run."""

  x: np.ndarray  # [L, C] float64, original units, in channel order
  x_mark: np.ndarray  # [L, F] float32
  y_mark: np.ndarray  # [S + H, F] float32
  dates: pd.DatetimeIndex  # [L]
  future: pd.DatetimeIndex  # [H]


def read_input(data):
  """``(frame, name)`` of a DataFrame or a CSV path; ``name`` is what messages call it."""
  if isinstance(data, pd.DataFrame):
    frame, name = data, "the input DataFrame"
  elif isinstance(data, (str, os.PathLike)):
    if not Path(data).is_file():
      raise DataError(f"input file {data} not found; pass the CSV file to forecast from.")
    frame, name = read_csv(data), str(data)
  else:
    raise DataError(f"the input must be a pandas DataFrame or the path of a CSV file, not "
                    f"{type(data).__name__}.")
  frame = frame.rename(columns=str)
  check_header(frame, name, "a forecast's input (the training file's layout)")
  return frame, name


def make_window(spec: RunSpec, frame: pd.DataFrame, name: str) -> Window:
  """The last ``seq_len`` rows of ``frame`` as the model's input, after every check."""
  given = [c for c in frame.columns if c != "date"]
  missing = [c for c in spec.columns if c not in given]
  extra = [c for c in given if c not in spec.columns]
  if missing or extra:
    parts = ([f"lacks the run's column(s) {names(missing)}"] if missing else []) + (
        [f"has column(s) {names(extra)} the run was not trained on"] if extra else [])
    raise DataError(f"{name} {' and '.join(parts)}; the input needs 'date' and exactly the "
                    f"columns {names(spec.columns)}.")
  n, length = len(frame), spec.seq_len
  if n < length:
    raise DataError(f"{name} has {n} rows, fewer than the run's look-back window seq_len = "
                    f"{length}; pass at least its last {length} rows.")
  dates = parse_dates(frame, name)
  check_order(dates, name)
  first = n - length
  dates = dates[first:]
  check_interval(dates, spec.interval, name, first_row=first)
  x = check_values(frame.iloc[first:], list(spec.columns), name, first_row=first)  # [L, C]
  step = interval_timedelta(spec.interval)
  future = pd.DatetimeIndex([dates[-1] + step * (k + 1) for k in range(spec.pred_len)])
  decoder = dates[length - spec.label_len:].append(future)  # [S + H]
  return Window(x=x, x_mark=spec.marks(dates), y_mark=spec.marks(decoder), dates=dates,
                future=future)


def scale(spec: RunSpec, x: np.ndarray) -> np.ndarray:
  """Original units -> the model's, float32, as the training data was scaled."""
  return ((x - np.asarray(spec.scaler_mean)) / np.asarray(spec.scaler_std)).astype(np.float32)


def unscale(spec: RunSpec, pred: np.ndarray) -> np.ndarray:
  """``pred [..., H, C]`` in the model's units -> the forecast columns in original units."""
  index = list(spec.output_index)
  mean, std = np.asarray(spec.scaler_mean)[index], np.asarray(spec.scaler_std)[index]
  return np.asarray(pred, np.float64)[..., index] * std + mean


def apply_fn(restored):
  """``(x, x_mark, y_mark) -> pred``, jitted, in the model's units, eval mode."""
  import jax

  model, variables = restored.model, restored.variables
  return jax.jit(lambda x, xm, ym: model.apply(variables, x, xm, ym, train=False)[0])


def forecast(workdir, data, *, plot=None) -> pd.DataFrame:
  """The next ``pred_len`` steps after ``data`` (a DataFrame or CSV path in the training file's
  layout) from the finished run in ``workdir``: a DataFrame with ``date`` and the forecast
  columns, in original units. ``plot``: a PNG path for a figure of the input tail and forecast."""
  finished_run(workdir)
  frame, name = read_input(data)
  windows = []
  restored, spec = load(workdir, check=lambda s: windows.append(make_window(s, frame, name)))
  window = windows[0]
  pred = apply_fn(restored)(scale(spec, window.x)[None], window.x_mark[None],
                            window.y_mark[None])  # [1, H, C]
  out = pd.DataFrame(unscale(spec, pred[0]), columns=list(spec.output_columns))
  out.insert(0, "date", window.future)
  if plot is not None:
    tail = slice(-min(spec.seq_len, 3 * spec.pred_len), None)  # enough to see the forecast
    history = pd.DataFrame(window.x[tail][:, list(spec.output_index)],
                           columns=list(spec.output_columns))
    history.insert(0, "date", window.dates[tail])
    plot_forecast(plot, history, out, title=f"{spec.model} ({Path(workdir).name})")
  return out


def plot_forecast(path, history: pd.DataFrame, forecast_frame: pd.DataFrame, title="") -> None:
  """One panel a column (at most ``MAX_PLOTTED``): the input's tail, then the forecast.
  matplotlib (the ``plots`` extra) is imported here only."""
  import matplotlib

  matplotlib.use("Agg")  # files only; no display is needed
  import matplotlib.pyplot as plt

  columns = [c for c in forecast_frame.columns if c != "date"][:MAX_PLOTTED]
  fig, axes = plt.subplots(len(columns), 1, figsize=(10, 1.8 * len(columns) + 0.6),
                           squeeze=False, sharex=True)
  for ax, col in zip(axes[:, 0], columns):
    ax.plot(history["date"], history[col], color="tab:blue", lw=1, label="input")
    ax.plot(forecast_frame["date"], forecast_frame[col], color="tab:red", lw=1.2,
            label="forecast")
    ax.set_ylabel(col, fontsize=8)
  axes[0, 0].legend(loc="upper left", fontsize=8)
  more = len(forecast_frame.columns) - 1 - len(columns)
  fig.suptitle(title + (f" (first {len(columns)} columns; {more} more)" if more > 0 else ""),
               fontsize=10)
  fig.autofmt_xdate()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


# -- the command line -----------------------------------------------------------------------------

USAGE = ("usage: python -m timedistill_jax.forecast --workdir RUN --input FILE.csv "
         "--output OUT.csv [--plot OUT.png]")


def check_output(path, option: str, input_path=None) -> None:
  """A file ``path`` can be written to, and not the input."""
  path = Path(path)
  if path.is_dir():
    raise DataError(f"{option} {path} is a folder; pass the path of a file to write.")
  if not path.parent.is_dir():
    raise DataError(f"{option} {path}: the folder {path.parent} does not exist; create it first.")
  if input_path is not None and path.resolve() == Path(input_path).resolve():
    raise DataError(f"{option} {path} is the input file; write the forecast elsewhere.")


def check_plotting() -> None:
  import importlib.util

  if importlib.util.find_spec("matplotlib") is None:
    raise DataError("--plot needs matplotlib, which is not installed: pip install -e .[plots], "
                    "or leave --plot out.")


def _run(argv) -> str:
  parser = cli.Parser("python -m timedistill_jax.forecast", USAGE)
  parser.add_argument("--workdir", required=True, help="the folder of a finished run")
  parser.add_argument("--input", required=True, help="CSV file: date + the run's columns")
  parser.add_argument("--output", required=True, help="CSV file to write the forecast to")
  parser.add_argument("--plot", default=None, help="PNG file: input tail and forecast")
  args = parser.parse_args(argv)
  check_output(args.output, "--output", args.input)
  if args.plot is not None:
    check_output(args.plot, "--plot", args.input)
    check_plotting()
  out = forecast(args.workdir, args.input, plot=args.plot)
  out.to_csv(args.output, index=False)
  plotted = f" and {args.plot}" if args.plot else ""
  return (f"wrote {len(out)} steps of {', '.join(out.columns[1:])} from {out['date'].iloc[0]} "
          f"to {out['date'].iloc[-1]} to {args.output}{plotted}")


def main(argv=None) -> int:
  """The command line; every user error is one line ``error: ...`` and exit status 2."""
  return cli.main(_run, argv, "forecast")


class _CallableModule(types.ModuleType):
  """``timedistill_jax.forecast`` is this module once it is imported (Python sets the package's
  attribute to it), so the module itself forwards calls: ``timedistill_jax.forecast(workdir,
  frame)`` works however the module was imported."""

  def __call__(self, workdir, data, *, plot=None) -> pd.DataFrame:
    return forecast(workdir, data, plot=plot)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
  sys.exit(main())
