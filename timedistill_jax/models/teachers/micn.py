"""MICN teacher.

Paper: H. Wang, J. Peng, F. Huang, J. Wang, J. Chen, Y. Xiao, "MICN: Multi-scale Isometric
Convolution Network for Long-term Time Series Forecasting", ICLR 2023.
Reference implementation followed: thuml/Time-Series-Library ``models/MICN.py`` (with
``layers/Autoformer_EncDec.py`` and ``layers/Embed.py``), as copied into
LingFengGold/TimeDistill, whose version also returns the features TimeDistill distils.

Forward pass for ``x: [B, L, C]``:

1. multi-scale decomposition: the mean over the decomposition kernels (``conv_kernel`` made
   odd) of ``series_decomp``: seasonal and trend ``[B, L, C]``;
2. trend: ``Linear(L -> H)`` over time, weights initialised to 1 / H (as DLinear);
3. seasonal: the L seasonal steps then H zeros, embedded by value + positions (no time
   features: the reference passes ``None``), ``d_layers`` MIC layers
   (``layers/multiscale_conv.py``), ``Linear(D -> C)``: ``[B, L + H, C]``;
4. prediction: last H steps of the seasonal output plus the trend.

``features["hidden"]``: the seasonal output ``[B, L + H, C]`` transposed, last ``d_model``
steps: the reference's ``features[-2].permute(0, 2, 1)[:, :, -d_model:]``,
``[B, C, min(d_model, L + H)]`` (= d_model in every TimeDistill setting).

Differences from the reference:

* The reference's hard-coded ``torch.device('cuda:0')`` is gone; the model runs anywhere.
* Settings the reference accepts but MICN never reads (``e_layers``, ``d_ff``, ``n_heads``,
  ``label_len``, ``x_mark``/``y_mark``) are not fields here (``label_len`` stays as a data-given
  field). ``c_out`` is ``enc_in``; no other task heads.
"""

import jax.numpy as jnp
import flax.linen as nn

from timedistill_jax.models import register
from timedistill_jax.models.base import ForecastModel
from timedistill_jax.models.layers.decomposition import series_decomp
from timedistill_jax.models.layers.embedding import DataEmbedding
from timedistill_jax.models.layers.linear import Linear, torch_uniform
from timedistill_jax.models.layers.multiscale_conv import MIC, micn_kernels


@register("micn")
class MICN(ForecastModel):
  """MICN: multi-scale isometric convolutions. See the module docstring."""

  d_model: int = 512
  d_layers: int = 1
  conv_kernel: tuple = (12, 16)
  dropout: float = 0.1

  @property
  def feature_dim(self) -> int:
    # The reference slices the last d_model steps of L + H; fewer exist when L + H < d_model.
    return min(self.d_model, self.seq_len + self.pred_len)

  @nn.compact
  def __call__(self, x, x_mark=None, y_mark=None, *, train: bool = False, mask=None):
    """``x: [B, L, C]`` -> ``(pred [B, H, C], {"hidden": [B, C, d_model]})``.

    ``x_mark``, ``y_mark`` and ``mask`` are unused, as in the reference.
    """
    del x_mark, y_mark, mask
    conv_kernel = tuple(self.conv_kernel)
    decomp_kernel, isometric_kernel = micn_kernels(self.seq_len, self.pred_len, conv_kernel)
    x = x.astype(jnp.float32)
    parts = [series_decomp(x, k) for k in decomp_kernel]
    seasonal = sum(p[0] for p in parts) / len(parts)  # [B, L, C]
    trend = sum(p[1] for p in parts) / len(parts)

    ones = lambda key, shape, dtype=jnp.float32: jnp.full(shape, 1.0 / self.pred_len, dtype)
    reg_kernel = self.param("regression_kernel", ones, (self.seq_len, self.pred_len))
    reg_bias = self.param("regression_bias", torch_uniform(self.seq_len), (self.pred_len,))
    trend = jnp.einsum("blc,lh->bhc", trend, reg_kernel) + reg_bias[None, :, None]  # [B, H, C]

    dec = jnp.pad(seasonal, ((0, 0), (0, self.pred_len), (0, 0)))  # [B, L + H, C]
    h = DataEmbedding(self.d_model, self.dropout, name="dec_embedding")(dec, None, train=train)
    for i in range(self.d_layers):
      h = MIC(self.d_model, conv_kernel, decomp_kernel, isometric_kernel, name=f"mic_{i}")(
          h, train=train)
    out = Linear(self.enc_in, name="projection")(h)  # [B, L + H, C]

    hidden = jnp.swapaxes(out, 1, 2)[:, :, -self.d_model:]  # [B, C, d_model]
    pred = out[:, -self.pred_len:] + trend  # [B, H, C]
    return pred, {"hidden": hidden}
