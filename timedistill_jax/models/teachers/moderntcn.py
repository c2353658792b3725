"""ModernTCN teacher (TimeDistill's default teacher).

Paper: D. Luo, X. Wang, "ModernTCN: A Modern Pure Convolution Structure for General Time Series
Analysis", ICLR 2024.
Reference implementation followed: LingFengGold/TimeDistill ``models/ModernTCN.py`` (with
``models/ModernTCN_Layer.py`` ``Flatten_Head`` and ``layers/RevIN.py``), run with the TimeDistill
settings: one stage, no decomposition, no multi-scale fusion, RevIN without affine.

Forward pass for ``x: [B, L, M]`` (M = channels, D = ``dims``, N = L // patch_stride patches):

1. RevIN: subtract the mean over time, divide by sqrt(biased var + 1e-5) (affine only if asked);
2. stem: the series of each channel is end-padded with ``patch_size - patch_stride`` copies of its
   last step, cut into N patches of ``patch_size`` every ``patch_stride`` steps and embedded by
   ``Conv1d(1 -> D, patch_size, stride)`` (a Linear per patch) and BatchNorm(D): ``[B, M, N, D]``;
3. ``num_blocks`` blocks, each with a residual around:
   a. a depth-wise convolution over patches for every (channel, feature) pair with a large kernel
      (``large_size``) plus a small one (``small_size``), each followed by its own BatchNorm over
      the M * D series, summed (structural re-parameterisation: :func:`merge_small_kernels` folds
      both BatchNorms and the small kernel into one large kernel with a bias for inference);
   b. BatchNorm(D);
   c. ConvFFN1, per channel: grouped 1x1 convolutions D -> D * ffn_ratio -> D (groups = M), GELU;
   d. ConvFFN2, across channels: grouped 1x1 convolutions M -> M * ffn_ratio -> M for every
      feature (groups = D), GELU; dropout after each 1x1 convolution;
4. flatten head: ``[B, M, D, N]`` flattened to ``[B, M, D * N]``, ``Linear(D * N -> H)``, head
   dropout; RevIN de-normalisation.

``features["hidden"]`` is the backbone output before the head, ``[B, M, D, N]`` flattened per
channel to ``[B, M, D * N]`` (11520 = 64 * 180 at L = 720): the reference's
``Flatten(start_dim=-2)(features[-2])``.

Differences from the reference:

* One stage only (every TimeDistill setting has ``num_blocks`` of length 1), so ``dims``,
  ``num_blocks``, ``large_size`` and ``small_size`` are integers, not per-stage lists; the
  reference's unused modules (the down-sampling layers of stages 2-4, the time-feature patch
  embedding ``te_patch``, the multi-scale ``lat_layer`` / ``smooth_layer`` / ``up_sample_conv``) are
  not built. They hold parameters in the reference's count (``convert.py`` drops their keys).
* No series decomposition branch (``decomposition=0`` in every TimeDistill script) and no
  ``individual`` head.
* Layout ``[M, B, N, D]`` inside the blocks (channel-major, so ConvFFN1 is a batched matmul and
  ConvFFN2 a short fused sum, with no transposes; the head reads it as one matmul); the grouped 1x1
  convolutions are einsums or fused sums and the depth-wise convolutions sums of shifted copies
  with an FFT-based kernel gradient (``layers/conv.py``): the same numbers up to float error,
  several times faster than XLA's grouped convolutions on a CPU.
* Dropout masks come from ``layers/dropout.py`` (half the Threefry work of ``nn.Dropout``): the
  same keep probability, another random stream.
* BatchNorm (``layers/batchnorm.py``) keeps padded rows out of its statistics; its running
  variance is PyTorch's (unbiased).
"""

import flax
import jax.numpy as jnp
import flax.linen as nn

from timedistill_jax.errors import ConfigError
from timedistill_jax.models import register
from timedistill_jax.models.base import ForecastModel
from timedistill_jax.models.layers.batchnorm import BatchNorm
from timedistill_jax.models.layers.conv import DepthwiseConv1d, GroupedPointwise
from timedistill_jax.models.layers.dropout import Dropout
from timedistill_jax.models.layers.linear import Linear, torch_uniform
from timedistill_jax.models.layers.normalization import RevIN
from timedistill_jax.models.layers.patching import patch_series

