"""Tests of the data pipeline: TSLib split borders, scaling, time features, windows, batches.

Real-data tests use the files in ``$TIMEDISTILL_DATA_DIR`` (skipped without it); everything else
writes tiny files in ``tmp_path`` or uses the generated ``synthetic`` dataset.
"""

import json
import os

import numpy as np
import pandas as pd
import pytest

from timedistill_jax.data import DATASETS
from timedistill_jax.data import dataset_name
from timedistill_jax.data import iterate_batches
from timedistill_jax.data import load_dataset
from timedistill_jax.data import num_batches
from timedistill_jax.data import time_features
from timedistill_jax.data import WindowSplit
from timedistill_jax.errors import ConfigError
from timedistill_jax.errors import DataError

ETT_COLUMNS = ("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT")


def _count(border1, border2, seq_len, pred_len):
  return border2 - border1 - seq_len - pred_len + 1


def _write_csv(path, num_rows=120, columns=("a", "b", "OT"), edit=None):
  """A small TSLib-layout CSV (date + variates); ``edit(frame)`` may plant a bad cell."""
  rng = np.random.default_rng(0)
  frame = pd.DataFrame(rng.normal(size=(num_rows, len(columns))), columns=list(columns))
  frame.insert(0, "date", pd.date_range("2020-01-01", periods=num_rows, freq="h"))
  if edit is not None:
    frame = edit(frame)
  frame.to_csv(path, index=False)
  return path


def _small(path, **kwargs):
  return load_dataset("custom", path=path, seq_len=8, label_len=4, pred_len=4, **kwargs)


# --- Real data: counts, scaling, item semantics --------------------------------------------------


def test_etth1_window_counts(data_dir):
  splits = load_dataset("etth1", seq_len=720, label_len=48, pred_len=96, data_dir=data_dir)
  assert (len(splits.train), len(splits.val), len(splits.test)) == (7825, 2785, 2785)
  assert splits.num_channels == 7 and splits.num_time_features == 4
  assert splits.columns == ETT_COLUMNS and splits.target_index == -1


@pytest.mark.parametrize("seq_len,pred_len", [(720, 96), (96, 336)])
def test_ettm1_and_weather_window_counts(data_dir, seq_len, pred_len):
  # Borders as stated in docs/data.md, independent of the code's border arithmetic.
  expected = {
      "ettm1": [(0, 34560), (34560 - seq_len, 46080), (46080 - seq_len, 57600)],
      "weather": [(0, 36887), (36887 - seq_len, 42157), (42157 - seq_len, 52696)],
  }
  for name, borders in expected.items():
    splits = load_dataset(name, seq_len=seq_len, label_len=48, pred_len=pred_len,
                          data_dir=data_dir)
    got = [len(s) for s in (splits.train, splits.val, splits.test)]
    assert got == [_count(b1, b2, seq_len, pred_len) for b1, b2 in borders], name
    assert [list(b) for b in splits.borders] == [list(b) for b in borders]


def test_items_equal_hand_sliced_windows(data_dir):
  raw = pd.read_csv(data_dir / "ETTh1.csv.gz")
  values = raw[list(ETT_COLUMNS)].to_numpy(np.float64)
  train = values[:8640]
  scaled = (values - train.mean(axis=0)) / train.std(axis=0)  # population std, as sklearn
  hours = pd.to_datetime(raw["date"]).dt.hour.to_numpy()
  seq_len, label_len, pred_len = 96, 48, 24
  splits = load_dataset("etth1", seq_len=seq_len, label_len=label_len, pred_len=pred_len,
                        data_dir=data_dir)
  for split, start in ((splits.train, 0), (splits.val, 8640 - 96), (splits.test, 11520 - 96)):
    for i in (0, 17, len(split) - 1):
      x, y, x_mark, y_mark = split[i]
      s = start + i
      assert x.dtype == np.float32 and x.shape == (96, 7) and y.shape == (72, 7)
      np.testing.assert_allclose(x, scaled[s:s + 96], rtol=1e-5, atol=1e-5)
      np.testing.assert_allclose(y, scaled[s + 96 - 48:s + 96 + 24], rtol=1e-5, atol=1e-5)
      np.testing.assert_allclose(x_mark[:, 0], hours[s:s + 96] / 23.0 - 0.5, atol=1e-6)
      np.testing.assert_allclose(y_mark[:, 0], hours[s + 48:s + 120] / 23.0 - 0.5, atol=1e-6)
  # The last test target is row 14399: rows 14400.. are never used.
  assert split[len(split) - 1][1].shape[0] == 72 and start + len(split) - 1 + 120 == 14400


