"""ModernTCN, PatchTST and TimeMixer: parameter counts, feature widths and their new layers."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from timedistill_jax import models
from timedistill_jax.models.layers.conv import DepthwiseConv1d, GroupedPointwise
from timedistill_jax.models.layers.multiscale import multi_scale, pool_time
from timedistill_jax.models.layers.patching import patch_series
from timedistill_jax.models.teachers.moderntcn import ModernTCN, merge_small_kernels

ETTH1 = {  # PAPER.md s.9 / configs/common.py, at L = 720, C = 7, F = 4 calendar features
    "moderntcn": dict(ffn_ratio=1, num_blocks=1, dropout=0.3),
    "patchtst": dict(e_layers=1, n_heads=16, d_model=512, d_ff=2048),
    "timemixer": dict(e_layers=2, d_model=16, d_ff=32, down_sampling_layers=3),
}


def _shapes(name, pred_len, seq_len=720, enc_in=7, **overrides):
  model = models.get_model_class(name)(seq_len=seq_len, label_len=48, pred_len=pred_len,
                                       enc_in=enc_in, **{**ETTH1[name], **overrides})
  x, x_mark = jnp.zeros((2, seq_len, enc_in)), jnp.zeros((2, seq_len, 4))
  variables = jax.eval_shape(model.init, jax.random.key(0), x, x_mark)
  out = jax.eval_shape(model.apply, variables, x, x_mark)
  return model, variables, out


# sum(p.numel()) of the TimeDistill reference models, measured with torch 2.13. ModernTCN's
# reference holds 50,532 parameters in modules its forward pass never calls (stage 2-4
# down-sampling 3 * 8,384, te_patch 484, lat 4,160, smooth 12,352, up-sampling 8,384) and
# TimeMixer's two unused per-block LayerNorms hold 2 * 32; we do not build those.
@pytest.mark.parametrize("name, pred_len, ours, reference", [
    ("moderntcn", 96, 1_199_136, 1_249_668),
    ("moderntcn", 336, 3_964_176, 4_014_708),
    ("patchtst", 96, 7_585_376, 7_585_376),
    ("patchtst", 336, 18_644_816, 18_644_816),
    ("timemixer", 96, 3_201_673, 3_201_737),
    ("timemixer", 336, 3_526_633, 3_526_697),
])
def test_etth1_parameter_count(name, pred_len, ours, reference):
  _, variables, _ = _shapes(name, pred_len)
  assert models.count_params(variables) == ours
  unused = {"moderntcn": 50_532, "patchtst": 0, "timemixer": 64}[name]
  assert ours + unused == reference


@pytest.mark.parametrize("name, width", [
    ("moderntcn", 64 * 180),  # dims * L / patch_stride = 11520
    ("patchtst", 512 * 90),  # d_model * int((720 - 16) / 8 + 2)
    ("timemixer", 96),  # the horizon
])
def test_feature_width_at_l720(name, width):
  model, _, (pred, features) = _shapes(name, 96)
  assert model.feature_dim == width
  assert pred.shape == (2, 96, 7) and features["hidden"].shape == (2, 7, width)


def test_patch_series_matches_numpy():
  x = np.arange(10, dtype=np.float32).reshape(1, 10)
  got = np.asarray(patch_series(jnp.asarray(x), patch_len=4, stride=2, pad=2))
  padded = np.concatenate([x[0], [9.0, 9.0]])  # the last step repeated, as ReplicationPad1d
  expected = np.stack([padded[s:s + 4] for s in range(0, 9, 2)])  # 5 patches
  np.testing.assert_array_equal(got[0], expected)
  assert expected[-1].tolist() == [8.0, 9.0, 9.0, 9.0]


def test_pool_time_and_multi_scale():
  x = np.arange(14, dtype=np.float32).reshape(1, 7, 2)  # odd length: the last step is dropped
  np.testing.assert_allclose(pool_time(jnp.asarray(x), 2)[0], [[1, 2], [5, 6], [9, 10]])
  np.testing.assert_allclose(pool_time(jnp.asarray(x), 2, "max")[0], [[2, 3], [6, 7], [10, 11]])
  series = jnp.arange(8.0).reshape(1, 8, 1)
  marks = jnp.arange(8.0).reshape(1, 8, 1) * 10
  xs, ms = multi_scale(series, marks, window=2, layers=2)
  np.testing.assert_allclose(xs[1][0, :, 0], [0.5, 2.5, 4.5, 6.5])
  np.testing.assert_allclose(xs[2][0, :, 0], [1.5, 5.5])
  np.testing.assert_allclose(ms[2][0, :, 0], [0, 40])  # every 4th calendar row


def test_grouped_pointwise_matches_grouped_conv():
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, 5, 3, 4)).astype(np.float32)  # [B, N, G=3, in_g=4]
  layer = GroupedPointwise(out_per_group=2)
  variables = layer.init(jax.random.key(0), x)
  kernel = np.asarray(variables["params"]["kernel"])  # [in_g, G * out_g]
  bias = np.asarray(variables["params"]["bias"])
  expected = np.stack([x[..., g, :] @ kernel[:, 2 * g:2 * g + 2] + bias[2 * g:2 * g + 2]
                       for g in range(3)], axis=-2)
  np.testing.assert_allclose(layer.apply(variables, x), expected, rtol=1e-5, atol=1e-6)


def test_depthwise_conv_matches_numpy():
  rng = np.random.default_rng(2)
  x = rng.standard_normal((2, 11, 3)).astype(np.float32)  # [B, T, C]
  layer = DepthwiseConv1d(kernel_size=5)
  variables = layer.init(jax.random.key(0), x)
  kernel = np.asarray(variables["params"]["kernel"])[:, 0]  # [k, C]
  bias = np.asarray(variables["params"]["bias"])
  padded = np.pad(x, ((0, 0), (2, 2), (0, 0)))  # PyTorch's padding = k // 2, zeros
  expected = np.stack([np.einsum("btc,tc->bc", padded[:, t:t + 5], kernel) for t in range(11)],
                      axis=1) + bias
  np.testing.assert_allclose(layer.apply(variables, x), expected, rtol=1e-5, atol=1e-5)


def test_merged_kernel_equals_two_branches():
  kw = dict(seq_len=32, label_len=8, pred_len=8, enc_in=3, dims=8, ffn_ratio=2, num_blocks=2,
            large_size=9, small_size=3)
  rng = np.random.default_rng(1)
  x = jnp.asarray(3 + 2 * rng.standard_normal((2, 32, 3)), jnp.float32)
  model = ModernTCN(**kw)
  variables = model.init(jax.random.key(0), x)
  # Non-trivial BatchNorm statistics and affines, so that the fusion has something to fold.
  perturb = lambda path, v: v + 0.3 * rng.random(v.shape).astype(np.float32) + (
      0.5 if path[-1].key in ("var", "scale") else 0.0)
  variables = jax.tree_util.tree_map_with_path(perturb, flax.core.unfreeze(variables))
  merged_vars = merge_small_kernels(variables, large_size=9, small_size=3)
  assert "small_conv" not in merged_vars["params"]["block_0"]
  assert "large_bn" not in merged_vars["batch_stats"]["block_0"]
  pred, feats = model.apply(variables, x)
  pred_m, feats_m = ModernTCN(**kw, small_kernel_merged=True).apply(merged_vars, x)
  np.testing.assert_allclose(pred_m, pred, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(feats_m["hidden"], feats["hidden"], rtol=1e-5, atol=1e-5)


def test_timemixer_calendar_tiling_follows_reference():
  # Channel-independent rows are b * C + c, the reference tiles x_mark by C: row r gets the
  # calendar features of sample r mod B. With B = 2 and C = 2, sample 1's channel 0 (row 2)
  # reads sample 0's calendar features: changing sample 0's marks moves sample 1's forecast.
  model = models.get_model_class("timemixer")(seq_len=16, label_len=0, pred_len=4, enc_in=2,
                                                d_model=4, d_ff=8, e_layers=1,
                                                down_sampling_layers=1, moving_avg=3)
  x = jnp.ones((2, 16, 2)) + jnp.arange(16.0)[None, :, None]
  marks = jnp.zeros((2, 16, 3))
  variables = model.init(jax.random.key(0), x, marks)
  base, _ = model.apply(variables, x, marks)
  moved, _ = model.apply(variables, x, marks.at[0].set(1.0))
  assert not np.allclose(base[1, :, 0], moved[1, :, 0])
