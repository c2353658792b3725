"""The TimeDistill student: a channel-independent two-layer MLP, with or without decomposition.

Follows the reference code, not only the paper's prose (docs/method.md, "Student"):
``models/DMLP.py`` and ``models/MLP.py`` of LingFengGold/TimeDistill.

Forward pass for ``x: [B, L, C]``:

1. instance normalisation: ``non-stationary`` subtracts the per-sample, per-channel mean over time
   (no division by the std), ``revin`` is RevIN, ``none`` skips it;
2. ``decomposition=True`` (DMLP): moving average (kernel 25, edge replication) -> trend and
   seasonal parts; ``False`` (plain MLP): one branch on the whole series;
3. per branch, on ``[B, C, L]``: Linear(L -> D) -> BatchNorm over (batch, hidden) per channel ->
   ReLU -> Linear(D -> H);
4. the branches are summed, transposed to ``[B, H, C]`` and de-normalised.

``features["hidden"]`` is the sum of the branches' first-Linear outputs, before BatchNorm: the
tensor the reference distils into (``features[-2]``).

Differences from the reference:

* The moving average is one ``lax.reduce_window`` sum over the edge-padded series
  (``layers/decomposition.py``), not ``AvgPool1d``: the same values to float32 rounding.
* BatchNorm (``layers/batchnorm.py``) keeps padded rows out of its statistics and adds them
  over devices exactly; its running variance is PyTorch's (unbiased).
* No ``.to('cuda')`` in the model: it runs on CPU, GPU and TPU.
"""

import jax.numpy as jnp
import flax.linen as nn

from timedistill_jax.errors import ConfigError, unknown_name
from timedistill_jax.models import register
from timedistill_jax.models.base import ForecastModel
from timedistill_jax.models.layers.batchnorm import BatchNorm
from timedistill_jax.models.layers.decomposition import series_decomp
from timedistill_jax.models.layers.linear import Linear
from timedistill_jax.models.layers.normalization import NORMS, RevIN, instance_stats


class _Branch(nn.Module):
  """Linear(L -> D) -> BatchNorm(C over batch and hidden) -> ReLU -> Linear(D -> H)."""

  d_model: int
  pred_len: int
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x, *, train: bool, mask=None):  # x: [B, C, L]
    hidden = Linear(self.d_model, name="fc1")(x)  # [B, C, D]
    bn_mask = None if mask is None else mask[:, None, None]
    # BatchNorm1d(C) on [B, C, D]: one mean/var per channel over batch and hidden units.
    h = BatchNorm(use_running_average=not train, axis=1, momentum=0.9, epsilon=1e-5,
                  axis_name=self.bn_axis_name, name="bn")(hidden, mask=bn_mask)
    out = Linear(self.pred_len, name="fc2")(nn.relu(h))  # [B, C, H]
    return out, hidden


class MLPStudent(ForecastModel):
  """DMLP (``decomposition=True``) or plain MLP student. See the module docstring."""

  d_model: int = 512
  norm: str = "non-stationary"
  decomposition: bool = True
  moving_avg: int = 25
  bn_axis_name: str | None = None

  @property
  def feature_dim(self) -> int:
    return self.d_model

  def setup(self):
    if self.norm not in NORMS:
      raise unknown_name("norm", self.norm, NORMS)
    if self.decomposition and self.moving_avg % 2 == 0:
      raise ConfigError(
          f"moving_avg must be odd to keep the series length, got {self.moving_avg}; "
          "use e.g. 25 (the reference default).")
    # The reference always builds RevIN, so its affine parameters count towards the model's
    # size (and appear in its checkpoints) even when another norm is used.
    self.revin = RevIN(self.enc_in)
    branch = lambda name: _Branch(self.d_model, self.pred_len, self.bn_axis_name, name=name)
    if self.decomposition:
      self.seasonal = branch("seasonal")
      self.trend = branch("trend")
    else:
      self.branch = branch("branch")

  def __call__(self, x, x_mark=None, y_mark=None, *, train: bool = False, mask=None):
    """``x: [B, L, C]`` -> ``(pred [B, H, C], {"hidden": [B, C, D]})``.

    ``mask: [B]`` (1 real, 0 padding) keeps padded rows out of the BatchNorm statistics, so a
    padded last batch trains exactly like the smaller batch it stands for.
    """
    del x_mark, y_mark  # the student ignores calendar features, as in the reference
    x = x.astype(jnp.float32)
    stats = None
    if self.norm == "non-stationary":
      mean, _ = instance_stats(x)
      x = x - mean
    elif self.norm == "revin":
      x, stats = self.revin.norm(x)
    if self.norm != "revin" and self.is_initializing():
      self.revin.norm(x)  # creates the (unused) affine parameters, as the reference has them

    if self.decomposition:
      seasonal, trend = series_decomp(x, self.moving_avg)
      out_s, hid_s = self.seasonal(jnp.swapaxes(seasonal, 1, 2), train=train, mask=mask)
      out_t, hid_t = self.trend(jnp.swapaxes(trend, 1, 2), train=train, mask=mask)
      out, hidden = out_s + out_t, hid_s + hid_t
    else:
      out, hidden = self.branch(jnp.swapaxes(x, 1, 2), train=train, mask=mask)

    pred = jnp.swapaxes(out, 1, 2)  # [B, H, C]
    if self.norm == "non-stationary":
      pred = pred + mean
    elif self.norm == "revin":
      pred = self.revin.denorm(pred, stats)
    return pred, {"hidden": hidden}


@register("dmlp")
class DMLP(MLPStudent):
  """The paper's student: decomposed two-branch MLP."""

  decomposition: bool = True


@register("mlp")
class MLP(MLPStudent):
  """Plain one-branch MLP (the reference's ``models/MLP.py``)."""

  decomposition: bool = False
