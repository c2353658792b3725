"""The benchmark datasets, read and split exactly as Time-Series-Library's loaders do.

Reference: TSLib ``data_provider/data_loader.py`` (``Dataset_ETT_hour``, ``Dataset_ETT_minute``,
``Dataset_Custom``, ``Dataset_Solar``), which TimeDistill uses unchanged: fixed chronological
borders, validation and test windows that start ``seq_len`` rows before their border, a
standard scaler fitted on the training rows only and applied to every row, ``timeF`` calendar
marks. Results are only comparable with the paper's if all of this matches, so the files are read
as they are (Weather keeps its U+FFFD header characters and its -9999 sentinels, like TSLib).

Differences from the reference, all about refusing bad input early: a file with NaN, inf or
non-numeric cells, too few rows, the wrong number of variates or a window longer than a split
raises ``DataError`` naming the file, row, column and fix, where TSLib would train on NaNs or fail
deep inside PyTorch. For ``features='MS'`` on a layout that keeps the file's column order (ETT,
Solar) the target must be the last column, since the model predicts the last channel. The cell
and date checks live in ``checks.py``, which forecasting shares.

Not in the reference: ``split='deploy'`` (train on every row but a validation tail, for a model
that forecasts past the end of its file), and the sampling interval of the training rows, kept in
``Splits.metadata()`` so that a forecast can check its input's dates and date its output.
"""

import dataclasses
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from timedistill_jax.data import download as download_lib
from timedistill_jax.data.checks import (KNOWN_INTERVALS, check_header, check_order,
                                         check_values, infer_interval, names, parse_dates,
                                         read_csv)
from timedistill_jax.data.time_features import time_features
from timedistill_jax.data.windows import WindowSplit, check_window_lengths
from timedistill_jax.errors import ConfigError, DataError, unknown_name

LAYOUTS = ("ett_hour", "ett_minute", "custom", "solar", "synthetic")
FEATURE_MODES = ("M", "MS", "S")
# ``reference``: TSLib's borders. ``deploy``: train on every row but a validation tail, so that a
# forecast can start where the file ends (docs/deploy.md).
SPLIT_MODES = ("reference", "deploy")
SPLIT_NAMES = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """What to read and how: ``layout`` selects the reference loader whose rules apply."""
  name: str
  filename: Optional[str]  # uncompressed name; ``<filename>.gz`` is accepted too
  layout: str
  num_channels: Optional[int]  # variates in the file; None: any (custom CSVs)
  sha256: Optional[str] = None  # of the uncompressed file
  downloadable: bool = False

  def __post_init__(self):
    if self.layout not in LAYOUTS:
      raise unknown_name("layout", self.layout, LAYOUTS)


# sha256 of the uncompressed files as ETDataset and TSLib publish them; a download must match.
_SHA256 = {
    "ETTh1.csv": "f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066",
    "ETTh2.csv": "a3dc2c597b9218c7ce1cd55eb77b283fd459a1d09d753063f944967dd6b9218b",
    "ETTm1.csv": "6ce1759b1a18e3328421d5d75fadcb316c449fcd7cec32820c8dafda71986c9e",
    "ETTm2.csv": "db973ca252c6410a30d0469b13d696cf919648d0f3fd588c60f03fdbdbadd1fd",
    "weather.csv": "9b2b19b13e342d9c9b9c51620d42b4be232df7fba30e7f5c4968b7c79ab138ad",
}


def _ett(name: str, filename: str, layout: str) -> DatasetSpec:
  return DatasetSpec(name, filename, layout, 7, _SHA256[filename], downloadable=True)


DATASETS: dict[str, DatasetSpec] = {s.name: s for s in (
    _ett("etth1", "ETTh1.csv", "ett_hour"),
    _ett("etth2", "ETTh2.csv", "ett_hour"),
    _ett("ettm1", "ETTm1.csv", "ett_minute"),
    _ett("ettm2", "ETTm2.csv", "ett_minute"),
    DatasetSpec("weather", "weather.csv", "custom", 21, _SHA256["weather.csv"]),
    DatasetSpec("ecl", "electricity.csv", "custom", 321),
    DatasetSpec("traffic", "traffic.csv", "custom", 862),
    DatasetSpec("solar", "solar_AL.txt", "solar", 137),
    DatasetSpec("synthetic", None, "synthetic", 7),
    DatasetSpec("custom", None, "custom", None),  # any TSLib-layout CSV, given by path=
)}
# Time-Series-Library's names where they differ from the keys above (its file names).
ALIASES = {"electricity": "ecl", "solar_al": "solar"}


