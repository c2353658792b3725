"""Every config of the paper's grid builds and validates; bad values are refused clearly."""

import pytest

from timedistill_jax.configs import common, distill, student, teacher
from timedistill_jax.errors import ConfigError
from timedistill_jax.validation import validate_config

PAPER_DATASETS = ("etth1", "etth2", "ettm1", "ettm2", "weather", "ecl", "traffic", "solar")


@pytest.mark.parametrize("dataset", PAPER_DATASETS)
@pytest.mark.parametrize("pred_len", common.HORIZONS)
def test_every_dataset_and_horizon(dataset, pred_len):
  arg = f"dataset={dataset},pred_len={pred_len}"
  for config in (student.get_config(arg), student.get_config(arg + ",model=mlp"),
                 teacher.get_config(arg + ",model=itransformer"),
                 distill.get_config(arg + ",teacher=itransformer")):
    if config.kind == "distill":
      config.teacher.workdir = "runs/some_teacher"
    validate_config(config)
    assert config.data.pred_len == pred_len and config.data.seq_len == 720


def test_reference_student_settings():
  c = student.get_config("dataset=traffic")
  assert (c.model.norm, c.model.d_model, c.data.batch_size, c.train.epochs) == (
      "revin", 1024, 8, 10)
  c = student.get_config("dataset=etth1")
  assert (c.optim.lr, c.optim.schedule, c.train.patience, c.data.batch_size) == (
      0.01, "type1", 5, 32)
  d = distill.get_config("dataset=ecl,teacher=itransformer")
  assert (d.distill.alpha, d.distill.beta) == (0.1, 0.5)
  d = distill.get_config("dataset=etth1,teacher=timesnet")
  assert (d.distill.alpha, d.distill.beta) == (1.0, 1.0)
  t = teacher.get_config("dataset=ecl,model=itransformer")
  assert (t.model.e_layers, t.model.d_model, t.data.batch_size, t.optim.lr) == (3, 512, 16, 5e-4)


@pytest.mark.parametrize("arg, message", [
    ("dataset=nope", "unknown dataset 'nope'; valid choices: custom, ecl"),
    ("sizes=3", "unknown config argument 'sizes'"),
    ("pred_len=abc", "invalid literal"),
])
def test_bad_config_arguments(arg, message):
  with pytest.raises(ValueError, match=message):
    student.get_config(arg)


@pytest.mark.parametrize("path, value, message", [
    ("model.name", "transformerx", "unknown model 'transformerx'; valid choices: autoformer, dmlp"),
    ("optim.schedule", "type9", "unknown learning-rate schedule"),
    ("model.norm", "batch", "unknown norm"),
    ("data.features", "X", "unknown features mode"),
    ("data.seq_len", 0, "seq_len must be a positive integer"),
    ("optim.lr", -1.0, "lr must be a number > 0"),
    ("train.patience", 0, "patience must be a positive integer"),
])
def test_bad_values_are_config_errors(path, value, message):
  config = student.get_config("dataset=etth1")
  group, key = path.split(".")
  config[group][key] = value
  with pytest.raises(ConfigError, match=message):
    validate_config(config)


def test_negative_alpha_is_refused():
  config = distill.get_config("dataset=etth1")
  config.teacher.workdir = "runs/t"
  config.distill.alpha = -1.0
  with pytest.raises(ConfigError, match="alpha must be a number >= 0"):
    validate_config(config)
