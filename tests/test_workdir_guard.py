"""A workdir that cannot hold the run, or holds one made with another config, is refused first."""

import json
import os

import pytest

from timedistill_jax.configs import get_config
from timedistill_jax.errors import ConfigError
from timedistill_jax.run import run
from timedistill_jax.trainer import RESUME_FREE_KEYS, check_workdir


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
