"""The hand-written dropout: keep rate, scale, one mask a key, and the module switch."""

import jax
import jax.numpy as jnp
import numpy as np

from timedistill_jax.models.layers.dropout import Dropout, dropout


def test_dropout_keep_rate_scale_and_streams():
  x = jnp.ones((64, 1000))
  key = jax.random.PRNGKey(3)
  y = dropout(x, 0.3, key)
  kept = np.asarray(y != 0)
  assert abs(kept.mean() - 0.7) < 0.005  # 64000 draws: 5 standard deviations is 0.009
  np.testing.assert_allclose(np.asarray(y)[kept], 1 / 0.7, rtol=1e-6)
  np.testing.assert_array_equal(y, dropout(x, 0.3, key))  # a key gives one mask
  assert not np.array_equal(y, dropout(x, 0.3, jax.random.PRNGKey(4)))
  # The two halves of the array come from the two words of each block: not copies.
  assert not np.array_equal(kept[:32], kept[32:])
  typed = dropout(x, 0.3, jax.random.key(3))  # a typed Threefry key draws the same mask
  np.testing.assert_array_equal(typed, y)
  rbg = dropout(x, 0.3, jax.random.key(3, impl="rbg"))  # other PRNGs: jax.random.bernoulli
  assert abs(float(jnp.mean(rbg != 0)) - 0.7) < 0.01


def test_dropout_module_follows_deterministic():
  x = jnp.ones((4, 6))
  layer = Dropout(0.5)
  assert layer.apply({}, x, deterministic=True) is x
  y = layer.apply({}, x, deterministic=False, rngs={"dropout": jax.random.PRNGKey(0)})
  assert set(np.unique(np.asarray(y)).tolist()) <= {0.0, 2.0}