def dataset_name(name: str) -> str:
  """The registry key of a dataset named here or as Time-Series-Library names it, in any case:
  ``ETTh1`` -> ``etth1``, ``ECL`` or ``electricity`` -> ``ecl``, ``solar_AL`` -> ``solar``. An
  unknown name comes back lower-cased, for the caller to refuse with the valid choices."""
  key = str(name).strip().lower()
  return ALIASES.get(key, key)


@dataclasses.dataclass(frozen=True, eq=False)
class Splits:
  """The three splits of one dataset and what is needed to interpret and undo the scaling."""
  train: WindowSplit
  val: WindowSplit
  test: WindowSplit
  scaler_mean: np.ndarray  # [C] float64
  scaler_std: np.ndarray  # [C] float64
  columns: tuple[str, ...]  # variate names in model channel order
  name: str
  num_channels: int  # C
  num_time_features: int  # F
  target_index: int  # channel of the target: -1 (last) for M/MS, 0 for S
  features: str = "M"
  target: str = "OT"
  freq: str = "h"
  borders: tuple[tuple[int, int], ...] = ()  # (border1, border2) rows of train, val, test
  source: str = ""  # the file read, or "generated"
  interval: str = ""  # sampling interval of the training rows ("h", "15min"; checks.py)
  split: str = "reference"  # how the borders were drawn (SPLIT_MODES)

  def metadata(self) -> dict:
    """JSON-able description, stored with checkpoints so predictions can be unscaled later."""
    splits = (self.train, self.val, self.test)
    return {
        "name": self.name,
        "source": self.source,
        "columns": list(self.columns),
        "num_channels": self.num_channels,
        "num_time_features": self.num_time_features,
        "target_index": self.target_index,
        "scaler_mean": [float(v) for v in self.scaler_mean],
        "scaler_std": [float(v) for v in self.scaler_std],
        "borders": {n: [int(b1), int(b2)] for n, (b1, b2) in zip(SPLIT_NAMES, self.borders)},
        "lengths": {"seq_len": self.train.seq_len, "label_len": self.train.label_len,
                    "pred_len": self.train.pred_len},
        "num_windows": {s.name: len(s) for s in splits},
        "features": self.features,
        "target": self.target,
        "freq": self.freq,
        "interval": self.interval,
        "split": self.split,
    }


def split_borders(layout: str, num_rows: int, seq_len: int, split: str = "reference",
                  val_fraction: float = 0.1):
  """TSLib's ``(border1s, border2s)``: split ``k`` holds rows ``[border1s[k], border2s[k])``.

  ``split='deploy'``: train on rows ``[0, N - n)`` and validate on the last ``n =
  int(val_fraction N)`` (windows starting ``seq_len`` early, as usual); the test split is that
  validation tail again, since no row is left over. Any layout.
  """
  if split == "deploy":
    num_val = int(num_rows * val_fraction)
    border1s = [0, num_rows - num_val - seq_len, num_rows - num_val - seq_len]
    border2s = [num_rows - num_val, num_rows, num_rows]
  elif layout in ("ett_hour", "ett_minute", "synthetic"):
    month = 30 * 24 * (4 if layout == "ett_minute" else 1)
    border1s = [0, 12 * month - seq_len, 16 * month - seq_len]
    border2s = [12 * month, 16 * month, 20 * month]
  elif layout in ("custom", "solar"):
    num_train, num_test = int(num_rows * 0.7), int(num_rows * 0.2)
    # Dataset_Custom gives validation the remainder; Dataset_Solar gives it int(0.1 N).
    num_val = num_rows - num_train - num_test if layout == "custom" else int(num_rows * 0.1)
    border1s = [0, num_train - seq_len, num_rows - num_test - seq_len]
    border2s = [num_train, num_train + num_val, num_rows]
  else:
    raise unknown_name("layout", layout, LAYOUTS)
  return border1s, border2s


def fit_scaler(train: np.ndarray):
  """Mean and population std per column of ``train [T, C]``, as sklearn's ``StandardScaler``.

  A constant column gets std 1 instead of 0, with sklearn's test for "constant" (a variance
  within float64 rounding of zero), so it scales to zeros instead of NaN.
  """
  train = np.asarray(train, np.float64)
  mean = train.mean(axis=0)
  var = train.var(axis=0)
  n, eps = len(train), np.finfo(np.float64).eps
  constant = var <= n * eps * var + (n * mean * eps) ** 2
  std = np.where(constant, 1.0, np.sqrt(var))
  return mean, std


