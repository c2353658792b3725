"""FEDformer's Fourier blocks and their seeded frequency modes against NumPy."""

import jax
import numpy as np

from timedistill_jax.models.layers import fourier


def test_frequency_modes_seeded_as_numpy():
  np.random.seed(3)
  want = list(range(20))
  np.random.shuffle(want)
  got = fourier.frequency_modes(40, 5, "random", np.random.RandomState(3))
  assert got == tuple(sorted(want[:5]))
  assert fourier.frequency_modes(40, 64, "low", None) == tuple(range(20))


def test_fourier_block_matches_numpy():
  rng = np.random.default_rng(1)
  q = rng.standard_normal((2, 12, 8, 2)).astype(np.float32)
  index = (0, 3, 5, 6)  # of the 12 // 2 + 1 = 7 frequencies; mode i is written to slot i
  block = fourier.FourierBlock(16, index)
  v = block.init(jax.random.key(0), q)
  w = np.asarray(v["params"]["weights1"]) + 1j * np.asarray(v["params"]["weights2"])
  x_ft = np.fft.rfft(q.transpose(0, 2, 3, 1), axis=-1)  # [B, h, E, 7]
  out_ft = np.zeros_like(x_ft)
  for wi, i in enumerate(index):
    out_ft[..., wi] = np.einsum("bhi,hio->bho", x_ft[..., i], w[..., wi])
  want = np.fft.irfft(out_ft, n=12, axis=-1).reshape(2, 12, 8, 2)  # the reference's raw view
  np.testing.assert_allclose(block.apply(v, q), want, atol=1e-6)


def test_fourier_cross_attention_matches_numpy():
  rng = np.random.default_rng(4)
  q = rng.standard_normal((2, 10, 2, 3)).astype(np.float32)
  k = rng.standard_normal((2, 16, 2, 3)).astype(np.float32)
  index_q, index_kv = (1, 2, 7), (0, 4, 6, 8)  # q has 6 frequencies: mode 7 is dropped
  block = fourier.FourierCrossAttention(6, 2, index_q, index_kv)
  v = block.init(jax.random.key(0), q, k)
  w = np.asarray(v["params"]["weights1"]) + 1j * np.asarray(v["params"]["weights2"])
  xq = np.fft.rfft(q.transpose(0, 2, 3, 1), axis=-1)
  xk = np.fft.rfft(k.transpose(0, 2, 3, 1), axis=-1)
  sel_q = np.stack([xq[..., j] if j < 6 else 0 * xq[..., 0] for j in index_q], -1)
  sel_k = xk[..., list(index_kv)]
  qk = np.einsum("bhex,bhey->bhxy", sel_q, sel_k)
  qk = np.tanh(qk.real) + 1j * np.tanh(qk.imag)
  mixed = np.einsum("bhex,heox->bhox", np.einsum("bhxy,bhey->bhex", qk, sel_k), w)
  out_ft = np.zeros_like(xq)
  for i, j in enumerate(index_q):
    if j < 6:
      out_ft[..., j] = mixed[..., i]
  want = np.fft.irfft(out_ft / 36, n=10, axis=-1).reshape(2, 10, 2, 3)
  np.testing.assert_allclose(block.apply(v, q, k), want, atol=1e-6)
