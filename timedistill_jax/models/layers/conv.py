"""Convolutions of the ModernTCN teacher, in channels-last layout.

* :class:`GroupedPointwise`: ``Conv1d(G * in_g -> G * out_g, kernel 1, groups=G)``, a separate
  ``Linear(in_g -> out_g)`` per group, written as one einsum (XLA's grouped convolution is several
  times slower on a CPU for hundreds of groups). The kernel is stored ``[in_g, G * out_g]``, the
  PyTorch weight ``[G * out_g, in_g, 1]`` transposed, so ``convert.py`` maps it like any kernel-1
  convolution.
* :class:`DepthwiseConv1d`: ``Conv1d(C -> C, kernel k, groups=C, padding k // 2)``, written as a
  sum of k shifted, per-channel-scaled copies of the input: XLA's depth-wise convolution on a CPU
  measured 3x slower forward and 5x slower forward + backward (B 32, T 180, C 448, k 51). The
  kernel keeps ``nn.Conv``'s layout ``[k, 1, C]``.
"""

import flax.linen as nn
import jax.numpy as jnp

from timedistill_jax.models.layers.linear import torch_uniform


class GroupedPointwise(nn.Module):
  """``x: [..., G, in_g]`` -> ``[..., G, out_g]``, one Linear per group, PyTorch init."""

  out_per_group: int
  use_bias: bool = True

  @nn.compact
  def __call__(self, x):
    groups, in_g = x.shape[-2:]
    init = torch_uniform(in_g)
    kernel = self.param("kernel", init, (in_g, groups * self.out_per_group))
    w = kernel.reshape(in_g, groups, self.out_per_group).astype(x.dtype)
    y = jnp.einsum("...gi,igo->...go", x, w)
    if self.use_bias:
      bias = self.param("bias", init, (groups * self.out_per_group,))
      y = y + bias.reshape(groups, self.out_per_group).astype(y.dtype)
    return y


class DepthwiseConv1d(nn.Module):
  """``x: [B, T, C]`` -> ``[B, T, C]``, one zero-padded kernel per channel (odd kernels keep T)."""

  kernel_size: int
  use_bias: bool = True

  @nn.compact
  def __call__(self, x):
    k, (t, c) = self.kernel_size, x.shape[-2:]
    init = torch_uniform(k)  # PyTorch's fan-in for a depth-wise kernel is k
    kernel = self.param("kernel", init, (k, 1, c)).astype(x.dtype)
    pad = k // 2
    xp = jnp.pad(x, ((0, 0), (pad, k - 1 - pad), (0, 0)))  # [B, T + k - 1, C]
    y = sum(xp[:, i:i + t] * kernel[i, 0] for i in range(k))
    if self.use_bias:
      y = y + self.param("bias", init, (c,)).astype(y.dtype)
    return y
