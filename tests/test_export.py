"""Export for serving: ``jax.export`` with the scaler inside, loaded with jax and numpy alone,
equal to the forecast command; ONNX for the students; the command line's errors."""

import hashlib
import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pandas as pd
import pytest

from timedistill_jax import serving
from timedistill_jax.data import synthetic_frame, time_features
from timedistill_jax.data.time_features import FEATURES_BY_FREQ, describe
from timedistill_jax.errors import CheckpointError, ConfigError
from timedistill_jax.export import export_jax, export_run, main
from timedistill_jax.forecast import RunSpec, forecast
from timedistill_jax.run import run
from timedistill_jax.runs import Restored
from tests.helpers import (B, C, F, H, L, LABEL_LEN, ROOT, RUN_H, RUN_L, SMALL_KWARGS, build,
                           inputs, random_variables, student_run_config)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  """A smoke DMLP on the synthetic series and its ``jax.export`` folder."""
  root = tmp_path_factory.mktemp("export")
  run(student_run_config(), root / "dmlp")
  meta = export_run(root / "dmlp", root / "out")
  return root / "dmlp", root / "out", meta


def _history(rows=100):
  return synthetic_frame().iloc[:rows].reset_index(drop=True)


def _serve_inputs(meta, history):
  x = history[meta["columns"]].to_numpy(np.float32)[-meta["seq_len"]:]  # [L, C]
  x_mark, y_mark, future = serving.marks(meta, history["date"].to_numpy())
  return x, x_mark, y_mark, future


def test_exported_model_equals_the_forecast(exported):
  workdir, out, _ = exported
  fn, meta = serving.load(out)
  expected = forecast(workdir, _history())
  x, x_mark, y_mark, future = _serve_inputs(meta, _history())
  got = np.asarray(fn(x[None], x_mark[None], y_mark[None]))[0]  # [H, C]
  assert got.shape == (RUN_H, 7)
  np.testing.assert_array_equal(future, expected["date"].to_numpy())
  assert np.max(np.abs(got - expected[meta["output_columns"]].to_numpy())) <= 1e-5
  # Any batch size: five windows at once give each window's forecast.
  ends = [60, 70, 80, 90, 100]
  batch = [_serve_inputs(meta, _history(e)) for e in ends]
  preds = np.asarray(fn(*(np.stack([b[i] for b in batch]) for i in range(3))))  # [5, H, C]
  for pred, end in zip(preds, ends):
    want = forecast(workdir, _history(end)).drop(columns="date").to_numpy()
    assert np.max(np.abs(pred - want)) <= 1e-5


def test_metadata(exported):
  workdir, out, meta = exported
  run_meta = json.loads((out / "metadata.json").read_text())
  assert run_meta == json.loads(json.dumps(meta))
  spec = RunSpec.from_metadata(_checkpoint_metadata(workdir), workdir)
  assert meta["columns"] == meta["output_columns"] == ["x0", "x1", "x2", "x3", "x4", "x5", "OT"]
  assert (meta["seq_len"], meta["label_len"], meta["pred_len"]) == (RUN_L, 8, RUN_H)
  assert (meta["freq"], meta["interval"], meta["interval_seconds"]) == ("h", "h", 3600)
  assert (meta["features"], meta["target"], meta["model"]) == ("M", "OT", "dmlp")
  assert meta["scaler_mean"] == list(spec.scaler_mean)
  assert meta["scaler_std"] == list(spec.scaler_std)
  assert [f["name"] for f in meta["time_features"]] == [
      "hour_of_day", "day_of_week", "day_of_month", "day_of_year"]
  assert meta["time_features"][0]["formula"] == "hour / 23 - 0.5"
  assert meta["inputs"] == {"x": ["batch", 48, 7], "x_mark": ["batch", 48, 4],
                            "y_mark": ["batch", 20, 4]}
  assert meta["output"] == ["batch", 12, 7] and meta["platforms"] == ["cpu", "cuda", "tpu"]
  blob = (out / "model.jaxexport").read_bytes()
  assert meta["sha256"] == {"model.jaxexport": hashlib.sha256(blob).hexdigest()}


def _checkpoint_metadata(workdir):
  from timedistill_jax.checkpoints import CheckpointStore
  with CheckpointStore(workdir / "checkpoints" / "best", create=False) as store:
    return store.read_metadata()


