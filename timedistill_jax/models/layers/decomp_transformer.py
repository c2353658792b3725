"""Autoformer's decomposition encoder and decoder (``layers/Autoformer_EncDec.py``).

Shared by Autoformer (auto-correlation inside) and FEDformer (Fourier blocks inside): the layers
take their attention modules as arguments.

* :func:`seasonal_layer_norm` (``my_Layernorm``): LayerNorm over features, then subtract the
  mean over time, so the seasonal part stays zero-mean.
* Encoder layer: ``x = decomp(x + drop(attn(x)))``; ``x = decomp(x + drop(conv2(drop(act(
  conv1(x))))))`` keeping the seasonal part only; the 1x1 convolutions have no bias.
* Decoder layer: the same with self- and cross-attention and three decompositions; the three
  trends are summed and projected to ``c_out`` by a circular ``Conv1d(kernel 3, no bias)``.
* Decoder: accumulates the trends onto the trend input, ends with ``seasonal_layer_norm`` and a
  ``Linear(D -> c_out)`` on the seasonal part.

The decompositions are :func:`series_decomp` with the moving-average kernel of the config.
Dropout masks come from ``layers/dropout.py``: same keep probability as ``nn.Dropout``, half the
random-number work (``nn.Dropout``'s masks were a sixth of an encoder layer's training step on
the CPU).
"""

import jax
import jax.numpy as jnp
import flax.linen as nn

from timedistill_jax.models.layers.decomposition import series_decomp
from timedistill_jax.models.layers.dropout import Dropout
from timedistill_jax.models.layers.linear import Linear, torch_uniform
from timedistill_jax.models.layers.normalization import layer_norm
from timedistill_jax.models.layers.transformer import ACTIVATIONS, check_activation


class SeasonalLayerNorm(nn.Module):
  """``my_Layernorm``: ``[B, L, D]`` -> LayerNorm(x) minus its mean over time."""

  @nn.compact
  def __call__(self, x):
    x_hat = layer_norm("layernorm")(x)
    return x_hat - jnp.mean(x_hat, axis=1, keepdims=True)


class CircularConv3(nn.Module):
  """``Conv1d(D -> features, kernel 3, circular padding, no bias)`` on ``[B, L, D]``."""

  features: int

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", torch_uniform(3 * x.shape[-1]), (3, x.shape[-1], self.features))
    xp = jnp.concatenate([x[:, -1:], x, x[:, :1]], axis=1)
    return jax.lax.conv_general_dilated(
        xp, kernel.astype(x.dtype), (1,), "VALID", dimension_numbers=("NWC", "WIO", "NWC"))


class _FeedForward(nn.Module):
  d_model: int
  d_ff: int
  dropout: float
  activation: str

  @nn.compact
  def __call__(self, x, drop):
    y = drop(ACTIVATIONS[self.activation](Linear(self.d_ff, use_bias=False, name="conv1")(x)))
    return drop(Linear(self.d_model, use_bias=False, name="conv2")(y))


class DecompEncoderLayer(nn.Module):
  """``[B, L, D] -> [B, L, D]`` (the seasonal part)."""

  attention: nn.Module
  d_model: int
  d_ff: int
  moving_avg: int = 25
  dropout: float = 0.1
  activation: str = "gelu"

  @nn.compact
  def __call__(self, x, *, train: bool):
    check_activation(self.activation)
    drop = Dropout(self.dropout, deterministic=not train)
    x = x + drop(self.attention(x, x, x, train=train))
    x, _ = series_decomp(x, self.moving_avg)
    y = _FeedForward(self.d_model, self.d_ff, self.dropout, self.activation, name="ff")(x, drop)
    seasonal, _ = series_decomp(x + y, self.moving_avg)
    return seasonal


class DecompDecoderLayer(nn.Module):
  """``(x [B, S, D], cross [B, L, D]) -> (seasonal [B, S, D], trend [B, S, c_out])``."""

  self_attention: nn.Module
  cross_attention: nn.Module
  d_model: int
  c_out: int
  d_ff: int
  moving_avg: int = 25
  dropout: float = 0.1
  activation: str = "gelu"

  @nn.compact
  def __call__(self, x, cross, *, train: bool):
    check_activation(self.activation)
    drop = Dropout(self.dropout, deterministic=not train)
    x = x + drop(self.self_attention(x, x, x, train=train))
    x, trend1 = series_decomp(x, self.moving_avg)
    x = x + drop(self.cross_attention(x, cross, cross, train=train))
    x, trend2 = series_decomp(x, self.moving_avg)
    y = _FeedForward(self.d_model, self.d_ff, self.dropout, self.activation, name="ff")(x, drop)
    x, trend3 = series_decomp(x + y, self.moving_avg)
    trend = CircularConv3(self.c_out, name="projection")(trend1 + trend2 + trend3)
    return x, trend
