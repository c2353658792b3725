"""MICN's multi-scale isometric convolution layer (``models/MICN.py``, class ``MIC``).

For ``x: [B, T, D]`` and every scale s with kernel k_s (its decomposition kernel d_s = k_s + 1
when k_s is even, and its isometric kernel i_s = (T + k_s) // k_s, or (T + k_s - 1) // k_s for
odd k_s):

1. seasonal part of ``series_decomp(x, d_s)``;
2. local features: ``Conv1d(D -> D, kernel k_s, stride k_s, padding k_s // 2)``, tanh, dropout;
3. global features (isometric convolution): left-pad with n - 1 zeros (n the downsampled
   length), ``Conv1d(kernel i_s)``, tanh, dropout, residual with step 2, LayerNorm;
4. ``ConvTranspose1d(kernel k_s, stride k_s)`` back to T steps, tanh, dropout, residual with the
   scale's input, LayerNorm (the same LayerNorm as in step 3, as the reference);

then the scales are merged by ``Conv2d(kernel (S, 1))`` and a feed-forward block without
activation (``Conv1d(D -> 4D, 1)``, ``Conv1d(4D -> D, 1)``) with residual and LayerNorms. The
dropout rate is the reference's hard-coded 0.05 (masks from ``layers/dropout.py``).

Flax layouts: the strided and isometric convolutions ``[k, in, out]``, the transposed one
``[k, in, out]`` (PyTorch ``[in, out, k]``), the merge ``[S, 1, in, out]``.
"""

import jax
import jax.numpy as jnp
import flax.linen as nn

from timedistill_jax.models.layers.decomposition import series_decomp
from timedistill_jax.models.layers.dropout import Dropout
from timedistill_jax.models.layers.linear import Linear, torch_uniform
from timedistill_jax.models.layers.normalization import layer_norm

MIC_DROPOUT = 0.05


def micn_kernels(seq_len: int, pred_len: int, conv_kernel: tuple) -> tuple:
  """``(decomp_kernels, isometric_kernels)`` for the decoder length L + H, as the reference."""
  total = seq_len + pred_len
  decomp = tuple(k + 1 if k % 2 == 0 else k for k in conv_kernel)
  iso = tuple((total + k) // k if k % 2 == 0 else (total + k - 1) // k for k in conv_kernel)
  return decomp, iso


class Conv1d(nn.Module):
  """PyTorch ``Conv1d`` with bias and its default initialisation, on ``[B, T, Din]``."""

  features: int
  kernel_size: int
  stride: int = 1
  padding: int = 0

  @nn.compact
  def __call__(self, x):
    fan_in = x.shape[-1] * self.kernel_size
    kernel = self.param("kernel", torch_uniform(fan_in),
                        (self.kernel_size, x.shape[-1], self.features))
    bias = self.param("bias", torch_uniform(fan_in), (self.features,))
    kernel = kernel.astype(x.dtype)
    if self.stride == self.kernel_size:
      # Non-overlapping windows: one contraction over [B, n, k, Din]. XLA's strided convolution
      # took 27x longer in its input gradient on the CPU (MICN, k = 16, D = 512).
      k = self.kernel_size
      x = jnp.pad(x, ((0, 0), (self.padding, self.padding), (0, 0)))
      n = (x.shape[1] - k) // k + 1
      windows = x[:, :n * k].reshape(x.shape[0], n, k, x.shape[-1])
      y = jnp.einsum("bnki,kio->bno", windows, kernel)
    else:
      y = jax.lax.conv_general_dilated(
          x, kernel, (self.stride,), [(self.padding, self.padding)],
          dimension_numbers=("NWC", "WIO", "NWC"))
    return y + bias.astype(y.dtype)


class StridedConvTranspose1d(nn.Module):
  """``ConvTranspose1d(kernel k, stride k, padding 0)``: ``[B, n, Din] -> [B, n k, features]``.

  With stride equal to the kernel the output windows do not overlap, so it is one contraction.
  """

  features: int
  kernel_size: int

  @nn.compact
  def __call__(self, x):
    # PyTorch takes the transposed kernel's fan-in from its second axis: out_channels * k.
    fan_in = self.features * self.kernel_size
    kernel = self.param("kernel", torch_uniform(fan_in),
                        (self.kernel_size, x.shape[-1], self.features))
    bias = self.param("bias", torch_uniform(fan_in), (self.features,))
    y = jnp.einsum("bni,jio->bnjo", x, kernel.astype(x.dtype))  # [B, n, k, out]
    return y.reshape(x.shape[0], -1, self.features) + bias.astype(y.dtype)


class MIC(nn.Module):
  """One MIC layer: ``[B, T, D] -> [B, T, D]``."""

  d_model: int
  conv_kernel: tuple
  decomp_kernel: tuple
  isometric_kernel: tuple

  @nn.compact
  def __call__(self, src, *, train: bool):
    length = src.shape[1]
    drop = Dropout(MIC_DROPOUT, deterministic=not train)
    norm = layer_norm("norm")  # shared by both residuals of every scale, as the reference
    multi = []
    for i, k in enumerate(self.conv_kernel):
      seasonal, _ = series_decomp(src, self.decomp_kernel[i])
      x1 = drop(jnp.tanh(Conv1d(self.d_model, k, stride=k, padding=k // 2,
                                name=f"conv_{i}")(seasonal)))  # [B, n, D]
      x = jnp.pad(x1, ((0, 0), (x1.shape[1] - 1, 0), (0, 0)))  # [B, 2n - 1, D]
      x = drop(jnp.tanh(Conv1d(self.d_model, self.isometric_kernel[i],
                               name=f"isometric_conv_{i}")(x)))  # [B, n, D]
      x = norm(x + x1)
      x = drop(jnp.tanh(StridedConvTranspose1d(self.d_model, k, name=f"conv_trans_{i}")(x)))
      multi.append(norm(x[:, :length] + seasonal))  # [B, T, D]

    mg = jnp.stack(multi, axis=1)  # [B, S, T, D]
    scales = len(self.conv_kernel)
    fan_in = self.d_model * scales
    merge_w = self.param("merge_kernel", torch_uniform(fan_in),
                         (scales, 1, self.d_model, self.d_model))
    merge_b = self.param("merge_bias", torch_uniform(fan_in), (self.d_model,))
    mg = jnp.einsum("bstd,sde->bte", mg, merge_w[:, 0].astype(mg.dtype)) + merge_b  # [B, T, D]

    y = layer_norm("norm1")(mg)
    y = Linear(self.d_model, name="conv2")(Linear(4 * self.d_model, name="conv1")(y))
    return layer_norm("norm2")(mg + y)