def test_scaler_is_fitted_on_train_rows_only(data_dir):
  raw = pd.read_csv(data_dir / "ETTh1.csv.gz")[list(ETT_COLUMNS)].to_numpy(np.float64)
  splits = load_dataset("etth1", seq_len=96, label_len=48, pred_len=96, data_dir=data_dir)
  np.testing.assert_allclose(splits.scaler_mean, raw[:8640].mean(axis=0), rtol=1e-12)
  np.testing.assert_allclose(splits.scaler_std, raw[:8640].std(axis=0), rtol=1e-12)
  assert not np.allclose(splits.scaler_mean, raw[:14400].mean(axis=0), rtol=1e-3)
  train = splits.train.data.astype(np.float64)
  np.testing.assert_allclose(train.mean(axis=0), 0.0, atol=1e-5)
  np.testing.assert_allclose(train.std(axis=0), 1.0, atol=1e-5)
  assert splits.scaler_mean.dtype == np.float64 and splits.train.data.dtype == np.float32
  meta = json.loads(json.dumps(splits.metadata()))
  assert meta["borders"] == {"train": [0, 8640], "val": [8544, 11520], "test": [11424, 14400]}
  assert meta["scaler_mean"] == pytest.approx(list(splits.scaler_mean))
  assert meta["num_windows"] == {"train": 8449, "val": 2785, "test": 2785}


def test_features_s_and_ms(data_dir):
  kw = dict(seq_len=96, label_len=48, pred_len=96, data_dir=data_dir)
  multi = load_dataset("etth1", **kw)
  single = load_dataset("etth1", features="S", **kw)
  ms = load_dataset("etth1", features="MS", **kw)
  assert single.columns == ("OT",) and single.num_channels == 1 and single.target_index == 0
  # A one-column scaler gives the OT column the same scaling as the multivariate one.
  np.testing.assert_allclose(single.train.data[:, 0], multi.train.data[:, -1], atol=1e-6)
  assert ms.columns == multi.columns and ms.target_index == -1
  np.testing.assert_array_equal(ms.test.data, multi.test.data)
  hufl = load_dataset("etth1", features="S", target="HUFL", **kw)
  np.testing.assert_allclose(hufl.val.data[:, 0], multi.val.data[:, 0], atol=1e-6)


def test_partial_electricity_loads_as_custom(data_dir):
  splits = _small(data_dir / "partial" / "electricity_head55.csv.gz")
  assert splits.num_channels == 321 and splits.columns[-1] == "OT"
  assert splits.columns[:3] == ("0", "1", "2")
  # N = 55: train 38, test 11, val the remaining 6 rows.
  assert [list(b) for b in splits.borders] == [[0, 38], [30, 44], [36, 55]]
  assert (len(splits.train), len(splits.val), len(splits.test)) == (27, 3, 8)
  batch = splits.train.get_batch(np.arange(4))
  assert batch["x"].shape == (4, 8, 321) and batch["y"].shape == (4, 8, 321)


def test_weather_keeps_odd_header_and_sentinels(data_dir):
  splits = load_dataset("weather", seq_len=96, label_len=48, pred_len=96, data_dir=data_dir)
  assert "SWDR (W/m\ufffd)" in splits.columns and "PAR (\ufffdmol/m\ufffd/s)" in splits.columns
  assert splits.num_channels == 21 and splits.columns[-1] == "OT"
  raw = pd.read_csv(data_dir / "weather.csv.gz")
  ot = raw["OT"].to_numpy()
  assert (ot == -9999).sum() == 50
  np.testing.assert_allclose(splits.scaler_mean[-1], ot[:36887].mean(), rtol=1e-12)
  unscaled = splits.train.data[:, -1] * splits.scaler_std[-1] + splits.scaler_mean[-1]
  assert np.isclose(unscaled, -9999.0, atol=0.1).sum() == (ot[:36887] == -9999).sum() > 0


# --- Time features -------------------------------------------------------------------------------


