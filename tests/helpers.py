"""Builders several test files share: small models on random inputs, and tiny run configs.

Fixtures live in ``conftest.py``; these are plain functions, imported as ``tests.helpers``.
"""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from timedistill_jax import models
from timedistill_jax.configs import distill as distill_config
from timedistill_jax.configs import student as student_config
from timedistill_jax.configs import teacher as teacher_config

ROOT = Path(__file__).resolve().parent.parent

# ---- small models --------------------------------------------------------------------------

B, L, LABEL_LEN, H, C, F = 2, 32, 16, 8, 3, 4

# Small widths for every registered model; a newly registered model must add its entry here
# (the registry-wide contract in tests/models/test_contract.py fails until it does).
SMALL_KWARGS = {
    "autoformer": dict(d_model=16, n_heads=2, e_layers=1, d_layers=1, d_ff=32),
    "dmlp": dict(d_model=16),
    "fedformer": dict(d_model=16, n_heads=8, e_layers=1, d_layers=1, d_ff=32, modes=4),
    "itransformer": dict(d_model=16, n_heads=2, e_layers=1, d_ff=32),
    "micn": dict(d_model=16, d_layers=1),
    "mlp": dict(d_model=16),
    "moderntcn": dict(dims=8, ffn_ratio=2, num_blocks=1, large_size=5, small_size=3),
    "patchtst": dict(d_model=16, n_heads=2, e_layers=1, d_ff=32),
    "timemixer": dict(d_model=8, d_ff=16, e_layers=1, down_sampling_layers=1),
    "timesnet": dict(d_model=16, d_ff=16, e_layers=1, top_k=2, num_kernels=2),
}


def build(name, enc_in=C, **overrides):
  """Model ``name`` with its small widths (and ``overrides``) at the tiny shape."""
  if name not in SMALL_KWARGS:
    pytest.fail(f"add small settings for model {name!r} to SMALL_KWARGS in tests/helpers.py")
  cfg = ml_collections.ConfigDict(dict(name=name, **{**SMALL_KWARGS[name], **overrides}))
  return models.build_model(cfg, seq_len=L, label_len=LABEL_LEN, pred_len=H, enc_in=enc_in)


def inputs(num_marks=F, seed=0, channels=C):
  """``(x [B, L, C], x_mark [B, L, F], y_mark [B, S + H, F])``, x off-centre like raw data."""
  kx, km, ky = jax.random.split(jax.random.key(seed), 3)
  x = 3.0 + 2.0 * jax.random.normal(kx, (B, L, channels))
  x_mark = jax.random.uniform(km, (B, L, num_marks), minval=-0.5, maxval=0.5)
  y_mark = jax.random.uniform(ky, (B, LABEL_LEN + H, num_marks), minval=-0.5, maxval=0.5)
  return x, x_mark, y_mark


def random_variables(model, args, seed=0):
  """Variables with the model's shapes and random values, without compiling ``init``.

  On a small CPU compiling dominates these tests, and ``init`` compiles slower than a forward
  pass; the properties checked do not depend on the initial values. BatchNorm variances are
  kept positive.
  """
  shapes = jax.eval_shape(model.init, jax.random.key(1), *args)
  rng = np.random.default_rng(seed)

  def draw(path, s):
    value = 0.1 * rng.standard_normal(s.shape).astype(s.dtype)
    if path[0].key == "batch_stats" and path[-1].key == "var":
      value = 1.0 + np.abs(value)
    return value

  return jax.tree_util.tree_map_with_path(draw, shapes)


def etth1_model(name, pred_len, *, label_len=48, **kwargs):
  """``(model, variable shapes, args)`` at the ETTh1 shape (L 720, C 7, 4 calendar features),
  with nothing computed (``jax.eval_shape``)."""
  model = models.get_model_class(name)(seq_len=720, label_len=label_len, pred_len=pred_len,
                                       enc_in=7, **kwargs)
  args = (jnp.zeros((2, 720, 7)), jnp.zeros((2, 720, 4)), jnp.zeros((2, label_len + pred_len, 4)))
  return model, jax.eval_shape(model.init, jax.random.key(0), *args), args


def etth1_feature_width(name, **kwargs) -> int:
  """``model.feature_dim`` at the ETTh1 shape (H 96), after checking that the forecast is
  ``[B, 96, 7]`` and ``features["hidden"]`` is ``[B, 7, feature_dim]``."""
  model, variables, args = etth1_model(name, 96, **kwargs)
  pred, features = jax.eval_shape(model.apply, variables, *args)
  assert pred.shape == (2, 96, 7)
  assert features["hidden"].shape == (2, 7, model.feature_dim)
  return model.feature_dim


# ---- tiny runs on the synthetic series -----------------------------------------------------

RUN_L, RUN_S, RUN_H = 48, 8, 12  # seq_len, label_len, pred_len of every tiny run
TINY_TEACHER = dict(d_model=16, d_ff=16, n_heads=2, e_layers=1)  # an iTransformer


def _shrink(config):
  config.data.seq_len, config.data.label_len = RUN_L, RUN_S
  config.train.progress = False
  return config


def student_run_config(model=None, **train):
  """A smoke student run (2 epochs) of width 16 (the DMLP unless ``model``); ``train``
  overrides ``config.train``."""
  arg = f"dataset=synthetic,pred_len={RUN_H},smoke=True" + (f",model={model}" if model else "")
  config = _shrink(student_config.get_config(arg))
  config.model.d_model = 16
  config.train.update(train)
  return config


def teacher_run_config(seed=2021, pred_len=RUN_H):
  """A smoke run of a tiny iTransformer teacher."""
  config = _shrink(teacher_config.get_config(
      f"dataset=synthetic,model=itransformer,pred_len={pred_len},seed={seed},smoke=True"))
  config.model.update(TINY_TEACHER)
  return config


def distill_run_config(teacher_dirs=(), student="mlp"):
  """A smoke distillation of a width-16 student from the teachers trained in ``teacher_dirs``."""
  config = _shrink(distill_config.get_config(
      f"dataset=synthetic,teacher=itransformer,pred_len={RUN_H},student={student},smoke=True"))
  config.model.d_model = 16
  config.teacher.workdir = ",".join(str(t) for t in teacher_dirs)
  return config


def cli(config, workdir, *flags):
  """The command line of a run: ``python -m timedistill_jax --config CONFIG --workdir W ...``."""
  return [sys.executable, "-m", "timedistill_jax", "--config", config, "--workdir",
          str(workdir), *flags]
