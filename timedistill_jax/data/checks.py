"""Checks of a table's cells and dates, shared by training (``datasets.load_dataset``) and
forecasting (``timedistill_jax.forecast``): both refuse the same bad input with the same words.

Rows are named as the file numbers them: 0-based data rows, header excluded. ``first_row`` is the
file row of a table's first row when only a file's tail is checked (a forecast reads the last
``seq_len`` rows).

The sampling interval is the step between consecutive dates, written as a pandas offset string
(``"h"``, ``"15min"``, ``"10min"``; a fixed length of time, so ``pd.Timedelta(to_offset(s))``
reads it back). It is not the time-feature ``freq``: the reference builds ``freq='h'`` features
for every dataset, also the 15- and 10-minute ones.
"""

import warnings
import zlib

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from timedistill_jax.errors import DataError

# The sampling interval of each benchmark dataset, for runs saved before their checkpoints held
# one and whose training file cannot be read again.
KNOWN_INTERVALS = {"etth1": "h", "etth2": "h", "ettm1": "15min", "ettm2": "15min",
                   "weather": "10min", "ecl": "h", "traffic": "h", "solar": "10min",
                   "synthetic": "h"}


def names(columns, limit: int = 12) -> str:
  columns = [str(c) for c in columns]
  shown = ", ".join(repr(c) for c in columns[:limit])
  return shown + (f", ... ({len(columns)} in all)" if len(columns) > limit else "")


def read_csv(file, **kwargs) -> pd.DataFrame:
  """``pd.read_csv(file)``, with a file that is no CSV (or is missing) as one ``DataError``."""
  try:
    return pd.read_csv(file, **kwargs)
  except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, EOFError,
          zlib.error) as e:
    raise DataError(f"cannot read {file} as a CSV file ({type(e).__name__}: {e}); check that it "
                    "is an uncompressed or gzip-compressed comma-separated file.") from e


def check_header(frame: pd.DataFrame, file, layout: str) -> None:
  """A ``date`` column, and no column without a name. ``layout`` says whose layout it is."""
  if "date" not in frame.columns:
    raise DataError(
        f"{file} has no 'date' column (columns: {names(frame.columns)}); {layout} needs a "
        "first column named 'date' followed by one column per variate.")
  unnamed = [str(c) for c in frame.columns if str(c).startswith("Unnamed: ")]
  if unnamed:  # pandas' name for a header cell left empty: a saved row index, as a rule
    raise DataError(
        f"{file} has a column without a name ({unnamed[0]!r}), usually the row index pandas "
        "writes by default; it would be read as a variate. Drop that column, or write the "
        "file with DataFrame.to_csv(..., index=False).")


def check_values(frame: pd.DataFrame, columns: list[str], file, first_row: int = 0) -> np.ndarray:
  """The selected columns as float64 ``[N, C]``, after refusing non-numeric and non-finite cells."""
  first = None  # (row, column, value) of the first non-numeric cell
  for col in columns:
    if pd.api.types.is_numeric_dtype(frame[col]):
      continue
    raw = frame[col]
    bad = pd.to_numeric(raw, errors="coerce").isna().to_numpy() & raw.notna().to_numpy()
    if bad.any():
      row = int(np.argmax(bad))
      if first is None or row < first[0]:
        first = (row, col, raw.iloc[row])
  if first is not None:
    row, col, value = first
    raise DataError(
        f"{file}: non-numeric value {value!r} in column {col!r} at data row {first_row + row} "
        "(0-based, header excluded); every variate cell must be a number. Fix or remove that "
        "cell.")
  table = frame[columns]
  if not all(pd.api.types.is_numeric_dtype(t) for t in table.dtypes):
    table = table.apply(pd.to_numeric)  # text columns that hold only numbers
  values = table.to_numpy(np.float64)  # [N, C]
  # Training runs in float32: a value past its range would become inf after the cast.
  with np.errstate(invalid="ignore"):
    finite = np.abs(values) <= np.finfo(np.float32).max
  if not finite.all():
    row = int(np.argmax(~finite.all(axis=1)))
    c = int(np.argmax(~finite[row]))
    value = values[row, c]
    kind = ("an empty/NaN cell" if np.isnan(value) else f"the value {value}" if np.isinf(value)
            else f"the value {value:g}, beyond float32's range (about 3.4e38),")
    raise DataError(
        f"{file}: {kind} in column {columns[c]!r} at data row {first_row + row} (0-based, header "
        "excluded). The reference loaders do not fill gaps, and one non-finite value makes the "
        "scaler and the loss NaN; fill or drop such rows before loading.")
  return values


