"""FEDformer teacher (Fourier version).

Paper: T. Zhou, Z. Ma, Q. Wen, X. Wang, L. Sun, R. Jin, "FEDformer: Frequency Enhanced
Decomposed Transformer for Long-term Series Forecasting", ICML 2022 (arXiv 2201.12740).
Reference implementation followed: thuml/Time-Series-Library ``models/FEDformer.py`` (with
``layers/FourierCorrelation.py``, ``layers/AutoCorrelation.py``, ``layers/Autoformer_EncDec.py``
and ``layers/Embed.py``), as copied into LingFengGold/TimeDistill, whose version also returns
the encoder output.

Forward pass: Autoformer's (see ``autoformer.py``: decomposed decoder inputs, decomposition
encoder and decoder, prediction = last H steps of seasonal + trend), with

* the full data embedding (value + time features + sinusoidal positions);
* a :class:`FourierBlock` in place of encoder and decoder self-attention, and a
  :class:`FourierCrossAttention` in place of cross-attention. As in the reference, one Fourier
  block is shared by all encoder layers, one by all decoder layers, one cross-attention by all
  decoder layers (their weights are counted once); the projections around them are per layer.
  The encoder block keeps ``modes`` of the L // 2 lowest frequencies, the decoder blocks
  theirs out of ``(L // 2 + H) // 2``, the reference's (odd) decoder length.

Mode indices: ``mode_indices`` = (encoder, decoder self, cross q, cross kv) tuples; left empty,
they are drawn from ``np.random.RandomState(mode_seed)`` in that order, which reproduces the
reference after ``np.random.seed(mode_seed)``. ``convert.fedformer_mode_indices`` reads
them from a reference model so that converted weights keep their modes.

``features["hidden"]``: the encoder output transposed, first C rows, ``[B, C, L]`` (see
``autoformer.py``, including the Traffic caveat: ``min(C, d_model)`` rows).

Differences from the reference:

* Mode indices are a static, seeded field instead of a draw from the global NumPy state.
* Only ``version="Fourier"`` (the reference default and every TimeDistill run); the wavelet
  version is not implemented. ``n_heads`` must be 8: the reference hard-codes 8 heads in the
  Fourier block weights.
* No ``c_out`` / ``dec_in`` / ``freq`` settings, no other task heads (see ``autoformer.py``).
"""

import numpy as np
import jax.numpy as jnp
import flax.linen as nn

from timedistill_jax.errors import ConfigError
from timedistill_jax.models import register
from timedistill_jax.models.base import ForecastModel
from timedistill_jax.models.layers.autocorrelation import AutoCorrelationLayer
from timedistill_jax.models.layers.decomp_transformer import (
    DecompDecoderLayer, DecompEncoderLayer, SeasonalLayerNorm)
from timedistill_jax.models.layers.transformer import check_activation
from timedistill_jax.models.layers.embedding import DataEmbedding
from timedistill_jax.models.layers.fourier import (
    FourierBlock, FourierCrossAttention, frequency_modes)
from timedistill_jax.models.layers.linear import Linear
from timedistill_jax.models.teachers.autoformer import decoder_inputs


def draw_mode_indices(seq_len: int, pred_len: int, modes: int, mode_select: str,
                      seed: int) -> tuple:
  """(encoder, decoder self, cross q, cross kv) mode indices in the reference's draw order."""
  rng = np.random.RandomState(seed)
  dec_len = seq_len // 2 + pred_len
  return tuple(frequency_modes(n, modes, mode_select, rng)
               for n in (seq_len, dec_len, dec_len, seq_len))


@register("fedformer")
class FEDformer(ForecastModel):
  """FEDformer: decomposition Transformer with Fourier blocks. See the module docstring."""

  d_model: int = 512
  n_heads: int = 8
  e_layers: int = 2
  d_layers: int = 1
  d_ff: int = 2048
  moving_avg: int = 25
  dropout: float = 0.1
  activation: str = "gelu"
  embed: str = "timeF"
  version: str = "Fourier"
  modes: int = 32
  mode_select: str = "random"
  mode_seed: int = 0
  mode_indices: tuple = ()

  @property
  def feature_dim(self) -> int:
    return self.seq_len

  def indices(self) -> tuple:
    """The four mode-index tuples this model uses (given, or drawn from ``mode_seed``)."""
    if self.mode_indices:
      if len(self.mode_indices) != 4:
        raise ConfigError("mode_indices must hold 4 tuples: encoder, decoder self, cross q, "
                          f"cross kv; got {len(self.mode_indices)}")
      return tuple(tuple(int(i) for i in idx) for idx in self.mode_indices)
    return draw_mode_indices(self.seq_len, self.pred_len, self.modes, self.mode_select,
                             self.mode_seed)

  @nn.compact
  def __call__(self, x, x_mark=None, y_mark=None, *, train: bool = False, mask=None):
    """``x: [B, L, C]`` -> ``(pred [B, H, C], {"hidden": [B, C, L]})``; ``mask`` is unused."""
    del mask
    if self.version.lower() != "fourier":
      raise ConfigError(f"FEDformer version={self.version!r} is not implemented; use 'Fourier'.")
    check_activation(self.activation)
    enc_index, dec_index, cross_q, cross_kv = self.indices()
    x = x.astype(jnp.float32)
    seasonal_init, trend_init = decoder_inputs(x, self.label_len, self.pred_len, self.moving_avg)

    # One inner mechanism per role, shared by every layer of that role (as the reference).
    enc_fourier = FourierBlock(self.d_model, enc_index, name="encoder_fourier")
    dec_fourier = FourierBlock(self.d_model, dec_index, name="decoder_fourier")
    cross_fourier = FourierCrossAttention(self.d_model, self.n_heads, cross_q, cross_kv,
                                          name="decoder_cross_fourier")
    layer_args = dict(d_model=self.d_model, d_ff=self.d_ff, moving_avg=self.moving_avg,
                      dropout=self.dropout, activation=self.activation)

    h = DataEmbedding(self.d_model, self.dropout, embed=self.embed,
                      name="enc_embedding")(x, x_mark, train=train)  # [B, L, D]
    d = DataEmbedding(self.d_model, self.dropout, embed=self.embed,
                      name="dec_embedding")(seasonal_init, y_mark, train=train)  # [B, S + H, D]
    for i in range(self.e_layers):
      attn = AutoCorrelationLayer(self.d_model, self.n_heads, enc_fourier,
                                  name=f"enc_{i}_attention")
      h = DecompEncoderLayer(attn, name=f"encoder_{i}", **layer_args)(h, train=train)
    enc_out = SeasonalLayerNorm(name="encoder_norm")(h)  # [B, L, D]

    trend = trend_init
    for i in range(self.d_layers):
      self_attn = AutoCorrelationLayer(self.d_model, self.n_heads, dec_fourier,
                                       name=f"dec_{i}_self_attention")
      cross_attn = AutoCorrelationLayer(self.d_model, self.n_heads, cross_fourier,
                                        name=f"dec_{i}_cross_attention")
      d, residual_trend = DecompDecoderLayer(self_attn, cross_attn, c_out=self.enc_in,
                                             name=f"decoder_{i}", **layer_args)(
                                                 d, enc_out, train=train)
      trend = trend + residual_trend
    seasonal = Linear(self.enc_in, name="projection")(SeasonalLayerNorm(name="decoder_norm")(d))

    pred = (trend + seasonal)[:, -self.pred_len:]  # [B, H, C]
    hidden = jnp.swapaxes(enc_out, 1, 2)[:, :x.shape[-1]]  # [B, C, L]
    return pred, {"hidden": hidden}
