"""The command line as a user runs it: a smoke run, and bad input ending in one clear line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from timedistill_jax.configs import student
from timedistill_jax.errors import TimeDistillError
from timedistill_jax.run import run

ROOT = Path(__file__).resolve().parent.parent


def _cli(*args, env=None):
  return subprocess.run([sys.executable, "-m", "timedistill_jax", *args], cwd=ROOT,
                        capture_output=True, text=True, env=env, timeout=300)


def test_smoke_run_through_the_cli(tmp_path, data_dir):
  workdir = tmp_path / "run"
  out = _cli("--config", "configs/student.py:dataset=etth1,pred_len=96,smoke=True",
             "--config.train.progress=False", "--workdir", str(workdir),
             env=os.environ | {"TIMEDISTILL_DATA_DIR": str(data_dir)})
  assert out.returncode == 0, out.stderr[-2000:]
  results = json.loads((workdir / "results.json").read_text())
  assert results["num_params"] == 836_842 and results["smoke"] is True
  assert results["test"]["mse"] > 0 and results["ms_per_train_step"] > 0
  config = json.loads((workdir / "config.json").read_text())
  assert config["data"]["name"] == "etth1"


def test_cli_error_is_one_line_without_traceback(tmp_path):
  workdir = tmp_path / "run"
  out = _cli("--config", "configs/student.py:dataset=synthetic", "--config.model.name=gru",
             "--workdir", str(workdir))
  assert out.returncode == 2
  assert "Traceback" not in out.stderr
  assert "error: unknown model 'gru'; valid choices:" in out.stderr
  assert not workdir.exists()


@pytest.mark.parametrize("args, message", [
    (["--config", "configs/student.py:dataset=synthetic", "--config.optim.lrr=3"],
     'error: unknown config key lrr Did you mean "lr"'),
    (["--config", "configs/student.py:dataset=nope"], "error: unknown dataset 'nope'; valid"),
    (["--config", "configs/nofile.py"], "error: no config file 'configs/nofile.py'"),
])
def test_bad_command_line_is_one_line(tmp_path, args, message):
  out = _cli(*args, "--workdir", str(tmp_path / "run"))
  assert out.returncode == 2 and "Traceback" not in out.stderr
  assert out.stderr.startswith(message), out.stderr
  assert not (tmp_path / "run").exists()


def _config(dataset="synthetic", **data):
  config = student.get_config("dataset=synthetic,smoke=True")
  config.data.name = dataset
  config.train.progress = False
  for k, v in data.items():
    config.data[k] = v
  return config


@pytest.mark.parametrize("change, message", [
    (dict(dataset="ecl"), "electricity.csv not found"),
    (dict(target="TEMP", features="S"), "target column 'TEMP' not in"),
    (dict(pred_len=4000), "shorten seq_len or pred_len"),
    (dict(dataset="atlantis"), "unknown dataset 'atlantis'"),
])
def test_bad_input_fails_before_anything_is_written(tmp_path, monkeypatch, change, message):
  monkeypatch.setenv("TIMEDISTILL_DATA_DIR", str(tmp_path / "empty"))
  workdir = tmp_path / "run"
  config = _config(change.pop("dataset", "synthetic"), **change)
  with pytest.raises(TimeDistillError, match=message):
    run(config, workdir)
  assert not workdir.exists()
  assert not (tmp_path / "empty").exists() or not any((tmp_path / "empty").iterdir())


@pytest.mark.parametrize("bad, message", [("nan", "NaN"), ("inf", "the value inf")])
def test_non_finite_values_fail_before_anything_is_written(tmp_path, bad, message):
  rows = ["date,a,OT"] + [f"2020-01-01 {h:02d}:00:00,{h},{h * 2}" for h in range(24)] * 1
  rows[5] = f"2020-01-01 04:00:00,{bad},8"
  csv = tmp_path / "mine.csv"
  csv.write_text("\n".join(rows))
  config = _config("custom", path=str(csv), seq_len=4, label_len=2, pred_len=2)
  with pytest.raises(TimeDistillError, match=message):
    run(config, tmp_path / "run")
  assert not (tmp_path / "run").exists()


def test_compilation_cache_is_filled_and_reused(tmp_path):
  # A second identical run reads its programs from the cache the first one filled, with the
  # same results (how much faster it is, is the benchmark's business, not a test's).
  cache = tmp_path / "xla"
  env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_PERSISTENT_CACHE")
         and k != "JAX_COMPILATION_CACHE_DIR"}
  runs = []
  for name in ("a", "b"):
    out = subprocess.run(
        [sys.executable, "-m", "timedistill_jax", "--config",
         "student:dataset=synthetic,model=mlp,smoke=True", "--config.train.progress=False",
         f"--compilation_cache={cache}", "--workdir", str(tmp_path / name)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    runs.append(json.loads((tmp_path / name / "results.json").read_text()))
    if name == "a":
      filled = {p.name for p in cache.iterdir()}
      assert len(filled) >= 3  # the step loop, the evaluation and the initialisation at least
  assert {p.name for p in cache.iterdir()} == filled  # nothing new to compile the second time
  assert runs[0]["test"] == runs[1]["test"]
