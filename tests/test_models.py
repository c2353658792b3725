"""The model contract, checked for every registered model on tiny shapes."""

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from timedistill_jax import models
from timedistill_jax.errors import ConfigError

B, L, LABEL_LEN, H, C, F = 2, 32, 8, 8, 3, 4

# Small widths per model; a newly registered model must add its entry here.
SMALL_KWARGS = {
    "itransformer": dict(d_model=16, n_heads=2, e_layers=1, d_ff=32),
    "moderntcn": dict(dims=8, ffn_ratio=2, num_blocks=1, large_size=5, small_size=3),
    "patchtst": dict(d_model=16, n_heads=2, e_layers=1, d_ff=32),
    "timemixer": dict(d_model=8, d_ff=16, e_layers=1, down_sampling_layers=1),
    "mlp": dict(d_model=16),
    "dmlp": dict(d_model=16),
}

# Parameter path prefixes a model deliberately carries unused: the student always builds the
# reference's RevIN affine, but uses it only when norm == "revin".
UNUSED_PARAMS = {
    "mlp": {("revin",)},
    "dmlp": {("revin",)},
}

# tests/test_teachers_part2.py runs the same contract checks for these four, with parameters
# built by jax.eval_shape (their eager init is slow on a CPU).
COVERED_ELSEWHERE = {"micn", "fedformer", "timesnet", "autoformer"}
NAMES = sorted(set(models.REGISTRY) - COVERED_ELSEWHERE)


def build(name, **overrides):
  if name not in SMALL_KWARGS:
    pytest.fail(f"add small settings for model {name!r} to SMALL_KWARGS")
  cfg = ml_collections.ConfigDict(dict(name=name, **{**SMALL_KWARGS[name], **overrides}))
  return models.build_model(cfg, seq_len=L, label_len=LABEL_LEN, pred_len=H, enc_in=C)


def inputs(num_marks=F, seed=0):
  kx, km, ky = jax.random.split(jax.random.key(seed), 3)
  x = 3.0 + 2.0 * jax.random.normal(kx, (B, L, C))  # off-centre, as unscaled-looking data
  x_mark = jax.random.uniform(km, (B, L, num_marks), minval=-0.5, maxval=0.5)
  y_mark = jax.random.uniform(ky, (B, LABEL_LEN + H, num_marks), minval=-0.5, maxval=0.5)
  return x, x_mark, y_mark


def init(model, args):
  return model.init({"params": jax.random.key(1), "dropout": jax.random.key(2)}, *args)


def apply_train(model, variables, args, key):
  """Train-mode forward; returns (pred, features)."""
  mutable = ["batch_stats"] if "batch_stats" in variables else False
  out = model.apply(variables, *args, train=True, rngs={"dropout": key}, mutable=mutable)
  return out[0] if mutable else out


@pytest.mark.parametrize("num_marks", [F, 0])
@pytest.mark.parametrize("name", NAMES)
def test_shapes_and_finite(name, num_marks):
  model = build(name)
  args = inputs(num_marks)
  variables = init(model, args)
  pred, features = model.apply(variables, *args, train=False)
  assert pred.shape == (B, H, C)
  assert features["hidden"].shape == (B, C, model.feature_dim)
  assert np.all(np.isfinite(pred)) and np.all(np.isfinite(features["hidden"]))
  # Training mode too: same shapes, finite.
  pred_t, features_t = apply_train(model, variables, args, jax.random.key(3))
  assert pred_t.shape == (B, H, C) and features_t["hidden"].shape == (B, C, model.feature_dim)
  assert np.all(np.isfinite(pred_t)) and np.all(np.isfinite(features_t["hidden"]))


@pytest.mark.parametrize("name", NAMES)
def test_jit_equals_eager(name):
  model = build(name)
  args = inputs()
  variables = init(model, args)
  eager = model.apply(variables, *args, train=False)
  jitted = jax.jit(lambda v, *a: model.apply(v, *a, train=False))(variables, *args)
  close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  jax.tree_util.tree_map(close, eager, jitted)


@pytest.mark.parametrize("name", NAMES)
def test_dropout_only_in_training(name):
  model = build(name)
  args = inputs()
  variables = init(model, args)
  eval_a = model.apply(variables, *args, train=False, rngs={"dropout": jax.random.key(4)})
  eval_b = model.apply(variables, *args, train=False, rngs={"dropout": jax.random.key(5)})
  eval_none = model.apply(variables, *args, train=False)
  for other in (eval_b, eval_none):
    jax.tree_util.tree_map(np.testing.assert_array_equal, eval_a, other)
  if getattr(model, "dropout", 0.0) > 0:
    pred_a, _ = apply_train(model, variables, args, jax.random.key(4))
    pred_b, _ = apply_train(model, variables, args, jax.random.key(5))
    assert not np.allclose(pred_a, pred_b)


@pytest.mark.parametrize("name", NAMES)
def test_every_parameter_gets_gradient(name):
  model = build(name)
  args = inputs()
  variables = init(model, args)
  k1, k2 = jax.random.split(jax.random.key(6))
  w_pred = jax.random.normal(k1, (B, H, C))
  w_hidden = jax.random.normal(k2, (B, C, model.feature_dim))

  def loss(params):
    pred, features = apply_train(model, {**variables, "params": params}, args,
                                 jax.random.key(7))
    return jnp.sum(pred * w_pred) + jnp.sum(features["hidden"] * w_hidden)

  grads = flax.traverse_util.flatten_dict(jax.grad(loss)(variables["params"]))
  exempt = UNUSED_PARAMS.get(name, set())
  missing = [
      "/".join(path) for path, g in grads.items()
      if not any(path[:len(p)] == p for p in exempt)
      and not (np.all(np.isfinite(g)) and np.any(g != 0))]
  assert not missing, f"no (finite) gradient for: {missing}"


@pytest.mark.parametrize("name", NAMES)
def test_unknown_setting_is_rejected(name):
  with pytest.raises(ConfigError, match="no setting"):
    build(name, not_a_setting=1)


# ---- iTransformer specifics ----

def _param_count(model, num_marks):
  shapes = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((1, model.seq_len, model.enc_in)),
                         jnp.zeros((1, model.seq_len, num_marks))))
  return sum(x.size for x in jax.tree_util.tree_leaves(shapes["params"]))


def test_itransformer_etth1_parameter_count():
  # ETTh1 teacher of PAPER.md s.9; the same count as the PyTorch reference:
  # embedding 720*256+256, 2 layers of (4 attention projections 256*256+256, two 1x1 convs
  # 256*256+256, two LayerNorms 2*256), final LayerNorm 2*256, projection 256*96+96.
  cfg = ml_collections.ConfigDict(dict(name="itransformer", e_layers=2, d_model=256, d_ff=256,
                                       n_heads=8))
  model = models.build_model(cfg, seq_len=720, label_len=48, pred_len=96, enc_in=7)
  assert model.feature_dim == 256
  assert _param_count(model, num_marks=4) == 1_001_312
  # Time features are tokens, not inputs of a layer: F does not change the count.
  assert _param_count(model, num_marks=0) == 1_001_312


def test_itransformer_unknown_activation():
  model = build("itransformer", activation="swish")
  with pytest.raises(ConfigError, match="unknown activation 'swish'; valid choices: gelu, relu"):
    init(model, inputs())


def test_itransformer_relu_runs():
  model = build("itransformer", activation="relu")
  args = inputs()
  pred, _ = model.apply(init(model, args), *args)
  assert pred.shape == (B, H, C)
