"""Autoformer teacher.

Paper: H. Wu, J. Xu, J. Wang, M. Long, "Autoformer: Decomposition Transformers with
Auto-Correlation for Long-Term Series Forecasting", NeurIPS 2021 (arXiv 2106.13008).
Reference implementation followed: thuml/Time-Series-Library ``models/Autoformer.py`` (with
``layers/AutoCorrelation.py``, ``layers/Autoformer_EncDec.py`` and ``layers/Embed.py``), as
copied into LingFengGold/TimeDistill, whose version also returns the encoder output.

Forward pass for ``x: [B, L, C]``, ``x_mark: [B, L, F]``, ``y_mark: [B, S + H, F]``
(S = ``label_len``):

1. decoder inputs from ``x``: series decomposition (moving average ``moving_avg``); the seasonal
   input is the last S seasonal steps then H zeros, the trend input the last S trend steps then
   H copies of the mean of ``x`` over time;
2. encoder: value + time-feature embedding (no positional part), ``e_layers`` decomposition
   layers with auto-correlation (top ``int(factor ln L)`` delays), ``my_Layernorm``;
3. decoder: the same embedding of the seasonal input, ``d_layers`` layers with auto-correlation
   self- and cross-attention, progressive trend accumulation, ``my_Layernorm`` and a Linear;
4. prediction: the last H steps of seasonal + trend, ``[B, H, C]``. No instance normalisation.

``features["hidden"]`` is the encoder output transposed, time axis as feature, first C rows:
the reference's ``features[-2].permute(0, 2, 1)[:, :C]``, ``[B, C, L]``. Like the reference it
has ``min(C, d_model)`` rows: on Traffic (C = 862 > d_model = 512) the trainer must cut the
student's features to the teacher's rows, as the reference does.

Differences from the reference:

* No ``c_out`` / ``dec_in`` settings: both equal ``enc_in`` in every TimeDistill run, and the
  contract needs ``pred`` for every channel. No ``freq`` either: the time-feature Linear takes
  its width from ``x_mark`` (F = 0, e.g. Solar, means no temporal embedding).
* The decoder input is built inside the model; ``x_dec`` is not an argument.
* No ``output_attention`` and no imputation / anomaly / classification heads.
"""

import jax.numpy as jnp
import flax.linen as nn

from timedistill_jax.models import register
from timedistill_jax.models.base import ForecastModel
from timedistill_jax.models.layers.autocorrelation import AutoCorrelation, AutoCorrelationLayer
from timedistill_jax.models.layers.decomp_transformer import (
    DecompDecoderLayer, DecompEncoderLayer, SeasonalLayerNorm)
from timedistill_jax.models.layers.transformer import check_activation
from timedistill_jax.models.layers.decomposition import series_decomp
from timedistill_jax.models.layers.embedding import DataEmbedding
from timedistill_jax.models.layers.linear import Linear


def decoder_inputs(x, label_len: int, pred_len: int, moving_avg: int):
  """Seasonal and trend decoder inputs, both ``[B, S + H, C]``, as Autoformer / FEDformer."""
  seasonal, trend = series_decomp(x, moving_avg)
  mean = jnp.broadcast_to(jnp.mean(x, axis=1, keepdims=True), (x.shape[0], pred_len, x.shape[2]))
  zeros = jnp.zeros_like(mean)
  start = x.shape[1] - label_len
  return (jnp.concatenate([seasonal[:, start:], zeros], axis=1),
          jnp.concatenate([trend[:, start:], mean], axis=1))


@register("autoformer")
class Autoformer(ForecastModel):
  """Autoformer: decomposition Transformer with auto-correlation. See the module docstring."""

  d_model: int = 512
  n_heads: int = 8
  e_layers: int = 2
  d_layers: int = 1
  d_ff: int = 2048
  moving_avg: int = 25
  factor: float = 1.0
  dropout: float = 0.1
  activation: str = "gelu"
  embed: str = "timeF"

  @property
  def feature_dim(self) -> int:
    return self.seq_len

  @nn.compact
  def __call__(self, x, x_mark=None, y_mark=None, *, train: bool = False, mask=None):
    """``x: [B, L, C]`` -> ``(pred [B, H, C], {"hidden": [B, C, L]})``; ``mask`` is unused."""
    del mask
    check_activation(self.activation)
    x = x.astype(jnp.float32)
    seasonal_init, trend_init = decoder_inputs(x, self.label_len, self.pred_len, self.moving_avg)

    layer_args = dict(d_model=self.d_model, d_ff=self.d_ff, moving_avg=self.moving_avg,
                      dropout=self.dropout, activation=self.activation)
    corr = lambda: AutoCorrelation(self.factor)
    h = DataEmbedding(self.d_model, self.dropout, with_pos=False, embed=self.embed,
                      name="enc_embedding")(x, x_mark, train=train)  # [B, L, D]
    for i in range(self.e_layers):
      attn = AutoCorrelationLayer(self.d_model, self.n_heads, corr(), name=f"enc_{i}_attention")
      h = DecompEncoderLayer(attn, name=f"encoder_{i}", **layer_args)(h, train=train)
    enc_out = SeasonalLayerNorm(name="encoder_norm")(h)  # [B, L, D]

    d = DataEmbedding(self.d_model, self.dropout, with_pos=False, embed=self.embed,
                      name="dec_embedding")(seasonal_init, y_mark, train=train)  # [B, S + H, D]
    trend = trend_init
    for i in range(self.d_layers):
      self_attn = AutoCorrelationLayer(self.d_model, self.n_heads, corr(),
                                       name=f"dec_{i}_self_attention")
      cross_attn = AutoCorrelationLayer(self.d_model, self.n_heads, corr(),
                                        name=f"dec_{i}_cross_attention")
      d, residual_trend = DecompDecoderLayer(self_attn, cross_attn, c_out=self.enc_in,
                                             name=f"decoder_{i}", **layer_args)(
                                                 d, enc_out, train=train)
      trend = trend + residual_trend
    seasonal = Linear(self.enc_in, name="projection")(SeasonalLayerNorm(name="decoder_norm")(d))

    pred = (trend + seasonal)[:, -self.pred_len:]  # [B, H, C]
    hidden = jnp.swapaxes(enc_out, 1, 2)[:, :x.shape[-1]]  # [B, C, L]
    return pred, {"hidden": hidden}
