"""Forecasting new data with a finished run: the window equals the test window it ends on, the
output is dated and un-scaled, and every bad input is one error before the model is built."""

import os
import subprocess
import sys

import jax
import numpy as np
import pandas as pd
import pytest

import timedistill_jax
from timedistill_jax import forecast as forecast_lib
from timedistill_jax.data import load_dataset, synthetic_frame
from timedistill_jax.errors import CheckpointError, DataError
from timedistill_jax.forecast import RunSpec, forecast, main, run_interval
from timedistill_jax.run import run
from timedistill_jax.runs import restore_run
from tests.helpers import ROOT, RUN_H, RUN_L, RUN_S, student_run_config, teacher_run_config


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
  """A smoke DMLP on the synthetic series (hourly, 7 columns, L 48, S 8, H 12)."""
  workdir = tmp_path_factory.mktemp("forecast") / "dmlp"
  run(student_run_config(), workdir)
  return workdir


def _history(rows=100):
  return synthetic_frame().iloc[:rows].reset_index(drop=True)


# --- Real ETTh1: the forecast of a test window's input is that window's test prediction --------


def _etth1_run(config, data_dir, workdir):
  config.data.name, config.data.data_dir = "etth1", str(data_dir)
  run(config, workdir)
  return restore_run(workdir)


