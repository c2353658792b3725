"""iTransformer teacher.

Paper: Y. Liu, T. Hu, H. Zhang, H. Wu, S. Wang, L. Ma, M. Long, "iTransformer: Inverted
Transformers Are Effective for Time Series Forecasting", ICLR 2024 (arXiv 2310.06625).
Reference implementation followed: thuml/Time-Series-Library ``models/iTransformer.py`` (with
``layers/Embed.py`` ``DataEmbedding_inverted``, ``layers/Transformer_EncDec.py`` and
``layers/SelfAttention_Family.py``), as copied into LingFengGold/TimeDistill, whose version also
returns the encoder features that TimeDistill distils.

Forward pass for ``x: [B, L, C]`` and calendar features ``x_mark: [B, L, F]``:

1. instance normalisation: subtract the mean over time, divide by sqrt(biased var + 1e-5);
2. inverted embedding: every variate and every time feature is a token whose values over the
   look-back window are embedded by one ``Linear(L -> d_model)``: ``[B, C + F, d_model]``;
3. ``e_layers`` post-norm Transformer encoder layers (full attention across tokens) and a final
   LayerNorm;
4. ``Linear(d_model -> H)`` on the variate tokens, transposed to ``[B, H, C]``, de-normalised.

``features["hidden"]`` is the encoder output after the final LayerNorm for the variate tokens,
``[B, C, d_model]``: the reference's ``features[-2][:, :C]``.

Differences from the reference:

* The output projection runs on the C variate tokens only; the reference projects all C + F
  tokens and then drops the time-feature ones. Same outputs, less work.
* ``x_mark`` with F = 0 (no calendar features, e.g. Solar) plays the role of the reference's
  ``x_mark=None``: both give C tokens.
* The instance normalisation is always on (the reference's ``use_norm`` flag defaults to on and no
  TimeDistill setting turns it off for iTransformer).
* No ``output_attention`` and no imputation / anomaly / classification heads.
"""

import jax.numpy as jnp
import flax.linen as nn

from timedistill_jax.models import register
from timedistill_jax.models.base import ForecastModel
from timedistill_jax.models.layers.linear import Linear
from timedistill_jax.models.layers.normalization import instance_stats
from timedistill_jax.models.layers.transformer import Encoder, check_activation


@register("itransformer")
class ITransformer(ForecastModel):
  """iTransformer: attention across variate tokens. See the module docstring."""

  d_model: int = 512
  n_heads: int = 8
  e_layers: int = 2
  d_ff: int = 2048
  dropout: float = 0.1
  activation: str = "gelu"

  @property
  def feature_dim(self) -> int:
    return self.d_model

  def setup(self):
    check_activation(self.activation)
    self.embedding = Linear(self.d_model, name="embedding")
    self.embedding_dropout = nn.Dropout(self.dropout)
    self.encoder = Encoder(self.e_layers, self.d_model, self.n_heads, self.d_ff, self.dropout,
                           self.activation)
    self.projection = Linear(self.pred_len, name="projection")

  def __call__(self, x, x_mark=None, y_mark=None, *, train: bool = False, mask=None):
    """``x: [B, L, C]``, ``x_mark: [B, L, F]`` -> ``(pred [B, H, C], {"hidden": [B, C, D]})``.

    ``y_mark`` is unused (the model has no decoder) and ``mask`` too (no batch statistics); both
    are accepted so that every model shares one call.
    """
    del y_mark, mask
    x = x.astype(jnp.float32)
    num_vars = x.shape[-1]
    mean, std = instance_stats(x)  # [B, 1, C] each
    x = (x - mean) / std

    tokens = jnp.swapaxes(x, 1, 2)  # [B, C, L]
    if x_mark is not None:
      marks = jnp.swapaxes(x_mark.astype(tokens.dtype), 1, 2)  # [B, F, L]
      tokens = jnp.concatenate([tokens, marks], axis=1)  # [B, C + F, L]
    h = self.embedding_dropout(self.embedding(tokens), deterministic=not train)  # [B, C + F, D]
    h = self.encoder(h, train=train)  # [B, C + F, D]

    hidden = h[:, :num_vars]  # [B, C, D]
    pred = jnp.swapaxes(self.projection(hidden), 1, 2)  # [B, H, C]
    pred = pred * std + mean
    return pred, {"hidden": hidden}