def test_serving_needs_only_jax_and_numpy(exported, tmp_path):
  workdir, out, meta = exported
  x, x_mark, y_mark, _ = _serve_inputs(meta, _history())
  np.savez(tmp_path / "in.npz", x=x[None], x_mark=x_mark[None], y_mark=y_mark[None])
  code = textwrap.dedent(f"""
      import sys
      for name in ("flax", "orbax", "orbax.checkpoint", "pandas", "optax", "torch"):
        sys.modules[name] = None  # importing any of them now fails
      import numpy as np
      from timedistill_jax import serving
      fn, meta = serving.load({str(out)!r})
      dates = np.arange("2016-07-01T00", "2016-07-05T04", dtype="datetime64[h]")  # 100 rows
      x_mark, y_mark, future = serving.marks(meta, dates)
      inputs = np.load({str(tmp_path / "in.npz")!r})
      assert np.array_equal(x_mark, inputs["x_mark"][0]) and np.array_equal(y_mark,
                                                                            inputs["y_mark"][0])
      np.save({str(tmp_path / "out.npy")!r}, np.asarray(fn(inputs["x"], x_mark[None],
                                                           y_mark[None])))
  """)
  done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                        timeout=120)
  assert done.returncode == 0, done.stderr[-2000:]
  expected = forecast(workdir, _history()).drop(columns="date").to_numpy()
  assert np.max(np.abs(np.load(tmp_path / "out.npy")[0] - expected)) <= 1e-5


def test_serving_time_features_equal_the_pandas_ones():
  dates = pd.date_range("1999-12-25", "2032-01-08", freq="9h17min13s")  # ISO week edges too
  for freq in FEATURES_BY_FREQ:
    np.testing.assert_array_equal(serving.time_features(dates.to_numpy(), describe(freq)),
                                  time_features(dates, freq), err_msg=freq)


def test_damaged_or_foreign_exports_are_refused(exported, tmp_path):
  _, out, meta = exported
  (tmp_path / "model.jaxexport").write_bytes((out / "model.jaxexport").read_bytes()[:-1] + b"x")
  (tmp_path / "metadata.json").write_text(json.dumps(meta))
  with pytest.raises(CheckpointError, match="does not match the sha256 in metadata.json"):
    serving.load(tmp_path)
  (tmp_path / "metadata.json").write_text(json.dumps(meta | {"format": "onnx"}))
  with pytest.raises(CheckpointError, match="holds a 'onnx' export, not a jax.export one"):
    serving.load(tmp_path)
  with pytest.raises(CheckpointError, match="is not an exported model"):
    serving.load(tmp_path / "nothing")


def _spec(name, channels=C):
  return RunSpec(columns=tuple(f"c{i}" for i in range(channels)),
                 output_columns=tuple(f"c{i}" for i in range(channels)),
                 output_index=tuple(range(channels)), scaler_mean=(10.0,) * channels,
                 scaler_std=(2.0,) * channels, seq_len=L, label_len=LABEL_LEN, pred_len=H,
                 freq="h", num_time_features=F, interval="h", features="M", target="c0",
                 model=name, kind="teacher")


@pytest.mark.parametrize("name", sorted(SMALL_KWARGS))
def test_every_model_exports_with_any_batch(name):
  model = build(name)
  x, x_mark, y_mark = inputs()
  restored = Restored(model, random_variables(model, (x, x_mark, y_mark)), {}, "w")
  exported = jax.export.deserialize(export_jax(restored, _spec(name), platforms=("cpu",)))
  got = jax.jit(exported.call)(x * 2 + 10, x_mark, y_mark)  # original units: scaled inside
  pred = jax.jit(lambda *a: model.apply(restored.variables, *a, train=False)[0])(x, x_mark,
                                                                                   y_mark)
  np.testing.assert_allclose(got, pred * 2 + 10, rtol=1e-5, atol=1e-5)
  assert exported.in_avals[0].shape[0] != B  # symbolic


# --- The command line --------------------------------------------------------------------------


