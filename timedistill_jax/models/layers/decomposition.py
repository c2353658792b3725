"""Series decomposition by a moving average (Autoformer's ``series_decomp``).

The series is padded at both ends by repeating its first and last value ``(k - 1) // 2`` times,
then averaged over windows of ``k`` with stride 1: ``trend``; ``seasonal = x - trend``.
The reference uses ``AvgPool1d`` (O(L k)); here a cumulative sum gives the same average in O(L),
which matters because the moving average is the DMLP's main cost at inference (PAPER.md s.8).
"""

import jax.numpy as jnp


def moving_average(x, kernel_size: int, axis: int = 1):
  """Edge-replicated moving average of ``x`` along ``axis`` (time). Odd ``kernel_size`` keeps L."""
  if kernel_size < 1:
    raise ValueError(f"moving average kernel must be >= 1, got {kernel_size}")
  x = jnp.moveaxis(x, axis, 1)
  pad = (kernel_size - 1) // 2
  xp = jnp.concatenate(
      [jnp.repeat(x[:, :1], pad, axis=1), x, jnp.repeat(x[:, -1:], pad, axis=1)], axis=1)
  # Window sums as differences of a running sum; float32 at least, so the difference of two
  # large partial sums keeps the precision of the window itself.
  acc = jnp.cumsum(xp.astype(jnp.promote_types(xp.dtype, jnp.float32)), axis=1)
  acc = jnp.concatenate([jnp.zeros_like(acc[:, :1]), acc], axis=1)
  out = (acc[:, kernel_size:] - acc[:, :-kernel_size]) / kernel_size
  return jnp.moveaxis(out.astype(x.dtype), 1, axis)


def series_decomp(x, kernel_size: int = 25, axis: int = 1):
  """Split ``x: [B, L, C]`` into ``(seasonal, trend)``, both ``[B, L, C]``."""
  trend = moving_average(x, kernel_size, axis=axis)
  return x - trend, trend
