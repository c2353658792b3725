"""Dense layer with PyTorch's default initialisation.

``torch.nn.Linear`` draws weight and bias from U(-1/sqrt(fan_in), 1/sqrt(fan_in)); Flax's
``nn.Dense`` uses LeCun-normal weights and zero bias. The paper's numbers come from the PyTorch
initialisation, so every model here uses this layer where the reference uses ``nn.Linear``.
The kernel is stored as ``[in, out]`` (Flax layout); ``convert.py`` transposes PyTorch weights.
"""

import jax
import jax.numpy as jnp
import flax.linen as nn


def torch_uniform(fan_in: int):
  """Initializer U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for any shape."""
  bound = 1.0 / float(fan_in) ** 0.5 if fan_in > 0 else 0.0

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


class Linear(nn.Module):
  """``y = x @ kernel + bias`` over the last axis, initialised as ``torch.nn.Linear``."""

  features: int
  use_bias: bool = True
  dtype: jnp.dtype | None = None

  @nn.compact
  def __call__(self, x):
    fan_in = x.shape[-1]
    kernel = self.param("kernel", torch_uniform(fan_in), (fan_in, self.features))
    y = jnp.dot(x, kernel.astype(self.dtype or x.dtype))
    if self.use_bias:
      bias = self.param("bias", torch_uniform(fan_in), (self.features,))
      y = y + bias.astype(y.dtype)
    return y
