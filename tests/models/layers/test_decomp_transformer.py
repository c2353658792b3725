"""The decomposition transformer's seasonal LayerNorm against NumPy."""

import jax
import numpy as np

from timedistill_jax.models.layers import decomp_transformer


def test_seasonal_layer_norm_matches_numpy():
  x = np.random.default_rng(5).standard_normal((2, 7, 4)).astype(np.float32) + 3
  module = decomp_transformer.SeasonalLayerNorm()
  v = module.init(jax.random.key(0), x)
  x_hat = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
  want = x_hat - x_hat.mean(1, keepdims=True)
  np.testing.assert_allclose(module.apply(v, x), want, atol=1e-5)
