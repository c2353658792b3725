"""ModernTCN: parameter count and feature width at the ETTh1 shape, and the merged kernel."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import etth1_feature_width, etth1_model
from timedistill_jax import models
from timedistill_jax.models.teachers.moderntcn import ModernTCN, merge_small_kernels

ETTH1 = dict(ffn_ratio=1, num_blocks=1, dropout=0.3)  # docs/method.md "Teacher settings"
# The reference's modules its forward pass never calls hold 50,532 parameters (stage 2-4
# down-sampling 3 * 8,384, te_patch 484, lat 4,160, smooth 12,352, up-sampling 8,384); we do
# not build those.
UNUSED_IN_REFERENCE = 50_532


# sum(p.numel()) of the TimeDistill reference model, measured with torch 2.13.
@pytest.mark.parametrize("pred_len, ours, reference", [
    (96, 1_199_136, 1_249_668), (336, 3_964_176, 4_014_708)])
def test_etth1_parameter_count(pred_len, ours, reference):
  _, variables, _ = etth1_model("moderntcn", pred_len, **ETTH1)
  assert models.count_params(variables) == ours
  assert ours + UNUSED_IN_REFERENCE == reference


def test_feature_width_at_l720():
  assert etth1_feature_width("moderntcn", **ETTH1) == 64 * 180  # dims * L / patch_stride = 11520


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