def test_time_features_hand_checked():
  # 2016-07-01 00:00:00: Friday (dayofweek 4), day 1, day of year 183 (leap year), ISO week 26.
  # 2018-06-26 19:45:30: Tuesday (1), day 26, day of year 177.
  dates = pd.DatetimeIndex(["2016-07-01 00:00:00", "2018-06-26 19:45:30"])
  hourly = time_features(dates, "h")
  assert hourly.shape == (2, 4) and hourly.dtype == np.float32
  np.testing.assert_allclose(hourly[0], [-0.5, 4 / 6 - 0.5, -0.5, 182 / 365 - 0.5], atol=1e-7)
  np.testing.assert_allclose(hourly[0], [-0.5, 0.1666667, -0.5, -0.0013699], atol=1e-6)
  secondly = time_features(dates, "s")
  np.testing.assert_allclose(
      secondly[1], [0.0084746, 0.2627119, 0.3260870, -0.3333333, 0.3333333, -0.0178082],
      atol=1e-6)
  np.testing.assert_allclose(time_features(dates, "w")[0], [-0.5, 25 / 52 - 0.5], atol=1e-7)
  np.testing.assert_allclose(time_features(dates, "m")[:, 0], [0.0454545, -0.0454545], atol=1e-6)
  assert time_features(dates, "d").shape == (2, 3)
  np.testing.assert_array_equal(time_features(dates, "15min"), time_features(dates, "t"))
  assert time_features(dates, "min").shape == (2, 5)
  assert np.all(np.abs(secondly) <= 0.5)


def test_unknown_freq():
  with pytest.raises(ConfigError, match=r"'fortnight'.*h, t, min"):
    time_features(pd.DatetimeIndex(["2020-01-01"]), "fortnight")
  with pytest.raises(ConfigError, match="frequency"):
    load_dataset("synthetic", seq_len=8, label_len=4, pred_len=4, freq="x")


# --- Layouts -------------------------------------------------------------------------------------


def test_custom_layout_moves_target_last(tmp_path):
  path = _write_csv(tmp_path / "mine.csv", columns=("OT", "a", "b"))
  splits = _small(path)
  assert splits.columns == ("a", "b", "OT") and splits.num_time_features == 4
  raw = pd.read_csv(path)
  ot = raw["OT"].to_numpy()
  expected = (ot - ot[:84].mean()) / ot[:84].std()  # int(0.7 * 120) = 84 train rows
  np.testing.assert_allclose(splits.train.data[:, -1], expected[:84], atol=1e-6)
  other = _small(path, target="a")
  assert other.columns == ("OT", "b", "a")


def test_synthetic_is_deterministic():
  kw = dict(seq_len=96, label_len=48, pred_len=96)
  np.random.seed(1)
  first = load_dataset("synthetic", **kw)
  np.random.seed(2)
  second = load_dataset("synthetic", **kw)
  assert first.num_channels == 7 and first.columns[-1] == "OT"
  assert [list(b) for b in first.borders] == [[0, 8640], [8544, 11520], [11424, 14400]]
  for a, b in zip((first.train, first.val, first.test), (second.train, second.val, second.test)):
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_array_equal(a.marks, b.marks)
  assert np.isfinite(first.train.data).all() and first.train.data.std() > 0.5


def test_solar_layout_headerless_without_marks(tmp_path):
  values = np.random.default_rng(0).uniform(0, 50, (203, 137))
  np.savetxt(tmp_path / "solar_AL.txt.gz", values, delimiter=",", fmt="%.2f")
  splits = load_dataset("solar", seq_len=8, label_len=4, pred_len=4, data_dir=tmp_path)
  # N = 203: train int(142.1) = 142, test int(40.6) = 40, val int(20.3) = 20 (not the remainder).
  assert [list(b) for b in splits.borders] == [[0, 142], [134, 162], [155, 203]]
  assert splits.num_time_features == 0 and splits.num_channels == 137
  x, y, x_mark, y_mark = splits.val[0]
  assert x.shape == (8, 137) and x_mark.shape == (8, 0) and y_mark.shape == (8, 0)
  assert splits.train.get_batch(np.arange(3))["x_mark"].shape == (3, 8, 0)


# --- Windows and batches -------------------------------------------------------------------------


def _toy_split(num_rows=50, seq_len=5, label_len=2, pred_len=3):
  data = np.arange(num_rows * 2, dtype=np.float32).reshape(num_rows, 2)  # row r = [2r, 2r+1]
  marks = np.arange(num_rows, dtype=np.float32)[:, None] / 100  # [T, 1]
  return WindowSplit(data, marks, seq_len, label_len, pred_len, "train")


def test_getitem_semantics_and_bounds():
  split = _toy_split()
  assert len(split) == 50 - 5 - 3 + 1
  x, y, x_mark, y_mark = split[10]
  np.testing.assert_array_equal(x[:, 0], 2 * np.arange(10, 15))
  np.testing.assert_array_equal(y[:, 0], 2 * np.arange(13, 18))  # label 13, 14; horizon 15..17
  np.testing.assert_allclose(y_mark[:, 0], np.arange(13, 18) / 100)
  for bad in (-1, len(split)):
    with pytest.raises(IndexError):
      split[bad]  # pylint: disable=pointless-statement
  with pytest.raises(IndexError):
    split.get_batch(np.array([0, len(split)]))


