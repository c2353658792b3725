"""Serving an exported model with jax and numpy alone: no Flax, Orbax or pandas.

``python -m timedistill_jax.export --workdir RUN --output DIR`` writes ``DIR/model.jaxexport``
(the model and its scaler, serialised with ``jax.export``, any batch size) and
``DIR/metadata.json`` (columns, lengths, interval, scaler, time features). Then::

  import numpy as np
  from timedistill_jax import serving

  fn, meta = serving.load("DIR")
  # x: the last seq_len rows, original units, [seq_len, C] in meta["columns"] order;
  # dates: their timestamps, datetime64 [seq_len]
  x_mark, y_mark, future = serving.marks(meta, dates)
  pred = np.asarray(fn(x[None], x_mark[None], y_mark[None]))[0]  # [pred_len, C_out]
  # pred[k] is the forecast for future[k], columns meta["output_columns"], original units

Importing this module imports json, hashlib, numpy and jax only (and the package's stdlib-only
``__init__``); ``tests/test_export.py`` runs it with Flax, Orbax and pandas blocked.
"""

import hashlib
import json
from pathlib import Path

import jax
import numpy as np

from timedistill_jax.errors import CheckpointError

MODEL_FILE = "model.jaxexport"
METADATA_FILE = "metadata.json"


def load(directory):
  """``(fn, metadata)`` of an exported model: ``fn(x [B, L, C], x_mark [B, L, F], y_mark
  [B, S + H, F]) -> [B, H, C_out]``, jitted (compiled once per batch size), original units."""
  directory = Path(directory)
  try:
    metadata = json.loads((directory / METADATA_FILE).read_text())
  except (OSError, ValueError) as e:
    raise _not_exported(directory, e) from e
  if metadata.get("format") != "jax.export":
    raise CheckpointError(f"{directory} holds a {metadata.get('format')!r} export, not a "
                          "jax.export one; run its model.onnx with onnxruntime, or export "
                          "again with --format jax.")
  try:
    blob = (directory / MODEL_FILE).read_bytes()
  except OSError as e:
    raise _not_exported(directory, e) from e
  digest = hashlib.sha256(blob).hexdigest()
  if digest != metadata.get("sha256", {}).get(MODEL_FILE):
    raise CheckpointError(f"{directory / MODEL_FILE} does not match the sha256 in "
                          f"{METADATA_FILE}: the file is damaged or was replaced; export again.")
  exported = jax.export.deserialize(bytearray(blob))
  return jax.jit(exported.call), metadata


def _not_exported(directory, e) -> CheckpointError:
  return CheckpointError(f"{directory} is not an exported model ({e}); write one with python -m "
                         f"timedistill_jax.export --workdir RUN --output {directory}")


def _as_dates(dates) -> np.ndarray:
  return np.asarray(dates, dtype="datetime64[s]")


def time_features(dates, fields) -> np.ndarray:
  """TSLib's timeF features of ``dates`` (datetime64 or ISO strings) for ``fields``, the
  ``metadata["time_features"]`` list (or its names): float32 ``[T, F]``, computed in float64 as
  ``timedistill_jax.data.time_features`` does with pandas."""
  dates = _as_dates(dates)
  day = dates.astype("datetime64[D]")
  seconds = (dates - day).astype(np.int64)  # into the day
  weekday = (day.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
  thursday = day + (3 - weekday)  # the ISO week's year is its Thursday's
  iso_week = (thursday - thursday.astype("datetime64[Y]").astype("datetime64[D]")).astype(
      np.int64) // 7 + 1
  month = dates.astype("datetime64[M]")
  day_of_month = (day - month.astype("datetime64[D]")).astype(np.int64) + 1
  day_of_year = (day - dates.astype("datetime64[Y]").astype("datetime64[D]")).astype(
      np.int64) + 1
  columns = {
      "second_of_minute": (seconds % 60) / 59.0 - 0.5,
      "minute_of_hour": (seconds // 60 % 60) / 59.0 - 0.5,
      "hour_of_day": (seconds // 3600) / 23.0 - 0.5,
      "day_of_week": weekday / 6.0 - 0.5,
      "day_of_month": (day_of_month - 1.0) / 30.0 - 0.5,
      "day_of_year": (day_of_year - 1.0) / 365.0 - 0.5,
      "month_of_year": (month.astype(np.int64) % 12) / 11.0 - 0.5,
      "week_of_year": (iso_week - 1.0) / 52.0 - 0.5,
  }
  names = [f["name"] if isinstance(f, dict) else f for f in fields]
  if not names:
    return np.zeros((len(dates), 0), np.float32)
  return np.stack([np.asarray(columns[n], np.float64) for n in names], 1).astype(np.float32)


def future_dates(metadata: dict, last) -> np.ndarray:
  """The ``pred_len`` timestamps after ``last``, one sampling interval apart: datetime64 [H]."""
  step = np.timedelta64(int(metadata["interval_seconds"]), "s")
  return _as_dates(last) + step * np.arange(1, metadata["pred_len"] + 1)


def marks(metadata: dict, dates):
  """``(x_mark [L, F], y_mark [S + H, F], future [H])`` of a window whose input rows have
  ``dates`` (the last ``seq_len`` of them are used): the decoder's dates are the last
  ``label_len`` input dates, then the future ones, as TSLib builds them."""
  dates = _as_dates(dates)[-metadata["seq_len"]:]
  future = future_dates(metadata, dates[-1])
  decoder = np.concatenate([dates[len(dates) - metadata["label_len"]:], future])
  fields = metadata["time_features"]
  return time_features(dates, fields), time_features(decoder, fields), future
