"""timedistill_jax/guards.py: a workdir that cannot hold the run, or holds one made with another
config, is refused first; a non-finite or diverged loss stops the run, naming the part in the
loss's own order."""

import json
import os

import numpy as np
import pytest

from timedistill_jax.configs import get_config
from timedistill_jax.errors import ConfigError, NumericsError
from timedistill_jax.run import run
from timedistill_jax.guards import RESUME_FREE_KEYS, LossGuard, check_workdir


def _smoke(**overrides):
  config = get_config("student", "dataset=synthetic,smoke=True")
  config.train.progress = False
  for key, value in overrides.items():
    group, name = key.split(".")
    config[group][name] = value
  return config


def test_a_file_as_workdir_or_above_it_is_refused(tmp_path):
  (tmp_path / "file").write_text("x")
  for workdir in (tmp_path / "file", tmp_path / "file" / "run"):
    with pytest.raises(ConfigError, match="is a file, not a folder"):
      run(_smoke(), workdir)
  assert (tmp_path / "file").read_text() == "x"


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
  """A workdir as a killed run leaves it: config.json and checkpoints, no results.json."""
  workdir = tmp_path_factory.mktemp("guard") / "run"
  run(_smoke(), workdir)
  (workdir / "results.json").unlink()
  return workdir


@pytest.mark.parametrize("key,value", [("data.pred_len", 48), ("optim.lr", 0.005),
                                       ("model.d_model", 64), ("data.name", "etth2")])
def test_resume_with_another_config_is_refused_and_changes_nothing(interrupted, key, value):
  before = {p: p.read_bytes() for p in interrupted.rglob("*") if p.is_file()}
  with pytest.raises(ConfigError, match="another config") as err:
    check_workdir(_smoke(**{key: value}), interrupted)
  old = json.loads((interrupted / "config.json").read_text())
  group, name = key.split(".")
  assert f"{key}: {old[group][name]!r} -> {value!r}" in str(err.value)
  assert "--workdir" in str(err.value)
  with pytest.raises(ConfigError, match="another config"):
    run(_smoke(**{key: value}), interrupted)
  assert {p: p.read_bytes() for p in interrupted.rglob("*") if p.is_file()} == before


def test_keys_that_cannot_change_the_result_may_differ(interrupted):
  assert "train.epochs" in RESUME_FREE_KEYS and "train.progress" in RESUME_FREE_KEYS
  check_workdir(_smoke(**{"train.log_every": 3, "train.epochs": 5, "train.progress": True}),
                interrupted)


def test_an_unwritable_parent_is_refused(tmp_path, monkeypatch):
  # The suite runs as root in CI, who may write anywhere: the permission answer is simulated.
  locked = tmp_path / "locked"
  locked.mkdir()
  real = os.access
  monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(locked)
                      else real(p, mode))
  with pytest.raises(ConfigError, match="not writable"):
    check_workdir(_smoke(), locked / "run")


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
  """lr=1e6: the loss grows past 1e26 yet stays finite; the run must not end with exit 0."""
  config = get_config("student", "dataset=synthetic,smoke=True")
  config.train.progress = False
  config.optim.lr = 1e6
  with pytest.raises(NumericsError, match="diverged|became"):
    run(config, tmp_path / "run")
  assert not (tmp_path / "run" / "results.json").exists()