def parse_dates(frame: pd.DataFrame, file) -> pd.DatetimeIndex:
  raw = frame["date"]
  with warnings.catch_warnings():
    # A first cell that is not a date makes pandas warn before parsing each cell alone; the
    # DataError below names that cell, one message instead of two.
    warnings.filterwarnings("ignore", "Could not infer format", UserWarning)
    dates = pd.to_datetime(raw, errors="coerce")
  bad = dates.isna().to_numpy()
  if bad.any():
    row = int(np.argmax(bad))
    raise DataError(f"{file}: column 'date' at data row {row} (0-based, header excluded) holds "
                    f"{raw.iloc[row]!r}, not a date; write dates like '2016-07-01 00:00:00'.")
  return pd.DatetimeIndex(dates)


def check_order(dates: pd.DatetimeIndex, file) -> None:
  """A user's file must run forward in time with no repeated timestamp.

  Only for ``custom`` files and forecasts: the benchmark files are read exactly as the reference
  reads them (Weather repeats 2020-05-12 06:00:00 once, and the published numbers include it).
  """
  steps = np.diff(dates.asi8)
  bad = np.flatnonzero(steps <= 0)
  if bad.size:
    row = int(bad[0]) + 1
    what = "repeats the timestamp of" if steps[bad[0]] == 0 else "is earlier than"
    raise DataError(
        f"{file}: column 'date' at data row {row} (0-based, header excluded) holds "
        f"{dates[row]}, which {what} the row before; sort the file by date and remove "
        "duplicate rows.")


def interval_string(step: pd.Timedelta) -> str:
  """``pd.Timedelta`` -> its pandas offset string: 1 hour -> ``"h"``, 15 minutes -> ``"15min"``."""
  return to_offset(pd.Timedelta(step)).freqstr


def interval_timedelta(interval: str) -> pd.Timedelta:
  return pd.Timedelta(to_offset(interval))


def _steps_ns(dates) -> np.ndarray:
  """Steps between consecutive dates in nanoseconds (pandas may parse to ms or us)."""
  return np.diff(pd.DatetimeIndex(dates).as_unit("ns").asi8)


def infer_interval(dates: pd.DatetimeIndex) -> str:
  """The most common step between consecutive ``dates`` (at least two), as an offset string.

  The most common, not the only, step: the benchmark files keep their quirks (Weather repeats
  one timestamp), and a run's interval is read from its training rows.
  """
  steps = _steps_ns(dates)
  steps = steps[steps > 0]
  if steps.size == 0:
    return ""
  values, counts = np.unique(steps, return_counts=True)
  return interval_string(pd.Timedelta(int(values[np.argmax(counts)]), unit="ns"))


def check_interval(dates: pd.DatetimeIndex, interval: str, file, first_row: int = 0) -> None:
  """``dates`` (sorted, no repeats) must step by exactly ``interval``, the run's."""
  step = interval_timedelta(interval).value  # ns
  steps = _steps_ns(dates)
  bad = np.flatnonzero(steps != step)
  if bad.size == 0:
    return
  i = int(bad[0])
  seen = interval_string(pd.Timedelta(int(steps[i]), unit="ns"))
  uniform = bool(np.all(steps == steps[0]))
  what = (f"the dates step by {seen}, but the run was trained on data sampled every {interval}"
          if uniform else
          f"the dates are irregular: data row {first_row + i + 1} (0-based, header excluded) "
          f"comes {seen} after the row before, where the run's interval is {interval}")
  raise DataError(f"{file}: {what}. Resample the rows to one every {interval}, with no gaps.")
