"""TimesNet's period block (FFT periods, 2-D inception convolutions) against NumPy."""

import math

import jax
import numpy as np

from timedistill_jax.models.layers import period_conv


def _np_gelu(x):
  return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def _np_conv2d_same(g, w, b):  # g: [B, R, P, Din], w: [k, k, Din, Dout]
  k = w.shape[0]
  h = k // 2
  gp = np.pad(g, ((0, 0), (h, h), (h, h), (0, 0)))
  rows, cols = g.shape[1:3]
  return sum(gp[:, i:i + rows, j:j + cols] @ w[i, j] for i in range(k) for j in range(k)) + b


def _np_inception(g, params, prefix_count):
  return sum(_np_conv2d_same(g, np.asarray(params[f"kernel_{i}"]), np.asarray(params[f"bias_{i}"]))
             for i in range(prefix_count)) / prefix_count


def test_times_block_matches_numpy_grid():
  rng = np.random.default_rng(2)
  length, d = 26, 4
  x = rng.standard_normal((2, length, d)).astype(np.float32)
  x[:, :, 0] += 3 * np.sin(2 * np.pi * np.arange(length) / 7)  # a non-dividing period
  block = period_conv.TimesBlock(d, 6, top_k=3, num_kernels=3)
  shapes = jax.eval_shape(block.init, jax.random.key(0), x)
  # Random weights and non-zero biases (the initial biases are zero).
  v = jax.tree_util.tree_map(lambda s: 0.3 * rng.standard_normal(s.shape).astype(np.float32),
                             shapes)
  p = v["params"]
  amp = np.abs(np.fft.rfft(x, axis=1))
  spectrum = amp.mean(axis=(0, 2))
  spectrum[0] = 0
  top = np.argsort(-spectrum)[:3]
  res = []
  for f in top:
    period = length // f
    rows = -(-length // period)
    g = np.pad(x, ((0, 0), (0, rows * period - length), (0, 0))).reshape(2, rows, period, d)
    g = _np_inception(_np_gelu(_np_inception(g, p["conv1"], 3)), p["conv2"], 3)
    res.append(g.reshape(2, -1, d)[:, :length])
  w = np.exp(amp.mean(-1)[:, top])
  w /= w.sum(1, keepdims=True)
  want = np.einsum("kbtd,bk->btd", np.stack(res), w) + x
  np.testing.assert_allclose(jax.jit(block.apply)(v, x), want, atol=1e-4)


def test_padded_frame_length():
  # T = 26: period 26 // 3 = 8 needs 4 rows of 8 = 32 steps, the largest of all candidates.
  assert period_conv.padded_frame_length(26) == 32
  assert period_conv.padded_frame_length(816) == 978