BN_EPS = 1e-5
_gelu = lambda x: nn.gelu(x, approximate=False)


def _batch_norm(x, *, train, mask, axis_name, name, axis=-1):
  """PyTorch-style BatchNorm of ``x: [M, B, N, D]`` over ``axis`` (D, or M and D for the M * D
  series); padded rows (mask 0) stay out of the statistics."""
  bn_mask = None if mask is None else mask.reshape(1, -1, 1, 1)
  return BatchNorm(use_running_average=not train, axis=axis, momentum=0.9, epsilon=BN_EPS,
                   axis_name=axis_name, name=name)(x, mask=bn_mask)


class Block(nn.Module):
  """One ModernTCN block on ``[M, B, N, D]``; see the module docstring, step 3."""

  large_size: int
  small_size: int
  ffn_ratio: int
  dropout: float
  small_kernel_merged: bool = False
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x, *, train: bool, mask=None):
    m, _, _, d = x.shape
    bn = lambda h, name, axis=-1: _batch_norm(h, train=train, mask=mask,
                                              axis_name=self.bn_axis_name, name=name, axis=axis)
    drop = Dropout(self.dropout, deterministic=not train)
    # The M * D series (index m * D + d, as the reference) run along N.
    conv = lambda size, bias, name: DepthwiseConv1d(size, bias, time_axis=2, channel_axes=(0, 3),
                                                    name=name)(x)
    if self.small_kernel_merged:
      h = conv(self.large_size, True, "merged_conv")
    else:
      h = bn(conv(self.large_size, False, "large_conv"), "large_bn", (0, 3))
      h = h + bn(conv(self.small_size, False, "small_conv"), "small_bn", (0, 3))
    h = bn(h, "norm")  # [M, B, N, D]

    # ConvFFN1 mixes the features of one channel; ConvFFN2 mixes the channels of one feature.
    pw1 = lambda out, name: GroupedPointwise(out, group_axis=0, feature_axis=-1, name=name)
    pw2 = lambda out, name: GroupedPointwise(out, group_axis=-1, feature_axis=0, name=name)
    h = _gelu(drop(pw1(d * self.ffn_ratio, "ffn1_pw1")(h)))  # [M, B, N, D*r]
    h = drop(pw1(d, "ffn1_pw2")(h))  # [M, B, N, D]
    h = _gelu(drop(pw2(m * self.ffn_ratio, "ffn2_pw1")(h)))  # [M*r, B, N, D]
    h = drop(pw2(m, "ffn2_pw2")(h))  # [M, B, N, D]
    return x + h


class Head(nn.Module):
  """``Linear(D * N -> H)`` of the flattened ``[B, M, D, N]`` backbone, read from ``[M, B, N, D]``
  as one ``[M*B, N*D] x [N*D, H]`` matmul: the kernel rows are permuted to N-major (1.1M numbers)
  instead of the activations transposed (2.6M; XLA fused that transpose with the block's last
  ops into a 10x slower loop)."""

  features: int

  @nn.compact
  def __call__(self, h):
    m, b, n, d = h.shape
    fan_in = d * n
    kernel = self.param("kernel", torch_uniform(fan_in), (fan_in, self.features))  # rows d * N + n
    bias = self.param("bias", torch_uniform(fan_in), (self.features,))
    kernel = jnp.swapaxes(kernel.reshape(d, n, -1), 0, 1).reshape(n * d, -1).astype(h.dtype)
    out = jnp.dot(h.reshape(m * b, n * d), kernel) + bias.astype(h.dtype)  # [M*B, H]
    return jnp.swapaxes(out.reshape(m, b, -1), 0, 1)  # [B, M, H]