def test_cli_exports(exported, tmp_path):
  workdir, _, _ = exported
  done = subprocess.run([sys.executable, "-m", "timedistill_jax.export", "--workdir",
                         str(workdir), "--output", str(tmp_path / "e"), "--platforms", "cpu"],
                        cwd=ROOT, capture_output=True, text=True, timeout=300,
                        env=os.environ | {"JAX_PLATFORMS": "cpu"})
  assert done.returncode == 0, done.stderr[-2000:]
  assert done.stdout.startswith(f"wrote {tmp_path / 'e' / 'model.jaxexport'} (")
  assert "dmlp: x [batch, 48, 7], x_mark [batch, 48, 4], y_mark [batch, 20, 4] -> " \
         "[batch, 12, 7]) and " in done.stdout
  assert json.loads((tmp_path / "e" / "metadata.json").read_text())["platforms"] == ["cpu"]


@pytest.mark.parametrize("args, message", [
    (["--workdir", "W"], "the following arguments are required: --output"),
    (["--workdir", "W", "--output", "o", "--format", "tflite"],
     "unknown export format 'tflite'; valid choices: jax, onnx"),
    (["--workdir", "W", "--output", "o", "--platforms", "cpu,metal"],
     "unknown platform(s) 'metal'"),
    (["--workdir", "nothing", "--output", "o"], "--workdir nothing does not exist"),
    (["--workdir", "W", "--output", "afile"], "--output afile is a file"),
])
def test_cli_mistakes_are_one_line(exported, tmp_path, monkeypatch, capsys, args, message):
  monkeypatch.chdir(tmp_path)
  os.symlink(exported[0], tmp_path / "W")
  (tmp_path / "afile").write_text("")
  assert main(args) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
  assert not (tmp_path / "o").exists()


# --- ONNX (the torch extra and the onnx extra) ---------------------------------------------------


def _needs(*packages):
  import importlib.util

  missing = [p for p in packages if importlib.util.find_spec(p) is None]
  if missing:
    pytest.skip(f"{', '.join(missing)} not installed (pip install -e .[onnx])")


def test_teachers_refuse_onnx():
  from timedistill_jax.onnx_export import check_model

  check_model("dmlp")
  with pytest.raises(ConfigError, match=r"--format onnx exports the students \(mlp, dmlp\); "
                     "this run's model is 'itransformer': use --format jax"):
    check_model("itransformer")


@pytest.mark.parametrize("name", ["dmlp", "mlp"])
@pytest.mark.parametrize("norm", ["non-stationary", "revin", "none"])
def test_torch_student_equals_the_flax_one(name, norm):
  _needs("torch")
  import torch

  from timedistill_jax.torch_student import torch_student

  model = build(name, norm=norm)
  x, x_mark, y_mark = inputs()
  variables = random_variables(model, (x, x_mark, y_mark))
  student = torch_student(Restored(model, variables, {}, "w"))
  with torch.no_grad():
    got = student(torch.tensor(np.asarray(x))).numpy()
  want, _ = model.apply(variables, x, x_mark, y_mark, train=False)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_onnx_export_equals_the_forecast(exported, tmp_path):
  _needs("torch", "onnx", "onnxscript", "onnxruntime")
  import onnxruntime

  workdir, _, _ = exported
  meta = export_run(workdir, tmp_path / "onnx", fmt="onnx")
  assert meta["format"] == "onnx" and meta["inputs"] == {"x": ["batch", 48, 7]}
  assert meta["onnxruntime_check"]["max_relative_difference"] <= 1e-5
  session = onnxruntime.InferenceSession(str(tmp_path / "onnx" / "model.onnx"))
  expected = forecast(workdir, _history()).drop(columns="date").to_numpy()
  for batch in (1, 4):
    x = _serve_inputs(meta, _history())[0]
    got = session.run(None, {"x": np.repeat(x[None], batch, 0)})[0]  # [batch, H, C]
    assert got.shape == (batch, RUN_H, 7)
    assert np.max(np.abs(got - expected)) <= 1e-5


def test_onnx_without_its_packages_is_one_line(monkeypatch):
  import importlib.util

  from timedistill_jax.export import check_format

  # torch and onnx present, onnxscript missing, whatever this machine has installed
  present = importlib.util.find_spec("json")
  monkeypatch.setattr(importlib.util, "find_spec",
                      lambda name, *a: None if name == "onnxscript" else present)
  with pytest.raises(ConfigError, match=r"--format onnx needs torch, onnx, onnxscript; "
                     r"onnxscript not installed: pip install -e .\[onnx\]"):
    check_format("onnx", ("cpu",))

