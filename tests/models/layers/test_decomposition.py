"""The series decomposition's moving average against PyTorch's edge-replicated AvgPool1d."""

import jax.numpy as jnp
import numpy as np

from timedistill_jax.models.layers.decomposition import moving_average


def test_moving_average_matches_edge_replicated_avgpool():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(3, 50, 4)).astype(np.float32) * 10
  k = 25
  pad = (k - 1) // 2
  xp = np.concatenate([np.repeat(x[:, :1], pad, 1), x, np.repeat(x[:, -1:], pad, 1)], 1)
  expected = np.stack([xp[:, t:t + k].mean(1) for t in range(50)], 1)
  np.testing.assert_allclose(moving_average(jnp.asarray(x), k), expected, rtol=1e-5, atol=1e-5)
