"""TensorBoard event files (timedistill_jax/events.py): what a run writes, read back."""

import struct

import pytest

from tests.helpers import student_run_config
from timedistill_jax.run import run

event_pb2 = pytest.importorskip("tensorboardX.proto.event_pb2")


def _scalars(folder):
  """``{tag: [(step, value), ...]}`` of every event file in ``folder`` (TFRecord framing:
  length, its CRC, the record, its CRC)."""
  out = {}
  for path in sorted(folder.glob("events.out.tfevents.*")):
    data = path.read_bytes()
    i = 0
    while i < len(data):
      (length,) = struct.unpack("<Q", data[i:i + 8])
      event = event_pb2.Event.FromString(data[i + 12:i + 12 + length])
      i += 12 + length + 4
      for value in event.summary.value:
        if value.HasField("simple_value"):
          out.setdefault(value.tag, []).append((event.step, value.simple_value))
  return out


def test_a_run_writes_its_losses_metrics_rate_and_speed(tmp_path):
  results = run(student_run_config(epochs=2), tmp_path)
  scalars = _scalars(tmp_path / "tensorboard")
  assert {"lr", "steps_per_second", "train/loss", "train/sup", "val/mse", "val/mae",
          "test/mse"} <= set(scalars)
  assert [step for step, _ in scalars["val/mse"]] == [1, 2]
  assert scalars["test/mse"][0][1] == pytest.approx(results["test"]["mse"], rel=1e-6)
  assert list(tmp_path.glob("tensorboard/**/events.out.tfevents.*"))  # hparams too
  assert (tmp_path / "metrics.jsonl").exists()  # kept beside the events


def test_each_member_of_an_ensemble_is_a_tensorboard_run(tmp_path):
  config = student_run_config(epochs=1)
  config.ensemble.seeds = "1,2"
  run(config, tmp_path)
  for m in (0, 1):
    assert "val/mse" in _scalars(tmp_path / "tensorboard" / f"member_{m}")


def test_switched_off(tmp_path):
  run(student_run_config(epochs=1, tensorboard=False), tmp_path)
  assert not (tmp_path / "tensorboard").exists()


def test_tensorboardx_loads_without_torch():
  """tensorboardX would import torch (seconds) whenever it is installed; a run never needs it,
  and ``import torch`` works as before afterwards."""
  import subprocess
  import sys

  code = ("import importlib.util, sys\n"
          "from timedistill_jax.events import _summary_writer\n"
          "_summary_writer()\n"
          "assert 'torch' not in sys.modules, 'tensorboardX loaded torch'\n"
          "if importlib.util.find_spec('torch') is not None:\n"
          "  import torch\n"
          "  assert torch.zeros(1).shape == (1,)\n")
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr
