"""Runs that survive a SIGKILL, checkpoints that cannot lie, stops on non-finite losses, and
one run per workdir."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from configs import student as student_config
from configs import teacher as teacher_config
from timedistill_jax.errors import ConfigError, NumericsError
from timedistill_jax.run import run
from timedistill_jax.trainer import workdir_lock

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--config.data.seq_len=48", "--config.data.label_len=8", "--config.model.d_model=16",
        "--config.train.epochs=3", "--config.train.patience=10",
        "--config.train.checkpoint_every=20", "--config.train.progress=False",
        "--config.train.max_steps_per_epoch=100"]
STEPS_PER_EPOCH = 100  # of 269 (synthetic, L=48, H=12, batch 32): a shuffled subset each epoch


def _cmd(config, workdir, *extra):
  return [sys.executable, "-m", "timedistill_jax", "--config", config, "--workdir",
          str(workdir), *TINY, *extra]


def _mid_epoch_checkpoint(workdir: Path) -> bool:
  """A latest checkpoint inside the second epoch exists (the run is well under way)."""
  folder = workdir / "checkpoints" / "latest"
  steps = [int(p.name) for p in folder.glob("[0-9]*") if p.name.isdigit()] if folder.is_dir() else []
  return any(s > STEPS_PER_EPOCH and s % STEPS_PER_EPOCH for s in steps)


def _kill_and_resume(config, tmp_path, *extra):
  whole = subprocess.run(_cmd(config, tmp_path / "whole", *extra), cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
  assert whole.returncode == 0, whole.stderr[-3000:]
  proc = subprocess.Popen(_cmd(config, tmp_path / "killed", *extra), cwd=ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  while not _mid_epoch_checkpoint(tmp_path / "killed") and time.time() < deadline:
    assert proc.poll() is None, "the run ended before it could be killed"
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (tmp_path / "killed" / "results.json").exists()
  again = subprocess.run(_cmd(config, tmp_path / "killed", *extra), cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
  assert again.returncode == 0, again.stderr[-3000:]
  assert "resuming" in again.stdout
  a = json.loads((tmp_path / "whole" / "results.json").read_text())
  b = json.loads((tmp_path / "killed" / "results.json").read_text())
  assert b["test"] == pytest.approx(a["test"], rel=1e-6)
  assert b["best_val"] == pytest.approx(a["best_val"], rel=1e-6)
  assert b["epochs"] == a["epochs"]


def test_training_resumes_after_sigkill_with_the_same_result(tmp_path):
  _kill_and_resume("configs/student.py:dataset=synthetic,pred_len=12", tmp_path)


def test_distillation_resumes_after_sigkill_with_the_same_result(tmp_path):
  config = teacher_config.get_config("dataset=synthetic,model=itransformer,pred_len=12,smoke=True")
  config.data.seq_len, config.data.label_len = 48, 8
  config.model.update(dict(d_model=16, d_ff=16, n_heads=2, e_layers=1))
  config.train.progress = False
  run(config, tmp_path / "teacher")
  _kill_and_resume("configs/distill.py:dataset=synthetic,teacher=itransformer,pred_len=12",
                   tmp_path, f"--config.teacher.workdir={tmp_path / 'teacher'}")


def _tiny(**train):
  config = student_config.get_config("dataset=synthetic,pred_len=12,smoke=True")
  config.data.seq_len, config.data.label_len = 48, 8
  config.model.d_model = 16
  config.train.progress = False
  config.train.update(train)
  return config


def test_a_second_run_on_the_same_workdir_is_refused(tmp_path):
  tmp_path.mkdir(exist_ok=True)
  with workdir_lock(tmp_path):
    with pytest.raises(ConfigError, match="in use by another run"):
      run(_tiny(), tmp_path)
  assert run(_tiny(), tmp_path)["test"]["mse"] > 0  # free again afterwards


def test_non_finite_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
  config = _tiny(log_every=1)
  config.optim.lr = 1e30
  with pytest.raises(NumericsError, match=r"loss became (nan|inf) at step \d+ \(epoch 1\)"):
    run(config, tmp_path)
  report = json.loads((tmp_path / "nonfinite_batch.json").read_text())
  assert report["part"] == "sup" and len(report["window_indices"]) == 32
  assert not (tmp_path / "results.json").exists()


def test_damaged_latest_step_falls_back_to_the_previous_one(tmp_path, capsys):
  config = _tiny(epochs=2)
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
