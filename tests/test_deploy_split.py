"""Training for deployment (``config.data.split='deploy'``) and the sampling interval kept with
the data's metadata. The reference borders stay the default (pinned in tests/test_data.py)."""

import json

import numpy as np
import pandas as pd
import pytest

from timedistill_jax.data import fit_scaler, load_dataset, synthetic_frame
from timedistill_jax.data.checks import (check_interval, infer_interval, interval_string,
                                         interval_timedelta)
from timedistill_jax.errors import ConfigError, DataError
from timedistill_jax.run import run
from timedistill_jax.runs import restore_run
from timedistill_jax.validation import validate_config
from tests.helpers import student_run_config

KW = dict(seq_len=96, label_len=48, pred_len=24)


def test_deploy_borders_and_scaler():
  splits = load_dataset("synthetic", split="deploy", **KW)
  # 14,400 rows, the last int(0.1 N) = 1440 validate: train [0, 12960); val and test
  # [12960 - 96, 14400), the same rows.
  assert [list(b) for b in splits.borders] == [[0, 12960], [12864, 14400], [12864, 14400]]
  assert len(splits.val) == len(splits.test) == 1440 - 24 + 1
  np.testing.assert_array_equal(splits.val.data, splits.test.data)
  values = synthetic_frame().drop(columns="date").to_numpy(np.float64)
  mean, std = fit_scaler(values[:12960])
  np.testing.assert_array_equal(splits.scaler_mean, mean)
  np.testing.assert_array_equal(splits.scaler_std, std)
  # The last validation window's target ends on the file's last row.
  last = splits.val[len(splits.val) - 1][1]
  np.testing.assert_allclose(last[-1], ((values[-1] - mean) / std).astype(np.float32))
  meta = json.loads(json.dumps(splits.metadata()))
  assert meta["split"] == "deploy" and meta["interval"] == "h"


def test_deploy_val_fraction():
  splits = load_dataset("synthetic", split="deploy", val_fraction=0.25, **KW)
  assert [list(b) for b in splits.borders] == [[0, 10800], [10704, 14400], [10704, 14400]]


def test_reference_is_the_default():
  default = load_dataset("synthetic", **KW)
  assert default.split == "reference"
  assert [list(b) for b in default.borders] == [[0, 8640], [8544, 11520], [11424, 14400]]


@pytest.mark.parametrize("kw, error, message", [
    (dict(split="all"), ConfigError, "unknown split 'all'; valid choices: deploy, reference"),
    (dict(split="deploy", val_fraction=1.0), ConfigError, r"val_fraction must be a number in"),
    (dict(split="deploy", val_fraction=0.001), DataError,
     r"the val split has 110 rows \[14290, 14400\), shorter than one window"),
])
def test_bad_split_arguments(kw, error, message):
  with pytest.raises(error, match=message):
    load_dataset("synthetic", **KW, **kw)


@pytest.mark.parametrize("key, value, message", [
    ("split", "future", r"unknown split \(config.data.split\) 'future'; valid choices"),
    ("val_fraction", 0.0, "val_fraction must be a number > 0"),
    ("val_fraction", 1.5, "val_fraction must be below 1"),
])
def test_config_validation(key, value, message):
  config = student_run_config()
  config.data[key] = value
  with pytest.raises(ConfigError, match=message):
    validate_config(config)


def test_deploy_run_trains_on_the_whole_file(tmp_path):
  config = student_run_config()
  config.data.split = "deploy"
  results = run(config, tmp_path / "w")
  data = restore_run(tmp_path / "w").metadata["data"]
  assert data["split"] == "deploy" and data["interval"] == "h"
  assert data["borders"]["train"] == [0, 12960]
  # The test split is the validation tail, so the test figures are the best validation ones.
  assert results["test"]["mse"] == pytest.approx(results["best_val"]["mse"], rel=1e-6)


# --- The sampling interval --------------------------------------------------------------------


def test_interval_strings():
  assert interval_string(pd.Timedelta(hours=1)) == "h"
  assert interval_string(pd.Timedelta(minutes=15)) == "15min"
  assert interval_timedelta("10min") == pd.Timedelta(minutes=10)
  dates = pd.DatetimeIndex(["2020-01-01 00:00", "2020-01-01 00:10", "2020-01-01 00:10",
                            "2020-01-01 00:20", "2020-01-01 00:40"])
  assert infer_interval(dates) == "10min"  # the most common step; repeats ignored


def test_check_interval_names_row_and_fix():
  dates = pd.date_range("2020-01-01", periods=5, freq="15min")
  check_interval(dates, "15min", "f.csv")
  with pytest.raises(DataError, match=r"f.csv: the dates step by 15min, but the run was trained "
                     r"on data sampled every h\. Resample"):
    check_interval(dates, "h", "f.csv")
  gap = dates.delete(3)
  with pytest.raises(DataError, match=r"irregular: data row 13 \(0-based, header excluded\) "
                     r"comes 30min after the row before"):
    check_interval(gap, "15min", "f.csv", first_row=10)


@pytest.mark.parametrize("name, interval", [("etth1", "h"), ("ettm1", "15min"),
                                            ("weather", "10min")])
def test_benchmark_intervals(data_dir, name, interval):
  splits = load_dataset(name, data_dir=data_dir, **KW)
  assert splits.metadata()["interval"] == interval
