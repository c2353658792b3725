"""PatchTST's patching against NumPy."""

import jax.numpy as jnp
import numpy as np

from timedistill_jax.models.layers.patching import patch_series


def test_patch_series_matches_numpy():
  x = np.arange(10, dtype=np.float32).reshape(1, 10)
  got = np.asarray(patch_series(jnp.asarray(x), patch_len=4, stride=2, pad=2))
  padded = np.concatenate([x[0], [9.0, 9.0]])  # the last step repeated, as ReplicationPad1d
  expected = np.stack([padded[s:s + 4] for s in range(0, 9, 2)])  # 5 patches
  np.testing.assert_array_equal(got[0], expected)
  assert expected[-1].tolist() == [8.0, 9.0, 9.0, 9.0]