def test_get_batch_equals_stacked_items(data_dir):
  split = load_dataset("etth1", seq_len=96, label_len=48, pred_len=96, data_dir=data_dir).val
  idx = np.array([0, 5, 100, len(split) - 1, 5])
  batch = split.get_batch(idx)
  for k, key in enumerate(("x", "y", "x_mark", "y_mark")):
    np.testing.assert_array_equal(batch[key], np.stack([split[i][k] for i in idx]))
  assert batch["x"].shape == (5, 96, 7) and batch["y_mark"].shape == (5, 144, 4)


def test_iterate_batches_shuffled_epochs():
  split = _toy_split()  # 43 windows
  batches = list(iterate_batches(split, 8, shuffle=True, seed=3, epoch=0))
  assert len(batches) == num_batches(split, 8) == 6
  assert all(b["x"].shape == (8, 5, 2) and b["mask"].shape == (8,) for b in batches)
  real = np.concatenate([b["index"][b["mask"] == 1] for b in batches])
  np.testing.assert_array_equal(np.sort(real), np.arange(43))  # each window exactly once
  assert not np.array_equal(real, np.arange(43))
  last = batches[-1]
  np.testing.assert_array_equal(last["mask"], [1, 1, 1, 0, 0, 0, 0, 0])
  assert set(last["index"][3:]) <= set(last["index"][:3])  # padding repeats real windows
  np.testing.assert_array_equal(last["x"][3], split[int(last["index"][3])][0])
  assert last["index"].dtype == np.int64 and last["mask"].dtype == np.float32
  # Same (seed, epoch) -> same order; another epoch -> another order.
  again = np.concatenate([b["index"] for b in iterate_batches(split, 8, shuffle=True, seed=3)])
  np.testing.assert_array_equal(again, np.concatenate([b["index"] for b in batches]))
  other = np.concatenate([b["index"] for b in iterate_batches(split, 8, shuffle=True, seed=3,
                                                              epoch=1)])
  assert not np.array_equal(other, again)
  # Resuming at batch 4 gives the tail of the same order.
  resumed = list(iterate_batches(split, 8, shuffle=True, seed=3, start_batch=4))
  assert len(resumed) == 2
  for a, b in zip(resumed, batches[4:]):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])


def test_iterate_batches_in_order_and_bad_args():
  split = _toy_split()
  order = np.concatenate([b["index"] for b in iterate_batches(split, 43)])
  np.testing.assert_array_equal(order, np.arange(43))
  for kwargs in (dict(batch_size=0), dict(batch_size=8, start_batch=7),
                 dict(batch_size=8, shuffle=True, seed=-1)):
    with pytest.raises(ConfigError):
      iterate_batches(split, **kwargs)


# --- Bad input: each a clear DataError / ConfigError, nothing written ----------------------------


def test_missing_file_not_downloadable(tmp_path):
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(DataError) as info:
    load_dataset("ecl", seq_len=96, label_len=48, pred_len=96, data_dir=empty)
  message = str(info.value)
  assert "electricity.csv" in message and "electricity.csv.gz" in message
  assert str(empty) in message and "TIMEDISTILL_DATA_DIR" in message
  assert os.listdir(empty) == []


def test_missing_target_column(tmp_path):
  path = _write_csv(tmp_path / "t.csv", columns=("a", "b", "c"))
  with pytest.raises(DataError, match=r"'OT'.*'a', 'b', 'c'.*target="):
    _small(path)
  assert os.listdir(tmp_path) == ["t.csv"]


def test_nan_value(tmp_path):
  def plant(frame):
    frame.loc[7, "b"] = np.nan
    return frame
  path = _write_csv(tmp_path / "nan.csv", edit=plant)
  with pytest.raises(DataError, match=r"NaN.*column 'b' at data row 7"):
    _small(path)
  assert os.listdir(tmp_path) == ["nan.csv"]


def test_inf_value(tmp_path):
  def plant(frame):
    frame.loc[3, "a"] = -np.inf
    return frame
  path = _write_csv(tmp_path / "inf.csv", edit=plant)
  with pytest.raises(DataError, match=r"-inf in column 'a' at data row 3"):
    _small(path)


