"""Post-norm Transformer encoder, as Time-Series-Library's ``Encoder`` / ``EncoderLayer``.

Each layer (``layers/Transformer_EncDec.py``)::

    x = x + dropout(attention(x, x, x))
    y = x = norm1(x)
    y = dropout(act(conv1(y)))        # Conv1d(d_model -> d_ff, kernel 1) = a Linear per token
    y = dropout(conv2(y))             # Conv1d(d_ff -> d_model, kernel 1)
    out = norm2(x + y)

and the encoder ends with a LayerNorm. LayerNorms use PyTorch's epsilon 1e-5 (Flax's default is
1e-6); GELU is the exact (erf) form, as ``F.gelu``, not Flax's default tanh approximation.
"""

import functools

import flax.linen as nn

from timedistill_jax.errors import unknown_name
from timedistill_jax.models.layers.attention import MultiHeadAttention
from timedistill_jax.models.layers.linear import Linear
from timedistill_jax.models.layers.normalization import layer_norm

ACTIVATIONS = {
    "gelu": functools.partial(nn.gelu, approximate=False),
    "relu": nn.relu,
}

def check_activation(name: str):
  """Raises :class:`ConfigError` for an activation the Transformer layers do not know."""
  if name not in ACTIVATIONS:
    raise unknown_name("activation", name, ACTIVATIONS)


class EncoderLayer(nn.Module):
  """Self-attention and a position-wise feed-forward block, each with residual and post-norm."""

  d_model: int
  n_heads: int
  d_ff: int
  dropout: float = 0.1
  activation: str = "gelu"

  @nn.compact
  def __call__(self, x, *, train: bool):  # x: [B, N, D]
    check_activation(self.activation)
    # One Dropout module used three times, as the reference; each call draws a fresh mask.
    drop = nn.Dropout(self.dropout, deterministic=not train)
    attn = MultiHeadAttention(self.d_model, self.n_heads, self.dropout, name="attention")
    x = x + drop(attn(x, x, x, train=train))
    x = layer_norm(name="norm1")(x)
    y = drop(ACTIVATIONS[self.activation](Linear(self.d_ff, name="conv1")(x)))  # [B, N, d_ff]
    y = drop(Linear(self.d_model, name="conv2")(y))  # [B, N, D]
    return layer_norm(name="norm2")(x + y)


class Encoder(nn.Module):
  """``e_layers`` :class:`EncoderLayer` blocks, then a final LayerNorm; ``[B, N, D]`` throughout."""

  e_layers: int
  d_model: int
  n_heads: int
  d_ff: int
  dropout: float = 0.1
  activation: str = "gelu"

  @nn.compact
  def __call__(self, x, *, train: bool):
    for i in range(self.e_layers):
      x = EncoderLayer(self.d_model, self.n_heads, self.d_ff, self.dropout, self.activation,
                       name=f"layer_{i}")(x, train=train)
    return layer_norm(name="norm")(x)
