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
