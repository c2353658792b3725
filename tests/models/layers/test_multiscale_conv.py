"""MICN's strided convolution and transposed convolution against XLA / NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from timedistill_jax.models.layers.multiscale_conv import Conv1d, StridedConvTranspose1d


@pytest.mark.parametrize("k,padding,length", [(4, 2, 19), (3, 1, 12), (5, 0, 23)])
def test_strided_conv_equals_xla_conv(k, padding, length):
  # Conv1d(kernel k, stride k): the reshape-and-contract path against XLA's convolution.
  rng = np.random.default_rng(k)
  x = jnp.asarray(rng.standard_normal((2, length, 3)), jnp.float32)
  conv = Conv1d(5, k, stride=k, padding=padding)
  variables = conv.init(jax.random.PRNGKey(0), x)
  kernel, bias = variables["params"]["kernel"], variables["params"]["bias"]
  want = jax.lax.conv_general_dilated(x, kernel, (k,), [(padding, padding)],
                                      dimension_numbers=("NWC", "WIO", "NWC")) + bias
  np.testing.assert_allclose(conv.apply(variables, x), want, rtol=1e-5, atol=1e-5)


def test_strided_conv_transpose_matches_numpy():
  rng = np.random.default_rng(3)
  x = rng.standard_normal((2, 5, 3)).astype(np.float32)
  layer = StridedConvTranspose1d(4, 3)
  v = layer.init(jax.random.key(0), x)
  w, b = np.asarray(v["params"]["kernel"]), np.asarray(v["params"]["bias"])  # [k, in, out]
  want = np.zeros((2, 15, 4)) + b
  for n in range(5):  # output window n covers steps 3n .. 3n + 2
    for j in range(3):
      want[:, 3 * n + j] += x[:, n] @ w[j]
  np.testing.assert_allclose(layer.apply(v, x), want, atol=1e-5)