@pytest.mark.parametrize("kind", ["dmlp", "itransformer"])  # iTransformer reads x_mark
def test_forecast_equals_the_test_window_prediction(data_dir, tmp_path, kind):
  config = student_run_config() if kind == "dmlp" else teacher_run_config()
  restored = _etth1_run(config, data_dir, tmp_path / kind)
  splits = load_dataset("etth1", seq_len=RUN_L, label_len=RUN_S, pred_len=RUN_H,
                        data_dir=data_dir)
  raw = pd.read_csv(data_dir / "ETTh1.csv.gz")
  spec = RunSpec.from_metadata(restored.metadata, tmp_path / kind)
  first = splits.borders[2][0]  # the test split's first row in the file
  apply = jax.jit(lambda *a: restored.model.apply(restored.variables, *a, train=False)[0])
  for i in (0, len(splits.test) - 1):
    x, _, x_mark, y_mark = splits.test[i]
    end = first + i + RUN_L  # the window's input ends on file row end - 1
    window = forecast_lib.make_window(spec, raw.iloc[:end], "ETTh1")
    np.testing.assert_array_equal(forecast_lib.scale(spec, window.x), x)
    np.testing.assert_array_equal(window.x_mark, x_mark)
    np.testing.assert_array_equal(window.y_mark, y_mark)
    pred = apply(x[None], x_mark[None], y_mark[None])  # [1, H, C]
    expected = np.asarray(pred[0], np.float64) * splits.scaler_std + splits.scaler_mean
    got = forecast(tmp_path / kind, raw.iloc[end - RUN_L - 5:end])  # 5 extra rows: ignored
    np.testing.assert_allclose(got.drop(columns="date").to_numpy(), expected, rtol=1e-5,
                               atol=1e-5)
    dates = pd.to_datetime(raw["date"].iloc[end:end + RUN_H]).to_numpy()
    np.testing.assert_array_equal(got["date"].to_numpy(), dates)  # the window's target dates
    assert list(got.columns) == ["date", "HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]


# --- Synthetic runs: outputs, API forms ----------------------------------------------------------


def test_forecast_rows_dates_and_units(synthetic_run, tmp_path):
  history = _history(100)
  out = forecast(synthetic_run, history)
  assert out.shape == (RUN_H, 8) and out.columns[0] == "date"
  assert out["date"].iloc[0] == pd.Timestamp("2016-07-05 04:00:00")  # row 99 + 1 h
  assert (out["date"].diff().iloc[1:] == pd.Timedelta("1h")).all()
  # In original units: the forecast lies near the input's level, not near 0 (the scaled space).
  level = history.drop(columns="date").iloc[-RUN_L:].mean().to_numpy()
  spread = history.drop(columns="date").iloc[-RUN_L:].std().to_numpy()
  assert np.all(np.abs(out.drop(columns="date").mean().to_numpy() - level) < 3 * spread + 1)
  # The same from a CSV file, columns in another order, and through the package attribute.
  shuffled = history[["date", "OT", "x3", "x0", "x1", "x2", "x4", "x5"]]
  shuffled.to_csv(tmp_path / "in.csv", index=False)
  from_file = timedistill_jax.forecast(synthetic_run, tmp_path / "in.csv")
  pd.testing.assert_frame_equal(from_file, out, check_exact=False, rtol=1e-6)


def test_output_columns_for_s_and_ms():
  meta = {"model": "dmlp", "config": {"kind": "student", "data": dict(
      seq_len=4, label_len=2, pred_len=3, freq="h", features="MS", target="OT")},
      "data": dict(columns=["a", "b", "OT"], scaler_mean=[0, 0, 10.0], scaler_std=[1, 1, 2.0],
                   num_time_features=4, interval="h", borders={"train": [0, 10]})}
  spec = RunSpec.from_metadata(meta, "w")
  assert spec.output_columns == ("OT",) and spec.output_index == (2,)
  pred = np.ones((3, 3), np.float32)  # [H, C]
  np.testing.assert_array_equal(forecast_lib.unscale(spec, pred), np.full((3, 1), 12.0))
  meta["config"]["data"]["features"], meta["data"]["columns"] = "S", ["OT"]
  assert RunSpec.from_metadata(meta, "w").output_columns == ("OT",)


def test_interval_of_runs_saved_without_one(tmp_path):
  path = tmp_path / "train.csv"
  frame = _history(30)
  frame["date"] = pd.date_range("2020-01-01", periods=30, freq="15min")
  frame.to_csv(path, index=False)
  data = dict(name="custom", source=str(path), borders={"train": [0, 20]})
  assert run_interval(data, "w") == "15min"  # from the training rows of the file
  assert run_interval(dict(data, source="gone.csv", name="weather"), "w") == "10min"
  with pytest.raises(CheckpointError, match="saved without its sampling interval, its training "
                     "file 'gone.csv' cannot be read, and dataset 'custom' has no known"):
    run_interval(dict(data, source="gone.csv"), "w")


def test_importing_the_package_stays_light():
  code = ("import sys, timedistill_jax; "
          "print(sorted(m for m in ('jax', 'pandas', 'flax', 'orbax') if m in sys.modules))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       timeout=60)
  assert out.stdout.strip() == "[]", out.stderr


# --- Bad input: one error each, before the model is built ---------------------------------------


def _edit(fn):
  frame = _history(100)
  fn(frame)
  return frame


CASES = [
    (lambda: _history(RUN_L - 1), r"has 47 rows, fewer than the run's look-back window seq_len "
     r"= 48; pass at least its last 48 rows"),
    (lambda: _history().drop(columns=["x2", "OT"]), r"lacks the run's column\(s\) 'x2', 'OT'"),
    (lambda: _history().assign(extra=1.0), r"has column\(s\) 'extra' the run was not trained on"),
    (lambda: _history().drop(columns="date"), r"has no 'date' column"),
    (lambda: _edit(lambda f: f.__setitem__("x1", f["x1"].where(f.index != 97))),
     r"an empty/NaN cell in column 'x1' at data row 97"),
    (lambda: _edit(lambda f: f.__setitem__("OT", f["OT"].where(f.index != 60, np.inf))),
     r"the value inf in column 'OT' at data row 60"),
    (lambda: _edit(lambda f: f.__setitem__("x0", f["x0"].astype(object).where(
        f.index != 80, "n/a"))), r"non-numeric value 'n/a' in column 'x0' at data row 80"),
    (lambda: _history().iloc[::-1], r"data row 1 .* is earlier than the row before; sort"),
    (lambda: _edit(lambda f: f.__setitem__("date", f["date"].where(f.index != 90,
                                                                  f["date"][89]))),
     r"data row 90 .* repeats the timestamp of the row before"),
    (lambda: _history().drop(index=95), r"irregular: data row 95 .* comes 2h after the row "
     r"before, where the run's interval is h"),
    (lambda: _history().assign(date=pd.date_range("2020-01-01", periods=100, freq="15min")),
     r"the dates step by 15min, but the run was trained on data sampled every h"),
]


@pytest.mark.parametrize("make, message", CASES)
def test_bad_input_is_one_error(synthetic_run, make, message, monkeypatch):
  built = []
  monkeypatch.setattr(forecast_lib, "apply_fn", lambda r: built.append(r))  # never reached
  with pytest.raises(DataError, match=message):
    forecast(synthetic_run, make())
  assert not built


def test_workdirs_without_a_finished_run(synthetic_run, tmp_path):
  with pytest.raises(CheckpointError, match=r"nothing does not exist: pass the workdir of a "
                     "finished run"):
    forecast(tmp_path / "nothing", _history())
  (tmp_path / "empty").mkdir()
  with pytest.raises(CheckpointError, match=r"empty holds no trained model"):
    forecast(tmp_path / "empty", _history())
  (tmp_path / "unfinished" / "checkpoints" / "best").mkdir(parents=True)
  with pytest.raises(CheckpointError, match=r"has not finished \(no results.json\)"):
    forecast(tmp_path / "unfinished", _history())
  ensemble = tmp_path / "ensemble"
  for folder in (ensemble, ensemble / "members" / "0", ensemble / "members" / "1"):
    (folder / "checkpoints" / "best").mkdir(parents=True)
    (folder / "results.json").write_text("{}")
  with pytest.raises(CheckpointError, match=r"ensemble holds an ensemble of 2 members; pass one "
                     r"of them as --workdir, e.g. .*ensemble/members/0"):
    forecast(ensemble, _history())


# --- The command line --------------------------------------------------------------------------


def _cli(*args):
  return subprocess.run([sys.executable, "-m", "timedistill_jax.forecast", *map(str, args)],
                        cwd=ROOT, capture_output=True, text=True, timeout=300,
                        env=os.environ | {"JAX_PLATFORMS": "cpu"})


def test_cli_writes_the_forecast_and_plot(synthetic_run, tmp_path):
  _history().to_csv(tmp_path / "in.csv", index=False)
  out = _cli("--workdir", synthetic_run, "--input", tmp_path / "in.csv", "--output",
             tmp_path / "out.csv", "--plot", tmp_path / "out.png")
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.startswith(f"wrote {RUN_H} steps of x0, x1, x2, x3, x4, x5, OT from "
                               "2016-07-05 04:00:00 to 2016-07-05 15:00:00")
  written = pd.read_csv(tmp_path / "out.csv", parse_dates=["date"])
  pd.testing.assert_frame_equal(written, forecast(synthetic_run, _history()), check_exact=False,
                                rtol=1e-12, check_dtype=False)
  assert (tmp_path / "out.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_error_is_one_line_and_writes_nothing(synthetic_run, tmp_path):
  _history(RUN_L - 1).to_csv(tmp_path / "in.csv", index=False)
  out = _cli("--workdir", synthetic_run, "--input", tmp_path / "in.csv", "--output",
             tmp_path / "out.csv", "--plot", tmp_path / "out.png")
  assert out.returncode == 2 and "Traceback" not in out.stderr
  assert out.stderr.count("\n") == 1 and out.stderr.startswith("error: ") and "47 rows" in out.stderr
  assert not (tmp_path / "out.csv").exists() and not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("args, message", [
    (["--workdir", "W", "--input", "in.csv"], "the following arguments are required: --output"),
    (["--workdir", "nothing", "--input", "in.csv", "--output", "out.csv"],
     "--workdir nothing does not exist"),
    (["--workdir", "W", "--input", "missing.csv", "--output", "out.csv"],
     "input file missing.csv not found"),
    (["--workdir", "W", "--input", "in.csv", "--output", "no/such/out.csv"],
     "the folder no/such does not exist"),
    (["--workdir", "W", "--input", "in.csv", "--output", "in.csv"], "is the input file"),
])
def test_cli_mistakes(synthetic_run, tmp_path, monkeypatch, capsys, args, message):
  monkeypatch.chdir(tmp_path)
  os.symlink(synthetic_run, tmp_path / "W")
  _history().to_csv(tmp_path / "in.csv", index=False)
  assert main(args) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
  assert not (tmp_path / "out.csv").exists()

