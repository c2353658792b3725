"""TimesNet teacher.

Paper: H. Wu, T. Hu, Y. Liu, H. Zhou, J. Wang, M. Long, "TimesNet: Temporal 2D-Variation
Modeling for General Time Series Analysis", ICLR 2023 (arXiv 2210.02186).
Reference implementation followed: thuml/Time-Series-Library ``models/TimesNet.py`` (with
``layers/Conv_Blocks.py`` and ``layers/Embed.py``), as copied into LingFengGold/TimeDistill,
whose version also returns the features TimeDistill distils.

Forward pass for ``x: [B, L, C]`` and ``x_mark: [B, L, F]``:

1. instance normalisation (mean, sqrt(biased var + 1e-5)) over time;
2. data embedding (value + time features + positions) ``[B, L, D]``, then
   ``Linear(L -> L + H)`` over time: ``[B, L + H, D]``;
3. ``e_layers`` TimesBlocks (top_k periods, inception convolutions on each period's 2-D grid,
   softmax-weighted sum, residual), each followed by one shared LayerNorm;
4. ``Linear(D -> C)``, de-normalised; the prediction is the last H steps.

How the data-dependent periods run under jit with static shapes: see ``layers/period_conv.py``
(periods are traced integers; the 2-D grid is addressed by gathers inside a static frame).

``features["hidden"]``: the reference takes ``features[-1]``, the projection output before
de-normalisation ``[B, L + H, C]``, transposes it and keeps the last ``d_model`` steps:
``[B, C, min(d_model, L + H)]`` (= d_model in every TimeDistill setting).

Differences from the reference:

* Each inception block averages its kernels into one before convolving (same function, fewer
  operations); the 2-D grid is addressed by index arithmetic, not built (same values).
* No ``c_out`` / ``freq`` settings (``c_out`` = ``enc_in``; F comes from ``x_mark``), no other
  task heads. ``label_len`` is unused, as in the reference.
"""

import jax.numpy as jnp
import flax.linen as nn

from timedistill_jax.models import register
from timedistill_jax.models.base import ForecastModel
from timedistill_jax.models.layers.embedding import DataEmbedding
from timedistill_jax.models.layers.linear import Linear
from timedistill_jax.models.layers.normalization import instance_stats
from timedistill_jax.models.layers.period_conv import TimesBlock
from timedistill_jax.models.layers.normalization import layer_norm


@register("timesnet")
class TimesNet(ForecastModel):
  """TimesNet: 2-D variation modelling over discovered periods. See the module docstring."""

  d_model: int = 32
  e_layers: int = 2
  d_ff: int = 32
  top_k: int = 5
  num_kernels: int = 6
  dropout: float = 0.1
  embed: str = "timeF"

  @property
  def feature_dim(self) -> int:
    # The reference slices the last d_model steps of L + H; fewer exist when L + H < d_model.
    return min(self.d_model, self.seq_len + self.pred_len)

  @nn.compact
  def __call__(self, x, x_mark=None, y_mark=None, *, train: bool = False, mask=None):
    """``x: [B, L, C]`` -> ``(pred [B, H, C], {"hidden": [B, C, d_model]})``.

    ``y_mark`` and ``mask`` are unused (no decoder, no batch statistics).
    """
    del y_mark, mask
    total = self.seq_len + self.pred_len
    x = x.astype(jnp.float32)
    mean, std = instance_stats(x)  # [B, 1, C] each
    x = (x - mean) / std

    h = DataEmbedding(self.d_model, self.dropout, embed=self.embed,
                      name="enc_embedding")(x, x_mark, train=train)  # [B, L, D]
    h = jnp.swapaxes(Linear(total, name="predict_linear")(jnp.swapaxes(h, 1, 2)), 1, 2)
    norm = layer_norm("layer_norm")  # one LayerNorm shared by every block, as the reference
    for i in range(self.e_layers):
      h = norm(TimesBlock(self.d_model, self.d_ff, self.top_k, self.num_kernels,
                          name=f"block_{i}")(h))  # [B, L + H, D]
    out = Linear(self.enc_in, name="projection")(h)  # [B, L + H, C]

    hidden = jnp.swapaxes(out, 1, 2)[:, :, -self.d_model:]  # [B, C, d_model]
    pred = (out * std + mean)[:, -self.pred_len:]  # [B, H, C]
    return pred, {"hidden": hidden}
