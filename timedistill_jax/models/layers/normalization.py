"""Instance normalisation over time, written once for every model.

Two flavours from the reference code:

* ``non-stationary``: subtract the per-sample, per-channel mean over time (the DMLP student; the
  reference's std lines are commented out). Teachers such as iTransformer also divide by the
  standard deviation (``scale=True``).
* ``revin``: RevIN (Kim et al., ICLR 2022) as Time-Series-Library's ``layers/StandardNorm.py``:
  subtract the mean, divide by sqrt(biased var + eps), then a learnable per-channel affine.

Statistics are computed in float32 and held under ``stop_gradient`` (the reference detaches them).
"""

import jax
import jax.numpy as jnp
import flax.linen as nn

NORMS = ("non-stationary", "revin", "none")
LAYER_NORM_EPS = 1e-5  # PyTorch's; Flax's default is 1e-6


def layer_norm(name: str):
  """``nn.LayerNorm`` as PyTorch's: its epsilon and its two-pass variance (Flax's fast
  E[x^2] - E[x]^2 loses digits when |mean| >> std)."""
  return nn.LayerNorm(epsilon=LAYER_NORM_EPS, use_fast_variance=False, name=name)


def instance_stats(x, *, eps: float = 1e-5):
  """Mean and std over time of ``x: [B, L, C]``, both ``[B, 1, C]``, gradient-free."""
  x = x.astype(jnp.float32)
  mean = jnp.mean(x, axis=1, keepdims=True)
  var = jnp.var(x, axis=1, keepdims=True)
  return jax.lax.stop_gradient(mean), jax.lax.stop_gradient(jnp.sqrt(var + eps))


class RevIN(nn.Module):
  """Reversible instance normalisation with a learnable affine per channel.

  ``affine_only_params=True`` creates the affine parameters without normalising, which is how
  the reference student carries an unused RevIN when it runs with another norm (its parameter
  count includes them).
  """

  num_channels: int
  eps: float = 1e-5
  affine: bool = True

  def setup(self):
    if self.affine:
      self.weight = self.param("weight", nn.initializers.ones, (self.num_channels,))
      self.bias = self.param("bias", nn.initializers.zeros, (self.num_channels,))

  def norm(self, x):
    """``x: [B, L, C]`` -> normalised ``x`` and the statistics to undo it."""
    mean, std = instance_stats(x, eps=self.eps)
    y = (x - mean) / std
    if self.affine:
      y = y * self.weight + self.bias
    return y, (mean, std)

  def denorm(self, y, stats):
    """Undo :meth:`norm` on ``y: [B, H, C]``."""
    mean, std = stats
    if self.affine:
      y = (y - self.bias) / (self.weight + self.eps * self.eps)
    return y * std + mean
