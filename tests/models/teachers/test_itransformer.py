"""iTransformer: against a float64 NumPy forward written from Time-Series-Library's equations,
its parameter count at the ETTh1 shape, and its settings."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import B as B_SMALL, H as H_SMALL, build, etth1_model, inputs
from timedistill_jax import models
from timedistill_jax.errors import ConfigError
from timedistill_jax.models.teachers.itransformer import ITransformer

B, L, H, C = 2, 24, 6, 3
_erf = np.vectorize(math.erf)


def np_linear(x, p):
  return x @ np.asarray(p["kernel"], np.float64) + np.asarray(p["bias"], np.float64)


def np_layer_norm(x, p, eps=1e-5):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean)**2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * np.asarray(p["scale"]) + np.asarray(p["bias"])


def np_attention(x, p, n_heads):
  b, n, _ = x.shape
  q, k, v = (np_linear(x, p[name]) for name in ("query", "key", "value"))
  e = q.shape[-1] // n_heads
  split = lambda t: t.reshape(b, n, n_heads, e).transpose(0, 2, 1, 3)  # [B, h, N, E]
  scores = split(q) @ split(k).transpose(0, 1, 3, 2) / math.sqrt(e)
  weights = np.exp(scores - scores.max(-1, keepdims=True))
  weights /= weights.sum(-1, keepdims=True)
  out = (weights @ split(v)).transpose(0, 2, 1, 3).reshape(b, n, n_heads * e)
  return np_linear(out, p["out"])


def np_itransformer(params, x, x_mark, n_heads, e_layers, activation):
  act = {"gelu": lambda t: 0.5 * t * (1 + _erf(t / math.sqrt(2))),
         "relu": lambda t: np.maximum(t, 0)}[activation]
  mean = x.mean(1, keepdims=True)
  std = np.sqrt(((x - mean)**2).mean(1, keepdims=True) + 1e-5)
  tokens = np.concatenate([((x - mean) / std).transpose(0, 2, 1), x_mark.transpose(0, 2, 1)], 1)
  h = np_linear(tokens, params["embedding"])
  enc = params["encoder"]
  for i in range(e_layers):
    p = enc[f"layer_{i}"]
    h = np_layer_norm(h + np_attention(h, p["attention"], n_heads), p["norm1"])
    y = np_linear(act(np_linear(h, p["conv1"])), p["conv2"])
    h = np_layer_norm(h + y, p["norm2"])
  h = np_layer_norm(h, enc["norm"])
  out = np_linear(h, params["projection"]).transpose(0, 2, 1)[:, :, :x.shape[-1]]
  return out * std + mean, h[:, :x.shape[-1]]


def _perturb(params, key):
  # Non-trivial LayerNorm scales and biases, so that the check sees them.
  leaves, tree = jax.tree_util.tree_flatten(params)
  keys = jax.random.split(key, len(leaves))
  return jax.tree_util.tree_unflatten(
      tree, [p + 0.1 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])


@pytest.mark.parametrize("num_marks,activation,n_heads,d_model", [
    (4, "gelu", 2, 16), (0, "gelu", 4, 16), (4, "relu", 3, 16)])  # 3 heads: 16 // 3 = 5 wide
def test_matches_numpy_forward(num_marks, activation, n_heads, d_model):
  model = ITransformer(seq_len=L, label_len=4, pred_len=H, enc_in=C, d_model=d_model,
                       n_heads=n_heads, e_layers=2, d_ff=24, activation=activation)
  kx, km, kp, kq = jax.random.split(jax.random.key(0), 4)
  x = 5.0 + 3.0 * jax.random.normal(kx, (B, L, C))
  x_mark = jax.random.uniform(km, (B, L, num_marks), minval=-0.5, maxval=0.5)
  params = _perturb(model.init(kp, x, x_mark)["params"], kq)
  pred, features = model.apply({"params": params}, x, x_mark, None)
  to64 = lambda t: jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), t)
  expected_pred, expected_hidden = np_itransformer(
      to64(params), to64(x), to64(x_mark), n_heads, 2, activation)
  np.testing.assert_allclose(pred, expected_pred, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(features["hidden"], expected_hidden, rtol=1e-5, atol=1e-5)


def test_time_features_are_tokens():
  model = ITransformer(seq_len=L, label_len=4, pred_len=H, enc_in=C, d_model=16, n_heads=2,
                       e_layers=1, d_ff=16)
  x = jax.random.normal(jax.random.key(1), (B, L, C))
  marks = jax.random.uniform(jax.random.key(2), (B, L, 4))
  variables = model.init(jax.random.key(3), x, marks)
  pred_a, _ = model.apply(variables, x, marks)
  pred_b, _ = model.apply(variables, x, marks + 1.0)
  assert not np.allclose(pred_a, pred_b)  # calendar tokens reach the variates via attention
  # F = 0 and no x_mark at all are the same model input.
  np.testing.assert_array_equal(model.apply(variables, x, jnp.zeros((B, L, 0)))[0],
                                model.apply(variables, x, None)[0])


def test_prediction_follows_input_scale():
  # The instance normalisation makes the model equivariant to a per-channel affine map of x
  # (up to the 1e-5 in the std).
  model = ITransformer(seq_len=L, label_len=4, pred_len=H, enc_in=C, d_model=16, n_heads=2,
                       e_layers=1, d_ff=16)
  x = jax.random.normal(jax.random.key(4), (B, L, C))
  variables = model.init(jax.random.key(5), x, None)
  pred, _ = model.apply(variables, x, None)
  pred_scaled, _ = model.apply(variables, 10.0 * x + 3.0, None)
  np.testing.assert_allclose(pred_scaled, 10.0 * pred + 3.0, rtol=1e-3, atol=1e-3)


def test_etth1_parameter_count():
  # The ETTh1 teacher (docs/method.md "Teacher settings"); the same count as the PyTorch
  # reference: embedding 720*256+256, 2 layers of (4 attention projections 256*256+256, two 1x1
  # convs 256*256+256, two LayerNorms 2*256), final LayerNorm 2*256, projection 256*96+96.
  kwargs = dict(e_layers=2, d_model=256, d_ff=256, n_heads=8)
  model, variables, _ = etth1_model("itransformer", 96, **kwargs)
  assert model.feature_dim == 256
  assert models.count_params(variables) == 1_001_312
  # Time features are tokens, not inputs of a layer: F does not change the count.
  no_marks = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 720, 7)),
                            jnp.zeros((1, 720, 0)))
  assert models.count_params(no_marks) == 1_001_312


def test_unknown_activation():
  model = build("itransformer", activation="swish")
  with pytest.raises(ConfigError, match="unknown activation 'swish'; valid choices: gelu, relu"):
    model.init(jax.random.key(1), *inputs())


def test_relu_runs():
  model = build("itransformer", activation="relu")
  args = inputs()
  pred, _ = model.apply(model.init(jax.random.key(1), *args), *args)
  assert pred.shape == (B_SMALL, H_SMALL, 3)
