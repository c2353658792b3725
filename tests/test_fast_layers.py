"""The hand-written fast layers equal the XLA / Flax operations they replace."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from timedistill_jax.models.layers.batchnorm import BatchNorm
from timedistill_jax.models.layers.conv import GroupedPointwise, depthwise_conv1d
from timedistill_jax.models.layers.dropout import Dropout, dropout
from timedistill_jax.models.layers.multiscale_conv import Conv1d


def _lax_depthwise(x, kernel):
  """``x: [B, T, C]``, ``kernel: [k, C]`` with XLA's grouped convolution, padding k // 2."""
  k = kernel.shape[0]
  return jax.lax.conv_general_dilated(
      x, kernel[:, None, :], (1,), [(k // 2, k // 2)], dimension_numbers=("NWC", "WIO", "NWC"),
      feature_group_count=x.shape[-1])


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


@pytest.mark.parametrize("k,padding,length", [(4, 2, 19), (3, 1, 12), (5, 0, 23)])
def test_strided_conv_equals_xla_conv(k, padding, length):
  # MICN's Conv1d(kernel k, stride k): the reshape-and-contract path against XLA's convolution.
  rng = np.random.default_rng(k)
  x = jnp.asarray(rng.standard_normal((2, length, 3)), jnp.float32)
  conv = Conv1d(5, k, stride=k, padding=padding)
  variables = conv.init(jax.random.PRNGKey(0), x)
  kernel, bias = variables["params"]["kernel"], variables["params"]["bias"]
  want = jax.lax.conv_general_dilated(x, kernel, (k,), [(padding, padding)],
                                      dimension_numbers=("NWC", "WIO", "NWC")) + bias
  np.testing.assert_allclose(conv.apply(variables, x), want, rtol=1e-5, atol=1e-5)