def test_non_numeric_cell(tmp_path):
  def plant(frame):
    frame["a"] = frame["a"].astype(object)
    frame.loc[5, "a"] = "n/a?"
    frame["OT"] = frame["OT"].astype(object)
    frame.loc[9, "OT"] = "x"
    return frame
  path = _write_csv(tmp_path / "text.csv", edit=plant)
  with pytest.raises(DataError, match=r"'n/a\?' in column 'a' at data row 5"):
    _small(path)


def test_missing_date_column(tmp_path):
  path = _write_csv(tmp_path / "nodate.csv", edit=lambda f: f.rename(columns={"date": "time"}))
  with pytest.raises(DataError, match="no 'date' column"):
    _small(path)


@pytest.mark.parametrize("row", [4, 0])
def test_bad_date(tmp_path, row, recwarn):
  def plant(frame):
    frame["date"] = frame["date"].astype(str)
    frame.loc[row, "date"] = "yesterday"
    return frame
  path = _write_csv(tmp_path / "date.csv", edit=plant)
  with pytest.raises(DataError, match=f"data row {row}.*'yesterday'"):
    _small(path)
  # A bad first cell makes pandas warn "Could not infer format": our error is the one message.
  assert not [w for w in recwarn if "infer format" in str(w.message)]


def test_wrong_channel_count(tmp_path):
  np.savetxt(tmp_path / "solar_AL.txt", np.ones((300, 5)), delimiter=",")
  with pytest.raises(DataError, match="5 variate columns.*137"):
    load_dataset("solar", seq_len=8, label_len=4, pred_len=4, data_dir=tmp_path)


def test_too_few_rows(tmp_path):
  path = _write_csv(tmp_path / "short.csv", num_rows=1000, columns=ETT_COLUMNS)
  with pytest.raises(DataError, match="1000 data rows.*14400"):
    load_dataset("etth1", path=path, seq_len=96, label_len=48, pred_len=96)
  with pytest.raises(DataError, match="seq_len=800"):  # 700 train rows
    load_dataset("custom", path=path, seq_len=800, label_len=48, pred_len=1)


def test_window_longer_than_split():
  with pytest.raises(DataError) as info:
    load_dataset("synthetic", seq_len=720, label_len=48, pred_len=3000)
  message = str(info.value)
  assert "val split has 3600 rows" in message and "3720" in message
  assert "shorten seq_len or pred_len" in message


def test_unknown_dataset_name():
  with pytest.raises(ConfigError, match=r"'etth3'.*ecl, etth1, etth2.*weather"):
    load_dataset("etth3", seq_len=96, label_len=48, pred_len=96)
  assert set(DATASETS) >= {"etth1", "ettm2", "weather", "ecl", "traffic", "solar", "custom"}


def test_unknown_features_mode():
  with pytest.raises(ConfigError, match=r"'MM'.*M, MS, S"):
    load_dataset("synthetic", seq_len=96, label_len=48, pred_len=96, features="MM")


@pytest.mark.parametrize("lengths", [(0, 0, 96), (96, 0, 0), (96, 97, 96), (96, -1, 96)])
def test_bad_window_lengths(lengths):
  seq_len, label_len, pred_len = lengths
  with pytest.raises(ConfigError):
    load_dataset("synthetic", seq_len=seq_len, label_len=label_len, pred_len=pred_len)


@pytest.mark.parametrize("name, key", [
    ("ETTh1", "etth1"), ("ettm2", "ettm2"), ("ECL", "ecl"), ("electricity", "ecl"),
    ("Traffic", "traffic"), ("Weather", "weather"), ("Solar", "solar"), ("solar_AL", "solar"),
    ("SOLAR_al", "solar")])
def test_time_series_library_names_in_any_case(name, key):
  assert dataset_name(name) == key


def test_time_series_library_names_everywhere_a_dataset_is_named(tmp_path, data_dir):
  from timedistill_jax.configs import get_config
  from timedistill_jax.run import run

  splits = load_dataset("ETTh1", seq_len=96, label_len=48, pred_len=24)
  assert splits.name == "etth1" and len(splits.train) == 8640 - 96 - 24 + 1
  config = get_config("student", "dataset=ETTh1,smoke=True")
  assert config.data.name == "etth1"
  config.data.name = "ETTH1"  # as --config.data.name=ETTH1 would set it
  config.train.progress = False
  assert run(config, tmp_path / "run")["dataset"] == "etth1"
  with pytest.raises(ConfigError, match="unknown dataset 'ettx1'"):
    get_config("student", "dataset=ETTx1")
