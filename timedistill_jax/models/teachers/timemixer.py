"""TimeMixer teacher.

Paper: S. Wang, H. Wu, X. Shi, T. Hu, H. Luo, L. Ma, J. Y. Zhang, J. Zhou, "TimeMixer:
Decomposable Multiscale Mixing for Time Series Forecasting", ICLR 2024 (arXiv 2405.14616).
Reference implementation followed: thuml/Time-Series-Library ``models/TimeMixer.py`` (with
``layers/Embed.py`` ``DataEmbedding_wo_pos``, ``layers/StandardNorm.py`` and
``layers/Autoformer_EncDec.py`` ``series_decomp``), as copied into LingFengGold/TimeDistill,
whose version also returns the features.

Forward pass for ``x: [B, L, C]``, ``x_mark: [B, L, F]``, with K = ``down_sampling_layers``,
w = ``down_sampling_window`` and T_i = L // w**i:

1. multi-scale inputs: scale i + 1 average-pools scale i over windows of w (K + 1 scales); the
   calendar features of scale i are every w**i-th row;
2. each scale is normalised by its own RevIN (mean/std over time and a learnable affine per
   channel; skipped when ``use_norm`` is off);
3. embedding, shared by the scales: ``channel_independence=1`` makes every channel a series of its
   own (``[B * C, T_i, 1]``) embedded by a circular kernel-3 ``Conv1d(1 -> d_model)``; ``0`` first
   splits each scale into seasonal and trend parts and embeds the seasonal part with
   ``Conv1d(C -> d_model)``; plus ``Linear(F -> d_model, no bias)`` of the calendar features,
   then dropout;
4. ``e_layers`` Past-Decomposable-Mixing blocks: every scale is split by a moving average into
   seasonal and trend parts; seasonal parts are mixed bottom-up (fine -> coarse, an MLP over time
   T_i -> T_{i+1} added to the coarser scale), trend parts top-down (coarse -> fine); their sum
   goes through an MLP over ``d_model`` (channel-independent: with a residual to the block input;
   channel-mixing: an MLP ``d_model -> d_ff -> d_model`` is applied before the mixing instead);
5. Future-Multipredictor-Mixing: per scale, ``Linear(T_i -> H)`` over time and a projection of
   ``d_model`` to the channel(s) (channel-mixing adds a linear forecast of the trend part); the
   scales' forecasts are summed and de-normalised with scale 0's statistics.

``features["hidden"]`` is the summed forecast before de-normalisation, ``[B, C, H]``: the
reference's ``features[-1].permute(0, 2, 1)`` (feature_dim = pred_len).

Differences from the reference:

* Only ``decomp_method='moving_avg'`` (the reference's ``dft_decomp`` zeroes the frequencies of
  the first batch row only, ``freq[0] = 0``; no TimeDistill setting uses it) and
  ``down_sampling_method`` 'avg' or 'max' (not 'conv').
* The per-block ``layer_norm`` (and, with ``channel_independence=0``, ``out_cross_layer``) that
  the reference builds but never calls are not built; ``convert.py`` drops their keys.
* Kept for fidelity: with ``channel_independence=1`` the reference tiles the calendar features
  with ``x_mark.repeat(C, 1, 1)`` while the series are laid out channel-minor (row b * C + c), so
  row r gets the calendar features of sample r mod B, not of its own sample. We do the same, so
  a trained reference checkpoint gives the same forecasts here.
* Calendar features are cut to each scale's length T_i (the reference fails when w**K does not
  divide L).
"""

import jax.numpy as jnp
import flax.linen as nn

from timedistill_jax.errors import ConfigError, unknown_name
from timedistill_jax.models import register
from timedistill_jax.models.base import ForecastModel
from timedistill_jax.models.layers.decomposition import series_decomp
from timedistill_jax.models.layers.embedding import DataEmbedding
from timedistill_jax.models.layers.linear import Linear
from timedistill_jax.models.layers.multiscale import POOLS, multi_scale
from timedistill_jax.models.layers.normalization import RevIN

DECOMP_METHODS = ("moving_avg",)
_gelu = lambda x: nn.gelu(x, approximate=False)


class _MLP(nn.Module):
  """``Linear(-> hidden) -> GELU -> Linear(-> out)`` over the last axis."""

  hidden: int
  out: int

  @nn.compact
  def __call__(self, x):
    return Linear(self.out, name="fc2")(_gelu(Linear(self.hidden, name="fc1")(x)))


def _over_time(fn, x):
  """Applies ``fn`` to the time axis of ``x: [B, T, D]`` (as the reference's permutes)."""
  return jnp.swapaxes(fn(jnp.swapaxes(x, 1, 2)), 1, 2)


