"""The loop of timedistill_jax/trainer.py: determinism, logs, finished and resumed runs, one run
per workdir, stops on non-finite losses, and a damaged latest checkpoint.

The SIGKILL cases (a process killed at a step or inside a save) are in tests/test_crash.py.
"""

import json

import pytest

from tests.helpers import student_run_config
from timedistill_jax import trainer
from timedistill_jax.errors import ConfigError, NumericsError
from timedistill_jax.run import run
from timedistill_jax.guards import workdir_lock


def _mlp(**train):
  return student_run_config("mlp", **train)


def test_same_seed_same_result(tmp_path):
  r1 = trainer.train_and_evaluate(_mlp(), tmp_path / "a")
  r2 = trainer.train_and_evaluate(_mlp(), tmp_path / "b")
  assert r1["test"] == r2["test"]
  files = {p.name for p in (tmp_path / "a").iterdir()}
  assert {"config.json", "metrics.jsonl", "results.json", "checkpoints"} <= files
  lines = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
  assert len(lines) == 2 and "val" in json.loads(lines[0])


def test_a_finished_run_is_not_trained_again(tmp_path, capsys):
  first = trainer.train_and_evaluate(_mlp(), tmp_path)
  second = trainer.train_and_evaluate(_mlp(), tmp_path)
  assert first == second
  assert "already holds a finished run" in capsys.readouterr().out


def test_resume_after_an_epoch_gives_the_same_result(tmp_path, capsys):
  full = trainer.train_and_evaluate(_mlp(), tmp_path / "full")
  trainer.train_and_evaluate(_mlp(epochs=1), tmp_path / "resumed")
  (tmp_path / "resumed" / "results.json").unlink()  # as if it had been stopped after epoch 1
  resumed = trainer.train_and_evaluate(_mlp(), tmp_path / "resumed")
  assert f"resuming {tmp_path / 'resumed'} at epoch 2, batch 0" in capsys.readouterr().out
  assert resumed["test"] == full["test"]  # bit for bit
  assert (resumed["best_val"], resumed["epochs"]) == (full["best_val"], full["epochs"])


def test_a_second_run_on_the_same_workdir_is_refused(tmp_path):
  tmp_path.mkdir(exist_ok=True)
  with workdir_lock(tmp_path):
    with pytest.raises(ConfigError, match="in use by another run"):
      run(student_run_config(), tmp_path)
  assert run(student_run_config(), tmp_path)["test"]["mse"] > 0  # free again afterwards


def test_non_finite_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
  # All four steps of an epoch run in one call; the first step's update sends the loss of the
  # second to inf or NaN, and that step is the one named.
  config = student_run_config()
  config.optim.lr = 1e30
  with pytest.raises(NumericsError, match=r"loss became (nan|inf) at step 2 \(epoch 1\)"):
    run(config, tmp_path)
  report = json.loads((tmp_path / "nonfinite_batch.json").read_text())
  assert report["part"] == "sup" and len(report["window_indices"]) == 32
  assert not (tmp_path / "results.json").exists()


def test_one_step_per_call_gives_the_results_of_many(tmp_path):
  # 20 steps an epoch; calls of 1 step, and of up to 8 steps cut at the checkpoints every 6.
  kw = dict(epochs=3, max_steps_per_epoch=20, checkpoint_every=6)
  one = run(student_run_config(steps_per_call=1, **kw), tmp_path / "one")
  many = run(student_run_config(steps_per_call=8, **kw), tmp_path / "many")
  assert (one["steps_per_call"], many["steps_per_call"]) == (1, 8)
  assert one["epochs"] == many["epochs"] == 3 and one["best_epoch"] == many["best_epoch"]
  for split in ("test", "best_val"):
    assert many[split] == pytest.approx(one[split], rel=1e-6)
  logs = [[json.loads(line) for line in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
          for d in ("one", "many")]
  for a, b in zip(*logs):
    assert b["train"] == pytest.approx(a["train"], rel=1e-6)


def test_results_split_the_wall_clock_into_phases(tmp_path):
  seconds = run(student_run_config(), tmp_path)["seconds"]
  assert {"data", "compile", "steps", "evaluation", "checkpoints", "other", "total"} <= set(seconds)
  assert all(v >= 0 for k, v in seconds.items() if k != "other")
  assert sum(v for k, v in seconds.items() if k != "total") == pytest.approx(seconds["total"],
                                                                               abs=1e-3)


def test_damaged_latest_step_falls_back_to_the_previous_one(tmp_path, capsys):
  config = student_run_config(epochs=2)
  run(config, tmp_path)
  (tmp_path / "results.json").unlink()
  latest = tmp_path / "checkpoints" / "latest"
  newest = max((p for p in latest.glob("[0-9]*") if p.name.isdigit()), key=lambda p: int(p.name))
  data = max((p for p in (newest / "state").rglob("*") if p.is_file()),
             key=lambda p: p.stat().st_size)
  raw = bytearray(data.read_bytes())
  raw[len(raw) // 2] ^= 0xFF
  data.write_bytes(bytes(raw))
  config.train.epochs = 3
  assert run(config, tmp_path)["epochs"] >= 2
  assert "skipping damaged checkpoint step" in capsys.readouterr().out
