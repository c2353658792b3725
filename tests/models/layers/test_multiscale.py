"""TimeMixer's down-sampling: time pooling and the multi-scale inputs."""

import jax.numpy as jnp
import numpy as np

from timedistill_jax.models.layers.multiscale import multi_scale, pool_time


def test_pool_time_and_multi_scale():
  x = np.arange(14, dtype=np.float32).reshape(1, 7, 2)  # odd length: the last step is dropped
  np.testing.assert_allclose(pool_time(jnp.asarray(x), 2)[0], [[1, 2], [5, 6], [9, 10]])
  np.testing.assert_allclose(pool_time(jnp.asarray(x), 2, "max")[0], [[2, 3], [6, 7], [10, 11]])
  series = jnp.arange(8.0).reshape(1, 8, 1)
  marks = jnp.arange(8.0).reshape(1, 8, 1) * 10
  xs, ms = multi_scale(series, marks, window=2, layers=2)
  np.testing.assert_allclose(xs[1][0, :, 0], [0.5, 2.5, 4.5, 6.5])
  np.testing.assert_allclose(xs[2][0, :, 0], [1.5, 5.5])
  np.testing.assert_allclose(ms[2][0, :, 0], [0, 40])  # every 4th calendar row
