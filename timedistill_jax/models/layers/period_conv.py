"""TimesNet's period discovery and 2-D inception convolution (``models/TimesNet.py``,
``layers/Conv_Blocks.py``), written for static shapes under jit.

Reference: for ``x: [B, T, N]``, the k frequencies with the largest rFFT amplitude (averaged
over batch and channels, DC excluded) give periods ``p = T // f``; for each, x is zero-padded to
``rows * p`` steps (rows = ceil(T / p)), folded into a ``[rows, p]`` grid, passed through
``Inception(N -> d_ff) -> GELU -> Inception(d_ff -> N)`` (each the mean of ``num_kernels``
same-padded Conv2d with kernels 1, 3, ..., 2 num_kernels - 1), unfolded and cut to T.

The period is data-dependent, so the grid's shape is too. Here the grid is never built:

* the period ``p`` and the padded length ``Lp = rows * p`` are traced integers;
* a K x K convolution on the grid (K = 2 num_kernels - 1) reads, for output step t and offset
  (dr, dc), the step ``s = t + dr p + dc``, if the column ``t mod p + dc`` lies in [0, p) and
  ``0 <= s < Lp``. :func:`period_conv2d` takes the K row-shifted copies ``x[t + dr p]`` as
  dynamic slices of a zero-padded copy (dynamic offsets, static shapes), contracts them with
  the kernel for every dc at once, then sums the K column shifts, which are static, under the
  column mask; steps >= Lp are kept at zero, so ``s < Lp`` needs no mask of its own;
* every series lives in a frame of static length ``T_max`` = the largest ``rows * p`` over all
  candidate periods ``T // f``, f = 1 .. T // 2, so the intermediate activations of the padded
  grid cells (which the reference keeps between the two inception blocks) are kept too;
* the inception block's kernels, all linear in the same input, are averaged into one K x K
  kernel (zero-padded, centred) before the convolution: the same function, 121 offsets
  instead of 286 at num_kernels = 6. Parameters stay per kernel, as the reference.

The result equals the reference's up to float rounding (the sums are ordered differently).
"""

import math

import jax
import jax.numpy as jnp
import flax.linen as nn


def padded_frame_length(length: int) -> int:
  """Largest ``ceil(T / p) * p`` over the candidate periods ``p = T // f``, f = 1 .. T // 2."""
  return max([length] + [-(-length // (length // f)) * (length // f)
                         for f in range(1, length // 2 + 1)])


def fft_periods(x, k: int):
  """Top-k periods of ``x: [B, T, N]``: ``(periods [k] int32, amplitudes [B, k])``."""
  xf = jnp.fft.rfft(x.astype(jnp.float32), axis=1)  # [B, T // 2 + 1, N]
  spectrum = jnp.mean(jnp.abs(xf), axis=(0, 2)).at[0].set(0.0)
  _, top = jax.lax.top_k(jax.lax.stop_gradient(spectrum), k)  # [k]
  # Amplitudes of the chosen frequencies only: |.| has no derivative at 0.
  amplitudes = jnp.mean(jnp.abs(xf[:, top]), axis=-1)  # [B, k]
  periods = x.shape[1] // jnp.maximum(top, 1)
  return periods.astype(jnp.int32), amplitudes


def kaiming_normal_fan_out(key, shape, dtype=jnp.float32):
  """``kaiming_normal_(mode="fan_out", nonlinearity="relu")`` for a ``[kh, kw, in, out]`` kernel."""
  fan_out = shape[0] * shape[1] * shape[3]
  return jax.random.normal(key, shape, dtype) * math.sqrt(2.0 / fan_out)


def period_conv2d(x, period, padded_len, kernel, bias):
  """Same-padded 2-D convolution of ``x`` folded into rows of ``period`` steps.

  ``x: [B, T, Din]``, zero at steps >= ``padded_len`` (the grid's end); ``period`` and
  ``padded_len`` traced ints with ``period <= T``; ``kernel: [K, K, Din, Dout]`` (rows, columns,
  in, out); ``bias: [Dout]`` -> ``[B, T, Dout]``, zero at steps >= ``padded_len``.
  """
  length = x.shape[1]
  size = kernel.shape[0]
  half = size // 2
  # Row shifts by dr * period, |dr| <= half, as dynamic slices of a zero-padded copy: their
  # gradients are dynamic updates (a gather's would be a scatter-add, slow on CPUs). The copy
  # also covers the column shifts' reach, t' in [-half, T + half).
  margin = half * length + half
  xp = jnp.pad(x, ((0, 0), (margin, margin), (0, 0)))
  rows = [jax.lax.dynamic_slice_in_dim(xp, margin - half + dr * period, length + 2 * half, 1)
          for dr in range(-half, half + 1)]
  z = jnp.stack(rows, axis=2)  # [B, T + 2 half, K(dr), Din]
  v = jnp.einsum("btkd,kjde->btje", z, kernel.astype(x.dtype))  # [B, T + 2 half, K(dc), Dout]
  col = jnp.arange(length) % period  # [T]
  out = jnp.zeros(x.shape[:2] + (kernel.shape[-1],), x.dtype)
  for j in range(size):
    dc = j - half
    keep = ((col + dc >= 0) & (col + dc < period)).astype(x.dtype)  # [T]
    out = out + keep[None, :, None] * v[:, j:j + length, j]
  live = (jnp.arange(length) < padded_len).astype(x.dtype)
  return (out + bias.astype(x.dtype)) * live[None, :, None]


class InceptionBlock(nn.Module):
  """``Inception_Block_V1`` on the period grid: ``[B, T, Din] -> [B, T, features]``."""

  features: int
  num_kernels: int = 6

  @nn.compact
  def __call__(self, x, period, padded_len):
    kernels, biases = [], []
    for i in range(self.num_kernels):
      k = self.param(f"kernel_{i}", kaiming_normal_fan_out,
                     (2 * i + 1, 2 * i + 1, x.shape[-1], self.features))
      pad = self.num_kernels - 1 - i
      kernels.append(jnp.pad(k, ((pad, pad), (pad, pad), (0, 0), (0, 0))))
      biases.append(self.param(f"bias_{i}", nn.initializers.zeros, (self.features,)))
    kernel = sum(kernels) / self.num_kernels  # [K, K, Din, features]
    bias = sum(biases) / self.num_kernels
    return period_conv2d(x, period, padded_len, kernel, bias)


class TimesBlock(nn.Module):
  """One TimesNet block: ``[B, T, D] -> [B, T, D]`` with the residual connection."""

  d_model: int
  d_ff: int
  top_k: int = 5
  num_kernels: int = 6

  @nn.compact
  def __call__(self, x):
    length = x.shape[1]
    frame = padded_frame_length(length)
    periods, amplitudes = fft_periods(x, self.top_k)
    conv1 = InceptionBlock(self.d_ff, self.num_kernels, name="conv1")
    conv2 = InceptionBlock(self.d_model, self.num_kernels, name="conv2")
    xe = jnp.pad(x, ((0, 0), (0, frame - length), (0, 0)))  # [B, T_max, D], zero padding
    outs = []
    for i in range(self.top_k):
      p = periods[i]
      padded_len = (length + p - 1) // p * p
      h = nn.gelu(conv1(xe, p, padded_len), approximate=False)
      outs.append(conv2(h, p, padded_len)[:, :length])
    res = jnp.stack(outs, axis=-1)  # [B, T, D, k]
    weights = jax.nn.softmax(amplitudes, axis=1)  # [B, k]
    return jnp.einsum("btdk,bk->btd", res, weights.astype(res.dtype)) + x
