"""Bad data cells and columns are refused with file, row and column; never a NaN in results."""

import numpy as np
import pandas as pd
import pytest

from timedistill_jax.configs import get_config
from timedistill_jax.data import load_dataset
from timedistill_jax.errors import DataError, NumericsError
from timedistill_jax.guards import check_metrics


def _csv(tmp_path, value, row):
  dates = pd.date_range("2020-01-01", periods=400, freq="h")
  rng = np.random.default_rng(0)
  frame = pd.DataFrame({"date": dates.strftime("%Y-%m-%d %H:%M:%S"),
                        "a": rng.normal(size=400), "OT": rng.normal(size=400)})
  frame.loc[row, "a"] = value
  path = tmp_path / "series.csv"
  frame.to_csv(path, index=False)
  return path


@pytest.mark.parametrize("value,row", [(1e39, 390), (-3.5e38, 200), (1e300, 5)])
def test_beyond_float32_is_refused_with_row_and_column(tmp_path, value, row):
  path = _csv(tmp_path, value, row)
  with pytest.raises(DataError, match=rf"beyond float32's range .* column 'a' at data row {row}"):
    load_dataset("custom", seq_len=24, label_len=12, pred_len=12, path=str(path))


def test_the_largest_float32_passes(tmp_path):
  path = _csv(tmp_path, float(np.finfo(np.float32).max), 10)
  splits = load_dataset("custom", seq_len=24, label_len=12, pred_len=12, path=str(path))
  assert splits.num_channels == 2


def test_a_non_finite_metric_names_the_split():
  with pytest.raises(NumericsError, match="the test mse is nan at the best epoch 3"):
    check_metrics({"mse": float("nan"), "mae": 1.0, "mape": 1.0}, "test", "the best epoch 3")
  with pytest.raises(NumericsError, match="validation mae is inf"):
    check_metrics({"mse": 1.0, "mae": float("inf")}, "validation", "epoch 1")
  check_metrics({"mse": 1.0, "mae": 1.0, "mape": float("inf")}, "test", "x")  # a zero target


def test_a_test_row_past_float32_never_reaches_results(tmp_path):
  """1e39 in a test row: refused before training, never a ``"mse": NaN`` with exit 0."""
  from timedistill_jax.run import run

  config = get_config("student", "dataset=custom,smoke=True")
  config.data.path = str(_csv(tmp_path, 1e39, 395))
  config.data.seq_len, config.data.label_len, config.data.pred_len = 24, 12, 12
  with pytest.raises(DataError, match="row 395"):
    run(config, tmp_path / "run")
  assert not (tmp_path / "run").exists()


def test_an_unnamed_index_column_is_refused(tmp_path):
  """pandas' default ``to_csv`` writes the row index as a first column named ''."""
  path = _csv(tmp_path, 1.0, 0)
  pd.read_csv(path).to_csv(path)  # index=True, the default
  assert pd.read_csv(path).columns[0] == "Unnamed: 0"
  with pytest.raises(DataError, match=r"'Unnamed: 0'.*index=False"):
    load_dataset("custom", seq_len=24, label_len=12, pred_len=12, path=str(path))


def test_data_hints_name_the_command_line_keys(tmp_path):
  # The fix a message names is what the command line takes: --config.data.*, not key=.
  path = _csv(tmp_path, 0.0, 0)
  with pytest.raises(DataError, match=r"pass --config\.data\.target= with one of these names"):
    load_dataset("custom", seq_len=48, label_len=8, pred_len=12, path=str(path), target="nope")
  with pytest.raises(DataError, match=r"pass --config\.data\.path=FILE\.csv"):
    load_dataset("custom", seq_len=48, label_len=8, pred_len=12,
                 path=str(tmp_path / "missing.csv"))
