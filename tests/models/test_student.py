"""The DMLP / MLP student against the reference's sizes and a NumPy forward pass."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from timedistill_jax.models import count_params
from timedistill_jax.models.student import DMLP, MLP


def _init(cls, **kw):
  kw = dict(seq_len=720, label_len=48, pred_len=96, enc_in=7) | kw
  model = cls(**kw)
  x = jnp.zeros((2, kw["seq_len"], kw["enc_in"]))
  return model, model.init(jax.random.PRNGKey(0), x, None, None, train=False)


def test_parameter_counts_equal_the_reference():
  # docs/method.md "Student": 2 (L D + D + D H + H) + 6 C for the DMLP (BatchNorm and RevIN
  # affine included).
  assert count_params(_init(DMLP)[1]) == 836_842
  assert count_params(_init(MLP)[1]) == 418_428
  # ECL shape, H = 96: the paper's 0.839 M.
  assert count_params(_init(DMLP, enc_in=321)[1]) == 2 * (720 * 512 + 512 + 512 * 96 + 96) + 6 * 321


def _np_branch(p, bn, x, train):
  h = x @ p["fc1"]["kernel"] + p["fc1"]["bias"]  # [B, C, D]
  if train:
    mean, var = h.mean(axis=(0, 2), keepdims=True), h.var(axis=(0, 2), keepdims=True)
  else:
    mean, var = bn["mean"][None, :, None], bn["var"][None, :, None]
  hn = (h - mean) / np.sqrt(var + 1e-5) * p["bn"]["scale"][None, :, None] + p["bn"]["bias"][
      None, :, None]
  return np.maximum(hn, 0) @ p["fc2"]["kernel"] + p["fc2"]["bias"], h


@pytest.mark.parametrize("train", [True, False])
def test_dmlp_forward_matches_numpy(train):
  model, variables = _init(DMLP, seq_len=48, pred_len=12, enc_in=3, d_model=16)
  p = jax.tree.map(np.asarray, variables["params"])
  stats = jax.tree.map(lambda a: np.asarray(a) + 0.3, variables["batch_stats"])
  variables = {"params": variables["params"], "batch_stats": stats}
  x = np.random.default_rng(1).normal(size=(4, 48, 3)).astype(np.float32)

  mean = x.mean(1, keepdims=True)
  xc = x - mean
  pad = 12
  xp = np.concatenate([np.repeat(xc[:, :1], pad, 1), xc, np.repeat(xc[:, -1:], pad, 1)], 1)
  trend = np.stack([xp[:, t:t + 25].mean(1) for t in range(48)], 1)
  seasonal = xc - trend
  out_s, h_s = _np_branch(p["seasonal"], stats["seasonal"]["bn"], seasonal.transpose(0, 2, 1), train)
  out_t, h_t = _np_branch(p["trend"], stats["trend"]["bn"], trend.transpose(0, 2, 1), train)
  expected = (out_s + out_t).transpose(0, 2, 1) + mean

  if train:
    (pred, feats), _ = model.apply(variables, jnp.asarray(x), None, None, train=True,
                                   mutable=["batch_stats"])
  else:
    pred, feats = model.apply(variables, jnp.asarray(x), None, None, train=False)
  np.testing.assert_allclose(pred, expected, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(feats["hidden"], h_s + h_t, rtol=1e-4, atol=1e-4)


def test_masked_batchnorm_equals_the_smaller_batch():
  model, variables = _init(MLP, seq_len=32, pred_len=8, enc_in=3, d_model=16)
  x = np.random.default_rng(2).normal(size=(5, 32, 3)).astype(np.float32)
  padded = np.concatenate([x, x[:3]])  # 8 rows, the last 3 are padding
  mask = np.array([1] * 5 + [0] * 3, np.float32)
  (pred_small, _), stats_small = model.apply(variables, x, None, None, train=True,
                                             mutable=["batch_stats"])
  (pred_pad, _), stats_pad = model.apply(variables, padded, None, None, train=True,
                                         mask=jnp.asarray(mask), mutable=["batch_stats"])
  np.testing.assert_allclose(pred_pad[:5], pred_small, rtol=1e-5, atol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               stats_small, stats_pad)


def test_revin_student_runs_and_uses_its_affine():
  model, variables = _init(DMLP, seq_len=32, pred_len=8, enc_in=3, d_model=16, norm="revin")
  x = jnp.asarray(np.random.default_rng(3).normal(size=(2, 32, 3)), jnp.float32)

  def loss(params):
    (pred, _), _ = model.apply({"params": params, "batch_stats": variables["batch_stats"]}, x,
                               None, None, train=True, mutable=["batch_stats"])
    return jnp.sum(pred**2)

  grads = jax.grad(loss)(variables["params"])
  assert float(jnp.abs(grads["revin"]["weight"]).sum()) > 0
