"""A non-finite or diverged loss stops the run, naming the part in the loss's own order."""

import json

import numpy as np
import pytest

from timedistill_jax.configs import get_config
from timedistill_jax.errors import NumericsError
from timedistill_jax.run import run
from timedistill_jax.trainer import LossGuard


class _Store:
  def __init__(self, step):
    self.step = step

  def latest_step(self):
    return self.step


def _pending(*losses, **parts):
  metrics = [{"loss": np.float32(v)} | {k: np.float32(p[i]) for k, p in parts.items()}
             for i, v in enumerate(losses)]
  return [(0, i + 1, m, np.arange(3)) for i, m in enumerate(metrics)]


def test_the_first_bad_part_in_loss_order_is_named(tmp_path):
  guard = LossGuard(tmp_path, True, 0.0, _Store(None))
  nan = float("nan")
  with pytest.raises(NumericsError, match=r"the 'sup' loss became nan at step 2 .* no "
                                          r"checkpoint had been saved yet"):
    guard.check(_pending(1.0, nan, sup=[1.0, nan], feat_scale=[0.1, nan]))
  assert json.loads((tmp_path / "nonfinite_batch.json").read_text())["part"] == "sup"


def test_a_diverged_loss_stops_with_the_kept_checkpoint(tmp_path):
  guard = LossGuard(tmp_path, True, 100.0, _Store(7))
  guard.check(_pending(2.0, 150.0))  # within 100 x the first loss
  assert guard.reference == 2.0
  with pytest.raises(NumericsError, match=r"grew to 201, past 100 times the first step's 2 "
                                          r".*diverged.*last good checkpoint is kept"):
    guard.check(_pending(201.0))


def test_divergence_check_off_with_zero(tmp_path):
  LossGuard(tmp_path, True, 0.0, _Store(None)).check(_pending(1.0, 1e30))


def test_a_diverging_run_fails_instead_of_succeeding(tmp_path):
  """The issue's case: lr=1e6 used to end in exit 0 with a test MSE of 9e24."""
  config = get_config("student", "dataset=synthetic,smoke=True")
  config.train.progress = False
  config.optim.lr = 1e6
  with pytest.raises(NumericsError, match="diverged|became"):
    run(config, tmp_path / "run")
  assert not (tmp_path / "run" / "results.json").exists()
