"""The hand-written depthwise and grouped pointwise convolutions against NumPy and the XLA
operations they replace (values and gradients)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from timedistill_jax.models.layers.conv import (DepthwiseConv1d, GroupedPointwise,
                                                depthwise_conv1d)


def _lax_depthwise(x, kernel):
  """``x: [B, T, C]``, ``kernel: [k, C]`` with XLA's grouped convolution, padding k // 2."""
  k = kernel.shape[0]
  return jax.lax.conv_general_dilated(
      x, kernel[:, None, :], (1,), [(k // 2, k // 2)], dimension_numbers=("NWC", "WIO", "NWC"),
      feature_group_count=x.shape[-1])


def test_depthwise_conv_matches_numpy():
  rng = np.random.default_rng(2)
  x = rng.standard_normal((2, 11, 3)).astype(np.float32)  # [B, T, C]
  layer = DepthwiseConv1d(kernel_size=5)
  variables = layer.init(jax.random.key(0), x)
  kernel = np.asarray(variables["params"]["kernel"])[:, 0]  # [k, C]
  bias = np.asarray(variables["params"]["bias"])
  padded = np.pad(x, ((0, 0), (2, 2), (0, 0)))  # PyTorch's padding = k // 2, zeros
  expected = np.stack([np.einsum("btc,tc->bc", padded[:, t:t + 5], kernel) for t in range(11)],
                      axis=1) + bias
  np.testing.assert_allclose(layer.apply(variables, x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k", [3, 5, 9, 15])  # 9 and 15 take the FFT kernel gradient
def test_depthwise_conv_equals_grouped_conv_values_and_gradients(k):
  rng = np.random.default_rng(k)
  x = jnp.asarray(rng.standard_normal((3, 13, 4)), jnp.float32)  # [B, T, C]
  kernel = jnp.asarray(rng.standard_normal((k, 4)), jnp.float32)
  g = jnp.asarray(rng.standard_normal((3, 13, 4)), jnp.float32)
  ours = lambda x, w: depthwise_conv1d(x, w.reshape(k, 1, 1, 4), 1)
  np.testing.assert_allclose(ours(x, kernel), _lax_depthwise(x, kernel), rtol=1e-5, atol=1e-5)
  loss = lambda f: lambda x, w: jnp.sum(f(x, w) * g)
  got = jax.grad(loss(ours), argnums=(0, 1))(x, kernel)
  want = jax.grad(loss(_lax_depthwise), argnums=(0, 1))(x, kernel)
  for a, b in zip(got, want):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_depthwise_conv_along_a_middle_axis():
  # ModernTCN's layout [M, B, N, D]: time on axis 2, channels (m, d).
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((2, 3, 10, 4)), jnp.float32)
  kernel = jnp.asarray(rng.standard_normal((9, 2, 4)), jnp.float32)  # [k, M, D]
  ours = lambda x, w: depthwise_conv1d(x, w[:, :, None, None, :], 2)
  flat = lambda x: jnp.transpose(x, (1, 2, 0, 3)).reshape(3, 10, 8)  # [B, N, M * D]
  ref = lambda x, w: _lax_depthwise(flat(x), w.reshape(9, 8))
  np.testing.assert_allclose(flat(ours(x, kernel)), ref(x, kernel), rtol=1e-5, atol=1e-5)
  got = jax.grad(lambda w: jnp.sum(jnp.sin(flat(ours(x, w)))))(kernel)
  want = jax.grad(lambda w: jnp.sum(jnp.sin(ref(x, w))))(kernel)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_grouped_pointwise_matches_grouped_conv():
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, 5, 3, 4)).astype(np.float32)  # [B, N, G=3, in_g=4]
  layer = GroupedPointwise(out_per_group=2)
  variables = layer.init(jax.random.key(0), x)
  kernel = np.asarray(variables["params"]["kernel"])  # [in_g, G * out_g]
  bias = np.asarray(variables["params"]["bias"])
  expected = np.stack([x[..., g, :] @ kernel[:, 2 * g:2 * g + 2] + bias[2 * g:2 * g + 2]
                       for g in range(3)], axis=-2)
  np.testing.assert_allclose(layer.apply(variables, x), expected, rtol=1e-5, atol=1e-6)


def test_grouped_pointwise_layouts_agree():
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.standard_normal((2, 5, 3, 4)), jnp.float32)  # [B, N, G=3, in_g=4]
  layer = GroupedPointwise(out_per_group=2)
  variables = layer.init(jax.random.key(0), x)
  want = layer.apply(variables, x)  # [B, N, G, out_g]
  group_major = GroupedPointwise(2, group_axis=0, feature_axis=-1).apply(
      variables, jnp.transpose(x, (2, 0, 1, 3)))  # [G, B, N, in_g]
  np.testing.assert_allclose(jnp.transpose(group_major, (1, 2, 0, 3)), want, rtol=1e-5,
                             atol=1e-6)
  feature_major = GroupedPointwise(2, group_axis=-1, feature_axis=0).apply(
      variables, jnp.transpose(x, (3, 0, 1, 2)))  # [in_g, B, N, G]
  np.testing.assert_allclose(jnp.transpose(feature_major, (1, 2, 3, 0)), want, rtol=1e-5,
                             atol=1e-6)
