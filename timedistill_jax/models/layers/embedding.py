"""Time-Series-Library's ``DataEmbedding`` and ``DataEmbedding_wo_pos`` (``layers/Embed.py``).

For ``x: [B, L, C]`` and calendar features ``x_mark: [B, L, F]``::

    value:      Conv1d(C -> D, kernel 3, circular padding, no bias) over time
    temporal:   Linear(F -> D, no bias)          (``embed="timeF"``; skipped when F = 0)
    positional: the fixed sinusoidal table of "Attention is all you need" (with_pos only)
    out = dropout(value + temporal + positional)

The value kernel is initialised as the reference: Kaiming normal, fan-in, leaky-ReLU gain with
slope 0, i.e. N(0, 2 / (3 C)). The time-feature Linear uses PyTorch's default initialisation.
Only ``embed="timeF"`` is implemented: every TimeDistill run uses it.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import flax.linen as nn

from timedistill_jax.errors import ConfigError
from timedistill_jax.models.layers.linear import Linear


def positional_encoding(length: int, d_model: int) -> np.ndarray:
  """The sinusoidal table ``[length, d_model]``: sin on even columns, cos on odd ones."""
  position = np.arange(length, dtype=np.float32)[:, None]
  # float32 throughout, as the reference computes its buffer, so that both tables agree bitwise.
  div_term = np.exp(np.arange(0, d_model, 2, dtype=np.float32)
                    * np.float32(-(math.log(10000.0) / d_model)))
  table = np.zeros((length, d_model), np.float32)
  table[:, 0::2] = np.sin(position * div_term)
  table[:, 1::2] = np.cos(position * div_term[: d_model // 2])
  return table


def kaiming_normal_fan_in(key, shape, dtype=jnp.float32):
  """``nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="leaky_relu")`` for a Flax kernel.

  The Flax conv kernel is ``[*window, in, out]``, so fan-in is the product of all but the last
  axis. The leaky-ReLU gain with the default slope 0 is sqrt(2).
  """
  fan_in = int(np.prod(shape[:-1]))
  return jax.random.normal(key, shape, dtype) * math.sqrt(2.0 / fan_in)


class TokenEmbedding(nn.Module):
  """Circular ``Conv1d(C -> d_model, kernel 3)`` without bias: ``[B, L, C] -> [B, L, D]``."""

  d_model: int

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", kaiming_normal_fan_in, (3, x.shape[-1], self.d_model))
    # Circular padding of one step each side, then a VALID convolution.
    xp = jnp.concatenate([x[:, -1:], x, x[:, :1]], axis=1)  # [B, L + 2, C]
    return jax.lax.conv_general_dilated(
        xp, kernel.astype(x.dtype), window_strides=(1,), padding="VALID",
        dimension_numbers=("NWC", "WIO", "NWC"))


class DataEmbedding(nn.Module):
  """Value + time-feature (+ positional) embedding with dropout: ``[B, L, C] -> [B, L, D]``."""

  d_model: int
  dropout: float = 0.1
  with_pos: bool = True
  embed: str = "timeF"

  @nn.compact
  def __call__(self, x, x_mark=None, *, train: bool):
    if self.embed != "timeF":
      raise ConfigError(f"embed={self.embed!r} is not implemented; use embed='timeF'.")
    h = TokenEmbedding(self.d_model, name="value")(x)
    # F = 0 is the reference's x_mark=None: no temporal part (and no parameters for it).
    if x_mark is not None and x_mark.shape[-1] > 0:
      h = h + Linear(self.d_model, use_bias=False, name="temporal")(x_mark.astype(h.dtype))
    if self.with_pos:
      h = h + jnp.asarray(positional_encoding(x.shape[1], self.d_model), h.dtype)
    return nn.Dropout(self.dropout, deterministic=not train)(h)