class PastDecomposableMixing(nn.Module):
  """``[B', T_i, D]`` per scale -> the same shapes; see the module docstring, step 4."""

  d_model: int
  d_ff: int
  moving_avg: int
  channel_independence: bool

  @nn.compact
  def __call__(self, xs):
    lengths = [x.shape[1] for x in xs]
    seasons, trends = [], []
    cross = None if self.channel_independence else _MLP(self.d_ff, self.d_model, name="cross")
    for x in xs:
      season, trend = series_decomp(x, self.moving_avg)
      if cross is not None:
        season, trend = cross(season), cross(trend)
      seasons.append(season)
      trends.append(trend)

    # Bottom-up: the finer scale's seasonal part, mapped to the coarser length, is added.
    mixed_seasons = [seasons[0]]
    for i in range(len(xs) - 1):
      down = _MLP(lengths[i + 1], lengths[i + 1], name=f"season_{i}")
      mixed_seasons.append(seasons[i + 1] + _over_time(down, mixed_seasons[-1]))
    # Top-down: the coarser scale's trend, mapped to the finer length, is added. Module i maps
    # the (i + 1)-th coarsest scale, as the reference's ``reversed(range(K))`` list.
    mixed_trends = [trends[-1]]
    for i in range(len(xs) - 1):
      fine = len(xs) - 2 - i
      up = _MLP(lengths[fine], lengths[fine], name=f"trend_{i}")
      mixed_trends.append(trends[fine] + _over_time(up, mixed_trends[-1]))
    mixed_trends.reverse()

    # Channel-mixing blocks have no residual and no output MLP, as the reference.
    out_cross = (_MLP(self.d_ff, self.d_model, name="out_cross") if self.channel_independence
                 else None)
    out = []
    for x, season, trend in zip(xs, mixed_seasons, mixed_trends):
      y = season + trend
      out.append(x + out_cross(y) if out_cross is not None else y)
    return out


@register("timemixer")
class TimeMixer(ForecastModel):
  """TimeMixer: decomposable multi-scale mixing. See the module docstring."""

  d_model: int = 16
  d_ff: int = 32
  e_layers: int = 2
  dropout: float = 0.1
  moving_avg: int = 25
  down_sampling_layers: int = 3
  down_sampling_window: int = 2
  down_sampling_method: str = "avg"
  channel_independence: int = 1
  decomp_method: str = "moving_avg"
  use_norm: int = 1

  @property
  def feature_dim(self) -> int:
    return self.pred_len

  def _check(self):
    if self.decomp_method not in DECOMP_METHODS:
      raise unknown_name("decomp_method", self.decomp_method, DECOMP_METHODS)
    if self.down_sampling_method not in POOLS:
      raise unknown_name("down_sampling_method", self.down_sampling_method, POOLS)
    if self.down_sampling_layers < 1:
      raise ConfigError("TimeMixer needs down_sampling_layers >= 1 (its mixing pairs scales).")
    if self.moving_avg % 2 == 0:
      raise ConfigError(f"moving_avg={self.moving_avg} must be odd to keep the length.")
    coarsest = self.seq_len // self.down_sampling_window ** self.down_sampling_layers
    if coarsest < 1:
      raise ConfigError(
          f"seq_len={self.seq_len} is too short for {self.down_sampling_layers} down-samplings "
          f"by {self.down_sampling_window}.")

  @nn.compact
  def __call__(self, x, x_mark=None, y_mark=None, *, train: bool = False, mask=None):
    """``x: [B, L, C]``, ``x_mark: [B, L, F]`` -> ``(pred [B, H, C], {"hidden": [B, C, H]})``.

    ``y_mark`` is unused (no decoder) and ``mask`` too (no batch statistics).
    """
    del y_mark, mask
    self._check()
    x = x.astype(jnp.float32)
    b, _, c = x.shape
    xs, marks = multi_scale(x, x_mark, self.down_sampling_window, self.down_sampling_layers,
                            self.down_sampling_method)

    norms = [RevIN(c, affine=True, name=f"normalize_{i}") for i in range(len(xs))]
    stats = None
    for i in range(len(xs)):
      if self.use_norm:
        xs[i], scale_stats = norms[i].norm(xs[i])
        stats = scale_stats if i == 0 else stats
      if marks[i] is not None:
        marks[i] = marks[i][:, :xs[i].shape[1]].astype(x.dtype)

    # One embedding for every scale; F = 0 adds no calendar part (DataEmbedding skips it).
    embedding = DataEmbedding(self.d_model, self.dropout, with_pos=False, name="enc_embedding")
    trends = None
    if self.channel_independence:
      # [B, T_i, C] -> [B*C, T_i, 1], row b * C + c; calendar rows tiled as the reference.
      inputs = [jnp.swapaxes(s, 1, 2).reshape(b * c, s.shape[1], 1) for s in xs]
      marks = [None if m is None else jnp.tile(m, (c, 1, 1)) for m in marks]
    else:
      inputs, trends = zip(*(series_decomp(s, self.moving_avg) for s in xs))
    enc = [embedding(s, m, train=train) for s, m in zip(inputs, marks)]  # [B', T_i, D] each

    for layer in range(self.e_layers):
      enc = PastDecomposableMixing(self.d_model, self.d_ff, self.moving_avg,
                                   bool(self.channel_independence), name=f"pdm_{layer}")(enc)

    projection = Linear(1 if self.channel_independence else c, name="projection")
    dec = 0.0
    for i, e in enumerate(enc):
      y = projection(_over_time(Linear(self.pred_len, name=f"predict_{i}"), e))  # [B', H, *]
      if self.channel_independence:
        y = jnp.swapaxes(y.reshape(b, c, self.pred_len), 1, 2)  # [B, H, C]
      else:
        res = Linear(trends[i].shape[1], name=f"out_res_{i}")(jnp.swapaxes(trends[i], 1, 2))
        y = y + jnp.swapaxes(Linear(self.pred_len, name=f"regression_{i}")(res), 1, 2)
      dec = dec + y  # [B, H, C]

    hidden = jnp.swapaxes(dec, 1, 2)  # [B, C, H]
    pred = norms[0].denorm(dec, stats) if self.use_norm else dec
    return pred, {"hidden": hidden}
