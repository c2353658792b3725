"""PatchTST teacher.

Paper: Y. Nie, N. H. Nguyen, P. Sinthong, J. Kalagnanam, "A Time Series is Worth 64 Words:
Long-term Forecasting with Transformers", ICLR 2023 (arXiv 2211.14730).
Reference implementation followed: thuml/Time-Series-Library ``models/PatchTST.py`` (with
``layers/Embed.py`` ``PatchEmbedding`` and ``layers/Transformer_EncDec.py``), as copied into
LingFengGold/TimeDistill, whose version also returns the encoder features.

Forward pass for ``x: [B, L, C]``:

1. instance normalisation: subtract the mean over time, divide by sqrt(biased var + 1e-5);
2. every channel's series is end-padded with ``stride`` copies of its last step and cut into
   P = (L - patch_len) // stride + 2 patches of ``patch_len`` every ``stride`` steps; each patch is
   embedded by ``Linear(patch_len -> d_model, no bias)`` plus the fixed sinusoidal position
   embedding, then dropout: ``[B * C, P, d_model]`` (channel-independent tokens);
3. ``e_layers`` post-norm Transformer encoder layers (attention across the patches of one
   channel), then BatchNorm over ``d_model`` (the reference's ``Transpose -> BatchNorm1d ->
   Transpose`` norm layer), statistics over all channels and patches;
4. flatten head: ``[B, C, d_model, P]`` flattened, ``Linear(d_model * P -> H)``, dropout;
   de-normalisation.

``features["hidden"]`` is the encoder output after the BatchNorm, ``[B, C, P, d_model]``
flattened per channel to ``[B, C, P * d_model]`` (patch-major, as the reference's
``Flatten(start_dim=-2)`` of ``features[-2]`` reshaped to ``[B, C, P, d_model]``).

Differences from the reference:

* BatchNorm (``layers/batchnorm.py``) keeps padded rows out of its statistics; its running
  variance is PyTorch's (unbiased).
* No imputation / anomaly / classification heads.
"""

import jax.numpy as jnp
import flax.linen as nn

from timedistill_jax.models import register
from timedistill_jax.models.base import ForecastModel
from timedistill_jax.models.layers.batchnorm import BatchNorm
from timedistill_jax.models.layers.embedding import positional_encoding
from timedistill_jax.models.layers.linear import Linear
from timedistill_jax.models.layers.normalization import instance_stats
from timedistill_jax.models.layers.patching import num_patches, patch_series
from timedistill_jax.models.layers.transformer import EncoderLayer, check_activation


@register("patchtst")
class PatchTST(ForecastModel):
  """PatchTST: attention across the patches of each channel. See the module docstring."""

  d_model: int = 512
  n_heads: int = 8
  e_layers: int = 2
  d_ff: int = 2048
  dropout: float = 0.1
  activation: str = "gelu"
  patch_len: int = 16
  stride: int = 8
  bn_axis_name: str | None = None

  @property
  def num_patches(self) -> int:
    return num_patches(self.seq_len, self.patch_len, self.stride, pad=self.stride)

  @property
  def feature_dim(self) -> int:
    return self.d_model * self.num_patches

  @nn.compact
  def __call__(self, x, x_mark=None, y_mark=None, *, train: bool = False, mask=None):
    """``x: [B, L, C]`` -> ``(pred [B, H, C], {"hidden": [B, C, P * d_model]})``.

    ``x_mark`` / ``y_mark`` are unused, as in the reference.
    """
    del x_mark, y_mark
    check_activation(self.activation)
    x = x.astype(jnp.float32)
    b, _, c = x.shape
    mean, std = instance_stats(x)  # [B, 1, C] each
    x = (x - mean) / std

    patches = patch_series(jnp.swapaxes(x, 1, 2), self.patch_len, self.stride,
                           pad=self.stride)  # [B, C, P, patch_len]
    p = patches.shape[2]
    tokens = Linear(self.d_model, use_bias=False, name="value_embedding")(patches)
    tokens = tokens + positional_encoding(p, self.d_model)  # [B, C, P, D]
    tokens = nn.Dropout(self.dropout, deterministic=not train)(tokens)

    h = tokens.reshape(b * c, p, self.d_model)  # [B*C, P, D]
    for i in range(self.e_layers):
      h = EncoderLayer(self.d_model, self.n_heads, self.d_ff, self.dropout, self.activation,
                       name=f"layer_{i}")(h, train=train)
    h = h.reshape(b, c, p, self.d_model)  # [B, C, P, D]
    bn_mask = None if mask is None else mask[:, None, None, None]
    h = BatchNorm(use_running_average=not train, axis=-1, momentum=0.9, epsilon=1e-5,
                  axis_name=self.bn_axis_name, name="norm")(h, mask=bn_mask)

    hidden = h.reshape(b, c, p * self.d_model)  # [B, C, P*D], patch-major
    flat = jnp.swapaxes(h, 2, 3).reshape(b, c, self.d_model * p)  # [B, C, D*P], as the head
    out = Linear(self.pred_len, name="head")(flat)  # [B, C, H]
    out = nn.Dropout(self.dropout, deterministic=not train)(out)
    pred = jnp.swapaxes(out, 1, 2) * std + mean  # [B, H, C]
    return pred, {"hidden": hidden}