def synthetic_frame(num_rows: int = 14400) -> pd.DataFrame:
  """Hourly toy data in ETT layout: daily, weekly and 30-day cycles, a trend and noise.

  Seeded by its own generator, so it is identical on every call and machine; used for smoke runs
  and tests where no data file is available.
  """
  rng = np.random.default_rng(20160701)
  c = 7
  t = np.arange(num_rows, dtype=np.float64)[:, None]  # [T, 1]
  values = rng.normal(0.0, 5.0, c)  # [C] levels
  for period, scale in ((24, 2.0), (168, 1.0), (720, 1.5)):
    amp, phase = rng.uniform(0.2, 1.0, c) * scale, rng.uniform(0, 2 * np.pi, c)
    values = values + amp * np.sin(2 * np.pi * t / period + phase)  # [T, C]
  values = values + rng.uniform(-2.0, 2.0, c) * t / num_rows
  values = values + rng.normal(0.0, 0.3, (num_rows, c))
  frame = pd.DataFrame(values, columns=[f"x{i}" for i in range(c - 1)] + ["OT"])
  dates = pd.date_range("2016-07-01 00:00:00", periods=num_rows, freq="h")
  frame.insert(0, "date", dates.strftime("%Y-%m-%d %H:%M:%S"))
  return frame


def _find_file(spec: DatasetSpec, data_dir, path) -> Path:
  """The file to read: ``path`` if given, else ``<filename>[.gz]`` in the data folder."""
  if path is not None:
    path = Path(path).expanduser()
    if not path.is_file():
      raise DataError(f"data file {path} not found; pass --config.data.path=FILE.csv of an "
                      "existing CSV file.")
    return path
  folder = download_lib.resolve_data_dir(data_dir)
  for candidate in (folder / spec.filename, folder / f"{spec.filename}.gz"):
    if candidate.is_file():
      return candidate
  if spec.downloadable:
    return download_lib.download(download_lib.source_url(spec.filename),
                                 folder / spec.filename, spec.sha256)
  state = "" if folder.is_dir() else " (the folder does not exist)"
  raise DataError(
      f"dataset {spec.name!r}: {spec.filename} not found in {folder}{state}, and it cannot be "
      f"downloaded automatically. Put {spec.filename} or {spec.filename}.gz in {folder}, or "
      f"point {download_lib.DATA_DIR_ENV} (or data_dir=) at the folder that holds it.")


def _read_frame(spec: DatasetSpec, file: Path) -> pd.DataFrame:
  """The raw table; Solar's headerless matrix gets the column names "0", "1", ..."""
  if spec.layout == "solar":
    frame = read_csv(file, header=None, sep=",")
    frame.columns = [str(i) for i in range(frame.shape[1])]
    return frame
  frame = read_csv(file)
  check_header(frame, file, f"the {spec.layout} layout")
  return frame


def _select_columns(frame, spec, features, target, file) -> list[str]:
  """Variate columns in model order (TSLib): all for M/MS, the target alone for S."""
  variates = [c for c in frame.columns if c != "date"]
  if spec.num_channels is not None and len(variates) != spec.num_channels:
    raise DataError(
        f"{file} has {len(variates)} variate columns but dataset {spec.name!r} has "
        f"{spec.num_channels}; it is not the benchmark file (use dataset 'custom' with "
        "--config.data.path= for other CSV files).")
  reorders = spec.layout == "custom"  # Dataset_Custom moves the target last, others keep order
  if target not in variates and (features != "M" or reorders):
    raise DataError(
        f"target column {target!r} not in {file} (variates: {names(variates)}); pass "
        "--config.data.target= with one of these names.")
  if features == "S":
    return [target]
  if reorders:
    return [c for c in variates if c != target] + [target]
  if features == "MS" and variates[-1] != target:
    raise DataError(
        f"--config.data.features=MS predicts the last column, but in {file} the target "
        f"{target!r} is not last and the {spec.layout} layout keeps the file's order; use "
        "--config.data.features=S, or dataset 'custom' with --config.data.path=, which moves "
        "the target last.")
  return variates


