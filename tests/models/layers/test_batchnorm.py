"""The masked BatchNorm against NumPy, with PyTorch's running statistics."""

import jax
import jax.numpy as jnp
import numpy as np

from timedistill_jax.models.layers.batchnorm import BatchNorm


def test_train_mode_and_running_stats_match_torch_semantics():
  x = np.random.default_rng(0).normal(2.0, 3.0, size=(4, 3, 5)).astype(np.float32)
  bn = BatchNorm(axis=1, momentum=0.9)
  variables = bn.init(jax.random.PRNGKey(0), jnp.asarray(x), use_running_average=False)
  y, updated = bn.apply(variables, jnp.asarray(x), use_running_average=False,
                        mutable=["batch_stats"])
  mean = x.mean(axis=(0, 2))
  var = x.var(axis=(0, 2))
  expected = (x - mean[None, :, None]) / np.sqrt(var[None, :, None] + 1e-5)
  np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
  n = 4 * 5  # torch: running_var uses the unbiased variance, momentum 0.1
  np.testing.assert_allclose(updated["batch_stats"]["mean"], 0.1 * mean, rtol=1e-5)
  np.testing.assert_allclose(updated["batch_stats"]["var"], 0.9 + 0.1 * var * n / (n - 1),
                             rtol=1e-5)
  y_eval = bn.apply({"params": variables["params"], **updated}, jnp.asarray(x),
                    use_running_average=True)
  stats = updated["batch_stats"]
  np.testing.assert_allclose(
      y_eval, (x - stats["mean"][None, :, None]) / np.sqrt(stats["var"][None, :, None] + 1e-5),
      rtol=1e-5, atol=1e-5)


def test_masked_rows_are_left_out():
  x = np.random.default_rng(1).normal(size=(6, 2, 4)).astype(np.float32)
  bn = BatchNorm(axis=1)
  variables = bn.init(jax.random.PRNGKey(0), jnp.asarray(x), use_running_average=False)
  mask = jnp.asarray([1, 1, 1, 0, 0, 0], jnp.float32)[:, None, None]
  y, stats = bn.apply(variables, jnp.asarray(x), use_running_average=False, mask=mask,
                      mutable=["batch_stats"])
  y3, stats3 = bn.apply(variables, jnp.asarray(x[:3]), use_running_average=False,
                        mutable=["batch_stats"])
  np.testing.assert_allclose(y[:3], y3, rtol=1e-5, atol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), stats, stats3)


def test_batchnorm_over_two_axes_equals_flattened_features():
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.standard_normal((3, 4, 5, 2)), jnp.float32)  # [M, B, N, D]
  mask = jnp.asarray([1.0, 1.0, 0.0, 1.0])
  two = BatchNorm(axis=(0, 3), use_running_average=False)
  variables = two.init(jax.random.key(0), x)
  y, stats = two.apply(variables, x, mask=mask.reshape(1, 4, 1, 1), mutable=["batch_stats"])
  flat = jnp.transpose(x, (1, 2, 0, 3)).reshape(4, 5, 6)  # features m * D + d
  y1, stats1 = BatchNorm(axis=-1, use_running_average=False).apply(
      variables, flat, mask=mask.reshape(4, 1, 1), mutable=["batch_stats"])
  np.testing.assert_allclose(jnp.transpose(y, (1, 2, 0, 3)).reshape(4, 5, 6), y1, rtol=1e-5,
                             atol=1e-5)
  for a, b in zip(jax.tree.leaves(stats), jax.tree.leaves(stats1)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
