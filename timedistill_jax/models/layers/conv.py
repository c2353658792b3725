"""Convolutions of the ModernTCN teacher (and any depth-wise or grouped 1x1 convolution).

* :class:`GroupedPointwise`: ``Conv1d(G * in_g -> G * out_g, kernel 1, groups=G)``, a separate
  ``Linear(in_g -> out_g)`` per group. XLA's grouped convolution is several times slower on a CPU
  for hundreds of groups, so it is an einsum; with the groups on the leading axis that einsum is a
  batched matmul with no transposes, in any other layout one explicit transpose to
  ``[G, in_g, rest]`` and back around it (ModernTCN's ConvFFN2: 2x faster forward + backward than
  XLA's own layout choice for the same einsum). The kernel
  is stored ``[in_g, G * out_g]``, the PyTorch weight ``[G * out_g, in_g, 1]`` transposed, so
  ``convert.py`` maps it like any kernel-1 convolution, whatever the activation layout.
* :func:`depthwise_conv1d` / :class:`DepthwiseConv1d`: ``Conv1d(C -> C, kernel k, groups=C,
  padding k // 2)`` along any axis. The forward pass is a sum of k shifted, per-channel-scaled
  copies of the input (one fused loop; XLA's depth-wise convolution measured 16x slower at B 32,
  T 180, C 448, k 51). Its gradient is written by hand: autodiff of the shifted sum gives k separate
  reductions for the kernel gradient (~40% of the old ModernTCN step on two cores); here the
  input gradient is the same shifted sum with the kernel reversed and the kernel gradient a
  cross-correlation of input and output gradient computed with one real FFT of each, summed over
  the batch in the frequency domain. The kernel keeps ``nn.Conv``'s layout ``[k, 1, C]``.
"""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from timedistill_jax.models.layers.linear import torch_uniform

# Below this many taps the k direct reductions of the kernel gradient beat two FFTs.
_FFT_MIN_TAPS = 8


