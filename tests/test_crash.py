"""Runs killed with SIGKILL resume to exactly the uninterrupted result.

The kill is placed deterministically by ``TIMEDISTILL_CRASH_AT`` (timedistill_jax/crash.py):
``step:N`` right after optimiser step N, ``save:K`` inside the K-th checkpoint save (arrays
written, integrity metadata not yet). Each case runs the command line three times: without the
variable to the end, with it until the kill, and again without it, resuming.
"""

import json
import os
import signal
import subprocess

import pytest

from tests.helpers import ROOT, cli, teacher_run_config
from timedistill_jax.run import run

STEPS_PER_EPOCH = 100  # of 269 (synthetic, L=48, H=12, batch 32): a shuffled subset each epoch
TINY = ["--config.data.seq_len=48", "--config.data.label_len=8", "--config.model.d_model=16",
        "--config.train.epochs=3", "--config.train.patience=10",
        "--config.train.checkpoint_every=20", "--config.train.progress=False",
        f"--config.train.max_steps_per_epoch={STEPS_PER_EPOCH}"]
STUDENT = "student:dataset=synthetic,pred_len=12"
DISTILL = "distill:dataset=synthetic,teacher=itransformer,pred_len=12"
TIMINGS = {"wall_seconds", "seconds", "ms_per_train_step", "inference_ms_per_batch"}


def _run_cli(config, workdir, *flags, crash_at=None):
  env = {k: v for k, v in os.environ.items() if k != "TIMEDISTILL_CRASH_AT"}
  if crash_at:
    env["TIMEDISTILL_CRASH_AT"] = crash_at
  return subprocess.run(cli(config, workdir, *TINY, *flags), cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=600)


def _finished(config, workdir, *flags):
  out = _run_cli(config, workdir, *flags)
  assert out.returncode == 0, out.stderr[-3000:]
  return out


def _metadata(step_dir):
  return json.loads((step_dir / "metadata" / "metadata").read_text())


def _assert_same_run(whole, resumed):
  """results.json and every epoch of metrics.jsonl bit for bit, timings aside."""
  a = json.loads((whole / "results.json").read_text())
  b = json.loads((resumed / "results.json").read_text())
  assert set(a) == set(b)
  assert {k: v for k, v in b.items() if k not in TIMINGS} == {
      k: v for k, v in a.items() if k not in TIMINGS}
  epochs = lambda w: [{k: v for k, v in json.loads(line).items() if k != "ms_per_step"}
                      for line in (w / "metrics.jsonl").read_text().splitlines()]
  assert epochs(resumed) == epochs(whole)


def _kill(config, workdir, crash_at, *flags):
  out = _run_cli(config, workdir, *flags, crash_at=crash_at)
  assert out.returncode == -signal.SIGKILL, (out.returncode, out.stderr[-3000:])
  assert not (workdir / "results.json").exists()


def _resume(config, whole, killed, resumes_at, *flags):
  again = _finished(config, killed, *flags)
  epoch, batch = resumes_at
  assert f"resuming {killed} at epoch {epoch}, batch {batch}" in again.stdout, again.stdout
  _assert_same_run(whole, killed)


@pytest.fixture(scope="module")
def whole_student(tmp_path_factory):
  """The uninterrupted student run every kill is compared with."""
  workdir = tmp_path_factory.mktemp("whole") / "student"
  _finished(STUDENT, workdir)
  return workdir


def test_kill_mid_epoch_at_a_step_resumes_to_the_same_result(whole_student, tmp_path):
  # Step 150 is in the second epoch; the latest checkpoint before it is step 140.
  killed = tmp_path / "killed"
  _kill(STUDENT, killed, "step:150")
  latest = killed / "checkpoints" / "latest"
  assert sorted(int(p.name) for p in latest.iterdir() if p.name.isdigit()) == [120, 140]
  assert "files_sha256" in _metadata(latest / "140")  # every save finished
  _resume(STUDENT, whole_student, killed, (2, 40))


@pytest.mark.parametrize("save, store, step, resumes_at", [
    # Saves of a 100-step epoch with checkpoint_every=20: latest 20, 40, 60, 80, then best
    # (the epoch improved), then latest 100; the second epoch starts at save 7 (latest 120).
    (8, "latest", 140, (2, 40)),  # a mid-epoch save: resumes from the unfinished step itself
    (5, "best", 0, (1, 80)),  # the first best save: resumes from latest step 80, saves it again
], ids=["latest_mid_epoch", "best"])
def test_kill_during_a_save_resumes_to_the_same_result(whole_student, tmp_path, save, store,
                                                       step, resumes_at):
  killed = tmp_path / "killed"
  _kill(STUDENT, killed, f"save:{save}")
  # Killed inside that save: the arrays are written, the file hashes are not.
  interrupted = _metadata(killed / "checkpoints" / store / str(step))
  assert "arrays_sha256" in interrupted and "files_sha256" not in interrupted
  _resume(STUDENT, whole_student, killed, resumes_at)


def test_distillation_killed_at_a_step_resumes_to_the_same_result(tmp_path):
  run(teacher_run_config(), tmp_path / "teacher")
  flag = f"--config.teacher.workdir={tmp_path / 'teacher'}"
  _finished(DISTILL, tmp_path / "whole", flag)
  _kill(DISTILL, tmp_path / "killed", "step:230", flag)  # the third epoch, after step 220's save
  _resume(DISTILL, tmp_path / "whole", tmp_path / "killed", (3, 20), flag)