def _check_rows(name, file, layout, num_rows, border1s, border2s, seq_len, pred_len) -> None:
  """DataError unless the borders fit in the file and each split holds at least one window."""
  if border2s[2] > num_rows:
    raise DataError(
        f"{file} has {num_rows} data rows, but the {layout} split borders need {border2s[2]}; "
        "use the complete file.")
  if border1s[1] < 0:
    raise DataError(
        f"{file} has {num_rows} data rows, too few for seq_len={seq_len}: the validation split "
        f"would start at row {border1s[1]} (its border {border2s[0]} minus seq_len); use a "
        "longer file or a shorter seq_len.")
  window = seq_len + pred_len
  for split, b1, b2 in zip(SPLIT_NAMES, border1s, border2s):
    if window > b2 - b1:
      raise DataError(
          f"dataset {name!r} ({file}): the {split} split has {b2 - b1} rows [{b1}, {b2}), "
          f"shorter than one window of seq_len + pred_len = {window}; shorten seq_len or "
          "pred_len.")


def _check_args(name, features, freq, path, spec, split, val_fraction) -> None:
  if features not in FEATURE_MODES:
    raise unknown_name("features mode", features, FEATURE_MODES)
  if split not in SPLIT_MODES:
    raise unknown_name("split", split, SPLIT_MODES)
  if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not (
      0 < val_fraction < 1):
    raise ConfigError(f"val_fraction must be a number in (0, 1), got {val_fraction!r}; "
                      "e.g. 0.1 keeps the last tenth of the rows for validation.")
  time_features(pd.DatetimeIndex([]), freq)  # ConfigError on an unknown freq, before any I/O
  if spec.name == "custom" and path is None:
    raise ConfigError("dataset 'custom' needs path= pointing at a CSV in TSLib layout "
                      "(a 'date' column, then one column per variate).")
  if spec.name == "synthetic" and path is not None:
    raise ConfigError(f"dataset {name!r} is generated in code and reads no file; drop path=.")


def load_dataset(name: str, *, seq_len: int, label_len: int, pred_len: int, data_dir=None,
                 features: str = "M", target: str = "OT", freq: str = "h",
                 path=None, split: str = "reference", val_fraction: float = 0.1) -> Splits:
  """Reads, checks, scales and splits dataset ``name`` (a key of ``DATASETS``).

  ``data_dir``: folder holding the files (else ``$TIMEDISTILL_DATA_DIR``, else the cache
  folder; missing ETT files are downloaded there). ``path``: the CSV for ``'custom'``; for
  other datasets it replaces the data-folder lookup. ``features``: 'M' (all variates in, all
  out), 'MS' (all in, target last) or 'S' (target only). ``freq``: time-feature frequency.
  ``split``: 'reference' (TSLib's borders) or 'deploy' (every row but the last
  ``val_fraction`` trains; ``split_borders``).
  """
  name = dataset_name(name)
  if name not in DATASETS:
    raise unknown_name("dataset", name, DATASETS)
  spec = DATASETS[name]
  check_window_lengths(seq_len, label_len, pred_len)
  _check_args(name, features, freq, path, spec, split, val_fraction)

  if spec.layout == "synthetic":
    file, frame = "generated", synthetic_frame()
  else:
    file = _find_file(spec, data_dir, path)
    frame = _read_frame(spec, file)
  columns = _select_columns(frame, spec, features, target, file)
  values = check_values(frame, columns, file)  # [N, C] float64
  num_rows = len(values)
  border1s, border2s = split_borders(spec.layout, num_rows, seq_len, split, val_fraction)
  _check_rows(name, file, spec.layout, num_rows, border1s, border2s, seq_len, pred_len)
  if spec.layout == "solar":
    # TimeDistill passes no marks for Solar, so models get no time-feature tokens.
    marks = np.zeros((num_rows, 0), np.float32)  # [N, 0]
    interval = KNOWN_INTERVALS.get(name, "")  # the file has no dates
  else:
    dates = parse_dates(frame, file)
    if spec.name == "custom":
      check_order(dates, file)
    marks = time_features(dates, freq)  # [N, F]
    interval = infer_interval(dates[border1s[0]:border2s[0]])

  mean, std = fit_scaler(values[border1s[0]:border2s[0]])
  data = values - mean  # [N, C] float64, scaled in place to keep the peak memory of Traffic low
  data /= std
  data = data.astype(np.float32)
  splits = [
      WindowSplit(data[b1:b2].copy(), marks[b1:b2].copy(), seq_len, label_len, pred_len, split)
      for split, b1, b2 in zip(SPLIT_NAMES, border1s, border2s)
  ]
  return Splits(
      *splits, scaler_mean=mean, scaler_std=std, columns=tuple(str(c) for c in columns),
      name=name, num_channels=len(columns), num_time_features=marks.shape[1],
      target_index=0 if features == "S" else -1, features=features, target=target, freq=freq,
      borders=tuple(zip(border1s, border2s)), source=str(file), interval=interval, split=split)
