"""BatchNorm with a padding mask that stays exact across devices.

Flax's ``nn.BatchNorm`` takes a ``mask`` and an ``axis_name``, but across devices it averages the
per-device means (``pmean``), which is the global mean only when every device holds the same
number of real rows. The padded last batch of an epoch breaks that. Here the per-device sums and
counts are added over devices first (``psum``), so N devices compute exactly what one device
computes on the whole batch, padded or not.

``axis`` may name several axes whose product is PyTorch's feature axis (ModernTCN normalises its
M * D series in an ``[M, B, N, D]`` layout): the parameters and statistics stay flat, indexed
row-major over those axes.

It also keeps PyTorch's running variance (unbiased, n / (n - 1)), so the statistics used in eval
mode equal ``torch.nn.BatchNorm1d``'s. Variables have Flax's names (params ``scale``, ``bias``;
batch_stats ``mean``, ``var``).
"""

import jax
import jax.numpy as jnp
import flax.linen as nn
import numpy as np


class BatchNorm(nn.Module):
  """BatchNorm over every axis but ``axis``. ``momentum`` is Flax's: new = m old + (1 - m) batch."""

  use_running_average: bool | None = None
  axis: int | tuple[int, ...] = -1
  momentum: float = 0.9
  epsilon: float = 1e-5
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x, use_running_average: bool | None = None, *, mask=None):
    use_running_average = nn.merge_param(
        "use_running_average", self.use_running_average, use_running_average)
    axes = (self.axis,) if isinstance(self.axis, int) else tuple(self.axis)
    feature_axes = sorted(a % x.ndim for a in axes)
    reduce_axes = tuple(a for a in range(x.ndim) if a not in feature_axes)
    shape = [x.shape[a] if a in feature_axes else 1 for a in range(x.ndim)]
    num_features = int(np.prod(shape))

    ra_mean = self.variable("batch_stats", "mean", jnp.zeros, (num_features,), jnp.float32)
    ra_var = self.variable("batch_stats", "var", jnp.ones, (num_features,), jnp.float32)
    scale = self.param("scale", nn.initializers.ones, (num_features,))
    bias = self.param("bias", nn.initializers.zeros, (num_features,))

    xf = x.astype(jnp.float32)
    if use_running_average:
      mean, var = ra_mean.value, ra_var.value
    else:
      psum = (lambda t: t) if self.axis_name is None else (
          lambda t: jax.lax.psum(t, self.axis_name))
      flat = lambda t: t.reshape(num_features)
      if mask is None:
        count = jnp.full((num_features,), x.size // num_features, jnp.float32)
        sums = (jnp.sum(xf, reduce_axes), jnp.sum(jnp.square(xf), reduce_axes))
      else:
        w = mask.astype(jnp.float32)  # broadcastable to x, e.g. [B, 1, 1]
        w = w.reshape((1,) * (x.ndim - w.ndim) + w.shape)
        # The count of rows the mask keeps, without materialising the mask at x's shape
        # (a broadcast as large as x per BatchNorm, ~3% of a ModernTCN step): exact integers.
        spread = np.prod([x.shape[a] for a in reduce_axes if w.shape[a] == 1])
        count = jnp.broadcast_to(
            jnp.sum(w, reduce_axes, keepdims=True) * float(spread), shape).reshape(num_features)
        wx = w * xf
        sums = (jnp.sum(wx, reduce_axes), jnp.sum(wx * xf, reduce_axes))
      count, total, total_sq = psum((count, *map(flat, sums)))
      count = jnp.maximum(count, 1.0)
      mean = total / count
      # One pass, as Flax's default; the statistics of hidden activations are O(1), where
      # E[x^2] - E[x]^2 loses nothing that matters in float32.
      var = jnp.maximum(total_sq / count - jnp.square(mean), 0.0)
      if not self.is_initializing():
        unbiased = var * count / jnp.maximum(count - 1.0, 1.0)
        ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
        ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * unbiased

    mul = scale * jax.lax.rsqrt(var + self.epsilon)  # [C]: one multiply per element below
    y = (xf - mean.reshape(shape)) * mul.reshape(shape) + bias.reshape(shape)
    return y.astype(x.dtype)