def _shifted_sum(x, taps, axis):
  """``sum_i x[t + i - k // 2] * taps[i]`` along ``axis``, zero padded; ``taps: [k, *bcast]``."""
  k, t = taps.shape[0], x.shape[axis]
  pad = [(0, 0)] * x.ndim
  pad[axis] = (k // 2, k - 1 - k // 2)
  xp = jnp.pad(x, pad)
  return sum(jax.lax.slice_in_dim(xp, i, i + t, axis=axis) * taps[i] for i in range(k))


def _kernel_grad(x, g, taps_shape, axis):
  """``dL/dtaps[i] = sum over the non-channel axes of x[t + i - k // 2] * g[t]``."""
  k, t = taps_shape[0], x.shape[axis]
  reduce = tuple(a for a in range(x.ndim) if a != axis and taps_shape[1 + a] == 1)
  if k < _FFT_MIN_TAPS:
    pad = [(0, 0)] * x.ndim
    pad[axis] = (k // 2, k - 1 - k // 2)
    xp = jnp.pad(x, pad)
    return jnp.stack([jnp.sum(jax.lax.slice_in_dim(xp, i, i + t, axis=axis) * g,
                              reduce + (axis,), keepdims=True) for i in range(k)])
  # Circular cross-correlation of length n >= t + k // 2 equals the zero-padded one at lags
  # -k // 2 .. k // 2. XLA's FFT runs over the last axis: move time there.
  n = 1 << (t + k // 2 - 1).bit_length()
  moved = [a for a in range(x.ndim) if a != axis] + [axis]
  reduce = tuple(moved.index(a) for a in reduce)
  xf = jnp.fft.rfft(jnp.moveaxis(x, axis, -1), n)
  gf = jnp.fft.rfft(jnp.moveaxis(g, axis, -1), n)
  corr = jnp.fft.irfft(jnp.sum(xf * jnp.conj(gf), reduce, keepdims=True), n)  # [..., n]
  lags = jnp.concatenate([corr[..., n - k // 2:], corr[..., :k - k // 2]], axis=-1)  # [..., k]
  return jnp.moveaxis(jnp.moveaxis(lags, -1, axis), axis, 0).astype(x.dtype)  # [k, ..., 1, ...]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def depthwise_conv1d(x, taps, axis):
  """Depth-wise convolution of ``x`` along ``axis`` with odd ``k``, zero padding ``k // 2``.

  ``taps: [k, *s]`` where ``s`` is ``x.shape`` with 1 at ``axis`` and at every axis that does not
  index channels (e.g. ``x: [B, T, C]``, ``taps: [k, 1, 1, C]``). Equals
  ``lax.conv_general_dilated(..., feature_group_count=C)`` up to float error.
  """
  return _shifted_sum(x, taps, axis)


def _dw_fwd(x, taps, axis):
  return _shifted_sum(x, taps, axis), (x, taps)


def _dw_bwd(axis, res, g):
  x, taps = res
  gx = _shifted_sum(g, taps[::-1], axis)  # odd k: the transpose is the flipped kernel
  return gx, _kernel_grad(x, g, taps.shape, axis).reshape(taps.shape).astype(taps.dtype)


depthwise_conv1d.defvjp(_dw_fwd, _dw_bwd)


class DepthwiseConv1d(nn.Module):
  """One zero-padded kernel per channel along ``time_axis`` (odd kernels keep T). By default
  ``x: [B, T, C]``; ``channel_axes`` may name several axes whose product is PyTorch's channel
  axis (e.g. ``time_axis=2, channel_axes=(0, 3)`` for ``[M, B, N, D]``, channel ``m * D + d``)."""

  kernel_size: int
  use_bias: bool = True
  time_axis: int = -2
  channel_axes: tuple[int, ...] = (-1,)

  @nn.compact
  def __call__(self, x):
    k = self.kernel_size
    channel_axes = [a % x.ndim for a in self.channel_axes]
    shape = [x.shape[a] if a in channel_axes else 1 for a in range(x.ndim)]
    c = math.prod(shape)
    init = torch_uniform(k)  # PyTorch's fan-in for a depth-wise kernel is k
    kernel = self.param("kernel", init, (k, 1, c)).astype(x.dtype)
    y = depthwise_conv1d(x, kernel.reshape([k] + shape), self.time_axis % x.ndim)
    if self.use_bias:
      y = y + self.param("bias", init, (c,)).reshape(shape).astype(y.dtype)
    return y


class GroupedPointwise(nn.Module):
  """One Linear per group, PyTorch init. By default ``x: [..., G, in_g] -> [..., G, out_g]``;
  ``group_axis`` / ``feature_axis`` name other layouts (e.g. ``0`` and ``-1`` for
  ``[G, ..., in_g]``, ``-1`` and ``0`` for ``[in_g, ..., G]``)."""

  out_per_group: int
  use_bias: bool = True
  group_axis: int = -2
  feature_axis: int = -1

  @nn.compact
  def __call__(self, x):
    ga, fa = self.group_axis % x.ndim, self.feature_axis % x.ndim
    groups, in_g, out_g = x.shape[ga], x.shape[fa], self.out_per_group
    init = torch_uniform(in_g)
    kernel = self.param("kernel", init, (in_g, groups * out_g))
    w = kernel.reshape(in_g, groups, out_g).astype(x.dtype)  # [in_g, G, out_g]
    # Broadcast shapes: w and the bias as [.., G at ga, .., out_g at fa, ..].
    bshape = [1] * x.ndim
    bshape[ga], bshape[fa] = groups, out_g
    order = (1, 2) if ga < fa else (2, 1)  # bias [G, out_g]: transposed if out_g comes first
    if ga == 0:  # [G, ..., in_g]: a batched matmul as it stands
      letters = "abcdefghjklmnpqrstuvwxyz"[:x.ndim]
      sx, so = list(letters), list(letters)
      sx[fa], so[fa] = "i", "o"
      y = jnp.einsum(f"{''.join(sx)},i{letters[ga]}o->{''.join(so)}", x, w)
    else:
      # Any other layout: one explicit transpose to [G, in_g, rest] and back around a batched
      # ``W_g^T x_g`` (XLA's own layout choice for the einsum measured 2x slower end to end).
      rest = [a for a in range(x.ndim) if a not in (ga, fa)]
      xt = jnp.transpose(x, [ga, fa] + rest)  # [G, in_g, *rest]
      yt = jnp.einsum("gi...,igo->go...", xt, w)  # [G, out_g, *rest]
      y = jnp.transpose(yt, np.argsort([ga, fa] + rest))
    if self.use_bias:
      bias = self.param("bias", init, (groups * out_g,))
      y = y + jnp.transpose(bias.reshape(groups, out_g), [o - 1 for o in order]).reshape(
          bshape).astype(y.dtype)
    return y
