"""The token / positional / temporal embedding against NumPy."""

import math

import jax
import numpy as np

from tests.helpers import L, inputs
from timedistill_jax.models.layers import embedding


def _np_positional(length, d):
  pos = np.arange(length)[:, None]
  div = np.exp(np.arange(0, d, 2) * -(math.log(10000.0) / d))
  table = np.zeros((length, d))
  table[:, 0::2], table[:, 1::2] = np.sin(pos * div), np.cos(pos * div)
  return table


def test_data_embedding_matches_numpy():
  x, x_mark, _ = inputs()
  module = embedding.DataEmbedding(8, dropout=0.0)
  v = module.init(jax.random.key(0), x, x_mark, train=False)
  out = np.asarray(module.apply(v, x, x_mark, train=False))
  w = np.asarray(v["params"]["value"]["kernel"])  # [3, C, D]
  xn = np.asarray(x)
  xp = np.concatenate([xn[:, -1:], xn, xn[:, :1]], axis=1)
  value = sum(xp[:, k:k + L] @ w[k] for k in range(3))
  want = value + np.asarray(x_mark) @ np.asarray(v["params"]["temporal"]["kernel"])
  np.testing.assert_allclose(out, want + _np_positional(L, 8), atol=1e-5)
  # wo-pos variant and F = 0: value only.
  module = embedding.DataEmbedding(8, dropout=0.0, with_pos=False)
  out = module.apply({"params": {"value": v["params"]["value"]}}, x, x_mark[..., :0], train=False)
  np.testing.assert_allclose(out, value, atol=1e-5)
