"""The feature regressor: Linear -> ReLU -> Linear over the last axis."""

import jax
import jax.numpy as jnp
import numpy as np

from timedistill_jax.models.regressor import Regressor


def _params(d_in, d_out, x):
  return Regressor(d_out).init(jax.random.key(0), x)["params"]


def test_shape_and_param_count():
  x = jnp.ones((2, 7, 256))  # [B, C, d_in]: iTransformer's width on ETTh1
  params = _params(256, 512, x)
  assert Regressor(512).apply({"params": params}, x).shape == (2, 7, 512)
  # 256 * 512 + 512 + 512 * 512 + 512
  assert sum(p.size for p in jax.tree_util.tree_leaves(params)) == 394_240


def test_is_linear_relu_linear_per_channel():
  x = jax.random.normal(jax.random.key(1), (3, 4, 10))
  params = _params(10, 6, x)
  fc1, fc2 = params["fc1"], params["fc2"]
  expected = np.maximum(x @ fc1["kernel"] + fc1["bias"], 0.0) @ fc2["kernel"] + fc2["bias"]
  out = Regressor(6).apply({"params": params}, x)
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
  # The ReLU matters: some first-layer units are negative for these inputs.
  assert np.any(x @ fc1["kernel"] + fc1["bias"] < 0)


def test_torch_default_init():
  params = _params(100, 8, jnp.ones((1, 1, 100)))
  bound1, bound2 = 1 / np.sqrt(100), 1 / np.sqrt(8)
  assert np.abs(params["fc1"]["kernel"]).max() <= bound1
  assert np.abs(params["fc2"]["kernel"]).max() <= bound2
  assert np.abs(params["fc2"]["bias"]).max() <= bound2