@register("moderntcn")
class ModernTCN(ForecastModel):
  """ModernTCN with one stage. See the module docstring."""

  patch_size: int = 8
  patch_stride: int = 4
  dims: int = 64
  ffn_ratio: int = 1
  num_blocks: int = 1
  large_size: int = 51
  small_size: int = 5
  dropout: float = 0.1
  head_dropout: float = 0.0
  revin: bool = True
  affine: bool = False
  small_kernel_merged: bool = False
  bn_axis_name: str | None = None

  @property
  def num_patches(self) -> int:
    return self.seq_len // self.patch_stride

  @property
  def feature_dim(self) -> int:
    return self.dims * self.num_patches

  def _check(self):
    if self.patch_stride > self.patch_size:
      raise ConfigError(f"patch_stride={self.patch_stride} exceeds patch_size={self.patch_size}; "
                        "patches would skip steps.")
    for field in ("large_size", "small_size"):
      if getattr(self, field) % 2 == 0:
        raise ConfigError(f"{field}={getattr(self, field)} must be odd to keep the length.")
    if self.small_size > self.large_size:
      raise ConfigError(f"small_size={self.small_size} exceeds large_size={self.large_size}.")
    if self.num_patches < 1:
      raise ConfigError(f"seq_len={self.seq_len} is shorter than patch_stride={self.patch_stride}.")

  @nn.compact
  def __call__(self, x, x_mark=None, y_mark=None, *, train: bool = False, mask=None):
    """``x: [B, L, M]`` -> ``(pred [B, H, M], {"hidden": [B, M, dims * N]})``.

    ``x_mark`` / ``y_mark`` are unused (the reference's time-feature branch is off).
    """
    del x_mark, y_mark
    self._check()
    x = x.astype(jnp.float32)
    norm = RevIN(self.enc_in, affine=self.affine, name="revin")
    if self.revin:
      x, stats = norm.norm(x)

    patches = patch_series(jnp.transpose(x, (2, 0, 1)), self.patch_size, self.patch_stride,
                           pad=self.patch_size - self.patch_stride)  # [M, B, N, P]
    h = Linear(self.dims, name="stem")(patches)  # [M, B, N, D]
    h = _batch_norm(h, train=train, mask=mask, axis_name=self.bn_axis_name,
                    name="stem_bn")
    for i in range(self.num_blocks):
      block = Block(self.large_size, self.small_size, self.ffn_ratio, self.dropout,
                    self.small_kernel_merged, self.bn_axis_name, name=f"block_{i}")
      h = block(h, train=train, mask=mask)

    m, b, n, d = h.shape
    hidden = jnp.transpose(h, (1, 0, 3, 2)).reshape(b, m, d * n)  # [B, M, D*N], D-major
    out = Head(self.pred_len, name="head")(h)  # [B, M, H]
    out = Dropout(self.head_dropout, deterministic=not train)(out)
    pred = jnp.swapaxes(out, 1, 2)  # [B, H, M]
    if self.revin:
      pred = norm.denorm(pred, stats)
    return pred, {"hidden": hidden}


def _fuse(kernel, bn_params, bn_stats):
  """Folds an inference BatchNorm into the bias-free depth-wise conv before it."""
  t = bn_params["scale"] / jnp.sqrt(bn_stats["var"] + BN_EPS)  # [C]
  return kernel * t, bn_params["bias"] - bn_stats["mean"] * t


def merge_small_kernels(variables, large_size: int, small_size: int):
  """Structural re-parameterisation: variables of a two-branch ModernTCN -> variables of the same
  model built with ``small_kernel_merged=True``, equal to it in eval mode.

  Per block, ``BN_l(conv_K(x)) + BN_s(conv_k(x))`` becomes one ``conv_K(x) + bias`` whose kernel is
  the BN-scaled large kernel plus the BN-scaled small kernel zero-padded to K taps (centred).
  """
  params = flax.core.unfreeze(variables["params"])
  stats = flax.core.unfreeze(variables["batch_stats"])
  pad = (large_size - small_size) // 2
  for name in [k for k in params if k.startswith("block_")]:
    block, block_stats = params[name], stats[name]
    large_k, large_b = _fuse(block.pop("large_conv")["kernel"], block.pop("large_bn"),
                             block_stats.pop("large_bn"))
    small_k, small_b = _fuse(block.pop("small_conv")["kernel"], block.pop("small_bn"),
                             block_stats.pop("small_bn"))
    small_k = jnp.pad(small_k, ((pad, pad), (0, 0), (0, 0)))  # kernel [k, 1, C] -> [K, 1, C]
    block["merged_conv"] = {"kernel": large_k + small_k, "bias": large_b + small_b}
  return {**variables, "params": params, "batch_stats": stats}
